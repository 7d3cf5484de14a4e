"""--threads is applied, not just recorded: the worker's threads busy during decode follow it.

Each runtime whose thread count can be set decodes the same fixed-length probe with one
thread and with two; the record's busy_threads (the worker's threads that each ran at least a
tenth of the busiest one's CPU time, from the scheduler's own per-thread counts) must be one,
then two or more. Those counts do not depend on what else the machine runs, as a CPU share of
wall time does. A runtime without a thread setting (MLX) must say so in its records instead
of echoing the request.
"""

from __future__ import annotations

import psutil
import pytest

from tests.support.helpers import edgebench, read_jsonl

pytestmark = [pytest.mark.real, pytest.mark.skipif((psutil.cpu_count() or 1) < 2, reason="two threads need two cores")]

SUITE = """id = "threads"
description = "One fixed-length decode, long enough for the CPU sampler."
[[prompt]]
id = "fill"
category = "autocomplete"
kind = "completion"
text = "The district replaced the telemetry at three plants this quarter, and the control room found four leaks."
max_new_tokens = 8
[[prompt]]
id = "pp32-tg256"
category = "throughput"
kind = "fixed"
prompt_tokens = 32
fill_from = "fill"
max_new_tokens = 256
tags = ["probe"]
"""
PROFILE = 'name = "threads"\ndescription = ""\nwarmups = 1\nrepetitions = 1\ncontext_tokens = 512\ntags = ["probe"]\n'

# runner -> (model, quantization): artifacts the other tests already prepare in the test cache
# (ExecuTorch's default-model export takes many minutes; the tiny model's fp32 49k-row head
# is wide enough for its thread pool to split).
SETTABLE = {
    "llama.cpp": (None, None),
    "onnxruntime": (None, "int4"),
    "litert": (None, "fp32"),
    "litert-lm": (None, "fp32"),
    "executorch": ("tiny", "fp32"),
}


def _probe(runner: str, model: str | None, quant: str | None, threads: int, tmp_path, cache) -> dict:
    (tmp_path / "suite.toml").write_text(SUITE)
    (tmp_path / "profile.toml").write_text(PROFILE)
    args = [
        "--runner",
        runner,
        "--suite",
        str(tmp_path / "suite.toml"),
        "--profile",
        str(tmp_path / "profile.toml"),
        "--threads",
        str(threads),
        "--out",
        str(tmp_path / f"out-{threads}"),
        "--cache",
        str(cache),
        "--prepare",
    ]
    result = edgebench(
        "run", *args, *(["--quant", f"{runner}={quant}"] if quant else []), *(["--model", model] if model else [])
    )
    assert result.returncode == 0, result.stderr[-2000:]
    [record] = [r for r in read_jsonl(next((tmp_path / f"out-{threads}").glob("*.jsonl"))) if not r["warmup"]]
    return record


@pytest.mark.parametrize("runner", list(SETTABLE))
def test_two_threads_keep_more_than_one_core_busy_and_one_thread_does_not(runner, tmp_path, artifact_cache, request):
    from runners import load_class, registrations

    if not load_class(registrations()[runner].target).probe().available:
        pytest.skip(f"{runner} is not installed here")
    model, quant = SETTABLE[runner]
    model = str(request.getfixturevalue("tiny_checkpoint")) if model == "tiny" else None
    one = _probe(runner, model, quant, 1, tmp_path, artifact_cache)
    two = _probe(runner, model, quant, 2, tmp_path, artifact_cache)
    assert (one["threads_requested"], two["threads_requested"]) == (1, 2)
    # the runtime's own thread count where it reports one (LiteRT cannot: null, with the reason)
    assert one["threads"] in (1, None) and two["threads"] in (2, None)
    assert one["busy_threads"] == 1, one["busy_threads"]  # one thread computes, whatever the machine's load
    assert two["busy_threads"] >= 2, (one["busy_threads"], two["busy_threads"])


def test_a_runtime_without_a_thread_setting_records_none_and_why(tmp_path, artifact_cache):
    from runners import load_class, registrations

    if not load_class(registrations()["mlx"].target).probe().available:
        pytest.skip("mlx is not installed here")
    record = _probe("mlx", None, "fp32", 2, tmp_path, artifact_cache)
    assert record["threads"] is None and record["threads_requested"] == 2
    assert "thread" in record["runner_settings"]["not_applied"]["threads"]
