"""ONNX Runtime (onnxruntime-genai) through prepare -> run: the tiny llama for the plumbing,
the real default model for what the answers and the records say."""
import json
from pathlib import Path

import pytest

from tests.conftest import edgebench, read_jsonl

CHAT = ({"role": "user", "content": "What is the capital of France?"},)


@pytest.fixture(scope="module")
def tiny_run(tiny_checkpoint, artifact_cache, tmp_path_factory):
    out = tmp_path_factory.mktemp("ort-tiny")
    common = ("--model", str(tiny_checkpoint), "--cache", str(artifact_cache))
    prepared = edgebench("prepare", "--runner", "onnxruntime", "--quant", "int4", "--quant", "fp32", *common)
    run = edgebench("run", "--runner", "onnxruntime", "--quant", "onnxruntime=int4", "--quant", "onnxruntime=fp32",
                    "--profile", "quick", "--threads", "2", "--out", str(out), *common)
    return prepared, run, read_jsonl(next(out.glob("*.jsonl")))


def test_the_tiny_model_goes_through_prepare_and_run(tiny_run):
    prepared, run, records = tiny_run
    assert prepared.returncode == 0, prepared.stderr
    assert run.returncode == 0, run.stderr
    assert records and all(r["status"] == "ok" for r in records)
    assert {r["quantization"] for r in records} == {"int4", "fp32"}
    folders = {Path(r["artifact_path"]) for r in records}
    assert len(folders) == 2 and all((f / "genai_config.json").is_file() and (f / "manifest.json").is_file()
                                     for f in folders)


def test_records_name_the_execution_provider_and_session_options(tiny_run):
    _, _, records = tiny_run
    r = records[0]
    assert r["runner"] == "onnxruntime" and r["runtime_version"] == "0.18.0" and r["backend"] == "cpu"
    settings = r["runner_settings"]
    assert settings["execution_provider"] == "cpu" and settings["session_options"]["intra_op_num_threads"] == 2
    assert settings["onnxruntime_version"] and r["threads"] == 2


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
    result = edgebench("run", "--runner", "onnxruntime", "--artifact", f"onnxruntime={tmp_path}", "--out",
                       str(tmp_path / "out"))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "not an onnxruntime-genai model folder (no genai_config.json)" in result.stderr


# --- the real default model ---------------------------------------------------------------


def _prepared(quant: str, cache: Path) -> Path:
    from bench import models, prepare
    from runners.onnxruntime import OnnxRuntimeRunner

    model = models.get_model("smollm2-135m")
    return prepare.prepare_artifact(model, "onnxruntime", OnnxRuntimeRunner.exporter, quant, cache).path


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

    tokens = [e.token_id for e in fp32_runner.generate(GenerationRequest(64, messages=CHAT))]
    assert fp32_runner.generation_info().stop_reason == "eos"

    tokenizer = AutoTokenizer.from_pretrained(default_checkpoint)
    model = AutoModelForCausalLM.from_pretrained(default_checkpoint, dtype=torch.float32)
    prompt = tokenizer.apply_chat_template(list(CHAT), add_generation_prompt=True, return_tensors="pt",
                                           return_dict=True)
    with torch.no_grad():
        out = model.generate(**prompt, max_new_tokens=64, do_sample=False)
    expected = out[0, prompt["input_ids"].shape[1]:].tolist()
    assert expected[-1] == tokenizer.eos_token_id
    assert tokens == expected[:-1]
    assert tokenizer.decode(tokens) == "The capital of France is Paris."


@pytest.mark.real
def test_fixed_length_mode_runs_past_the_end_of_turn(fp32_runner):
    from runners.base import GenerationRequest

    events = list(fp32_runner.generate(GenerationRequest(24, messages=CHAT, ignore_eos=True)))
    info = fp32_runner.generation_info()
    assert len(events) == 24 and info.stop_reason == "length"
    assert "".join(e.text for e in events).startswith("The capital of France is Paris.")  # and on, past its end


@pytest.mark.real
def test_the_default_model_int4_runs_beside_llamacpp_on_the_same_prompts(artifact_cache, tmp_path):
    common = ("--cache", str(artifact_cache))
    prepared = edgebench("prepare", "--runner", "onnxruntime", "--quant", "int4", *common)
    assert prepared.returncode == 0, prepared.stderr
    once = tmp_path / "once.toml"  # the quick profile's prompts, once each: llama.cpp has its own tests
    once.write_text('name = "once"\ndescription = ""\nwarmups = 0\nrepetitions = 1\ntags = ["short"]\n')
    run = edgebench("run", "--runner", "llama.cpp", "--runner", "onnxruntime", "--profile", str(once),
                    "--threads", "2", "--out", str(tmp_path / "out"), "--json", *common)
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
