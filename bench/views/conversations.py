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


def turns(records: list[dict]) -> list[Turn]:
    """The medians of every measured conversation turn, in run order."""
    rows = [{c: r.get(c) for c in COLUMNS} for r in records if r.get("turn") is not None]
    if not rows:
        return []
    ok = stats.measured(pd.DataFrame.from_records(rows, columns=COLUMNS))
    found = []
    for (runner, quant, prompt), group in ok.groupby(["runner", "quantization", "prompt_id"], sort=False):
        reused = group["history_reused"].dropna()
        kept = "–" if reused.empty else "yes" if reused.all() else "no" if not reused.any() else "partly"
        median = group[["ttft_ms", "decode_tok_s", "history_tokens", "prompt_tokens"]].astype(float).median()
        found.append(
            Turn(
                runner_label(runner, bool(group["synthetic"].any())),
                str(quant),
                prompt.rsplit("/", 1)[0],
                int(group["turn"].iloc[0]),
                len(group),
                *(None if pd.isna(v) else float(v) for v in median),  # a record without a figure: none
                "/".join(sorted(set(group["prefill_counted_by"].dropna()))),
                kept,
            )
        )
    return found


def table(records: list[dict]) -> Table:
    return Table(TABLE, tuple(astuple(t) for t in turns(records)))


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
