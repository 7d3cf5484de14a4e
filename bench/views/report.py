"""Reports are views of the JSONL: one table for Markdown, CSV and the terminal."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from bench.analysis import stats
from bench.errors import BenchError
from bench.views import conversations, depth
from bench.views import table as view
from bench.views.table import Column, Table, fixed, md_cell, number, runner_label, significant, text

# The suite table: column of the summary (bench.analysis.stats.summarize) -> its column here
SUMMARY_COLUMNS: dict[str, Column] = {
    "runner": text("runner"),
    "quantization": text("quant"),
    "prompt_id": text("prompt"),
    "category": text("category"),
    "n": number("n", fixed(0)),
    "prompt_tokens": number("prompt tok", fixed(0)),
    "new_tokens": number("new tok", fixed(0)),
    "ttft_ms": number("TTFT ms", fixed(1)),
    "ttft_ms_cv_pct": number("TTFT ±%", fixed(0)),
    "prefill_tok_s": number("prefill tok/s", fixed(1)),
    "decode_tok_s": number("decode tok/s", fixed(1)),
    "decode_tok_s_cv_pct": number("decode ±%", fixed(0)),
    "itl_p50_ms": number("ITL p50 ms", fixed(2)),
    "itl_p99_ms": number("ITL p99 ms", fixed(2)),
    "e2e_ms": number("e2e ms", fixed(0)),
    "load_ms": number("load ms", fixed(0)),
    "peak_rss_mb": number("peak RSS MB", fixed(0)),
    "failed": number("failed", fixed(0)),
}
FORMATS = ("md", "csv")
# The quality table: one row per quality record; KLDs in three significant digits (a KLD of
# fp32 is around 1e-6, a 4-bit one around 0.1).
QUALITY_COLUMNS = [
    text("runner"),
    text("quant"),
    number("tokens scored", fixed(0)),
    number("perplexity", fixed(3)),
    number("reference perplexity", fixed(3)),
    number("perplexity +%", fixed(2)),
    number("KLD mean", significant),
    number("KLD p99", significant),
    number("top-1 %", fixed(1)),
    number("greedy agreement %", fixed(1)),
    number("first divergence", fixed(0)),
    text("note"),
]
# `edgebench quality` in the terminal: the quality table's main figures and each record's scoring time.
QUALITY_TERMINAL = (
    "runner",
    "quant",
    "perplexity",
    "reference perplexity",
    "KLD mean",
    "top-1 %",
    "greedy agreement %",
    "first divergence",
    "scoring s",
    "note",
)
SCORING = number("scoring s", fixed(1))


def summary_table(records: list[dict], budget_skips: bool = True) -> tuple[pd.DataFrame, list[str]]:
    """The report's table (raw numbers, report headings) and its warnings (see stats.warnings)."""
    df = stats.frame(records)
    summary = stats.summarize(df)
    notes = stats.warnings(df, summary, budget_skips)
    headings = [c.heading for c in SUMMARY_COLUMNS.values()]
    if summary.empty:
        return pd.DataFrame(columns=headings), notes
    table = summary[list(SUMMARY_COLUMNS)].copy()
    table.columns = headings
    table["runner"] = [runner_label(r, s) for r, s in zip(table["runner"], summary["synthetic"])]
    return table, notes


def suite_view(table: pd.DataFrame) -> Table:
    """The summary table (summary_table's frame) as a Table."""
    return Table(tuple(SUMMARY_COLUMNS.values()), tuple(table.itertuples(index=False, name=None)))


def _percent(share: float | None) -> float | None:
    return None if share is None else 100 * share


def _quality_note(record: dict, quality: stats.Quality) -> str:
    """Why a figure is missing: the failure, or the runtime's lack of logits."""
    if quality.status != "ok":
        return f"{quality.status}: {quality.error or 'no error recorded'}"
    no_logits = (record.get("quality_detail") or {}).get("no_logits")
    return f"no logits: {no_logits}" if no_logits else ""


def _quality_row(record: dict) -> tuple:
    q = stats.quality_of(record)
    return (
        runner_label(record["runner"], record.get("synthetic")),
        record["quantization"],
        q.tokens_scored,
        q.perplexity,
        q.reference_perplexity,
        _percent(q.perplexity_increase),
        q.kld_mean,
        q.kld_p99,
        _percent(q.top1_agreement),
        _percent(q.greedy_agreement),
        q.greedy_first_divergence,
        _quality_note(record, q),
    )


def _quality_records(records: list[dict]) -> list[dict]:
    return [r for r in records if r.get("mode") == stats.QUALITY_MODE]


def quality_view(records: list[dict]) -> Table:
    """One row per quality record: perplexity beside the reference's, KLD, top-1 and greedy
    agreement against the fp32 reference."""
    return Table(tuple(QUALITY_COLUMNS), tuple(_quality_row(r) for r in _quality_records(records)))


def quality_terminal(records: list[dict]) -> Table:
    """The quality table as `edgebench quality` prints it, with each record's scoring time."""
    rows = tuple(
        (*_quality_row(r), (r.get("quality_detail") or {}).get("scoring_s")) for r in _quality_records(records)
    )
    return Table((*QUALITY_COLUMNS, SCORING), rows).select(QUALITY_TERMINAL)


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
    lines += view.markdown(suite_view(table))
    turns = conversations.table(records)
    if turns.rows:
        lines += [
            "",
            "## Conversations",
            "",
            "Each turn of a conversation is its own prompt above (its `prompt tok` are the tokens prefilled for "
            "it); here beside the tokens of its whole history, who counted the prefilled ones (the runtime "
            "itself, or the runner: what it fed the runtime), and whether the runtime kept the earlier turns.",
            "",
            *[f"- {md_cell(line)}" for line in conversations.reuse_lines(records)],
            "",
        ]
        lines += view.markdown(turns)
    quality = quality_view(records)
    if quality.rows:
        lines += [
            "",
            "## Quality against the fp32 reference",
            "",
            "Perplexity on the evaluation text beside the reference's; KLD: KL divergence of the runtime's "
            "next-token distribution from the reference's, mean and 99th percentile over the positions scored; "
            "top-1 %: positions whose most likely token is the reference's; greedy agreement: share of the "
            "chat prompts' greedy tokens equal to the reference's, and the first position that differs. "
            "A runtime without logits has greedy agreement only.",
            "",
        ]
        lines += view.markdown(quality)
    lines += depth.markdown(depth.summary(depth.frame(records)))
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
            write_text(view.csv(quality), quality_csv_path(out))
        return write_text(view.csv(table), out)
    return write_text(render(records, fmt), out)


def quality_csv_path(out: Path) -> Path:
    """Where a CSV report's quality table goes: beside it (RUN.csv -> RUN.quality.csv)."""
    return out.with_name(out.stem + ".quality.csv")


def _csv_tables(records: list[dict]) -> tuple[Table, Table | None]:
    """The CSV's table (the suite table; the quality table when there is no suite figure)
    and the quality table that goes beside it, if any."""
    suite = suite_view(summary_table(records)[0])
    quality = quality_view(records)
    if not quality.rows:
        return suite, None
    return (quality, None) if not suite.rows else (suite, quality)


def render(records: list[dict], fmt: str) -> str:
    """The report as text: Markdown with every table, or the CSV's table."""
    if fmt == "md":
        return markdown(records, *summary_table(records))
    return view.csv(_csv_tables(records)[0])


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
