"""The matrix as Markdown (a PR comment, a README) and as CSV."""
from __future__ import annotations

from bench.junit import Case
from bench.matrix import Matrix, Row, table
from bench.report import md_cell

MARK = {"pass": "✅ pass", "marginal": "⚠️ marginal", "fail": "❌ fail", "n/a": "–"}


def fmt(value: float | None, decimals: int = 1, scale: float = 1.0) -> str:
    return "–" if value is None else f"{value * scale:,.{decimals}f}"


def runtime_label(row: Row) -> str:
    return row.runner + (" (FAKE)" if row.synthetic else "")


def markdown(matrix: Matrix) -> str:
    lines = ["# edgebench device matrix", "",
             f"{matrix.files} results files, {matrix.records:,} records. Medians over measured repetitions "
             "(warm-ups excluded). Verdicts per workload budget (profiles/workloads.toml): marginal means the "
             "budget lies within the measured spread. MBU: achieved decode ÷ bandwidth roofline.", ""]
    headings = ["runtime", "model", "quant", "n", "decode tok/s", "TTFT ms", "roofline tok/s", "MBU %"] + matrix.workloads
    for tier in matrix.tiers:
        lines += [f"## Tier: {md_cell(tier)}", ""]
        tier_rows = [r for r in matrix.rows if r.tier == tier]
        for device in dict.fromkeys(r.device for r in tier_rows):
            rows = [r for r in tier_rows if r.device == device]
            lines += [f"### {md_cell(rows[0].device_label)}", "", f"_{md_cell(matrix.devices.get(device, ''))}_", ""]
            comparable = [r for r in rows if not r.not_comparable]
            apart = [r for r in rows if r.not_comparable]
            lines += _table(headings, comparable)
            if apart:
                lines += ["", "Not comparable with each other (never averaged):", ""]
                lines += _table(headings + ["why apart"], apart, with_reason=True)
            lines.append("")
    failures = [(r, v) for r in matrix.rows for v in r.verdicts if v.verdict in ("fail", "marginal")]
    if failures:
        lines += ["## Budgets missed or marginal", ""]
        for r, v in failures:
            lines.append(f"- {md_cell(r.device_label)} / {md_cell(runtime_label(r))} {md_cell(r.quantization)} / "
                         f"{v.workload}: {v.verdict}: {md_cell('; '.join(v.reasons))}")
    return "\n".join(lines).rstrip() + "\n"


def _table(headings: list[str], rows: list[Row], with_reason: bool = False) -> list[str]:
    if not rows:
        return []
    out = ["| " + " | ".join(headings) + " |",
           "|" + "|".join("---" if i < 3 or i >= 8 else "---:" for i in range(len(headings))) + "|"]
    for r in rows:
        cells = [runtime_label(r), r.model, r.quantization, str(r.n), fmt(r.decode_tok_s), fmt(r.ttft_ms),
                 fmt(r.roofline_tok_s), fmt(r.mbu, 1, 100)] + [MARK[v.verdict] for v in r.verdicts]
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
