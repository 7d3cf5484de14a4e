"""The time budget in process (bench.run.time_budget): what it skips, cuts and keeps, from a
runtime's own rates, and the quality step's estimate."""

from __future__ import annotations

import pytest

from bench.run.time_budget import Pace, PromptBudget, QualityWork, quality_skip

FIXED = {"kind": "fixed", "prompt_tokens": 128, "max_new_tokens": 64}


def _learned(budget_s: float, prefill: float, decode: float, probe: str | None = None) -> PromptBudget:
    budget = PromptBudget(budget_s, warmups=1, repetitions=3, probe=probe)
    budget.learn(
        {"status": "ok", "prompt_id": "first", "e2e_ms": 1.0, "prefill_tok_s": prefill, "decode_tok_s": decode}
    )
    return budget


def test_a_prompt_over_the_budget_is_skipped_whole_but_the_decode_probe_keeps_one_repetition():
    other, probe = _learned(45, 2, 1.6), _learned(45, 2, 1.6, probe="pp128-tg64")
    assert other.skip("pp128-tg64", True, 0, FIXED) and other.skip("pp128-tg64", False, 0, FIXED)
    assert "decode probe" in probe.skip("pp128-tg64", True, 0, FIXED).reason  # its warm-up goes
    assert probe.skip("pp128-tg64", False, 0, FIXED) is None  # one measured repetition runs
    probe.learn({"status": "ok", "prompt_id": "pp128-tg64", "e2e_ms": 104_000.0})
    assert "cut" in probe.skip("pp128-tg64", False, 1, FIXED).reason  # the rest are cut


def test_the_probe_runs_as_any_prompt_when_it_fits():
    budget = _learned(45, 100, 50, probe="pp128-tg64")
    assert all(budget.skip("pp128-tg64", w, r, FIXED) is None for w, r in ((True, 0), (False, 0)))


@pytest.mark.parametrize(
    ("scoring", "limit", "skipped"),
    [("batch", 30, False), ("step", 30, True), (None, 30, False), ("batch", 5, True)],
)
def test_quality_is_estimated_from_the_runtimes_own_rates_by_how_it_scores(scoring, limit, skipped):
    pace = Pace()
    pace.learn({"status": "ok", "prefill_tok_s": 100.0, "decode_tok_s": 20.0})
    # load 1 s; 1,000 tokens: 10 s in one pass at prefill pace, 50 s a decode step each;
    # 5 greedy prompts of 20 tokens and 32 new: 5 x 1.8 s = 9 s.
    work = QualityWork(load_s=1.0, text_tokens=1000, scoring=scoring, prompt_tokens=(20,) * 5, new_tokens=32)
    skip = quality_skip(pace, limit, work)
    assert (skip is not None) == skipped
    if skip:
        expected = 1 + {"batch": 10, "step": 50}[scoring] + 9
        assert skip.estimated_s == pytest.approx(expected) and f"> quality budget {limit} s" in skip.reason


def test_nothing_is_skipped_before_the_runtime_has_rates():
    work = QualityWork(load_s=1.0, text_tokens=1000, scoring="step", prompt_tokens=(20,), new_tokens=32)
    assert quality_skip(Pace(), 1, work) is None
    assert PromptBudget(1, 1, 3).skip("x", True, 0, FIXED) is None
