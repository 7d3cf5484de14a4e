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

from bench.resultset import groups
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


def judge_groups(rows: pd.DataFrame, keys: list[str], workload: Workload) -> dict[tuple, Verdict]:
    """Verdict of one workload for every group (by `keys`) of measured (ok, non-warm-up)
    rows, all groups at once; a group without rows of the workload is left out."""
    rows = rows[rows["category"].isin(workload.categories)]
    if rows.empty:
        return {}
    by = [rows[k] for k in keys]
    sustained = rows["mode"].isin(["sustained"]) if "mode" in rows else pd.Series(False, index=rows.index)
    has_sustained = groups(sustained, by).transform("any").astype(bool)
    rows = rows[~has_sustained | sustained]  # a group's sustained rows where it has any
    by = [rows[k] for k in keys]
    budgets = [b for b in BUDGETS if getattr(workload, b[1]) is not None]
    figures = rows[[b[0] for b in budgets]].apply(pd.to_numeric, errors="coerce")
    stats = groups(figures, by).agg(["min", "max", "median"])
    sizes = groups(rows[keys[0]], by).size()
    flags = groups(has_sustained[rows.index], by).any()
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
    return judge_groups(rows.assign(group=0), ["group"], workload).get(0, unmeasured(workload))


def unmeasured(workload: Workload) -> Verdict:
    return Verdict(workload.id, "n/a", (), False, 0)
