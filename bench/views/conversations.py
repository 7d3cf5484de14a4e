"""Conversation turns: per runtime, whether it keeps a conversation's history between turns.

One row per runner, quantization, conversation and turn, from the measured repetitions of
conversation records: median TTFT and decode tok/s, the tokens of the history, those
prefilled for the turn and who counted them, and whether the runtime kept the earlier turns.
The terminal summary and the report's section say per runtime, in one line, whether it
reuses the history: turn N's TTFT against turn 1's, and the prefilled counts turn by turn.
"""

from __future__ import annotations

from dataclasses import astuple, dataclass

import pandas as pd

from bench.analysis import stats
from bench.analysis.resultset import numbers
from bench.views.table import Table, fixed, number, runner_label, text

COLUMNS = [
    "runner",
    "synthetic",
    "quantization",
    "prompt_id",
    "mode",
    "status",
    "warmup",
    "turn",
    "ttft_ms",
    "decode_tok_s",
    "prompt_tokens",
    "history_tokens",
    "history_reused",
    "prefill_counted_by",
]
# The table's columns, in Turn's field order: (heading, decimals; None: text)
HEADINGS = (
    ("runner", None),
    ("quant", None),
    ("conversation", None),
    ("turn", 0),
    ("n", 0),
    ("TTFT ms", 1),
    ("decode tok/s", 1),
    ("history tok", 0),
    ("prefilled tok", 0),
    ("prefill counted by", None),
    ("history kept", None),
)
TABLE = tuple(text(h) if d is None else number(h, fixed(d)) for h, d in HEADINGS)
CAPTION = "Conversation turns (medians; prefilled: by the runtime's own count or what the runner fed it):"


@dataclass(frozen=True)
class Turn:
    runner: str  # as every view labels it (the fake runner marked)
    quantization: str
    conversation: str
    turn: int
    n: int  # measured repetitions
    ttft_ms: float | None
    decode_tok_s: float | None
    history_tokens: float | None
    prefilled_tokens: float | None
    counted_by: str
    kept: str  # "yes", "no", "partly" (some repetitions), "–" on turn 1 (nothing to keep)
    where: tuple[str, ...] = ()  # the values of turns_of's `by` (the matrix's device)


def turns(records: list[dict]) -> list[Turn]:
    """The medians of every measured conversation turn of one run, in run order."""
    rows = [{c: r.get(c) for c in COLUMNS} for r in records if r.get("turn") is not None]
    return turns_of(pd.DataFrame.from_records(rows, columns=COLUMNS)) if rows else []


def turns_of(frame: pd.DataFrame, by: tuple[str, ...] = ()) -> list[Turn]:
    """The medians of every measured conversation turn of a frame of records (of COLUMNS and
    `by`, e.g. the matrix's device), per `by`, runner, quantization and turn."""
    ok = stats.measured(frame[pd.to_numeric(frame["turn"], errors="coerce").notna()])
    found = []
    for key, group in ok.groupby([*by, "runner", "quantization", "prompt_id"], sort=False, observed=True):
        *where, runner, quant, prompt = key
        reused = [bool(v) for v in group["history_reused"].dropna()]
        kept = "–" if not reused else "yes" if all(reused) else "no" if not any(reused) else "partly"
        median = numbers(group[["ttft_ms", "decode_tok_s", "history_tokens", "prompt_tokens"]]).median()
        found.append(
            Turn(
                runner_label(str(runner), bool(group["synthetic"].isin([True]).any())),
                str(quant),
                str(prompt).rsplit("/", 1)[0],
                int(numbers(group[["turn"]])["turn"].iloc[0]),
                len(group),
                *(None if pd.isna(v) else float(v) for v in median),  # a record without a figure: none
                "/".join(sorted(set(group["prefill_counted_by"].dropna().astype(str)))),
                kept,
                tuple(str(w) for w in where),
            )
        )
    return found


def table(records: list[dict]) -> Table:
    return table_of(turns(records))


def table_of(found: list[Turn]) -> Table:
    return Table(TABLE, tuple(astuple(t)[: len(TABLE)] for t in found))


def reuse_lines(records: list[dict]) -> list[str]:
    """One line per runtime and conversation: does it reuse the history, with the evidence."""
    by_run: dict[tuple[str, str, str], list[Turn]] = {}
    for t in turns(records):
        by_run.setdefault((t.runner, t.quantization, t.conversation), []).append(t)
    lines = []
    for (runner, quant, conversation), seen in by_run.items():
        seen.sort(key=lambda t: t.turn)
        later = [t.kept for t in seen if t.turn > 1]
        verdict = (
            "one turn only"
            if not later
            else "reuses the history"
            if all(k == "yes" for k in later)
            else "re-prefills the whole history"
            if all(k == "no" for k in later)
            else "reuses the history in some turns only"
        )
        first, last = seen[0], seen[-1]
        if first.ttft_ms is None or last.ttft_ms is None or first.prefilled_tokens is None:
            continue  # not a record of a conversation run here (no figures)
        ratio = f" ({last.ttft_ms / first.ttft_ms:.2f}x)" if first.turn == 1 and first.ttft_ms else ""
        counted = "/".join(sorted({t.counted_by for t in seen}))
        lines.append(
            f"{runner} {quant}, {conversation}: {verdict}: turn {last.turn} TTFT {last.ttft_ms:,.0f} ms vs "
            f"turn {first.turn} {first.ttft_ms:,.0f} ms{ratio}; prefilled "
            + " → ".join(f"{t.prefilled_tokens:.0f}/{t.history_tokens or 0:.0f}" for t in seen)
            + f" tokens of the history per turn (counted by the {counted})"
        )
    return lines
