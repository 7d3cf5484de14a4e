"""ONNX Runtime (onnxruntime-genai) through prepare -> run: the tiny llama for the plumbing,
the real default model for what the answers and the records say."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.helpers import ROOT, assert_decodes_incrementally, edgebench, read_jsonl
from tests.support.reference_logits import (
    assert_scores_like_transformers,
    assert_scoring_and_generation_leave_each_other_nothing,
)

CHAT = ({"role": "user", "content": "What is the capital of France?"},)


@pytest.fixture(scope="module")
def tiny_run(tiny_checkpoint, artifact_cache, tmp_path_factory):
    out = tmp_path_factory.mktemp("ort-tiny")
    common = ("--model", str(tiny_checkpoint), "--cache", str(artifact_cache))
    prepared = edgebench("prepare", "--runner", "onnxruntime", "--quant", "int4", "--quant", "fp32", *common)
    run = edgebench(
        "run",
        "--runner",
        "onnxruntime",
        "--quant",
        "onnxruntime=int4",
        "--quant",
        "onnxruntime=fp32",
        "--profile",
        "quick",
        "--threads",
        "2",
        "--out",
        str(out),
        *common,
    )
    return prepared, run, read_jsonl(next(out.glob("*.jsonl")))


def test_the_tiny_model_goes_through_prepare_and_run(tiny_run):
    prepared, run, records = tiny_run
    assert prepared.returncode == 0, prepared.stderr
    assert run.returncode == 0, run.stderr
    assert records and all(r["status"] == "ok" for r in records)
    assert {r["quantization"] for r in records} == {"int4", "fp32"}
    folders = {Path(r["artifact_path"]) for r in records}
    assert len(folders) == 2 and all(
        (f / "genai_config.json").is_file() and (f / "manifest.json").is_file() for f in folders
    )


def test_records_name_the_execution_provider_and_what_onnx_runtime_applied(tiny_run):
    _, _, records = tiny_run
    r = records[0]
    assert r["runner"] == "onnxruntime" and r["runtime_version"] == "0.18.0" and r["backend"] == "cpu"
    settings = r["runner_settings"]
    assert settings["execution_provider"] == "cpu" and settings["onnxruntime_version"]
    assert settings["past_present_share_buffer"] is True
    assert (r["threads"], r["threads_requested"], settings["intra_op_num_threads"]) == (2, 2, 2)
    assert (r["context_tokens"], r["context_tokens_requested"]) == (1024, 1024)


def test_the_per_prompt_generator_is_timed_as_set_up_inside_ttft(tiny_run):
    _, _, records = tiny_run
    assert all(0 < r["setup_ms"] < r["ttft_ms"] for r in records)


def test_onnxruntime_genai_times_nothing_so_no_runtime_figures_are_recorded(tiny_run):
    _, _, records = tiny_run
    assert not any(key.startswith("runtime_") for r in records for key in r["native"])


def test_weights_bytes_count_the_loaded_files_weights_with_the_tied_table_once(tiny_run):
    _, _, records = tiny_run
    for r in records:
        folder = Path(r["artifact_path"])
        # The builder ties the embedding to the head and stores every initializer in the
        # external data file: its size is the bytes read per token. The folder (tokenizer,
        # graph) is larger.
        assert r["weights_bytes"] == (folder / "model.onnx.data").stat().st_size < r["artifact_bytes"]


def _load(folder: Path, threads: int = 2, **settings):
    from runners.base import RunnerOptions
    from runners.onnxruntime import OnnxRuntimeRunner

    runner = OnnxRuntimeRunner()
    info = runner.load(
        folder, RunnerOptions(threads=threads, context_tokens=1024, settings={**OnnxRuntimeRunner.defaults, **settings})
    )
    return runner, info


def _present_keys_after_a_prefill(runner, prompt_tokens: int, new_tokens: int) -> list:
    """The runtime's own KV tensors (present.N.key/value) after a prefill."""
    og = runner.og
    params = og.GeneratorParams(runner.model)
    params.set_search_options(max_length=prompt_tokens + new_tokens)
    generator = og.Generator(runner.model, params)
    generator.append_tokens(list(range(100, 100 + prompt_tokens)))
    names = [f"present.{i}.{kind}" for i in range(2) for kind in ("key", "value")]
    return [generator.get_output(name) for name in names]


