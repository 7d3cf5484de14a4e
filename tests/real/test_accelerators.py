"""--accelerator RUNNER=cpu|gpu|npu|auto: each runtime's real switch, the placement read back from
the runtime, one-line errors before anything loads, and fallback in the records.

This machine has no GPU: the CPU paths run for real (llama.cpp's per-layer device assignment,
ONNX Runtime's providers, LiteRT's compiled accelerator, MLX's generation stream, ExecuTorch's
delegates), and asking for a GPU is refused cleanly. The FAKE runner (scripted, labelled as
such) only serves the harness's part: a fallback the parent turns into error records.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import pytest

from bench.artifacts import prepare
from bench.data import models
from runners.base import RunnerOptions
from tests.support import exports_ahead
from tests.support.helpers import edgebench, read_jsonl

ONE_PROMPT_SUITE = """
id = "one-prompt"
description = "One short completion, for placement tests."
version = 1

[[prompt]]
id = "autocomplete-reply"
category = "autocomplete"
kind = "completion"
description = "Keyboard suggestion."
text = "Thanks for sending the contract over. I will read it tonight and get back to you by"
max_new_tokens = 4
tags = ["short"]
"""
ONCE = """
name = "once"
description = "One measured generation, no warm-up."
warmups = 0
repetitions = 1
tags = ["short"]
context_tokens = 512
"""


@pytest.fixture
def one_run(tmp_path):
    """`edgebench run` of one prompt once; returns (result, records)."""
    (tmp_path / "suite.toml").write_text(ONE_PROMPT_SUITE)
    (tmp_path / "once.toml").write_text(ONCE)

    def run(*args: str):
        out = Path(tempfile.mkdtemp(dir=tmp_path))  # each run its own results folder
        result = edgebench(
            "run",
            "--suite",
            str(tmp_path / "suite.toml"),
            "--profile",
            str(tmp_path / "once.toml"),
            "--threads",
            "2",
            "--out",
            str(out),
            *args,
        )
        files = list(out.glob("*.jsonl"))
        return result, read_jsonl(files[0]) if files else []

    return run


def _load(cls, artifact: Path, accelerator: str):
    runner = cls()
    info = runner.load(
        artifact, RunnerOptions(threads=2, context_tokens=512, settings={**cls.defaults, "accelerator": accelerator})
    )
    return runner, info


def _prepared(tiny_checkpoint, cache: Path, runner: str, quant: str) -> Path:
    from runners import load_class, registrations

    exporter = load_class(registrations()[runner].target).exporter
    exports_ahead.wait_for("tiny", runner, quant)
    return prepare.prepare_artifact(models.get_model(str(tiny_checkpoint)), runner, exporter, quant, cache).path


def _one_line(message: str) -> bool:
    return "\n" not in message.strip() and "Traceback" not in message


# llama.cpp ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gguf() -> Path:
    return models.get_model(models.default_model_id()).source_path()


def test_llamacpp_asked_for_the_cpu_puts_every_layer_on_the_cpu_as_llamacpp_logs_it(gguf):
    from runners.llamacpp import LlamaCppRunner

    runner, info = _load(LlamaCppRunner, gguf, "cpu")
    try:
        layers = runner.lib.llama_model_n_layer(runner.llm._model.model)  # the runtime's own count
        assert info.accelerator == "cpu"
        assert info.placement["n_gpu_layers"] == 0
        # every repeating layer and the output layer, each assigned by llama.cpp to its CPU device
        assert info.placement["layers_by_device"] == {"CPU": layers + 1}
        assert info.placement["buffers_mib"]["CPU KV"] > 0
        assert info.accelerator_memory_mb is None  # nothing on a GPU's own memory
    finally:
        runner.close()


def test_llamacpp_asked_for_a_gpu_it_does_not_have_reports_the_cpu_it_fell_back_to(gguf):
    """Loaded directly (the CLI refuses first): llama.cpp takes n_gpu_layers=-1 without a
    word, and its layer assignment shows where the layers went."""
    from runners.llamacpp import LlamaCppRunner

    runner, info = _load(LlamaCppRunner, gguf, "gpu")
    runner.close()
    assert info.placement["n_gpu_layers"] == -1
    assert set(info.placement["layers_by_device"]) == {"CPU"}
    assert info.accelerator == "cpu"


def test_asking_llamacpp_for_a_gpu_here_is_one_line_naming_its_devices_before_loading(one_run):
    from runners.llamacpp import LlamaCppRunner

    assert "gpu" not in LlamaCppRunner.accelerators(), "this test needs a machine without a GPU backend"
    result, records = one_run("--runner", "llama.cpp", "--accelerator", "llama.cpp=gpu")
    assert result.returncode == 1
    assert "Error: llama.cpp finds no gpu it can use here; it sees: cpu (CPU (" in result.stderr
    assert _one_line(result.stderr.split("hint:")[0])
    assert records == []  # refused before any worker started


def test_records_carry_the_request_and_what_llamacpp_reports(one_run):
    result, records = one_run("--runner", "llama.cpp", "--accelerator", "llama.cpp=cpu")
    assert result.returncode == 0, result.stderr
    (record,) = records
    assert record["status"] == "ok"
    assert (record["accelerator_requested"], record["accelerator"]) == ("cpu", "cpu")
    assert record["placement"]["n_gpu_layers"] == 0 and set(record["placement"]["layers_by_device"]) == {"CPU"}


def test_auto_is_llama_benchs_offload_of_every_layer_and_records_say_auto(one_run):
    result, records = one_run("--runner", "llama.cpp")
    assert result.returncode == 0, result.stderr
    (record,) = records
    assert record["accelerator_requested"] == "auto" and record["accelerator"] == "cpu"
    assert record["placement"]["n_gpu_layers"] == -1  # -ngl 99: no GPU device here, so the CPU


def test_a_value_that_is_not_an_accelerator_is_refused_in_one_line(one_run):
    for args, expected in (
        (("--accelerator", "llama.cpp=tpu"), "--accelerator llama.cpp=tpu: not an accelerator"),
        (("--accelerator", "llama.cpp"), "--accelerator 'llama.cpp' is not RUNNER=VALUE"),
    ):
        result, records = one_run("--runner", "llama.cpp", *args)
        assert result.returncode == 2 and expected in result.stderr and records == []


# The harness: fallback is an error unless allowed (FAKE runner, scripted placement) ----------


def test_a_run_that_fell_back_is_an_error_unless_fallback_is_allowed(one_run, fake_script):
    script = f"fake={fake_script(runs_on='cpu')}"
    result, records = one_run("--runner", "fake", "--artifact", script, "--accelerator", "fake=gpu")
    assert result.returncode == 1
    (record,) = records
    assert record["status"] == "error" and record["synthetic"] is True
    assert record["error"].startswith("asked for the gpu, but the runtime reports it ran on the cpu")
    assert (record["accelerator_requested"], record["accelerator"]) == ("gpu", "cpu")

    result, records = one_run("--runner", "fake", "--artifact", script, "--accelerator", "fake=gpu", "--allow-fallback")
    assert result.returncode == 0, result.stderr
    (record,) = records
    assert record["status"] == "ok" and (record["accelerator_requested"], record["accelerator"]) == ("gpu", "cpu")


def test_a_run_where_the_runtime_reports_the_accelerator_asked_is_ok(one_run, fake_script):
    result, records = one_run(
        "--runner", "fake", "--artifact", f"fake={fake_script(runs_on='gpu')}", "--accelerator", "fake=gpu"
    )
    assert result.returncode == 0, result.stderr
    assert [(r["status"], r["accelerator"], r["placement"]) for r in records] == [("ok", "gpu", {"scripted": True})]


# ONNX Runtime GenAI ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_onnx(tiny_checkpoint, artifact_cache) -> Path:
    return _prepared(tiny_checkpoint, artifact_cache, "onnxruntime", "int4")


def test_onnxruntime_asked_for_a_gpu_names_the_providers_it_has(tiny_onnx, one_run):
    import onnxruntime

    from runners.onnxruntime import OnnxRuntimeRunner

    with pytest.raises(ValueError) as refused:
        _load(OnnxRuntimeRunner, tiny_onnx, "gpu")
    assert str(refused.value) == (
        "ONNX Runtime has no gpu execution provider here; it has: " + ", ".join(onnxruntime.get_available_providers())
    )
    result, records = one_run(
        "--runner", "onnxruntime", "--artifact", f"onnxruntime={tiny_onnx}", "--accelerator", "onnxruntime=cuda"
    )
    assert result.returncode == 2 and "--accelerator onnxruntime=cuda: not an accelerator" in result.stderr
    result, records = one_run(
        "--runner", "onnxruntime", "--artifact", f"onnxruntime={tiny_onnx}", "--accelerator", "onnxruntime=gpu"
    )
    assert (
        result.returncode == 1
        and "onnxruntime finds no gpu it can use here; it sees: cpu (CPUExecutionProvider)" in result.stderr
        and records == []
    )


def test_onnxruntime_cpu_replaces_the_provider_the_model_config_names(tiny_onnx, tmp_path):
    """A model whose genai_config.json asks for CUDA: `auto` follows the config, and ONNX Runtime
    GenAI tries CUDA (and fails here); `cpu` clears the providers, and the session says it added
    the CPU provider. The request reaches the runtime: it changes what the runtime does."""
    from runners.onnxruntime import OnnxRuntimeRunner

    folder = tmp_path / "asks-cuda"
    shutil.copytree(tiny_onnx, folder, copy_function=lambda src, dst: Path(dst).symlink_to(src))
    config = json.loads((tiny_onnx / "genai_config.json").read_text())
    config["model"]["decoder"]["session_options"]["provider_options"] = [{"cuda": {}}]
    (folder / "genai_config.json").unlink()
    (folder / "genai_config.json").write_text(json.dumps(config))
    with pytest.raises(Exception, match="(?i)cuda"):
        _load(OnnxRuntimeRunner, folder, "auto")
    _, info = _load(OnnxRuntimeRunner, folder, "cpu")
    assert info.accelerator == "cpu" and info.placement["device_type"] == "CPU"
    assert any("CPU execution provider" in line for line in info.placement["session_trace"])


# LiteRT and LiteRT-LM -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_litert(tiny_checkpoint, artifact_cache) -> Path:
    return _prepared(tiny_checkpoint, artifact_cache, "litert", "int8")


def test_litert_compiles_for_the_cpu_and_says_so(tiny_litert):
    from runners.litert import LiteRTRunner

    _, info = _load(LiteRTRunner, tiny_litert, "auto")
    assert info.accelerator == "cpu" and info.placement["hardware_accelerator"] == "CPU"
    assert isinstance(info.placement["fully_accelerated"], bool)  # CompiledModel.is_fully_accelerated()


@pytest.mark.parametrize("runner", ["litert", "litert-lm"])
def test_litert_asked_for_a_gpu_here_is_one_clean_line_naming_the_cpu(tiny_litert, runner):
    """LiteRT's WebGPU accelerator finds no adapter here; the runtime's raw error (a source
    location, with "No adapters found" on stderr) becomes one line saying what it can use."""
    from runners import load_class, registrations

    cls = load_class(registrations()[runner].target)
    if "gpu" in cls.accelerators():
        pytest.skip("this machine has a GPU LiteRT can open")
    with pytest.raises(RuntimeError) as refused:
        _load(cls, tiny_litert, "gpu")
    message = str(refused.value)
    assert _one_line(message) and "No adapters found" not in message and "ERROR: [" not in message
    assert message.endswith(
        "no gpu it can use here; it can use: " + ", ".join(f"{k} ({v})" for k, v in cls.accelerators().items())
    )


# MLX ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_mlx(tiny_checkpoint, artifact_cache) -> Path:
    return _prepared(tiny_checkpoint, artifact_cache, "mlx", "fp32")


def test_mlx_runs_on_the_device_of_its_generation_stream(tiny_mlx):
    from runners.mlx import MlxRunner

    runner, info = _load(MlxRunner, tiny_mlx, "cpu")
    assert info.accelerator == "cpu" == runner.generation_stream.device.type.name
    assert info.placement["default_device"] == "Device(cpu, 0)"
    assert info.settings["accelerator"] == "cpu"


def test_mlx_asked_for_a_gpu_its_build_lacks_says_so(tiny_mlx):
    from runners.mlx import MlxRunner

    if "gpu" in MlxRunner.accelerators():
        pytest.skip("this MLX build has a GPU backend")
    with pytest.raises(ValueError, match="has no gpu backend here"):
        _load(MlxRunner, tiny_mlx, "gpu")


# ExecuTorch -----------------------------------------------------------------------------------


def test_executorch_placement_is_the_backends_the_program_delegates_to(tiny_checkpoint, artifact_cache):
    from runners.executorch import _forward_plan, _placement

    found = prepare.find_artifact(models.get_model(str(tiny_checkpoint)), "executorch", "8da4w", artifact_cache)
    if found is None:
        pytest.skip("no tiny ExecuTorch export in the test cache (tests/real/test_executorch.py makes one)")
    placement = _placement(_forward_plan(found.path / "model.pte" if found.path.is_dir() else found.path))
    assert placement == {"accelerator": "cpu", "placement": {"delegates": ["XnnpackBackend"]}}


def test_executorch_refuses_a_gpu_naming_the_backend_it_was_exported_for(one_run):
    result, records = one_run("--runner", "executorch", "--accelerator", "executorch=gpu")
    assert result.returncode == 1 and records == []
    assert "executorch finds no gpu it can use here; it sees: cpu (XnnpackBackend" in result.stderr


# The matrix -----------------------------------------------------------------------------------


def test_the_matrix_keeps_cpu_and_gpu_results_of_one_runtime_apart(tmp_path):
    from bench.views import matrix
    from tests.support import simulated_devices as sim

    sim.write(
        tmp_path / "run.jsonl",
        sim.records("pixel-8-pro", decode=20, ttft=300),
        [r | {"accelerator": "gpu"} for r in sim.records("pixel-8-pro", decode=80, ttft=60, run="2")],
    )
    frame, files = matrix.load([str(tmp_path)])
    rows = {r.runner: r.decode_tok_s for r in matrix.build(frame, files).rows}
    assert rows == {"llama.cpp": pytest.approx(20), "llama.cpp on gpu": pytest.approx(80)}


def test_compare_never_weighs_a_gpu_run_against_a_cpu_baseline(tmp_path):
    from bench.views import compare
    from tests.support import simulated_devices as sim

    sim.write(tmp_path / "base.jsonl", sim.records("pixel-8-pro", decode=20, ttft=300))
    sim.write(
        tmp_path / "cand.jsonl",
        [r | {"accelerator": "gpu"} for r in sim.records("pixel-8-pro", decode=80, ttft=60, run="2")],
    )
    deltas = compare.compare(str(tmp_path / "base.jsonl"), str(tmp_path / "cand.jsonl"), 5.0)
    assert {d.runner for d in deltas} == {"llama.cpp", "llama.cpp on gpu"}
    assert {d.status for d in deltas if d.runner == "llama.cpp"} == {"missing"}
