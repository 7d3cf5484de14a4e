"""Budgets stated at a depth: judged on the depth sweep's records at that depth only."""

import pytest


def test_a_budget_at_a_depth_is_judged_on_that_depths_records_only():
    from bench.analysis.verdicts import judge
    from bench.data.workloads import Workload

    at_2048 = Workload("chat-with-history", "", ("depth",), depth=2048, ttft_ms_max=1000, decode_tok_s_min=10)
    shallow = _rows((0, 30, 100), (0, 31, 110), (512, 25, 300))
    assert judge(shallow, at_2048).verdict == "n/a"  # never judged from the shallower depths' figures
    verdict = judge(_rows((0, 30, 100), (2048, 6, 900), (2048, 7, 950)), at_2048)
    assert verdict.verdict == "fail" and all("@d2048" in reason for reason in verdict.reasons)
    assert verdict.figure("decode_tok_s") == pytest.approx(6.5)
    empty_cache = Workload("w", "", ("depth",), decode_tok_s_min=10)  # no depth: never a sweep's records
    assert judge(shallow, empty_cache).verdict == "n/a"


def test_the_packaged_workloads_state_a_budget_at_depth():
    from bench.data.workloads import load_workloads

    (at_depth,) = [w for w in load_workloads() if w.depth is not None]
    assert at_depth.depth == 2048 and at_depth.categories == ("depth",) and at_depth.decode_tok_s_min


def _rows(*cells):
    """Measured rows of a depth sweep: (depth, decode tok/s, TTFT ms) each."""
    import pandas as pd

    return pd.DataFrame(
        [
            dict(
                category="depth", depth=d, mode="suite", prompt_id=f"pp8-tg4@d{d}", ttft_ms=t, decode_tok_s=r, e2e_ms=0
            )
            for d, r, t in cells
        ]
    )
