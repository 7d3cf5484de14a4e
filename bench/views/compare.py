"""`edgebench compare BASELINE CANDIDATE`: per device/runner/prompt/metric deltas, a CI gate.

A change counts as a regression only when it is worse than the threshold AND the
candidate's median lies outside the baseline's measured spread (lowest to highest
repetition): a change the baseline's own repetitions already show is noise, not a
regression. Results of different suites (by hash) are never compared. A (device, runner,
quantization, prompt) the baseline measured and the candidate has no successful measured
generation of (absent, or only crashed/error/timeout records) is missing: it fails the gate
like a regression unless missing results are allowed.

Quality records (scores against the fp32 reference) are compared per (device, runner,
quantization), when both scored the same evaluation (the same number of tokens and the
same reference perplexity): scoring is deterministic, so there is no spread to be noise in. Perplexity
up, or top-1 or greedy agreement down, by more than the threshold (relative to the
baseline) is a regression; so is the mean KL divergence up by more than the threshold,
unless the rise is within KLD_NOISE (differences of float rounding between builds). A
successful baseline quality record with none in the candidate is missing, like a suite
result.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import pandas as pd

from bench.analysis import resultset, stats
from bench.errors import BenchError
from bench.records import OK
from bench.views import matrix
from bench.views import table as view
from bench.views.junit import Case
from bench.views.table import MISSING, Table, md_cell, number, text

# metric -> (label, True when higher is better)
METRICS = {
    "decode_tok_s": ("decode tok/s", True),
    "ttft_ms": ("TTFT ms", False),
    "prefill_tok_s": ("prefill tok/s", True),
    "itl_p50_ms": ("ITL p50 ms", False),
    "e2e_ms": ("e2e ms", False),
}
KEY = ["device", "runner", "model_id", "quantization", "prompt_id"]
# quality figure -> (label, True when higher is better)
QUALITY_METRICS = {
    "kld_mean": ("KLD mean", False),
    "perplexity": ("perplexity", False),
    "top1_agreement": ("top-1 agreement", True),
    "greedy_agreement": ("greedy agreement", True),
}
QUALITY_KEY = ["device", "runner", "model_id", "quantization"]
KLD_NOISE = 1e-4  # nats: a KLD change this small is float rounding (fp32 runtimes sit near 1e-6 of the reference)


@dataclass(frozen=True)
class Delta:
    device: str
    runner: str
    quantization: str
    prompt_id: str
    metric: str
    baseline: float | None
    candidate: float | None
    change_pct: float | None  # signed: + is a change for the better
    status: str  # regression, improved, noise, same, not comparable, missing, new
    note: str = ""


def parse_threshold(text: str) -> float:
    try:
        value = float(text.strip().removesuffix("%"))
    except ValueError:
        raise BenchError(f"--threshold '{text}' is not a percentage", "e.g. --threshold 5%", exit_code=2) from None
    if value < 0:
        raise BenchError("--threshold must not be negative", "e.g. --threshold 5%", exit_code=2)
    return value


class Side(NamedTuple):
    ok: pd.DataFrame  # successful measured (non-warm-up) timing records
    failed: pd.DataFrame  # measured timing records that are not ok (failed or skipped)
    quality: dict[tuple, stats.Quality]  # per QUALITY_KEY: the latest successful quality record, else failed one
    labels: dict[str, str]  # device labels


def _side(target: str) -> Side:
    frame = resultset.load(resultset.expand([target]), matrix.COLUMNS)
    resultset.fill(frame, ("model_id", "quantization", "suite_sha256", "artifact_sha256"))
    frame["runner"] = resultset.runner_on_accelerator(frame)  # CPU and GPU results are never compared
    labels = matrix.label_devices(frame)
    frame, scored = matrix.split_quality(frame)
    repetitions = frame[stats.is_repetition(frame)]
    failed = repetitions[repetitions["status"] != OK]  # skipped ones included: the note names them
    return Side(stats.measured(repetitions), failed, stats.latest_quality(scored, QUALITY_KEY), labels)


def _missing_note(failed: pd.DataFrame | None) -> str:
    """Why the candidate has no figure: which failures it recorded instead, or none at all."""
    if failed is None:
        return "absent from the candidate"
    statuses = ", ".join(f"{n} {s}" for s, n in failed["status"].value_counts().items() if n)
    return f"no successful generation in the candidate, only {statuses}"


def _stats(group: pd.DataFrame, metric: str) -> tuple[float, float, float] | None:
    values = group[metric].dropna()
    return (float(values.median()), float(values.min()), float(values.max())) if not values.empty else None


def compare(baseline: str, candidate: str, threshold_pct: float) -> list[Delta]:
    base_side, cand_side = _side(baseline), _side(candidate)
    base_quality = {k: q for k, q in base_side.quality.items() if q.status == "ok"}
    if base_side.ok.empty and not base_quality:
        raise BenchError(f"{baseline} holds no successful measured generation", "check the run's error records")
    labels = base_side.labels | cand_side.labels
    return _timing_deltas(base_side.ok, cand_side.ok, cand_side.failed, labels, threshold_pct) + _quality_deltas(
        base_quality, cand_side.quality, labels, threshold_pct
    )


def _timing_deltas(
    base: pd.DataFrame, cand: pd.DataFrame, cand_failed: pd.DataFrame, labels: dict[str, str], threshold_pct: float
) -> list[Delta]:
    base_groups = dict(iter(resultset.groups(base, KEY)))
    cand_groups = dict(iter(resultset.groups(cand, KEY)))
    failed_groups = dict(iter(resultset.groups(cand_failed, KEY)))
    deltas: list[Delta] = []
    for key in list(base_groups) + [k for k in cand_groups if k not in base_groups]:
        device, runner, _model, quant, prompt = key
        common = (labels.get(device, device), runner, quant, prompt)
        if key not in cand_groups:
            deltas.append(Delta(*common, "all", None, None, None, "missing", _missing_note(failed_groups.get(key))))
            continue
        if key not in base_groups:
            deltas.append(Delta(*common, "all", None, None, None, "new", "new in the candidate"))
            continue
        b, c = base_groups[key], cand_groups[key]
        if set(b["suite_sha256"]) != set(c["suite_sha256"]):
            deltas.append(Delta(*common, "all", None, None, None, "not comparable", "the suite differs (by hash)"))
            continue
        note = "artifact changed" if set(b["artifact_sha256"]) != set(c["artifact_sha256"]) else ""
        for metric, (label, higher_better) in METRICS.items():
            bs, cs = _stats(b, metric), _stats(c, metric)
            if bs is None or cs is None or bs[0] == 0:
                continue
            change = 100 * (cs[0] - bs[0]) / bs[0] * (1 if higher_better else -1)
            inside = bs[1] <= cs[0] <= bs[2]
            if abs(change) <= threshold_pct:
                status = "same"
            elif inside:
                status = "noise"
            else:
                status = "improved" if change > 0 else "regression"
            deltas.append(Delta(*common, label, bs[0], cs[0], round(change, 2), status, note))
    return deltas


def _quality_status(metric: str, base: float, cand: float, threshold_pct: float) -> tuple[float | None, str]:
    """(signed relative change in %, + for the better; status) of one quality figure."""
    higher_better = QUALITY_METRICS[metric][1]
    better = (cand > base) == higher_better
    change = None if base == 0 else 100 * (cand - base) / base * (1 if higher_better else -1)
    if cand == base or (metric == "kld_mean" and abs(cand - base) <= KLD_NOISE):
        return change, "same"
    if change is not None and abs(change) <= threshold_pct:
        return change, "same"
    return change, "improved" if better else "regression"


def _evaluation_differs(base: stats.Quality, cand: stats.Quality) -> str:
    """Why two quality records scored different evaluations (another text or reference)."""

    def shown(value: float | None) -> str:
        return MISSING if value is None else f"{value:g}"

    return (
        f"the evaluation differs ({shown(base.tokens_scored)} vs {shown(cand.tokens_scored)} tokens scored, "
        f"reference perplexity {shown(base.reference_perplexity)} vs {shown(cand.reference_perplexity)})"
    )


def _quality_deltas(
    base: dict[tuple, stats.Quality], cand: dict[tuple, stats.Quality], labels: dict[str, str], threshold_pct: float
) -> list[Delta]:
    """Per (device, runner, model, quantization) with a successful baseline quality record:
    each figure's change, or why it cannot be compared."""
    deltas: list[Delta] = []
    for key in list(base) + [k for k, q in cand.items() if k not in base and q.status == "ok"]:
        device, runner, _model, quant = key
        common = (labels.get(device, device), runner, quant, stats.QUALITY_MODE)
        b, c = base.get(key), cand.get(key)
        if c is None or c.status != "ok":
            note = (
                "absent from the candidate"
                if c is None
                else f"no successful quality record in the candidate, only {c.status}"
            )
            deltas.append(Delta(*common, "all", None, None, None, "missing", note))
        elif b is None:
            deltas.append(Delta(*common, "all", None, None, None, "new", "new in the candidate"))
        elif (b.tokens_scored, b.reference_perplexity) != (c.tokens_scored, c.reference_perplexity):
            deltas.append(Delta(*common, "all", None, None, None, "not comparable", _evaluation_differs(b, c)))
        else:
            for metric, (label, _) in QUALITY_METRICS.items():
                bv, cv = b.figure(metric), c.figure(metric)
                if bv is None or cv is None:
                    continue
                change, status = _quality_status(metric, bv, cv, threshold_pct)
                deltas.append(Delta(*common, label, bv, cv, None if change is None else round(change, 2), status))
    return deltas


