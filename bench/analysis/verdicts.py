"""Verdicts: does a (device, runtime, model/quantization) meet a workload's budgets?

A workload is judged on its own prompts only (a workload stated at a depth, on depth-sweep
records at that depth only), each prompt on its own: per budget, the
repetitions of one prompt give a spread (lowest to highest). That prompt meets the budget
(pass) when its whole spread is inside it, misses it (fail) when its whole spread is
outside, and is marginal when the budget lies within its spread: its repetitions
disagree, so the answer depends on the moment. Unlike prompts (an 8-token autocomplete
and a 1,000-token summary) are never pooled into one spread. A workload fails when any of
its prompts misses a budget, is marginal when none misses and one straddles, and passes
when every prompt is inside every budget. A workload stated for a conversation turn
(`turn = N`) is judged on the records of that turn of a conversation only. Sustained measurements (records with mode ==
"sustained") of a prompt are used where a group has them, never pooled with its suite
records: they are what a device keeps up, not what it manages once cold.

Quality budgets (KL divergence, perplexity increase, greedy agreement against the fp32
reference) are judged on the cell's quality record (`with_quality`): scoring is
deterministic, so each passes or fails. A quality budget the cell has no figure for (no
quality record, a failed one, a runtime without logits) makes the verdict "unchecked":
never a pass, below a measured marginal or fail.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from bench.analysis.resultset import numbers
from bench.analysis.stats import Quality
from bench.data.workloads import Workload

OUTCOMES = ["pass", "marginal", "fail"]  # of timing budgets, by index
RANK = {"pass": 0, "unchecked": 1, "marginal": 2, "fail": 3}  # a workload's verdict: the worst of its budgets
READ = [
    "category",
    "depth",
    "mode",
    "prompt_id",
    "turn",
    "ttft_ms",
    "decode_tok_s",
    "e2e_ms",
]  # the record columns a verdict reads
# (record column, workload attribute, "max" or "min", label, unit)
BUDGETS = (
    ("ttft_ms", "ttft_ms_max", "max", "TTFT", "ms"),
    ("decode_tok_s", "decode_tok_s_min", "min", "decode", "tok/s"),
    ("e2e_ms", "e2e_ms_max", "max", "e2e", "ms"),
)
# (Quality figure, workload attribute, "max" or "min", label, format)
QUALITY_BUDGETS = (
    ("kld_mean", "max_kld", "max", "KLD", "{:.3g}"),
    ("perplexity_increase", "max_perplexity_increase", "max", "perplexity", "{:+.1%}"),
    ("greedy_agreement", "min_greedy_agreement", "min", "greedy agreement", "{:.1%}"),
)
SHOWN = {b[0]: f"{b[3]} {{:,.1f}} {b[4]}" for b in BUDGETS} | {b[0]: f"{b[3]} {b[4]}" for b in QUALITY_BUDGETS}


@dataclass(frozen=True)
class Verdict:
    workload: str
    verdict: str  # pass, marginal, fail, unchecked (a quality budget without a figure), or n/a (not measured)
    reasons: tuple[str, ...]  # one per prompt and budget
    sustained: bool
    n: int
    worst: tuple[tuple[str, float], ...] = ()  # (record column, median of the prompt that does worst on it)
    unchecked: str = ""  # why a quality budget has no figure ("quality skipped (estimated 300 s)")

    def label(self) -> str:
        """The verdict as every view shows it: an unchecked one with its reason."""
        return f"{self.verdict}: {self.unchecked}" if self.verdict == "unchecked" and self.unchecked else self.verdict

    def figure(self, column: str) -> float | None:
        return dict(self.worst).get(column)

    def headline(self) -> str:
        """The worst prompt's median per budget, then the quality figures, in words:
        "TTFT 41.0 ms; decode 12.0 tok/s; KLD 0.012"."""
        return "; ".join(SHOWN[c].format(v) for c, v in self.worst)


def _outcomes(low: np.ndarray, high: np.ndarray, budget: float, direction: str) -> np.ndarray:
    """Per prompt: 0 pass (whole spread inside), 2 fail (whole spread outside), 1 marginal."""
    inside_best, inside_worst = (
        (low <= budget, high <= budget) if direction == "max" else (high >= budget, low >= budget)
    )
    return np.where(inside_worst, 0, np.where(inside_best, 1, 2))


def _prompt_keys(rows: pd.DataFrame, group: np.ndarray) -> tuple[np.ndarray, int, list]:
    """One integer per (group, prompt) pair, fast to group by: group * stride + prompt code + 1."""
    prompts = rows["prompt_id"]
    if isinstance(prompts.dtype, pd.CategoricalDtype):
        codes, names = prompts.cat.codes.to_numpy(), list(prompts.cat.categories)
    else:
        codes, uniques = pd.factorize(prompts.astype(object))
        names = list(uniques)
    stride = len(names) + 1
    return group.astype(np.int64) * stride + codes + 1, stride, ["–", *names]  # code -1 (missing) -> "–"


def _prompt_stats(rows: pd.DataFrame, group: np.ndarray, columns: list[str]):
    """Per (group, prompt): min, max and median of each column, row count, sustained or not;
    a prompt's sustained rows where it has any. Returns them with each pair's (group, prompt)."""
    keys, stride, names = _prompt_keys(rows, group)
    sustained = rows["mode"].isin(["sustained"]).to_numpy() if "mode" in rows else np.zeros(len(rows), bool)
    keep = ~pd.Series(sustained).groupby(keys).transform("any").to_numpy(bool) | sustained
    keys = keys[keep]
    figures = numbers(rows.loc[keep, columns]).set_axis(keys).groupby(level=0, sort=False)
    stats = figures.agg(["min", "max", "median"])
    pairs = [(int(k // stride), names[k % stride]) for k in stats.index]
    return stats, pairs, figures.size(), pd.Series(sustained[keep]).groupby(keys, sort=False).any()


def workload_rows(rows: pd.DataFrame, workload: Workload) -> np.ndarray:
    """Which rows a workload is judged on: its categories, a workload stated at a depth only on
    depth-sweep rows at exactly that depth (one stated at none: never a sweep's), one stated
    for a conversation turn only on that turn's rows."""
    mask = rows["category"].isin(workload.categories).to_numpy()
    depth = pd.to_numeric(rows["depth"], errors="coerce") if "depth" in rows else pd.Series(np.nan, rows.index)
    mask = mask & (depth.isna() if workload.depth is None else depth == workload.depth).to_numpy()
    if workload.turn is not None:  # a conversation turn's budget: that turn's records only
        mask = mask & (pd.to_numeric(rows["turn"], errors="coerce") == workload.turn).to_numpy()
    return mask


def judge_groups(rows: pd.DataFrame, group: np.ndarray, workload: Workload) -> dict[int, Verdict]:
    """Verdict of one workload for every group of measured (ok, non-warm-up) rows, all
    groups at once (`group`: each row's group number); a group without rows of the
    workload is left out."""
    mask = workload_rows(rows, workload)
    budgets = [b for b in BUDGETS if getattr(workload, b[1]) is not None]
    if not mask.any():
        return {}
    stats, pairs, sizes, flags = _prompt_stats(rows.loc[mask], group[mask], [b[0] for b in budgets])
    table = stats.to_numpy().reshape(len(stats), len(budgets), 3)  # prompt x budget x (min, max, median)
    outcome = (
        np.stack(
            [_outcomes(table[:, i, 0], table[:, i, 1], getattr(workload, b[1]), b[2]) for i, b in enumerate(budgets)],
            axis=1,
        )
        if budgets
        else np.zeros((len(stats), 0), int)
    )
    outcome = np.where(np.isnan(table[:, :, 2]), -1, outcome)  # -1: no figure of this prompt
    found: dict[int, dict] = {}
    for (key, prompt), figures, results, size, flag in zip(pairs, table, outcome, sizes.to_numpy(), flags.to_numpy()):
        cell = found.setdefault(key, {"worst": -1, "reasons": [], "n": 0, "sustained": False, "figures": {}})
        cell["n"] += int(size)
        cell["sustained"] |= bool(flag)
        for (column, attribute, direction, label, unit), (low, high, median), result in zip(budgets, figures, results):
            if result < 0:
                continue
            sign = "≤" if direction == "max" else "≥"
            cell["reasons"].append(
                f"{label} {prompt} {median:,.1f} {unit} ({low:,.1f}–{high:,.1f}), "
                f"budget {sign} {getattr(workload, attribute):g}: {OUTCOMES[result]}"
            )
            cell["worst"] = max(cell["worst"], int(result))
            held = cell["figures"].get(column)
            worse = median if held is None else max(held, median) if direction == "max" else min(held, median)
            cell["figures"][column] = worse
    return {
        key: Verdict(
            workload.id,
            OUTCOMES[c["worst"]] if c["worst"] >= 0 else "n/a",
            tuple(c["reasons"]),
            c["sustained"],
            c["n"],
            tuple((b[0], c["figures"][b[0]]) for b in budgets if b[0] in c["figures"]),
        )
        for key, c in found.items()
    }


def judge(rows: pd.DataFrame, workload: Workload) -> Verdict:
    """Verdict of one workload over measured (ok, non-warm-up) rows of one group."""
    return judge_groups(rows, np.zeros(len(rows), int), workload).get(0, unmeasured(workload))


def unmeasured(workload: Workload) -> Verdict:
    return Verdict(workload.id, "n/a", (), False, 0)


def _unscored(quality: Quality | None) -> str:
    """Why a quality budget has no figure to judge."""
    if quality is None:
        return "no quality record"
    if quality.status == "skipped":
        estimated = f" (estimated {quality.estimated_s:,.0f} s)" if quality.estimated_s is not None else ""
        return f"quality skipped{estimated}"
    if quality.status != "ok":
        return f"quality record {quality.status}"
    return "not measured (no logits)" if quality.kld_mean is None else "not measured"


def with_quality(verdict: Verdict, workload: Workload, quality: Quality | None) -> Verdict:
    """The verdict with the workload's quality budgets judged on the cell's quality record.
    A workload not measured in the cell stays n/a."""
    budgets = [b for b in QUALITY_BUDGETS if getattr(workload, b[1]) is not None]
    if not budgets or verdict.verdict == "n/a":
        return verdict
    outcome, reasons, worst, unchecked = verdict.verdict, list(verdict.reasons), list(verdict.worst), {}
    for column, attribute, direction, label, shown in budgets:
        budget, value = getattr(workload, attribute), quality.figure(column) if quality else None
        if value is None:
            result, figure = "unchecked", f"{label}: {_unscored(quality)}"
            unchecked.setdefault(_unscored(quality), []).append(label)
        else:
            result = "pass" if (value <= budget if direction == "max" else value >= budget) else "fail"
            figure = f"{label} {shown.format(value)}"
            worst.append((column, value))
        reasons.append(f"{figure}, budget {'≤' if direction == 'max' else '≥'} {shown.format(budget)}: {result}")
        outcome = max(outcome, result, key=RANK.__getitem__)
    why = "; ".join(f"{reason} ({', '.join(labels)})" for reason, labels in unchecked.items())
    return replace(verdict, verdict=outcome, reasons=tuple(reasons), worst=tuple(worst), unchecked=why)
