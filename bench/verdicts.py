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

import numpy as np
import pandas as pd

from bench.resultset import numbers
from bench.targets import Workload

ORDER = {"pass": 0, "marginal": 1, "fail": 2}
READ = ["category", "mode", "ttft_ms", "decode_tok_s", "e2e_ms"]  # the record columns a verdict reads
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


def judge_groups(rows: pd.DataFrame, group: np.ndarray, workload: Workload) -> dict[int, Verdict]:
    """Verdict of one workload for every group of measured (ok, non-warm-up) rows, all
    groups at once (`group`: each row's group number); a group without rows of the
    workload is left out."""
    mask = rows["category"].isin(workload.categories).to_numpy()
    rows, group = rows.loc[mask, [c for c in READ if c in rows]], group[mask]
    if rows.empty:
        return {}
    sustained = rows["mode"].isin(["sustained"]).to_numpy() if "mode" in rows else np.zeros(len(rows), bool)
    has_sustained = pd.Series(sustained).groupby(group).transform("any").to_numpy(bool)
    keep = ~has_sustained | sustained  # a group's sustained rows where it has any
    rows, group, has_sustained = rows[keep], group[keep], has_sustained[keep]
    budgets = [b for b in BUDGETS if getattr(workload, b[1]) is not None]
    figures = numbers(rows[[b[0] for b in budgets]]).groupby(group)
    stats, sizes = figures.agg(["min", "max", "median"]), figures.size()
    flags = pd.Series(has_sustained).groupby(group).any()
    judged = {}
    for key, figures_, size, flag in zip(sizes.index, stats.to_numpy(), sizes.to_numpy(), flags.to_numpy()):
        reasons, worst = [], None
        for (column, attribute, direction, label, unit), (low, high, median) in zip(budgets, figures_.reshape(-1, 3)):
            if pd.isna(median):
                continue
            budget = getattr(workload, attribute)
            inside_best, inside_worst = (low <= budget, high <= budget) if direction == "max" else (high >= budget, low >= budget)
            outcome = "pass" if inside_worst else "fail" if not inside_best else "marginal"
            sign = "≤" if direction == "max" else "≥"
            reasons.append(f"{label} {median:,.1f} {unit} ({low:,.1f}–{high:,.1f}), budget {sign} {budget:g}: {outcome}")
            if worst is None or ORDER[outcome] > ORDER[worst]:
                worst = outcome
        judged[key] = Verdict(workload.id, worst or "n/a", tuple(reasons), bool(flag), int(size))
    return judged


def judge(rows: pd.DataFrame, workload: Workload) -> Verdict:
    """Verdict of one workload over measured (ok, non-warm-up) rows of one group."""
    return judge_groups(rows, np.zeros(len(rows), int), workload).get(0, unmeasured(workload))


def unmeasured(workload: Workload) -> Verdict:
    return Verdict(workload.id, "n/a", (), False, 0)
