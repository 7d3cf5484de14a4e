"""MLX (mlx-lm): prepare, the RoPE-base check, the runner's contract, and greedy output that
matches transformers on the real default model."""
import json
import shutil
import subprocess
import sys

import pytest

from runners.base import GenerationRequest, RunnerOptions
from tests.conftest import ROOT, edgebench, read_jsonl

pytest.importorskip("mlx_lm")
OPTIONS = RunnerOptions(threads=2, context_tokens=1024)
CHAT = ({"role": "user", "content": "What is the capital of France?"},)


@pytest.fixture(scope="module")
def tiny_prepared(tiny_checkpoint, tmp_path_factory):
    """Both MLX artifacts of the tiny model, made by `edgebench prepare --model PATH`."""
    cache = tmp_path_factory.mktemp("mlx-cache")
    result = edgebench("prepare", "--model", str(tiny_checkpoint), "--runner", "mlx", "--quant", "fp32",
                       "--quant", "4bit", "--cache", str(cache))
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
    result = edgebench("run", "--model", str(tiny_checkpoint), "--runner", "mlx", "--quant", "mlx=fp32",
                       "--quant", "mlx=4bit", "--profile", "quick", "--cache", str(cache), "--out", str(out))
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


BLAS_PROBE = ("import json\nfrom runners.mlx_blas import use_openblas, global_sgemm_library\n"
              "done = use_openblas(1)\nimport mlx.core as mx\n"
              "mx.eval(mx.ones((64, 64)) @ mx.ones((64, 64)))\n"
              "print(json.dumps([done, global_sgemm_library()]))")


def _blas_in_fresh_process(**env):
    out = subprocess.run([sys.executable, "-c", BLAS_PROBE], capture_output=True, text=True, check=True, cwd=ROOT,
                         env={**__import__("os").environ, **env})
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


def test_an_openblas_that_cannot_multiply_is_never_preloaded(tmp_path):
    from runners.mlx_blas import probe_crash

    not_blas = tmp_path / "libnotblas.so"
    not_blas.write_bytes(b"not a shared library")
    assert probe_crash(not_blas, 1) == "failed (exit 1)"


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
    result = edgebench("run", "--runner", "mlx", "--artifact", f"mlx={model}", "--profile", "quick",
                       "--out", str(tmp_path / "out"))
    assert result.returncode == 1 and "Error: mlx:" in result.stderr and "not a folder" in result.stderr


@pytest.fixture(scope="module")
def real_fp32(default_checkpoint, artifact_cache):
    from bench import models, prepare
    from runners.mlx import MlxRunner

    prepared = prepare.prepare_artifact(models.get_model("smollm2-135m"), "mlx", MlxRunner.exporter, "fp32",
                                        artifact_cache)
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
    mlx_tokens = [e.token_id for e in real_fp32.generate(GenerationRequest(16, token_ids=tuple(prompt),
                                                                             ignore_eos=True))]
    assert mlx_tokens == _transformers_greedy(default_checkpoint, prompt, 16)


@pytest.mark.real
def test_chat_stops_at_the_end_of_turn_without_yielding_it(real_fp32):
    events = list(real_fp32.generate(GenerationRequest(64, messages=CHAT)))
    assert "".join(e.text for e in events) == "The capital of France is Paris."
    info = real_fp32.generation_info()
    assert info.stop_reason == "eos" and 2 not in [e.token_id for e in events]
    assert info.prompt_tokens == 37 and info.native["generation_tokens"] == len(events) + 1
