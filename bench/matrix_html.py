"""The matrix as one self-contained HTML page: tables and inline SVG charts, no network
needed to view it. Every text that comes from records is HTML-escaped."""
from __future__ import annotations

import math
from html import escape

from bench.matrix import Matrix, Row
from bench.matrix_render import LEGEND, figure_cells, figure_headings, runtime_label
from bench.targets import Workload

CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#1d2433}
h1{font-size:22px}h2{margin-top:32px;border-bottom:2px solid #ccd}h3{margin-bottom:4px}
table{border-collapse:collapse;margin:8px 0 16px}td,th{border:1px solid #dde;padding:3px 8px;text-align:right}
td.t,th.t{text-align:left}.pass{background:#d9f2dc}.marginal{background:#fff0c2}.fail{background:#f8d4d4}
.why{color:#667;font-style:italic}svg{display:block;margin:8px 0 20px}svg text{font:12px system-ui,sans-serif}
"""
# Marks the page as rendered, so a browser test can tell the script ran without errors.
SCRIPT = """
document.addEventListener('DOMContentLoaded', function () {
  var charts = document.querySelectorAll('svg.chart').length;
  var marker = document.getElementById('render-check');
  marker.textContent = 'rendered ' + charts + ' charts';
  marker.setAttribute('data-charts', String(charts));
});
"""
PALETTE = ("#3b6fd8", "#d8793b", "#3ba37a", "#9a4fc4", "#c43b5a", "#5a8f9f")


def page(matrix: Matrix, workloads: tuple[Workload, ...]) -> str:
    parts = ["<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
             "<title>edgebench device matrix</title>", f"<style>{CSS}</style></head><body>",
             "<h1>edgebench device matrix</h1>",
             f"<p>{matrix.files} results files, {matrix.records:,} records. {escape(LEGEND)}</p>"]
    timed = [w for w in workloads if w.ttft_ms_max and w.id in matrix.workloads]
    for tier in matrix.tiers:
        rows = [r for r in matrix.rows if r.tier == tier]
        parts.append(f"<h2>Tier: {escape(tier)}</h2>")
        labels = [f"{r.device_label} · {runtime_label(r)} {r.quantization}" for r in rows]
        parts.append(bar_chart("decode tok/s of the decode probe (median; | marks the bandwidth roofline: "
                               "measured bandwidth, else the datasheet's)", labels,
                               [r.decode_tok_s for r in rows], [r.roofline_tok_s() for r in rows], []))
        # one bar per row and workload: the workload's own TTFT (its worst prompt) against its own budget
        pairs = [(r, w, r.verdicts[matrix.workloads.index(w.id)].figure("ttft_ms")) for r in rows for w in timed]
        pairs = [(r, w, ttft) for r, w, ttft in pairs if ttft is not None]
        parts.append(bar_chart("TTFT ms per workload (median of its worst prompt, log scale; | marks that "
                               "workload's budget)", [f"{r.device_label} · {runtime_label(r)} {r.quantization} · {w.id}"
                                                      for r, w, _ in pairs],
                               [ttft for _, _, ttft in pairs], [w.ttft_ms_max for _, w, _ in pairs], [], log=True))
        for device in dict.fromkeys(r.device for r in rows):
            mine = [r for r in rows if r.device == device]
            parts.append(f"<h3>{escape(mine[0].device_label)}</h3>"
                         f"<div class='why'>{escape(matrix.devices.get(device, ''))}</div>")
            parts.append(_table(matrix, mine))
    parts.append("<p id='render-check'>not rendered</p>")
    parts.append(f"<script>{SCRIPT}</script></body></html>")
    return "\n".join(parts)


def _table(matrix: Matrix, rows: list[Row]) -> str:
    head = ["runtime", "model", "quant", "n", *figure_headings(matrix), *matrix.workloads, "not comparable"]
    out = ["<table><tr>" + "".join(f"<th class='{'t' if i < 3 else ''}'>{escape(h)}</th>" for i, h in enumerate(head)) + "</tr>"]
    for r in rows:
        cells = [f"<td class='t'>{escape(runtime_label(r))}</td><td class='t'>{escape(r.model)}</td>"
                 f"<td class='t'>{escape(r.quantization)}</td><td>{r.n}</td>"]
        cells += [f"<td>{c}</td>" for c in figure_cells(matrix, r)]
        for v in r.verdicts:
            shown = v.verdict + (f" ({v.headline()})" if v.worst else "")
            cells.append(f"<td class='t {escape(v.verdict.replace('/', ''))}' title='{escape('; '.join(v.reasons))}'>"
                         f"{escape(shown)}</td>")
        cells.append(f"<td class='t'>{escape(r.not_comparable)}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    return "".join(out) + "</table>"


def bar_chart(title: str, labels: list[str], values: list[float | None], ticks: list[float | None],
              lines: list[tuple[float, str]], log: bool = False) -> str:
    """A horizontal bar chart as inline SVG: one bar per label, an optional tick per bar
    (e.g. the roofline) and vertical reference lines (e.g. budgets)."""
    known = [v for v in values + ticks + [v for v, _ in lines] if v]
    if not known:
        return f"<p>{escape(title)}: no data</p>"
    left, width, bar, gap = 330, 520, 16, 6
    top = 24
    height = top + len(labels) * (bar + gap) + 12 + 14 * len(lines)  # a row per reference line's label
    low = min(known) / 2 if log else 0.0
    high = max(known) * 1.1

    def x(v: float) -> float:
        if log:
            return left + width * (math.log10(v) - math.log10(low)) / (math.log10(high) - math.log10(low))
        return left + width * v / high

    out = [f"<svg class='chart' role='img' width='{left + width + 160}' height='{height}' "
           f"xmlns='http://www.w3.org/2000/svg'><title>{escape(title)}</title>",
           f"<text x='0' y='14' font-weight='bold'>{escape(title)}</text>"]
    for i, (label, value, tick) in enumerate(zip(labels, values, ticks)):
        y = top + i * (bar + gap)
        out.append(f"<text x='{left - 6}' y='{y + bar - 4}' text-anchor='end'>{escape(label[:48])}</text>")
        if value:
            out.append(f"<rect x='{left}' y='{y}' width='{max(1.0, x(value) - left):.1f}' height='{bar}' "
                       f"fill='{PALETTE[i % len(PALETTE)]}'><title>{escape(label)}: {value:,.1f}</title></rect>"
                       f"<text x='{x(value) + 4:.1f}' y='{y + bar - 4}'>{value:,.1f}</text>")
        if tick:
            out.append(f"<line x1='{x(tick):.1f}' x2='{x(tick):.1f}' y1='{y - 2}' y2='{y + bar + 2}' "
                       "stroke='#111' stroke-width='2'/>")
    bars_end = top + len(labels) * (bar + gap)
    for i, (value, name) in enumerate(lines):
        label_y = bars_end + 12 + 14 * i
        out.append(f"<line x1='{x(value):.1f}' x2='{x(value):.1f}' y1='{top - 4}' y2='{label_y - 10}' "
                   "stroke='#c00' stroke-dasharray='4 3'/>"
                   f"<text x='{x(value) + 2:.1f}' y='{label_y}' fill='#c00'>{escape(name)} {value:g}</text>")
    out.append("</svg>")
    return "".join(out)
