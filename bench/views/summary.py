"""The compact summary that ends `edgebench run`: which runtime is best here, per workload.

One row per workload (profiles/workloads.toml), one column per runtime. A cell is that
runtime's best quantization (the highest decode tok/s on the workload's prompts), with
the workload's worst prompt's median TTFT and decode tok/s, and the workload's verdict as
the run's matrix gives it (bench.views.matrix: timing and quality budgets judged by one
function), so the summary and the matrix page never disagree. ★ marks the
fastest runtime of each workload: the highest decode tok/s where the workload budgets
decode speed, else the lowest TTFT. The full per-prompt table stays in the .md report.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from bench.analysis import stats
from bench.analysis.verdicts import Verdict, workload_rows
from bench.data import workloads as workload_data
from bench.device.hygiene import busy_runners
from bench.views import matrix
from bench.views import table as view
from bench.views.table import MISSING, Table, runner_label, text

COLUMNS = [
    "runner",
    "quantization",
    "synthetic",
    "prompt_id",
    "category",
    "turn",
    "depth",
    "mode",
    "status",
    "warmup",
    "ttft_ms",
    "decode_tok_s",
    "e2e_ms",
    "tier",
    "estimated_s",
    "skip_reason",
]


@dataclass(frozen=True)
class Cell:
    quantization: str
    ttft_ms: float | None  # the median of the workload's slowest prompt
    decode_tok_s: float | None  # the median of the workload's slowest-decoding prompt
    verdict: str  # Verdict.label(): "pass", "unchecked: quality skipped (estimated 300 s)", or "skipped"
    skipped: int  # prompts of this workload the time budget skipped whole
    fastest: bool = False


@dataclass(frozen=True)
class Summary:
    tier: str | None
    runtimes: list[str]
    workloads: list[str]
    cells: dict[tuple[str, str], Cell]  # (workload, runtime) -> cell
    skipped: list[str]  # "runner quant prompt (estimated N s each)": prompts the budget skipped whole
    cut: list[str]  # "runner quant prompt (K of N repetitions)": prompts whose repetitions it cut


def _frame(records: list[dict]) -> pd.DataFrame:
    """The suite records but warm-ups, failed ones included: a runner that failed before any
    prompt (warmup None) still gets its column."""
    df = pd.DataFrame.from_records([{c: r.get(c) for c in COLUMNS} for r in records], columns=COLUMNS)
    return df[df["mode"].isin(["suite", None]) & (df["warmup"] != True)]  # noqa: E712 (pandas mask)


def _worst(ok: pd.DataFrame) -> tuple[float | None, float | None]:
    """The slowest prompt's median TTFT and the slowest-decoding prompt's median decode rate."""
    medians = ok.groupby("prompt_id")[["ttft_ms", "decode_tok_s"]].median()
    ttft, decode = medians["ttft_ms"].max(), medians["decode_tok_s"].min()
    return (None if pd.isna(ttft) else float(ttft)), (None if pd.isna(decode) else float(decode))


def _cell(rows: pd.DataFrame, verdict: Verdict | None) -> Cell | None:
    ok = stats.measured(rows)
    skipped = int((rows.groupby("prompt_id")["status"].agg(lambda s: (s == "skipped").all())).sum())
    if ok.empty and not skipped:
        return None
    ttft, decode = _worst(ok) if not ok.empty else (None, None)
    label = verdict.label() if verdict and not ok.empty else "skipped"
    return Cell(str(rows["quantization"].iloc[0]), ttft, decode, label, skipped)


def _matrix_verdicts(records: list[dict]) -> dict[tuple[str, str, str], Verdict]:
    """(runner, quantization, workload) -> the verdict the run's matrix gives."""
    return {
        (row.runner, row.quantization, verdict.workload): verdict
        for row in matrix.from_records(records).rows
        for verdict in row.verdicts
    }


def _better(a: Cell, b: Cell, by_decode: bool) -> bool:
    """Is `a` faster than `b` (a missing figure is never faster)?"""
    if by_decode:
        return (a.decode_tok_s or 0.0) > (b.decode_tok_s or 0.0)
    return a.ttft_ms is not None and (b.ttft_ms is None or a.ttft_ms < b.ttft_ms)


def _best(cells: list[Cell], by_decode: bool) -> Cell | None:
    best = None
    for cell in cells:
        if best is None or _better(cell, best, by_decode):
            best = cell
    return best


