"""Verdicts: does a (device, runtime, model/quantization) meet a workload's budgets?

Per budget, the measured values of the workload's prompts give a spread (lowest to
highest repetition). The budget is met (pass) when the whole spread is inside it, missed
(fail) when the whole spread is outside, and marginal when the budget lies within the
spread: repetitions disagree, so the answer depends on the moment. A workload's verdict is
its worst budget's. Sustained measurements (records with mode == "sustained") are used
where a group has them: they are what a device keeps up, not what it manages once cold.
"""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from bench.targets import Workload

ORDER = {"pass": 0, "marginal": 1, "fail": 2}
# (record column, workload attribute, "max" or "min", label, unit)
BUDGETS = (("ttft_ms", "ttft_ms_max", "max", "TTFT", "ms"),
           ("decode_tok_s", "decode_tok_s_min", "min", "decode", "tok/s"),
           ("e2e_ms", "e2e_ms_max", "max", "e2e", "ms"))


@dataclass(frozen=True)
class Verdict:
    workload: str
    verdict: str  # pass, marginal, fail, or n/a (no measurement of this workload)
    reasons: tuple[str, ...]
    sustained: bool
    n: int


def preferred(rows: pd.DataFrame) -> tuple[pd.DataFrame, bool]:
    """The sustained measurements when there are any, else all of them."""
    if "mode" in rows and (rows["mode"] == "sustained").any():
        return rows[rows["mode"] == "sustained"], True
    return rows, False


def judge(rows: pd.DataFrame, workload: Workload) -> Verdict:
    """Verdict of one workload over measured (ok, non-warm-up) rows of one group."""
    rows = rows[rows["category"].isin(workload.categories)]
    rows, sustained = preferred(rows)
    reasons, worst = [], None
    for column, attribute, direction, label, unit in BUDGETS:
        budget = getattr(workload, attribute)
        if budget is None:
            continue
        values = rows[column].dropna()
        if values.empty:
            continue
        low, high, median = values.min(), values.max(), values.median()
        inside_best, inside_worst = (low <= budget, high <= budget) if direction == "max" else (high >= budget, low >= budget)
        outcome = "pass" if inside_worst else "fail" if not inside_best else "marginal"
        sign = "≤" if direction == "max" else "≥"
        reasons.append(f"{label} {median:,.1f} {unit} ({low:,.1f}–{high:,.1f}), budget {sign} {budget:g}: {outcome}")
        if worst is None or ORDER[outcome] > ORDER[worst]:
            worst = outcome
    return Verdict(workload.id, worst or "n/a", tuple(reasons), sustained, len(rows))
