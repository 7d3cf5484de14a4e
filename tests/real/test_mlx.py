"""MLX (mlx-lm): prepare, the RoPE-base check, the runner's contract, and greedy output that
matches transformers on the real default model."""

import json
import shutil
import subprocess
import sys

import pytest

from runners.base import GenerationRequest, RunnerOptions
from tests.support.helpers import ROOT, edgebench, read_jsonl
from tests.support.reference_logits import (
    assert_scores_like_transformers,
    assert_scoring_and_generation_leave_each_other_nothing,
)

pytest.importorskip("mlx_lm")
OPTIONS = RunnerOptions(threads=2, context_tokens=1024)
CHAT = ({"role": "user", "content": "What is the capital of France?"},)


@pytest.fixture(scope="module")
def tiny_prepared(tiny_checkpoint, tmp_path_factory):
    """Both MLX artifacts of the tiny model, made by `edgebench prepare --model PATH`."""
    cache = tmp_path_factory.mktemp("mlx-cache")
    result = edgebench(
        "prepare",
        "--model",
        str(tiny_checkpoint),
        "--runner",
        "mlx",
        "--quant",
        "fp32",
        "--quant",
        "4bit",
        "--cache",
        str(cache),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    folders = {p.parent.name.split("-")[0]: p.parent for p in cache.rglob("mlx/*/manifest.json")}
    assert set(folders) == {"fp32", "4bit"}
    return cache, folders


def test_export_puts_the_rope_base_where_mlx_lm_reads_it(tiny_prepared):
    _, folders = tiny_prepared
    for folder in folders.values():
        config = json.loads((folder / "config.json").read_text())
        assert config["rope_theta"] == 1e5 == config["rope_parameters"]["rope_theta"]
    assert json.loads((folders["4bit"] / "config.json").read_text())["quantization"]["group_size"] == 32


def test_export_fails_loudly_when_the_converted_rope_base_differs(tiny_prepared, tmp_path):
    from runners.mlx_export import RopeBaseMismatch, check_rope_base

    _, folders = tiny_prepared
    unpinned = shutil.copytree(folders["4bit"], tmp_path / "unpinned")
    config = json.loads((unpinned / "config.json").read_text())
    del config["rope_theta"]  # as mlx-lm's converter leaves it
    (unpinned / "config.json").write_text(json.dumps(config))
    with pytest.raises(RopeBaseMismatch, match=r"rope_theta=100000.0.*with 10000"):
        check_rope_base(unpinned, 1e5)
    check_rope_base(folders["4bit"], 1e5)


@pytest.fixture(scope="module")
def tiny_run(tiny_checkpoint, tiny_prepared, tmp_path_factory):
    cache, _ = tiny_prepared
    out = tmp_path_factory.mktemp("mlx-run")
    result = edgebench(
        "run",
        "--model",
        str(tiny_checkpoint),
        "--runner",
        "mlx",
        "--quant",
        "mlx=fp32",
        "--quant",
        "mlx=4bit",
        "--profile",
        "quick",
        "--cache",
        str(cache),
        "--out",
        str(out),
    )
    assert result.returncode == 0, result.stderr
    return read_jsonl(next(out.glob("*.jsonl")))


def test_a_quick_run_measures_both_quantizations(tiny_run):
    assert {r["quantization"] for r in tiny_run} == {"fp32", "4bit"}
    assert all(r["status"] == "ok" and r["runner"] == "mlx" for r in tiny_run)
    r = tiny_run[0]
    assert r["backend"] == "cpu" and r["runner_settings"]["device"] == "cpu" and r["runtime_version"] == "0.32.2"


def test_fixed_length_probes_produce_exactly_the_tokens_asked(tiny_run):
    fixed = [r for r in tiny_run if r["kind"] == "fixed"]
    assert fixed
    for r in fixed:
        assert (r["prompt_tokens"], r["new_tokens"], r["stop_reason"]) == (128, 64, "length")
        assert len(r["token_times_ns"]) == 64 == r["native"]["generation_tokens"]


def test_chat_uses_the_models_template_and_mlx_lm_figures_are_kept(tiny_run):
    chat = next(r for r in tiny_run if r["prompt_id"] == "chat-capital")
    assert chat["prompt_tokens"] == 37 == chat["native"]["prompt_tokens"]  # SmolLM2's template
    assert chat["native"]["prompt_tps"] > 0 and chat["native"]["generation_tps"] > 0
    assert 0 < chat["native"]["peak_memory_gb"] < 1


def test_the_record_says_which_blas_served_the_run(tiny_run):
    settings = tiny_run[0]["runner_settings"]
    if settings["blas"] == "OpenBLAS":
        assert settings["cblas_sgemm_from"].endswith("libopenblas.so.0") and settings["blas_threads"] == 2
    else:
        assert settings["cblas_sgemm_from"] == "the bundled BLAS" and settings["blas_reason"]


BLAS_PROBE = (
    "import json\nfrom runners.mlx_blas import use_openblas, global_sgemm_library\n"
    "done = use_openblas(1)\nimport mlx.core as mx\n"
    "mx.eval(mx.ones((64, 64)) @ mx.ones((64, 64)))\n"
    "print(json.dumps([done, global_sgemm_library()]))"
)


def _blas_in_fresh_process(**env):
    out = subprocess.run(
        [sys.executable, "-c", BLAS_PROBE],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        env={**__import__("os").environ, **env},
    )
    return json.loads(out.stdout)


@pytest.mark.skipif(sys.platform != "linux", reason="the BLAS switch is for MLX's Linux CPU build")
def test_openblas_serves_mlx_when_it_loads_and_the_switch_keeps_the_bundled_one():
    from runners.mlx_blas import openblas_path

    done, library = _blas_in_fresh_process()
    reason = done.get("blas_reason", "")
    if openblas_path() is None or "would not load" in reason or "in a probe on this CPU" in reason:
        assert done["blas"].startswith("reference BLAS") and library is None
    else:
        assert done["blas"] == "OpenBLAS" and library == str(openblas_path()) and "OpenBLAS" in done["blas_config"]
    done, library = _blas_in_fresh_process(EDGEBENCH_MLX_BLAS="bundled")
    assert done == {"blas": "reference BLAS bundled with mlx[cpu]", "blas_reason": "EDGEBENCH_MLX_BLAS=bundled"}
    assert library is None


def _loader_message(path) -> str:
    """What the dynamic loader itself says when asked to load `path` in this process."""
    import ctypes

    with pytest.raises(OSError) as refused:
        ctypes.CDLL(str(path))
    return str(refused.value)


def test_a_library_that_will_not_load_is_reported_in_the_loaders_words(tmp_path):
    from runners.mlx_blas import probe_problem

    not_blas = tmp_path / "libnotblas.so"
    not_blas.write_bytes(b"not a shared library")
    assert probe_problem(not_blas, 1) == f"would not load: {_loader_message(not_blas)}"


@pytest.mark.skipif(sys.platform != "linux", reason="the BLAS switch is for MLX's Linux CPU build")
def test_an_openblas_missing_a_dependency_names_the_missing_library(tmp_path):
    """Defect 13: cmeel-openblas needs libgfortran.so.5. A copy that needs a library no
    machine has stands for a machine without it: the reason must be the loader's, not a guess."""
    from runners.mlx_blas import openblas_path, probe_problem

    if openblas_path() is None:
        pytest.skip("cmeel-openblas is not installed")
    needing = tmp_path / "libopenblas.so.0"
    needing.write_bytes(openblas_path().read_bytes().replace(b"libgfortran.so.5\0", b"libgfortran.so.9\0"))
    problem = probe_problem(needing, 1)
    assert problem == f"would not load: {_loader_message(needing)}"
    assert "libgfortran.so.9: cannot open shared object file" in problem


@pytest.mark.skipif(sys.platform != "linux", reason="the BLAS switch is for MLX's Linux CPU build")
def test_set_up_installed_every_library_openblas_needs():
    from runners.mlx_blas import openblas_path

    if openblas_path() is None:
        pytest.skip("cmeel-openblas is not installed")
    linked = subprocess.run(["ldd", str(openblas_path())], capture_output=True, text=True, check=True).stdout
    missing = [line.split()[0] for line in linked.splitlines() if "not found" in line]
    assert not missing, f"{missing} missing: scripts/setup.sh installs them (Debian: apt-get install libgfortran5)"


def test_a_folder_converted_elsewhere_still_gets_its_rope_base(tiny_prepared, tmp_path):
    from runners.mlx import MlxRunner

    _, folders = tiny_prepared
    unpinned = shutil.copytree(folders["4bit"], tmp_path / "unpinned")
    config = json.loads((unpinned / "config.json").read_text())
    del config["rope_theta"]
    (unpinned / "config.json").write_text(json.dumps(config))
    runner = MlxRunner()
    info = runner.load(unpinned, OPTIONS)
    assert info.settings["rope_theta_given_at_load"] and runner.model.args.rope_theta == 1e5
    assert info.quantization == "4bit-g32"
    runner.close()


def test_ignore_eos_is_undone_after_the_generation(tiny_prepared):
    from runners.mlx import MlxRunner

    _, folders = tiny_prepared
    runner = MlxRunner()
    runner.load(folders["fp32"], OPTIONS)
    events = list(runner.generate(GenerationRequest(5, token_ids=(1, 2, 3), ignore_eos=True)))
    assert len(events) == 5 and runner.generation_info().stop_reason == "length"
    assert runner.tokenizer.eos_token_ids == {2}
    runner.close()


def test_a_file_is_not_an_mlx_artifact(tmp_path):
    model = tmp_path / "model.gguf"
    model.write_bytes(b"GGUF")
    result = edgebench(
        "run", "--runner", "mlx", "--artifact", f"mlx={model}", "--profile", "quick", "--out", str(tmp_path / "out")
    )
    assert result.returncode == 1 and "Error: mlx:" in result.stderr and "not a folder" in result.stderr


@pytest.fixture(scope="module")
def real_fp32(default_checkpoint, artifact_cache):
    from bench.artifacts import prepare
    from bench.data import models
    from runners.mlx import MlxRunner

    prepared = prepare.prepare_artifact(
        models.get_model("smollm2-135m"), "mlx", MlxRunner.exporter, "fp32", artifact_cache
    )
    runner = MlxRunner()
    runner.load(prepared.path, OPTIONS)
    yield runner
    runner.close()


def _transformers_greedy(checkpoint, prompt_ids, count):
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(checkpoint, dtype=torch.float32).eval()
    tokens, ids = [], torch.tensor([prompt_ids])
    with torch.no_grad():
        out = model(ids, use_cache=True)
        for _ in range(count):
            token = int(out.logits[0, -1].argmax())
            tokens.append(token)
            out = model(torch.tensor([[token]]), past_key_values=out.past_key_values, use_cache=True)
    return tokens


@pytest.mark.real
def test_unquantized_mlx_gives_the_same_greedy_tokens_as_transformers(real_fp32, default_checkpoint):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(default_checkpoint)
    messages = [{"role": "user", "content": "Write a short story about a lighthouse keeper."}]
    text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    prompt = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert real_fp32._prompt_ids(GenerationRequest(16, messages=tuple(messages))) == prompt
    mlx_tokens = [
        e.token_id for e in real_fp32.generate(GenerationRequest(16, token_ids=tuple(prompt), ignore_eos=True))
    ]
    assert mlx_tokens == _transformers_greedy(default_checkpoint, prompt, 16)


@pytest.mark.real
def test_chat_stops_at_the_end_of_turn_without_yielding_it(real_fp32):
    events = list(real_fp32.generate(GenerationRequest(64, messages=CHAT)))
    assert "".join(e.text for e in events) == "The capital of France is Paris."
    info = real_fp32.generation_info()
    assert info.stop_reason == "eos" and 2 not in [e.token_id for e in events]
    assert info.prompt_tokens == 37 and info.native["generation_tokens"] == len(events) + 1


def test_the_defaults_are_mlx_lm_generates_own():
    from mlx_lm.generate import setup_arg_parser

    from runners.mlx import MlxRunner

    cli = setup_arg_parser().parse_args([])
    assert MlxRunner.defaults == {
        "prefill_step_size": cli.prefill_step_size,
        "kv_bits": cli.kv_bits or 0,
        "kv_group_size": cli.kv_group_size,
        "quantized_kv_start": cli.quantized_kv_start,
        "accelerator": "auto",
    }  # mlx_lm.generate runs on MLX's default device


def test_the_record_says_threads_are_not_applied_and_what_mlx_lm_ran_with(tiny_run):
    from runners.mlx import MlxRunner

    r = tiny_run[0]
    assert r["threads"] is None and r["threads_requested"] == 2
    assert r["runner_settings"]["not_applied"]["threads"].startswith("MLX has no thread-count setting")
    assert {k: r["runner_settings"][k] for k in ("prefill_step_size", "kv_bits")} == {
        "prefill_step_size": 2048,
        "kv_bits": 0,
    }
    fixed = next(x for x in tiny_run if x["kind"] == "fixed")
    assert fixed["native"]["runtime_decode_tok_s"] == fixed["native"]["generation_tps"] > 0
    assert fixed["native"]["runtime_prefill_tok_s"] == fixed["native"]["prompt_tps"] > 0
    assert [k for k in fixed["native"] if k.startswith("runtime_")] == list(MlxRunner.runtime_figures)


def _count_forward_calls(runner, extra_work=None):
    """Wrap the loaded model's forward pass: each call appends (tokens fed, its KV cache);
    `extra_work()` (an mx array) is added to every call's output, so each step computes it."""
    calls = []
    plain = type(runner.model)

    def counted(self, inputs, cache=None, **kwargs):
        calls.append((inputs.shape[1], cache))
        out = plain.__call__(self, inputs, cache=cache, **kwargs)
        return out if extra_work is None else out + 0 * extra_work()

    runner.model.__class__ = type("Counted", (plain,), {"__call__": counted})
    return calls


@pytest.fixture
def tiny_fp32(tiny_prepared):
    from runners.mlx import MlxRunner

    runner = MlxRunner()
    runner.info = runner.load(tiny_prepared[1]["fp32"], OPTIONS)
    yield runner
    runner.close()


def test_each_generation_computes_its_tokens_and_one_step_ahead_in_prefill_steps_asked(tiny_prepared):
    """Prefill runs in chunks of the prefill_step_size applied; then one forward pass per token
    produced, plus the one mlx-lm dispatches ahead of the last token (drained after the clock)."""
    from runners.mlx import MlxRunner

    runner = MlxRunner()
    runner.load(
        tiny_prepared[1]["fp32"],
        RunnerOptions(threads=2, context_tokens=1024, settings={**MlxRunner.defaults, "prefill_step_size": 16}),
    )
    calls = _count_forward_calls(runner)
    events = list(runner.generate(GenerationRequest(7, token_ids=tuple(range(1, 41)), ignore_eos=True)))
    info = runner.generation_info()
    assert len(events) == 7 == info.runtime_new_tokens
    assert [n for n, _ in calls] == [16, 16, 7, 1] + [1] * 7  # 39 prompt tokens in chunks, the last with token 1
    runner.close()


@pytest.mark.idle  # wall-clock waits measured against a step's cost: another program stretches both unevenly
def test_the_step_computed_ahead_has_finished_before_the_next_prompt_starts(tiny_fp32):
    """Defect 6. Every forward pass is made slow (extra work of known cost): a step left
    running would show as a wait on the generation stream after generation_info, and in the
    TTFT of the next prompt."""
    import time

    import mlx.core as mx

    from bench.run import harness

    x = mx.random.normal((384, 384), key=mx.random.key(0))
    mx.eval(x)

    def extra_work(repeats):
        y = x
        for _ in range(repeats):
            y = (y @ x) * 1e-3
        return y.sum()

    def cost(repeats):
        t = time.perf_counter()
        mx.eval(extra_work(repeats))
        return time.perf_counter() - t

    one = min(cost(1) for _ in range(3))
    repeats = max(1, round(0.3 / one))
    step = min(cost(repeats) for _ in range(3))  # ~0.3 s per forward pass
    calls = _count_forward_calls(tiny_fp32, lambda: extra_work(repeats))
    short = GenerationRequest(2, token_ids=(1, 2), ignore_eos=True)

    def ttft_s(request):
        stream = harness.collect(tiny_fp32.generate(request))
        tiny_fp32.generation_info()
        return (stream.stamps[0] - stream.t0) / 1e9

    after_nothing = ttft_s(short)
    prompt = tuple(range(1, 30))
    at_max_tokens = GenerationRequest(4, token_ids=prompt, ignore_eos=True)
    second = [e.token_id for e in tiny_fp32.generate(at_max_tokens)][1]
    tiny_fp32.generation_info()
    tiny_fp32.tokenizer.eos_token_ids = {second}  # this prompt's greedy second token ends the turn
    for request, stop in ((at_max_tokens, "length"), (GenerationRequest(4, token_ids=prompt), "eos")):
        before = len(calls)
        events = list(tiny_fp32.generate(request))
        info = tiny_fp32.generation_info()
        t = time.perf_counter()
        mx.synchronize(tiny_fp32.generation_stream)
        left_running = time.perf_counter() - t
        produced = info.native["generation_tokens"]  # the end-of-turn token included
        assert info.stop_reason == stop and produced == len(events) + (stop == "eos")
        assert len(calls) - before == 1 + produced + 1  # a prefill chunk, the tokens, one step ahead
        assert left_running < step / 3, f"a {step:.2f} s step was still running: waited {left_running:.2f} s"
    ttft_s(at_max_tokens)  # a generation, and at once the next prompt
    after_a_generation = ttft_s(short)
    # A step left running delays the next prompt by about a step; a faster next prompt (warm
    # caches) is no defect, and on this CPU it is as likely as not.
    assert after_a_generation - after_nothing < step / 2, (after_nothing, after_a_generation, step)


def _loaded_bytes(runner, embedding_rows_only: bool) -> int:
    """What the loaded model holds, from its own arrays: every parameter's nbytes, the
    embedding's parts as one real row each when asked."""
    from mlx.utils import tree_flatten

    total = 0
    for name, array in tree_flatten(runner.model.parameters()):
        row = embedding_rows_only and "embed_tokens." in name
        total += array[0].nbytes if row else array.nbytes
    return total


def test_weights_bytes_are_what_the_loaded_model_holds_with_the_head_tied(tiny_fp32, tiny_prepared):
    folder = tiny_prepared[1]["fp32"]
    assert json.loads((folder / "config.json").read_text())["tie_word_embeddings"]
    assert tiny_fp32.info.weights_bytes == _loaded_bytes(tiny_fp32, embedding_rows_only=False)
    assert tiny_fp32.info.weights_bytes < sum(f.stat().st_size for f in folder.iterdir())  # no tokenizer


def test_weights_bytes_count_one_embedding_row_when_the_head_is_not_tied(tiny_prepared, tmp_path):
    """A quantized untied model: its embedding row is a weight, scales and biases row."""
    import mlx.core as mx

    from runners.mlx import MlxRunner

    untied = shutil.copytree(tiny_prepared[1]["4bit"], tmp_path / "untied")
    config = json.loads((untied / "config.json").read_text())
    config["tie_word_embeddings"] = False
    (untied / "config.json").write_text(json.dumps(config))
    weights = mx.load(str(untied / "model.safetensors"))
    head = {k.replace("model.embed_tokens.", "lm_head."): v for k, v in weights.items() if "embed_tokens" in k}
    mx.save_safetensors(str(untied / "model.safetensors"), {**weights, **head})
    runner = MlxRunner()
    info = runner.load(untied, OPTIONS)
    assert runner.model.lm_head is not None and info.quantization == "4bit-g32"
    assert info.weights_bytes == _loaded_bytes(runner, embedding_rows_only=True)
    runner.close()


def test_kv_bytes_per_token_are_what_a_generations_cache_holds(tiny_fp32):
    calls = _count_forward_calls(tiny_fp32)
    events = list(tiny_fp32.generate(GenerationRequest(9, token_ids=tuple(range(1, 300)), ignore_eos=True)))
    tiny_fp32.generation_info()
    cache = calls[-1][1]
    args = tiny_fp32.model.args
    layers = [(c.keys, c.values) for c in cache]
    assert cache[0].offset == 299 + len(events)  # every token made went through the cache, the one ahead too
    assert {k.dtype for k, _ in layers} == {tiny_fp32.mx.float32} and len(layers) == args.num_hidden_layers
    per_layer = 2 * args.num_key_value_heads * (args.hidden_size // args.num_attention_heads) * 4
    assert tiny_fp32.info.kv_bytes_per_token == args.num_hidden_layers * per_layer


# --- teacher-forced scoring (edgebench quality), checked against transformers' own logits ---


@pytest.mark.real
@pytest.mark.parametrize("which", ["tiny", "default"])
def test_fp32_scoring_gives_transformers_log_probs_at_every_position(which, request):
    runner = request.getfixturevalue({"tiny": "tiny_fp32", "default": "real_fp32"}[which])
    checkpoint = request.getfixturevalue({"tiny": "tiny_checkpoint", "default": "default_checkpoint"}[which])
    assert_scores_like_transformers(runner, checkpoint)


@pytest.mark.real
def test_scoring_is_deterministic_and_leaves_nothing_for_the_next_generation(real_fp32):
    def generated_ids(request):
        ids = [e.token_id for e in real_fp32.generate(request)]
        real_fp32.generation_info()
        return ids

    assert_scoring_and_generation_leave_each_other_nothing(real_fp32, generated_ids)
