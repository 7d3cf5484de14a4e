"""Reports are views of the JSONL: one table builder feeds Markdown, CSV and the terminal."""
from __future__ import annotations

import html
from pathlib import Path

import pandas as pd

from bench.analysis import stats
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
FORMATS = ("md", "csv")
# The quality table: one row per quality record; "g": three significant digits (a KLD of
# fp32 is around 1e-6, a 4-bit one around 0.1).
QUALITY_COLUMNS = [
    ("runner", "runner", None), ("quantization", "quant", None), ("tokens_scored", "tokens scored", 0),
    ("perplexity", "perplexity", 3), ("reference_perplexity", "reference perplexity", 3),
    ("perplexity_increase_pct", "perplexity +%", 2), ("kld_mean", "KLD mean", "g"), ("kld_p99", "KLD p99", "g"),
    ("top1_pct", "top-1 %", 1), ("greedy_pct", "greedy agreement %", 1),
    ("greedy_first_divergence", "first divergence", 0), ("note", "note", None),
]


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


def _percent(share: float | None) -> float | None:
    return None if share is None else 100 * share


def _quality_note(record: dict, quality: stats.Quality) -> str:
    """Why a figure is missing: the failure, or the runtime's lack of logits."""
    if quality.status != "ok":
        return f"{quality.status}: {quality.error or 'no error recorded'}"
    no_logits = (record.get("quality_detail") or {}).get("no_logits")
    return f"no logits: {no_logits}" if no_logits else ""


def quality_table(records: list[dict]) -> pd.DataFrame:
    """One row per quality record: perplexity beside the reference's, KLD, top-1 and greedy
    agreement against the fp32 reference (raw numbers, report headings)."""
    rows = []
    for record in records:
        if record.get("mode") != stats.QUALITY_MODE:
            continue
        q = stats.quality_of(record)
        increase = q.perplexity_increase
        rows.append([record["runner"] + (" (FAKE)" if record.get("synthetic") else ""), record["quantization"],
                     q.tokens_scored, q.perplexity, q.reference_perplexity, None if increase is None else 100 * increase,
                     q.kld_mean, q.kld_p99, _percent(q.top1_agreement), _percent(q.greedy_agreement),
                     q.greedy_first_divergence, _quality_note(record, q)])
    return pd.DataFrame(rows, columns=[h for _, h, _ in QUALITY_COLUMNS])


def formatted(table: pd.DataFrame, columns: list[tuple] = COLUMNS) -> list[list[str]]:
    """Rows as display strings: fixed decimals (or "g": three significant digits), "–" for
    a missing figure."""
    decimals = {h: d for _, h, d in columns}
    rows = []
    for record in table.to_dict("records"):
        row = []
        for heading, value in record.items():
            d = decimals.get(heading)
            if value is None or (isinstance(value, float) and pd.isna(value)):
                row.append("–")
            elif d == "g":
                row.append(f"{value:.3g}")
            elif d is not None:
                row.append(f"{value:,.{d}f}")
            else:
                row.append(str(value))
        rows.append(row)
    return rows


def md_cell(text: str) -> str:
    return html.escape(text).replace("|", "\\|").replace("\n", " ")


def _md_table(table: pd.DataFrame, columns: list[tuple], text: tuple[str, ...]) -> list[str]:
    headings = list(table.columns)
    lines = ["| " + " | ".join(headings) + " |",
             "|" + "|".join("---" if h in text else "---:" for h in headings) + "|"]
    return lines + ["| " + " | ".join(md_cell(c) for c in row) + " |" for row in formatted(table, columns)]


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
    lines += _md_table(table, COLUMNS, ("runner", "quant", "prompt", "category"))
    quality = quality_table(records)
    if not quality.empty:
        lines += ["", "## Quality against the fp32 reference", "",
                  "Perplexity on the evaluation text beside the reference's; KLD: KL divergence of the runtime's "
                  "next-token distribution from the reference's, mean and 99th percentile over the positions scored; "
                  "top-1 %: positions whose most likely token is the reference's; greedy agreement: share of the "
                  "chat prompts' greedy tokens equal to the reference's, and the first position that differs. "
                  "A runtime without logits has greedy agreement only.", ""]
        lines += _md_table(quality, QUALITY_COLUMNS, ("runner", "quant", "note"))
    if notes:
        lines += ["", "## Warnings", ""] + [f"- {md_cell(n)}" for n in notes]
    return "\n".join(lines) + "\n"


def write_report(records: list[dict], fmt: str, out: Path) -> Path:
    """The report in `out`; a CSV report of suite and quality records puts the quality
    table beside it (quality_csv_path), as the two tables have different columns."""
    if fmt not in FORMATS:
        raise BenchError(f"unknown report format '{fmt}'", f"use one of: {', '.join(FORMATS)}", exit_code=2)
    if fmt == "csv":
        table, quality = _csv_tables(records)
        if quality is not None:
            write_text(quality.to_csv(index=False), quality_csv_path(out))
        return write_text(table.to_csv(index=False), out)
    return write_text(render(records, fmt), out)


def quality_csv_path(out: Path) -> Path:
    """Where a CSV report's quality table goes: beside it (RUN.csv -> RUN.quality.csv)."""
    return out.with_name(out.stem + ".quality.csv")


def _csv_tables(records: list[dict]) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """The CSV's table (the suite table; the quality table when there is no suite figure)
    and the quality table that goes beside it, if any."""
    table, _ = summary_table(records)
    quality = quality_table(records)
    if quality.empty:
        return table, None
    return (quality, None) if table.empty else (table, quality)


def render(records: list[dict], fmt: str) -> str:
    """The report as text: Markdown with every table, or the CSV's table."""
    if fmt == "md":
        return markdown(records, *summary_table(records))
    return _csv_tables(records)[0].to_csv(index=False)


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
