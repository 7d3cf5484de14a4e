"""The runtimes' own statistics parsed from their tools' real output formats."""

from __future__ import annotations

import subprocess
import sys

import pytest

from bench.paths import cache_home
from bench.run import runtime_stats
from tests.support.helpers import FIXTURES, ROOT


def test_llama_main_stats_in_its_own_rates():
    """ExecuTorch's llama_main on an Android phone, as ExecuTorch's Android llama guide shows its
    output (a fixture: no llama_main runs here); the figures are the ones its own report
    lines beside the PyTorchObserver line print (TTFT 0.102 s, 49.02 and 39.30 tokens/s)."""
    stats = runtime_stats.executorch((FIXTURES / "executorch-llama-main-android.txt").read_text())
    assert (stats.prompt_tokens, stats.new_tokens, stats.ttft_ms, stats.load_ms, stats.e2e_ms) == (
        5,
        114,
        102,
        3926,
        3003,
    )
    assert (stats.prefill_tok_s, stats.decode_tok_s) == (pytest.approx(49.019608), pytest.approx(39.296794))
    assert stats.raw["aggregate_sampling_time_ms"] == 143


def test_output_without_stats_is_refused():
    with pytest.raises(runtime_stats.StatsMissing, match="no PyTorchObserver line"):
        runtime_stats.executorch("Segmentation fault\n")
    with pytest.raises(runtime_stats.StatsMissing, match="no prefill and decode turns"):
        runtime_stats.litert_lm("--------\n  Time to first token: 0.4 s\n")


@pytest.mark.real
def test_litert_lm_benchmark_output_as_its_engine_prints_it(tmp_path):
    """LiteRT-LM's engine (the litert-lm wheel) benchmarks the default model for 32 prefill and
    8 decode tokens and prints its BenchmarkInfo with its own printer, the one litert_lm_main
    --benchmark uses; the parser reads the counts asked for and the engine's own speeds."""
    pytest.importorskip("litert_lm")
    from bench.data import models

    folder = models.get_model(models.default_model_id())
    model = next(cache_home().glob("*artifacts/smollm2-135m/litert/*/model.litertlm"), None)
    if model is None:
        pytest.skip(f"no prepared LiteRT-LM artifact of {folder.id} (edgebench prepare --runner litert-lm)")
    done = subprocess.run(
        [sys.executable, "-m", "tests.support.litert_lm_stats", str(model), "32", "8", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Prefill Turn 1: Processed 32 tokens in" in done.stdout  # the tool's format, from its own code
    stats = runtime_stats.litert_lm(done.stdout)
    assert (stats.prompt_tokens, stats.new_tokens) == (32, 8)
    turn = stats.raw["decode_turns"][0]
    assert stats.decode_tok_s == turn["tok_s"] == pytest.approx(8 / turn["s"], rel=0.01)
    assert stats.ttft_ms > stats.raw["prefill_turns"][0]["s"] * 1000 and stats.load_ms > 0
