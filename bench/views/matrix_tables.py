"""The matrix as Markdown (a PR comment, a README) and as CSV."""
from __future__ import annotations

from bench.views.junit import Case
from bench.views.matrix import Matrix, Row, bandwidth_kinds, has_quality, table
from bench.views.report import md_cell

MARK = {"pass": "✅ pass", "marginal": "⚠️ marginal", "fail": "❌ fail", "unchecked": "❔ unchecked", "n/a": "–"}
NOT_PASSED = ("fail", "marginal", "unchecked")
LEGEND = ("Decode tok/s, roofline and MBU: the cell's fixed-length decode probe (the throughput prompt with the "
          "fewest prompt tokens, e.g. pp128-tg64; named in the CSV's decode_probe), median of its measured "
          "repetitions (warm-ups excluded), never pooled with other prompts or suite with sustained records. MBU: achieved "
          "decode ÷ bandwidth roofline, in one column per bandwidth source (measured on the device, or the device "
          "profile's datasheet figure), never mixed. Workload cells: the verdict, then per budget the median of the "
          "workload's worst prompt. Each workload is judged on its own prompts, each prompt on its own spread of "
          "repetitions: fail when one prompt's whole spread misses a budget, marginal when one prompt's repetitions "
          "straddle it, pass when every prompt is inside (profiles/workloads.toml). Runs of different prompt sets "
          "(profiles) or sustained runs are separate rows. Quality (where a quality record exists): mean KL "
          "divergence from the fp32 reference and top-1 agreement, or greedy agreement for a runtime without "
          "logits; a workload's quality budgets are judged on it, and a quality budget without a quality record "
          "leaves the verdict unchecked.")


def fmt(value: float | None, decimals: int = 1, scale: float = 1.0) -> str:
    return "–" if value is None else f"{value * scale:,.{decimals}f}"


def runtime_label(row: Row) -> str:
    return row.runner + (" (FAKE)" if row.synthetic else "")


def figure_headings(matrix: Matrix) -> list[str]:
    """The per-cell figure columns: decode, quality (when some row has a quality record),
    then roofline and MBU per bandwidth source present."""
    quality = ["quality"] if has_quality(matrix) else []
    return ["decode tok/s", *quality] + [h for kind in bandwidth_kinds(matrix)
                                         for h in (f"roofline tok/s ({kind} bw)", f"MBU % ({kind} bw)")]


def quality_cell(row: Row) -> str:
    return "–" if row.quality is None else row.quality.label()


def figure_cells(matrix: Matrix, row: Row) -> list[str]:
    quality = [quality_cell(row)] if has_quality(matrix) else []
    return [fmt(row.decode_tok_s), *quality] + [c for kind in bandwidth_kinds(matrix) for c in (
        fmt(getattr(row, f"roofline_{kind}_tok_s")), fmt(getattr(row, f"mbu_{kind}"), 1, 100))]


def verdict_cell(verdict) -> str:
    return MARK[verdict.verdict] + (f" ({verdict.headline()})" if verdict.worst else "")


def markdown(matrix: Matrix) -> str:
    lines = ["# edgebench device matrix", "",
             f"{matrix.files} results files, {matrix.records:,} records. {LEGEND}", ""]
    headings = ["runtime", "model", "quant", "n", *figure_headings(matrix), *matrix.workloads]
    for tier in matrix.tiers:
        lines += [f"## Tier: {md_cell(tier)}", ""]
        tier_rows = [r for r in matrix.rows if r.tier == tier]
        for device in dict.fromkeys(r.device for r in tier_rows):
            rows = [r for r in tier_rows if r.device == device]
            lines += [f"### {md_cell(rows[0].device_label)}", "", f"_{md_cell(matrix.devices.get(device, ''))}_", ""]
            comparable = [r for r in rows if not r.not_comparable]
            apart = [r for r in rows if r.not_comparable]
            lines += _table(matrix, headings, comparable)
            if apart:
                lines += ["", "Not comparable with each other (never averaged):", ""]
                lines += _table(matrix, headings + ["why apart"], apart, with_reason=True)
            lines.append("")
    failures = [(r, v) for r in matrix.rows for v in r.verdicts if v.verdict in NOT_PASSED]
    if failures:
        lines += ["## Budgets missed, marginal or unchecked", ""]
        for r, v in failures:
            lines.append(f"- {md_cell(r.device_label)} / {md_cell(runtime_label(r))} {md_cell(r.quantization)} / "
                         f"{v.workload}: {v.verdict}: {md_cell('; '.join(v.reasons))}")
    return "\n".join(lines).rstrip() + "\n"


def _table(matrix: Matrix, headings: list[str], rows: list[Row], with_reason: bool = False) -> list[str]:
    if not rows:
        return []
    numeric = range(3, 4 + len(figure_headings(matrix)))
    out = ["| " + " | ".join(headings) + " |",
           "|" + "|".join("---:" if i in numeric else "---" for i in range(len(headings))) + "|"]
    for r in rows:
        cells = [runtime_label(r), r.model, r.quantization, str(r.n), *figure_cells(matrix, r)]
        cells += [verdict_cell(v) for v in r.verdicts]
        if with_reason:
            cells.append(r.not_comparable)
        out.append("| " + " | ".join(md_cell(c) for c in cells) + " |")
    return out


def junit_cases(matrix: Matrix) -> list[Case]:
    return [Case(f"{r.tier}.{r.device_label}", f"{runtime_label(r)} {r.model} {r.quantization} / {v.workload}"
                 + (f" [{r.not_comparable}]" if r.not_comparable else ""), v.verdict, "; ".join(v.reasons))
            for r in matrix.rows for v in r.verdicts]


def csv(matrix: Matrix) -> str:
    return table(matrix).to_csv(index=False)
