"""The files a sustained run leaves beside its JSONL: per runner a PNG, plus a small HTML
report with the pictures inline and a Markdown summary. Views of the records, never edited."""

from __future__ import annotations

import base64
import html
from pathlib import Path

from bench.analysis.sustained import DROPS, SustainedResult, analyse, summary_lines
from bench.views import table as view
from bench.views.sustained_plot import sustained_png
from bench.views.table import Table, number, text


def results_for(records: list[dict], samples: list[dict], duration_s: float, window_s: float) -> list[SustainedResult]:
    runners = dict.fromkeys(r["runner"] for r in records if r.get("mode") == "sustained")
    return [
        analyse(
            name,
            [r for r in records if r["runner"] == name],
            [s for s in samples if s["runner"] == name],
            duration_s,
            window_s,
        )
        for name in runners
    ]


def inline_png(png: bytes, alt: str) -> str:
    """An <img> carrying the PNG itself, so the HTML file stands alone."""
    data = base64.b64encode(png).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}" style="max-width:100%">'


def _figure(unit: str = "", digits: int = 1):
    return lambda value: f"{value:.{digits}f}{unit}"


# A row per runner; "n/a": the figure could not be computed.
FIGURES = (
    text("runner"),
    number("generations"),
    number("burst tok/s", _figure(), missing="n/a"),
    number("floor tok/s", _figure(), missing="n/a"),
    number("retained", _figure("%"), missing="n/a"),
    *(number(f"{percent}% drop at", _figure(" s"), missing="never") for percent in DROPS),
    number("mJ/token", _figure(digits=2), missing="n/a"),
)


def figures_table(results: list[SustainedResult]) -> Table:
    return Table(
        FIGURES,
        tuple(
            (
                r.runner,
                r.generations,
                r.burst_tok_s,
                r.floor_tok_s,
                r.retained_percent,
                *(r.drop_s[percent] for percent in DROPS),
                r.energy_j_per_token * 1000 if r.energy_j_per_token else None,
            )
            for r in results
        ),
    )


def figures_row(result: SustainedResult) -> dict[str, str]:
    """One runner's figures as the table shows them, by heading."""
    table = figures_table([result])
    return dict(zip(table.headings, table.cells()[0]))


def markdown(results: list[SustainedResult], run_id: str, pictures: dict[str, str]) -> str:
    lines = [f"# edgebench sustained {run_id}", ""]
    if results:
        lines += view.markdown(figures_table(results))
    for result in results:
        lines += ["", f"## {result.runner}", ""] + [f"- {line}" for line in summary_lines(result)[1:]]
        if result.runner in pictures:
            lines += ["", f"![{result.runner} sustained]({pictures[result.runner]})"]
    return "\n".join(lines) + "\n"


def html_page(results: list[SustainedResult], run_id: str, pngs: dict[str, bytes]) -> str:
    sections = []
    for result in results:
        items = "".join(f"<li>{html.escape(line)}</li>" for line in summary_lines(result))
        picture = (
            inline_png(pngs[result.runner], f"{result.runner} sustained decode rate") if result.runner in pngs else ""
        )
        sections.append(f"<h2>{html.escape(result.runner)}</h2><ul>{items}</ul>{picture}")
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>edgebench sustained {html.escape(run_id)}</title>"
        "<style>body{font-family:sans-serif;max-width:1100px;margin:auto}td,th{padding:2px 8px;text-align:right}"
        "table{border-collapse:collapse}tr:nth-child(even){background:#f3f3f3}</style></head><body>"
        f"<h1>edgebench sustained {html.escape(run_id)}</h1>{view.html(figures_table(results))}"
        + "".join(sections)
        + "</body></html>\n"
    )


def write_reports(results: list[SustainedResult], run_id: str, out_dir: Path) -> dict[str, Path]:
    """<run_id>.<runner>.png per runner, <run_id>.sustained.md and .html; returns the paths."""
    written: dict[str, Path] = {}
    pngs = {r.runner: sustained_png(r) for r in results if r.points}
    for runner, png in pngs.items():
        path = out_dir / f"{run_id}.{runner}.png"
        path.write_bytes(png)
        written[f"png {runner}"] = path
    md = out_dir / f"{run_id}.sustained.md"
    md.write_text(markdown(results, run_id, {r: written[f"png {r}"].name for r in pngs}), encoding="utf-8")
    page = out_dir / f"{run_id}.sustained.html"
    page.write_text(html_page(results, run_id, pngs), encoding="utf-8")
    return written | {"md": md, "html": page}
