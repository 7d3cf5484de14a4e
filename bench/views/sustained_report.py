"""The files a sustained run leaves beside its JSONL: per runner a PNG, plus a small HTML
report with the pictures inline and a Markdown summary. Views of the records, never edited."""
from __future__ import annotations

import base64
import html
from pathlib import Path

from bench.analysis.sustained import DROPS, SustainedResult, analyse, summary_lines
from bench.views.sustained_plot import sustained_png


def results_for(records: list[dict], samples: list[dict], duration_s: float, window_s: float) -> list[SustainedResult]:
    runners = dict.fromkeys(r["runner"] for r in records if r.get("mode") == "sustained")
    return [analyse(name, [r for r in records if r["runner"] == name],
                    [s for s in samples if s["runner"] == name], duration_s, window_s) for name in runners]


def inline_png(png: bytes, alt: str) -> str:
    """An <img> carrying the PNG itself, so the HTML file stands alone."""
    data = base64.b64encode(png).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}" style="max-width:100%">'


def _figure(value, unit: str = "", digits: int = 1) -> str:
    return f"{value:.{digits}f}{unit}" if value is not None else "n/a"


def figures_row(result: SustainedResult) -> dict[str, str]:
    row = {"runner": result.runner, "generations": str(result.generations),
           "burst tok/s": _figure(result.burst_tok_s), "floor tok/s": _figure(result.floor_tok_s),
           "retained": _figure(result.retained_percent, "%")}
    for percent in DROPS:
        row[f"{percent}% drop at"] = _figure(result.drop_s[percent], " s") if result.drop_s[percent] is not None else "never"
    row["mJ/token"] = _figure(result.energy_j_per_token * 1000 if result.energy_j_per_token else None, digits=2)
    return row


def markdown(results: list[SustainedResult], run_id: str, pictures: dict[str, str]) -> str:
    rows = [figures_row(r) for r in results]
    lines = [f"# edgebench sustained {run_id}", ""]
    if rows:
        lines += ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
        lines += ["| " + " | ".join(row.values()) + " |" for row in rows]
    for result in results:
        lines += ["", f"## {result.runner}", ""] + [f"- {line}" for line in summary_lines(result)[1:]]
        if result.runner in pictures:
            lines += ["", f"![{result.runner} sustained]({pictures[result.runner]})"]
    return "\n".join(lines) + "\n"


def html_page(results: list[SustainedResult], run_id: str, pngs: dict[str, bytes]) -> str:
    rows = [figures_row(r) for r in results]
    head = "".join(f"<th>{html.escape(h)}</th>" for h in (rows[0] if rows else {}))
    body = "".join("<tr>" + "".join(f"<td>{html.escape(v)}</td>" for v in row.values()) + "</tr>" for row in rows)
    sections = []
    for result in results:
        items = "".join(f"<li>{html.escape(line)}</li>" for line in summary_lines(result))
        picture = inline_png(pngs[result.runner], f"{result.runner} sustained decode rate") if result.runner in pngs else ""
        sections.append(f"<h2>{html.escape(result.runner)}</h2><ul>{items}</ul>{picture}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>edgebench sustained {html.escape(run_id)}</title>"
            "<style>body{font-family:sans-serif;max-width:1100px;margin:auto}td,th{padding:2px 8px;text-align:right}"
            "table{border-collapse:collapse}tr:nth-child(even){background:#f3f3f3}</style></head><body>"
            f"<h1>edgebench sustained {html.escape(run_id)}</h1><table><tr>{head}</tr>{body}</table>"
            + "".join(sections) + "</body></html>\n")


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
