"""The matrix as Markdown (a PR comment, a README) and as CSV; its per-device table, which
the HTML page shows too."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bench.analysis.stats import Quality
from bench.views import conversations, depth
from bench.views import table as view
from bench.views.junit import Case
from bench.views.matrix import BANDWIDTH_KINDS, Matrix, Row, bandwidth_kinds, has_quality
from bench.views.table import MISSING, Column, Table, fixed, md_cell, number, text

MARK = {"pass": "✅ pass", "marginal": "⚠️ marginal", "fail": "❌ fail", "unchecked": "❔ unchecked", "n/a": "–"}
NOT_PASSED = ("fail", "marginal", "unchecked")
LEGEND = (
    "Decode tok/s, roofline and MBU: the cell's fixed-length decode probe (the throughput prompt with the "
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
    "leaves the verdict unchecked."
)


Getter = Callable[[Row], Any]


def _figures(matrix: Matrix) -> list[tuple[Column, Getter]]:
    """The per-cell figure columns: decode, quality (when some row has a quality record),
    then roofline and MBU per bandwidth source present."""
    quality = [(number("quality", Quality.label), lambda r: r.quality)] if has_quality(matrix) else []
    return [(number("decode tok/s", fixed(1)), lambda r: r.decode_tok_s), *quality] + [
        column
        for kind in bandwidth_kinds(matrix)
        for column in (
            (number(f"roofline tok/s ({kind} bw)", fixed(1)), lambda r, k=kind: getattr(r, f"roofline_{k}_tok_s")),
            (number(f"MBU % ({kind} bw)", fixed(1, 100)), lambda r, k=kind: getattr(r, f"mbu_{k}")),
        )
    ]


def cell_table(matrix: Matrix, rows: list[Row], verdict: Callable[[str], Column], reason: Column | None) -> Table:
    """One device's rows: runtime, model, quantization, count, the figures, a column per
    workload (as `verdict` makes it from the workload's id) and, under `reason`, why a row
    stands apart from the others of its cell."""
    columns: list[tuple[Column, Getter]] = [
        (text("runtime"), lambda r: r.runner_label),
        (text("model"), lambda r: r.model),
        (text("quant"), lambda r: r.quantization),
        (number("n"), lambda r: r.n),
        *_figures(matrix),
    ]
    columns += [(verdict(w), lambda r, i=i: r.verdicts[i]) for i, w in enumerate(matrix.workloads)]
    if reason:
        columns.append((reason, lambda r: r.not_comparable))
    return Table(tuple(c for c, _ in columns), tuple(tuple(get(r) for _, get in columns) for r in rows))


def verdict_cell(verdict) -> str:
    mark = MARK[verdict.verdict] + (
        f": {verdict.unchecked}" if verdict.verdict == "unchecked" and verdict.unchecked else ""
    )
    return mark + (f" ({verdict.headline()})" if verdict.worst else "")


def markdown(matrix: Matrix) -> str:
    lines = ["# edgebench device matrix", "", f"{matrix.files} results files, {matrix.records:,} records. {LEGEND}", ""]
    for tier in matrix.tiers:
        lines += [f"## Tier: {md_cell(tier)}", ""]
        tier_rows = [r for r in matrix.rows if r.tier == tier]
        for device in dict.fromkeys(r.device for r in tier_rows):
            rows = [r for r in tier_rows if r.device == device]
            lines += [f"### {md_cell(rows[0].device_label)}", "", f"_{md_cell(matrix.devices.get(device, ''))}_", ""]
            comparable = [r for r in rows if not r.not_comparable]
            apart = [r for r in rows if r.not_comparable]
            lines += _table(matrix, comparable)
            if apart:
                lines += ["", "Not comparable with each other (never averaged):", ""]
                lines += _table(matrix, apart, with_reason=True)
            turns = matrix.turns_on(device)
            if turns:
                lines += ["", conversations.CAPTION, ""]
                lines += view.markdown(conversations.table_of(turns))
            lines.append("")
    lines += depth.markdown(matrix.depth)
    failures = [(r, v) for r in matrix.rows for v in r.verdicts if v.verdict in NOT_PASSED]
    if failures:
        lines += ["## Budgets missed, marginal or unchecked", ""]
        for r, v in failures:
            lines.append(
                f"- {md_cell(r.device_label)} / {md_cell(r.runner_label)} {md_cell(r.quantization)} / "
                f"{v.workload}: {v.verdict}: {md_cell('; '.join(v.reasons))}"
            )
    return "\n".join(lines).rstrip() + "\n"


def _table(matrix: Matrix, rows: list[Row], with_reason: bool = False) -> list[str]:
    if not rows:
        return []
    reason = text("why apart") if with_reason else None
    return view.markdown(cell_table(matrix, rows, lambda workload: text(workload, verdict_cell), reason))


def junit_cases(matrix: Matrix) -> list[Case]:
    return [
        Case(
            f"{r.tier}.{r.device_label}",
            f"{r.runner_label} {r.model} {r.quantization} / {v.workload}"
            + (f" [{r.not_comparable}]" if r.not_comparable else ""),
            v.verdict,
            "; ".join(v.reasons),
        )
        for r in matrix.rows
        for v in r.verdicts
    ]


def _quality_values(quality: Quality | None) -> list:
    q = quality or Quality("none")
    share = {
        name: None if q.figure(name) is None else 100 * q.figure(name)
        for name in ("top1_agreement", "greedy_agreement")
    }
    return [
        MISSING if quality is None else quality.label(),
        q.figure("kld_mean"),
        q.figure("kld_p99"),
        share["top1_agreement"],
        q.figure("perplexity"),
        q.figure("reference_perplexity"),
        share["greedy_agreement"],
        q.figure("greedy_first_divergence"),
    ]


QUALITY_CSV = (
    text("quality"),
    number("kld_mean"),
    number("kld_p99"),
    number("top1_pct"),
    number("perplexity"),
    number("reference_perplexity"),
    number("greedy_agreement_pct"),
    number("greedy_first_divergence"),
)


def csv_table(matrix: Matrix) -> Table:
    """The flat table (CSV): one row per cell variant, one column per workload verdict."""
    columns = [
        text("tier"),
        text("device"),
        text("runner"),
        text("model"),
        text("quant"),
        text("suite"),
        text("prompt_set"),
        text("artifact"),
        number("n"),
        number("failed"),
        text("decode_probe"),
        number("decode_tok_s"),
    ]
    columns += [
        number(f"{figure}_{kind}_bandwidth") for kind in BANDWIDTH_KINDS for figure in ("roofline_tok_s", "mbu_pct")
    ]
    columns += QUALITY_CSV if has_quality(matrix) else ()
    columns += [text(w) for w in matrix.workloads] + [text(f"{w} worst prompt") for w in matrix.workloads]
    rows = []
    for r in matrix.rows:
        values = [
            r.tier,
            r.device_label,
            r.runner_label,
            r.model,
            r.quantization,
            r.suite,
            r.prompt_set,
            r.artifact_sha256[:12],
            r.n,
            r.failed,
            r.decode_probe,
            r.decode_tok_s,
        ]
        for kind in BANDWIDTH_KINDS:
            mbu = getattr(r, f"mbu_{kind}")
            values += [getattr(r, f"roofline_{kind}_tok_s"), None if mbu is None else 100 * mbu]
        values += _quality_values(r.quality) if has_quality(matrix) else []
        values += [v.verdict for v in r.verdicts] + [v.headline() for v in r.verdicts]
        rows.append((*values, r.not_comparable))
    return Table((*columns, text("not_comparable")), tuple(rows))


def csv(matrix: Matrix) -> str:
    return view.csv(csv_table(matrix))