def regressions(deltas: list[Delta]) -> list[Delta]:
    return [d for d in deltas if d.status == "regression"]


def missing(deltas: list[Delta]) -> list[Delta]:
    return [d for d in deltas if d.status == "missing"]


def gate_fails(deltas: list[Delta], allow_missing: bool) -> bool:
    """The gate fails on a regression, and on a missing result unless those are allowed."""
    return bool(regressions(deltas) or (missing(deltas) and not allow_missing))


def verdict_line(deltas: list[Delta], allow_missing: bool) -> str:
    bad, gone = regressions(deltas), missing(deltas)
    if not gate_fails(deltas, allow_missing):
        allowed = f" ({len(gone)} missing, allowed by --allow-missing)" if gone else ""
        return f"✅ no regression{allowed}"
    problems = [f"{len(bad)} regression(s)"] if bad else []
    if gone and not allow_missing:
        names = sorted({f"{d.device} / {d.runner} {d.quantization}" for d in gone})
        problems.append(
            f"{len(gone)} missing (baseline results without a successful candidate generation: "
            f"{', '.join(names)}; --allow-missing accepts that)"
        )
    return "❌ " + ", ".join(problems)


def markdown(
    deltas: list[Delta], threshold_pct: float, baseline: str, candidate: str, allow_missing: bool = False
) -> str:
    good = [d for d in deltas if d.status == "improved"]
    lines = [
        "## edgebench compare",
        "",
        f"{verdict_line(deltas, allow_missing)}; {len(good)} improvement(s); {len(deltas)} comparisons; "
        f"threshold {threshold_pct:g}% "
        "(a change inside the baseline's measured spread is noise, not a regression).",
        "",
        f"baseline: `{md_cell(baseline)}` · candidate: `{md_cell(candidate)}`",
        "",
    ]
    notable = [d for d in deltas if d.status not in ("same",)]
    lines += _table(
        sorted(
            notable,
            key=lambda d: ["regression", "missing", "not comparable", "new", "improved", "noise"].index(d.status),
        )
    )
    rest = [d for d in deltas if d.status == "same"]
    if rest:
        lines += ["", f"<details><summary>{len(rest)} unchanged (within {threshold_pct:g}%)</summary>", ""]
        lines += _table(rest) + ["", "</details>"]
    return "\n".join(lines) + "\n"