def build(records: list[dict]) -> Summary:
    workloads = workload_data.load_workloads()
    judged = _matrix_verdicts(records)
    df = _frame(records)
    busy = busy_runners(records)  # measured under other programs' load: marked in the runtime's heading
    df = df.assign(
        runtime=[
            runner_label(r, s) + (" (busy machine)" if r in busy else "") for r, s in zip(df["runner"], df["synthetic"])
        ]
    )
    runtimes = list(dict.fromkeys(df["runtime"]))
    cells, shown = {}, []
    for workload in workloads:
        mine = df[workload_rows(df, workload)]
        by_decode = workload.decode_tok_s_min is not None
        found = {}
        for runtime, rows in mine.groupby("runtime", sort=False):
            per_quant = [
                c
                for quant, q in rows.groupby("quantization", sort=False, dropna=False)
                if (c := _cell(q, judged.get((str(q["runner"].iloc[0]), str(quant), workload.id))))
            ]
            best = _best(per_quant, True) if per_quant else None
            if best:
                found[runtime] = best
        fastest = _best([c for c in found.values() if c.verdict != "skipped"], by_decode)
        for runtime, cell in found.items():
            cells[(workload.id, runtime)] = Cell(**(vars(cell) | {"fastest": cell is fastest}))
        if found:
            shown.append(workload.id)
    tiers = df["tier"].dropna().unique()
    return Summary(str(tiers[0]) if len(tiers) else None, runtimes, shown, cells, *_budgeted(df))


def _budgeted(df: pd.DataFrame) -> tuple[list[str], list[str]]:
    """The prompts the time budget skipped whole, and those it cut to fewer repetitions."""
    skipped, cut = [], []
    for (runner, quant, prompt), rows in df.groupby(["runner", "quantization", "prompt_id"], sort=False):
        left_out = rows[rows["status"] == "skipped"]
        if left_out.empty:
            continue
        if (rows["status"] == "skipped").all():
            estimated = left_out["estimated_s"].iloc[0]
            why = left_out["skip_reason"].iloc[0] if pd.isna(estimated) else f"estimated {estimated:,.0f} s each"
            skipped.append(f"{runner} {quant} {prompt} ({why})")
        else:
            cut.append(f"{runner} {quant} {prompt} ({len(rows) - len(left_out)} of {len(rows)} repetitions)")
    return skipped, cut


def cells_json(summary: Summary) -> list[dict]:
    """The summary's cells for `run --json`: one per workload and runtime."""
    return [
        {"workload": workload, "runtime": runtime, **vars(cell)} for (workload, runtime), cell in summary.cells.items()
    ]


def budget_text(summary: Summary) -> str:
    """What the time budget left out, for the line under the table."""
    parts = [f"skipped {len(summary.skipped)} prompt(s): " + "; ".join(summary.skipped)] if summary.skipped else []
    parts += [f"fewer repetitions for {len(summary.cut)} prompt(s): " + "; ".join(summary.cut)] if summary.cut else []
    return ". ".join(parts) + " (not failures)" if parts else "nothing skipped"


def cell_text(cell: Cell) -> str:
    if cell.verdict == "skipped":
        return f"skipped ({cell.quantization})"
    ttft = MISSING if cell.ttft_ms is None else f"{cell.ttft_ms:,.0f} ms"
    decode = MISSING if cell.decode_tok_s is None else f"{cell.decode_tok_s:,.1f} tok/s"
    extra = f", {cell.skipped} prompt(s) skipped" if cell.skipped else ""
    return f"{'★ ' if cell.fastest else ''}{cell.verdict}: {ttft} · {decode} ({cell.quantization}{extra})"


CAPTION = (
    "cell: verdict: TTFT · decode tok/s (best quantization) of the workload's slowest prompt; "
    "★ fastest runtime of the workload"
)


def table(summary: Summary) -> Table:
    """A row per workload, a column per runtime."""
    columns = (text("workload"), *(text(runtime, cell_text) for runtime in summary.runtimes))
    return Table(columns, tuple((w, *(summary.cells.get((w, r)) for r in summary.runtimes)) for w in summary.workloads))


def rich_table(summary: Summary, title: str):
    return view.terminal(table(summary), title, CAPTION)
