"""Reports are views of the JSONL: one table builder feeds Markdown, CSV and the terminal."""
from __future__ import annotations

import html
from pathlib import Path

import pandas as pd

from bench import stats
from bench.errors import BenchError

# (column in the summary, heading, decimals)
COLUMNS = [
    ("runner", "runner", None), ("quantization", "quant", None), ("prompt_id", "prompt", None),
    ("category", "category", None), ("n", "n", 0), ("prompt_tokens", "prompt tok", 0),
    ("new_tokens", "new tok", 0), ("ttft_ms", "TTFT ms", 1), ("ttft_ms_cv_pct", "TTFT ±%", 0),
    ("prefill_tok_s", "prefill tok/s", 1), ("decode_tok_s", "decode tok/s", 1),
    ("decode_tok_s_cv_pct", "decode ±%", 0), ("itl_p50_ms", "ITL p50 ms", 2),
    ("itl_p99_ms", "ITL p99 ms", 2), ("e2e_ms", "e2e ms", 0), ("load_ms", "load ms", 0),
    ("peak_rss_mb", "peak RSS MB", 0), ("failed", "failed", 0),
]
# The terminal shows the figures people compare first; the files have every column.
TERMINAL = ["runner", "quant", "prompt", "n", "prompt tok", "new tok", "TTFT ms", "TTFT ±%",
            "decode tok/s", "decode ±%", "ITL p99 ms", "peak RSS MB", "failed"]
FORMATS = ("md", "csv")


def summary_table(records: list[dict]) -> tuple[pd.DataFrame, list[str]]:
    """The report's table (raw numbers, report headings) and its warnings."""
    df = stats.frame(records)
    summary = stats.summarize(df)
    notes = stats.warnings(df, summary)
    if summary.empty:
        return pd.DataFrame(columns=[h for _, h, _ in COLUMNS]), notes
    table = summary[[c for c, _, _ in COLUMNS]].copy()
    table.columns = [h for _, h, _ in COLUMNS]
    if summary["synthetic"].any():
        table["runner"] = [f"{r} (FAKE)" if s else r for r, s in zip(table["runner"], summary["synthetic"])]
    return table, notes


def formatted(table: pd.DataFrame) -> list[list[str]]:
    """Rows as display strings: fixed decimals, "–" for a missing figure."""
    decimals = {h: d for _, h, d in COLUMNS}
    rows = []
    for record in table.to_dict("records"):
        row = []
        for heading, value in record.items():
            d = decimals.get(heading)
            if value is None or (isinstance(value, float) and pd.isna(value)):
                row.append("–")
            elif d is not None:
                row.append(f"{value:,.{d}f}")
            else:
                row.append(str(value))
        rows.append(row)
    return rows


def md_cell(text: str) -> str:
    return html.escape(text).replace("|", "\\|").replace("\n", " ")


def markdown(records: list[dict], table: pd.DataFrame, notes: list[str]) -> str:
    first = records[0] if records else {}
    lines = ["# edgebench results", ""]
    if first:
        runs = sorted({r["run_id"] for r in records})
        lines += [
            f"- runs: {', '.join(runs)}",
            f"- device: {md_cell(str(first.get('device_cpu_model')))}, {first.get('device_cores_logical')} logical cores, "
            f"{first.get('device_ram_gb')} GB RAM, {first.get('device_os')} {first.get('device_arch')}",
            f"- model: {first.get('model_id')}; suite: {first.get('suite_id')} ({str(first.get('suite_sha256'))[:12]}); "
            f"profile: {first.get('profile_name')}",
            f"- edgebench {first.get('tool_version')} ({first.get('git_commit') or 'no git commit'})",
            "",
            "Medians over measured repetitions (warm-ups excluded); ±% is the coefficient of variation.",
            "",
        ]
    headings = list(table.columns)
    lines.append("| " + " | ".join(headings) + " |")
    lines.append("|" + "|".join("---" if h in ("runner", "quant", "prompt", "category") else "---:" for h in headings) + "|")
    for row in formatted(table):
        lines.append("| " + " | ".join(md_cell(c) for c in row) + " |")
    if notes:
        lines += ["", "## Warnings", ""] + [f"- {md_cell(n)}" for n in notes]
    return "\n".join(lines) + "\n"


def write_report(records: list[dict], fmt: str, out: Path) -> Path:
    if fmt not in FORMATS:
        raise BenchError(f"unknown report format '{fmt}'", f"use one of: {', '.join(FORMATS)}", exit_code=2)
    table, notes = summary_table(records)
    return write_text(markdown(records, table, notes) if fmt == "md" else table.to_csv(index=False), out)


def write_text(text: str, out: Path) -> Path:
    """Write a report file whole or not at all (a partial file is renamed into place)."""
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(out.name + ".partial")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(out)
    except OSError as exc:
        raise BenchError(f"cannot write report {out}: {exc.strerror}", "choose a writable path with --out") from None
    return out