def _figure(value: float) -> str:
    """Two decimals, or three significant digits for a small figure (a KLD of 0.0012)."""
    return f"{value:,.2f}" if abs(value) >= 1 or value == 0 else f"{value:.3g}"


def _change(change_pct: float) -> str:
    return f"{change_pct:+.1f}%"


COLUMNS = (
    text("status"),
    text("device"),
    text("runner"),
    text("quant"),
    text("prompt"),
    text("metric"),
    number("baseline", _figure),
    number("candidate", _figure),
    number("change", _change),
    text("note"),
)


def _table(deltas: list[Delta]) -> list[str]:
    """The deltas' Markdown table; nothing when there are none."""
    if not deltas:
        return []
    return view.markdown(
        Table(
            COLUMNS,
            tuple(
                (
                    d.status,
                    d.device,
                    d.runner,
                    d.quantization,
                    d.prompt_id,
                    d.metric,
                    d.baseline,
                    d.candidate,
                    d.change_pct,
                    d.note,
                )
                for d in deltas
            ),
        )
    )


def junit_cases(deltas: list[Delta], allow_missing: bool = False) -> list[Case]:
    cases = []
    for d in deltas:
        outcome = {
            "regression": "fail",
            "missing": "n/a" if allow_missing else "fail",
            "new": "n/a",
            "not comparable": "n/a",
        }.get(d.status, "pass")
        change = (
            "" if d.change_pct is None else f"{_change(d.change_pct)} ({_figure(d.baseline)} -> {_figure(d.candidate)})"
        )
        cases.append(
            Case(
                f"{d.device}.{d.runner}.{d.quantization}",
                f"{d.prompt_id} / {d.metric}",
                outcome,
                "; ".join(x for x in (d.status, change, d.note) if x),
            )
        )
    return cases