@pytest.fixture(scope="module")
def tiny_int4(tiny_run):
    _, _, records = tiny_run
    return next(Path(r["artifact_path"]) for r in records if r["quantization"] == "int4")


def test_kv_bytes_per_token_are_the_runtimes_own_kv_tensors_per_position(tiny_int4):
    runner, info = _load(tiny_int4)
    kv = _present_keys_after_a_prefill(runner, 10, 30)
    # Shared past/present buffer: each KV tensor holds max_length positions.
    assert {a.shape[2] for a in kv} == {40}
    assert info.kv_bytes_per_token == sum(a.nbytes for a in kv) // 40


def test_the_share_buffer_setting_reaches_the_runtime(tiny_int4):
    runner, info = _load(tiny_int4, past_present_share_buffer=False)
    assert info.settings["past_present_share_buffer"] is False
    kv = _present_keys_after_a_prefill(runner, 10, 30)
    assert {a.shape[2] for a in kv} == {10}  # not shared: the present holds only what was computed


def _process_threads_after_loading(folder: Path, threads: int) -> tuple[int, int]:
    """(threads the loaded runner reports, OS threads of the process) in a fresh process."""
    code = (
        "import os, sys; from pathlib import Path; from tests.real.test_onnxruntime import _load; "
        f"_, info = _load(Path({str(folder)!r}), {threads}); "
        "print(info.threads, len(os.listdir('/proc/self/task')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    reported, tasks = out.stdout.split()
    return int(reported), int(tasks)


def test_the_thread_count_is_read_back_from_the_pool_onnx_runtime_built(tiny_int4):
    one, two, four = (_process_threads_after_loading(tiny_int4, n) for n in (1, 2, 4))
    assert (one[0], two[0], four[0]) == (1, 2, 4)
    # An intra-op pool of N threads is the caller plus N - 1 workers: the OS sees them.
    assert (two[1] - one[1], four[1] - one[1]) == (1, 3)


def test_chat_prompts_use_the_models_template(tiny_run):
    _, _, records = tiny_run
    assert {r["prompt_tokens"] for r in records if r["prompt_id"] == "chat-capital"} == {37}


def test_fixed_length_probes_produce_exactly_the_tokens_asked(tiny_run):
    _, _, records = tiny_run
    fixed = [r for r in records if r["kind"] == "fixed"]
    assert fixed
    for r in fixed:
        assert (r["prompt_tokens"], r["new_tokens"], r["stop_reason"]) == (128, 64, "length")
        assert r["native"]["sequence_length"] == 128 + 64


def test_greedy_output_repeats_exactly(tiny_run):
    _, _, records = tiny_run
    outputs = {}
    for r in records:
        outputs.setdefault((r["prompt_id"], r["quantization"]), set()).add(tuple(r["output_token_ids"]))
    assert all(len(o) == 1 for o in outputs.values())


def test_a_folder_that_is_not_a_genai_model_is_refused_before_loading(tmp_path):
    (tmp_path / "model.onnx").write_bytes(b"not really")
    result = edgebench(
        "run", "--runner", "onnxruntime", "--artifact", f"onnxruntime={tmp_path}", "--out", str(tmp_path / "out")
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "not an onnxruntime-genai model folder (no genai_config.json)" in result.stderr


@pytest.fixture(scope="module")
def untied_int4(tiny_checkpoint, artifact_cache, tmp_path_factory):
    """The tiny llama with an output head of its own, built by the int4 builder."""
    import shutil

    import torch
    from safetensors.torch import load_file, save_file

    from bench.artifacts import prepare
    from bench.data import models

    out = tmp_path_factory.mktemp("untied") / "tiny-llama-untied"
    shutil.copytree(tiny_checkpoint, out)
    config = json.loads((out / "config.json").read_text())
    (out / "config.json").write_text(json.dumps({**config, "tie_word_embeddings": False}))
    tensors = load_file(out / "model.safetensors")
    torch.manual_seed(1)
    tensors["lm_head.weight"] = torch.randn_like(tensors["model.embed_tokens.weight"]) * 0.02
    save_file(tensors, out / "model.safetensors", metadata={"format": "pt"})
    result = edgebench(
        "prepare", "--model", str(out), "--runner", "onnxruntime", "--quant", "int4", "--cache", str(artifact_cache)
    )
    assert result.returncode == 0, result.stderr
    return prepare.find_artifact(models.get_model(str(out)), "onnxruntime", "int4", artifact_cache).path


def test_an_untied_embedding_counts_one_row_of_its_tables(untied_int4):
    import onnx

    _, info = _load(untied_int4)
    graph = onnx.load(str(untied_int4 / "model.onnx"), load_external_data=False).graph
    embedding = [t for t in graph.initializer if "embed_tokens" in t.name]
    assert embedding and all(t.dims[0] == 49152 for t in embedding)  # the builder's own table(s), by row
    table = sum(int({e.key: e.value for e in t.external_data}["length"]) for t in embedding)
    data = (untied_int4 / "model.onnx.data").stat().st_size
    assert info.weights_bytes == data - table + table // 49152


# --- the real default model ---------------------------------------------------------------


def _prepared(quant: str, cache: Path) -> Path:
    from bench.artifacts import prepare
    from bench.data import models
    from runners.onnxruntime import OnnxRuntimeRunner

    model = models.get_model("smollm2-135m")
    return prepare.prepare_artifact(model, "onnxruntime", OnnxRuntimeRunner.exporter, quant, cache).path


def _token_events(runner, request) -> list:
    """The tokens a generation yields, without its set-up mark."""
    from runners.base import TokenEvent

    return [e for e in runner.generate(request) if isinstance(e, TokenEvent)]


@pytest.fixture(scope="module")
def fp32_runner(artifact_cache):
    from runners.base import RunnerOptions
    from runners.onnxruntime import OnnxRuntimeRunner

    runner = OnnxRuntimeRunner()
    runner.load(_prepared("fp32", artifact_cache), RunnerOptions(threads=2, context_tokens=1024))
    yield runner
    runner.close()


@pytest.mark.real
def test_fp32_greedy_answer_matches_transformers(fp32_runner, default_checkpoint):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from runners.base import GenerationRequest

    tokens = [e.token_id for e in _token_events(fp32_runner, GenerationRequest(64, messages=CHAT))]
    assert fp32_runner.generation_info().stop_reason == "eos"

    tokenizer = AutoTokenizer.from_pretrained(default_checkpoint)
    model = AutoModelForCausalLM.from_pretrained(default_checkpoint, dtype=torch.float32)
    prompt = tokenizer.apply_chat_template(
        list(CHAT), add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    with torch.no_grad():
        out = model.generate(**prompt, max_new_tokens=64, do_sample=False)
    expected = out[0, prompt["input_ids"].shape[1] :].tolist()
    assert expected[-1] == tokenizer.eos_token_id
    assert tokens == expected[:-1]
    assert tokenizer.decode(tokens) == "The capital of France is Paris."


@pytest.mark.real
def test_fixed_length_mode_runs_past_the_end_of_turn(fp32_runner):
    from runners.base import GenerationRequest

    events = _token_events(fp32_runner, GenerationRequest(24, messages=CHAT, ignore_eos=True))
    info = fp32_runner.generation_info()
    assert len(events) == 24 and info.stop_reason == "length"
    assert "".join(e.text for e in events).startswith("The capital of France is Paris.")  # and on, past its end


@pytest.mark.real
def test_each_token_is_decoded_in_a_short_window_by_onnxruntime_genais_tokenizer(fp32_runner):
    from runners.base import GenerationRequest

    events = assert_decodes_incrementally(fp32_runner, GenerationRequest(96, messages=CHAT, ignore_eos=True))
    assert len(events) == 96 and "".join(e.text for e in events).startswith("The capital of France is Paris.")


@pytest.mark.real
def test_an_answer_that_ends_at_end_of_turn_agrees_with_the_runtimes_own_count(fp32_runner):
    from bench.run.harness import count_problem
    from runners.base import GenerationRequest

    request = GenerationRequest(24, messages=CHAT)
    events = _token_events(fp32_runner, request)
    info = fp32_runner.generation_info()
    assert info.stop_reason == "eos" and len(events) < 24
    assert info.runtime_new_tokens == len(events) and count_problem(request, info, len(events)) is None


@pytest.mark.real
def test_the_default_model_int4_runs_beside_llamacpp_on_the_same_prompts(artifact_cache, tmp_path):
    common = ("--cache", str(artifact_cache))
    prepared = edgebench("prepare", "--runner", "onnxruntime", "--quant", "int4", *common)
    assert prepared.returncode == 0, prepared.stderr
    once = tmp_path / "once.toml"  # the quick profile's prompts, once each: llama.cpp has its own tests
    once.write_text('name = "once"\ndescription = ""\nwarmups = 0\nrepetitions = 1\ntags = ["short"]\n')
    run = edgebench(
        "run",
        "--runner",
        "llama.cpp",
        "--runner",
        "onnxruntime",
        "--profile",
        str(once),
        "--threads",
        "2",
        "--out",
        str(tmp_path / "out"),
        "--json",
        *common,
    )
    assert run.returncode == 0, run.stderr
    records = read_jsonl(next((tmp_path / "out").glob("*.jsonl")))
    by_runner = {}
    for r in records:
        by_runner.setdefault(r["runner"], set()).add(r["prompt_id"])
    assert set(by_runner) == {"llama.cpp", "onnxruntime"} and by_runner["llama.cpp"] == by_runner["onnxruntime"]
    assert {r["quantization"] for r in records if r["runner"] == "onnxruntime"} == {"int4"}
    chat = {r["runner"]: r["prompt_tokens"] for r in records if r["prompt_id"] == "chat-capital"}
    assert chat == {"llama.cpp": 37, "onnxruntime": 37}  # one template, one tokenizer
    summary = json.loads(run.stdout)["summary"]
    assert {row["runner"] for row in summary} == {"llama.cpp", "onnxruntime"}
    assert all(row["decode tok/s"] > 0 for row in summary if row["decode tok/s"] is not None)


def test_runners_lists_it_with_its_version():
    row = next(line for line in edgebench("runners").stdout.splitlines() if " onnxruntime " in line)
    assert "yes" in row and "0.18.0" in row


# --- teacher-forced scoring (edgebench quality), checked against transformers' own logits ---


@pytest.fixture(scope="module")
def tiny_fp32_runner(tiny_checkpoint, artifact_cache):
    from bench.artifacts import prepare
    from bench.data import models
    from runners.onnxruntime import OnnxRuntimeRunner

    folder = prepare.prepare_artifact(
        models.get_model(str(tiny_checkpoint)), "onnxruntime", OnnxRuntimeRunner.exporter, "fp32", artifact_cache
    ).path
    runner, _ = _load(folder)
    yield runner
    runner.close()


@pytest.mark.real
@pytest.mark.parametrize("which", ["tiny", "default"])
def test_fp32_scoring_gives_transformers_log_probs_at_every_position(which, request):
    runner = request.getfixturevalue({"tiny": "tiny_fp32_runner", "default": "fp32_runner"}[which])
    checkpoint = request.getfixturevalue({"tiny": "tiny_checkpoint", "default": "default_checkpoint"}[which])
    assert_scores_like_transformers(runner, checkpoint)


@pytest.mark.real
def test_scoring_is_deterministic_and_leaves_nothing_for_the_next_generation(fp32_runner):
    assert_scoring_and_generation_leave_each_other_nothing(
        fp32_runner, lambda request: [e.token_id for e in _token_events(fp32_runner, request)]
    )
