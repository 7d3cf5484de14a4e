"""The matrix as one self-contained HTML page: tables and inline SVG charts, no network
needed to view it. Every text that comes from records is HTML-escaped."""

from __future__ import annotations

import math
from dataclasses import dataclass
from html import escape

from bench.data.workloads import Workload
from bench.views import conversations, depth
from bench.views import table as view
from bench.views.matrix import Matrix, Row
from bench.views.matrix_tables import LEGEND, cell_table
from bench.views.table import PALETTE, text

CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#1d2433}
h1{font-size:22px}h2{margin-top:32px;border-bottom:2px solid #ccd}h3{margin-bottom:4px}
table{border-collapse:collapse;margin:8px 0 16px}td,th{border:1px solid #dde;padding:3px 8px;text-align:right}
td.t,th.t{text-align:left}.pass{background:#d9f2dc}.marginal{background:#fff0c2}.fail{background:#f8d4d4}
.unchecked{background:#e4e6f2}.why{color:#667;font-style:italic}svg{display:block;margin:8px 0 20px}svg text{font:12px system-ui,sans-serif}
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


def page(matrix: Matrix, workloads: tuple[Workload, ...]) -> str:
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        "<title>edgebench device matrix</title>",
        f"<style>{CSS}</style></head><body>",
        "<h1>edgebench device matrix</h1>",
        f"<p>{matrix.files} results files, {matrix.records:,} records. {escape(LEGEND)}</p>",
    ]
    timed = [w for w in workloads if w.ttft_ms_max and w.id in matrix.workloads]
    for tier in matrix.tiers:
        parts += _tier(matrix, tier, timed)
    parts += depth.html(matrix.depth)
    parts.append("<p id='render-check'>not rendered</p>")
    parts.append(f"<script>{SCRIPT}</script></body></html>")
    return "\n".join(parts)


def _tier(matrix: Matrix, tier: str, timed: list[Workload]) -> list[str]:
    """A tier's charts (decode, TTFT per workload, speed against quality), then a table per device."""
    rows = [r for r in matrix.rows if r.tier == tier]
    parts = [f"<h2>Tier: {escape(tier)}</h2>"]
    labels = [f"{r.device_label} · {r.runner_label} {r.quantization}" for r in rows]
    parts.append(
        bar_chart(
            "decode tok/s of the decode probe (median; | marks the bandwidth roofline: "
            "measured bandwidth, else the datasheet's)",
            labels,
            [r.decode_tok_s for r in rows],
            [r.roofline_tok_s() for r in rows],
        )
    )
    # one bar per row and workload: the workload's own TTFT (its worst prompt) against its own budget
    pairs = [(r, w, r.verdicts[matrix.workloads.index(w.id)].figure("ttft_ms")) for r in rows for w in timed]
    pairs = [(r, w, ttft) for r, w, ttft in pairs if ttft is not None]
    parts.append(
        bar_chart(
            "TTFT ms per workload (median of its worst prompt, log scale; | marks that workload's budget)",
            [f"{r.device_label} · {r.runner_label} {r.quantization} · {w.id}" for r, w, _ in pairs],
            [ttft for _, _, ttft in pairs],
            [w.ttft_ms_max for _, w, _ in pairs],
            log=True,
        )
    )
    parts.append(speed_quality_chart(rows))
    for device in dict.fromkeys(r.device for r in rows):
        mine = [r for r in rows if r.device == device]
        parts.append(
            f"<h3>{escape(mine[0].device_label)}</h3><div class='why'>{escape(matrix.devices.get(device, ''))}</div>"
        )
        parts.append(_table(matrix, mine))
        turns = matrix.turns_on(device)
        if turns:
            parts.append(f"<p>{escape(conversations.CAPTION)}</p>" + view.html(conversations.table_of(turns)))
    return parts


def _verdict(workload: str):
    """A workload's column: the verdict and its headline, coloured by the verdict, its reasons as tooltip."""
    return text(
        workload,
        lambda v: v.label() + (f" ({v.headline()})" if v.worst else ""),
        html_class=lambda v: v.verdict.replace("/", ""),
        html_title=lambda v: "; ".join(v.reasons),
    )


def _table(matrix: Matrix, rows: list[Row]) -> str:
    return view.html(cell_table(matrix, rows, _verdict, text("not comparable")))


def bar_chart(
    title: str, labels: list[str], values: list[float | None], ticks: list[float | None], log: bool = False
) -> str:
    """A horizontal bar chart as inline SVG: one bar per label and an optional tick per bar
    (e.g. the roofline, or a budget)."""
    known = [v for v in values + ticks if v]
    if not known:
        return f"<p>{escape(title)}: no data</p>"
    # Labels are whole (device · runtime quantization · workload): the bars start after the
    # longest, at ~7 px a character of the 12 px font.
    left, width, bar, gap = max(120, 7 * max(map(len, labels), default=0) + 12), 520, 16, 6
    top = 24
    height = top + len(labels) * (bar + gap) + 12
    low = min(known) / 2 if log else 0.0
    high = max(known) * 1.1

    def x(v: float) -> float:
        if log:
            return left + width * (math.log10(v) - math.log10(low)) / (math.log10(high) - math.log10(low))
        return left + width * v / high

    out = [
        f"<svg class='chart' role='img' width='{left + width + 160}' height='{height}' "
        f"xmlns='http://www.w3.org/2000/svg'><title>{escape(title)}</title>",
        f"<text x='0' y='14' font-weight='bold'>{escape(title)}</text>",
    ]
    for i, (label, value, tick) in enumerate(zip(labels, values, ticks)):
        y = top + i * (bar + gap)
        out.append(f"<text x='{left - 6}' y='{y + bar - 4}' text-anchor='end'>{escape(label)}</text>")
        if value:
            out.append(
                f"<rect x='{left}' y='{y}' width='{max(1.0, x(value) - left):.1f}' height='{bar}' "
                f"fill='{PALETTE[i % len(PALETTE)]}'><title>{escape(label)}: {value:,.1f}</title></rect>"
                f"<text x='{x(value) + 4:.1f}' y='{y + bar - 4}'>{value:,.1f}</text>"
            )
        if tick:
            out.append(
                f"<line x1='{x(tick):.1f}' x2='{x(tick):.1f}' y1='{y - 2}' y2='{y + bar + 2}' "
                "stroke='#111' stroke-width='2'/>"
            )
    out.append("</svg>")
    return "".join(out)


KLD_FLOOR = 1e-7  # a KLD of 0 (identical logits) is drawn at the axis' left end


@dataclass(frozen=True)
class _Plane:
    """The speed-quality chart's area and scales: KLD on a log x axis, decode tok/s on y."""

    low: float  # the x axis' ends, powers of ten
    high: float
    fastest: float  # the y axis' top
    left: int = 70
    top: int = 30
    width: int = 560
    height: int = 300

    @classmethod
    def fitting(cls, klds: list[float], speeds: list[float]) -> _Plane:
        klds = [max(k, KLD_FLOOR) for k in klds]
        return cls(
            10 ** math.floor(math.log10(min(klds))), 10 ** math.ceil(math.log10(max(klds)) + 1e-9), max(speeds) * 1.15
        )

    def x(self, kld: float) -> float:
        return self.left + self.width * (math.log10(max(kld, KLD_FLOOR)) - math.log10(self.low)) / (
            math.log10(self.high) - math.log10(self.low)
        )

    def y(self, tok_s: float) -> float:
        return self.top + self.height * (1 - tok_s / self.fastest)


def _axes(plane: _Plane) -> list[str]:
    """Both axes, a tick per power of ten of KLD, three speed labels, the axis titles."""
    left, top, width, height = plane.left, plane.top, plane.width, plane.height
    out = [
        f"<line x1='{left}' x2='{left + width}' y1='{top + height}' y2='{top + height}' stroke='#111'/>",
        f"<line x1='{left}' x2='{left}' y1='{top}' y2='{top + height}' stroke='#111'/>",
    ]
    for power in range(round(math.log10(plane.low)), round(math.log10(plane.high)) + 1):
        tick = plane.x(10.0**power)
        out.append(
            f"<line x1='{tick:.1f}' x2='{tick:.1f}' y1='{top + height}' y2='{top + height + 5}' stroke='#111'/>"
            f"<text x='{tick:.1f}' y='{top + height + 18}' text-anchor='middle'>1e{power}</text>"
        )
    for fraction in (0.0, 0.5, 1.0):
        value = plane.fastest / 1.15 * fraction
        out.append(f"<text x='{left - 6}' y='{plane.y(value) + 4:.1f}' text-anchor='end'>{value:,.0f}</text>")
    out.append(
        f"<text x='{left + width / 2}' y='{top + height + 40}' text-anchor='middle'>mean KL divergence from "
        "the fp32 reference (nats, log scale)</text>"
        f"<text x='14' y='{top + height / 2}' text-anchor='middle' "
        f"transform='rotate(-90 14 {top + height / 2})'>decode tok/s</text>"
    )
    return out


def speed_quality_chart(rows: list[Row]) -> str:
    """Decode tok/s against mean KL divergence from the fp32 reference (log scale), one
    point per row with both; rows of runtimes without logits are named below it. Empty
    when no row has both figures."""
    points = [
        (r, r.quality.kld_mean, r.decode_tok_s)
        for r in rows
        if r.quality and r.quality.figure("kld_mean") is not None and r.decode_tok_s
    ]
    if not points:
        return ""
    title = "decode tok/s against quality: mean KL divergence from the fp32 reference (left is closer to it)"
    plane = _Plane.fitting([k for _, k, _ in points], [d for _, _, d in points])
    out = [
        f"<svg class='chart' role='img' width='{plane.left + plane.width + 220}' "
        f"height='{plane.top + plane.height + 60}' xmlns='http://www.w3.org/2000/svg'><title>{escape(title)}</title>",
        f"<text x='0' y='14' font-weight='bold'>{escape(title)}</text>",
        *_axes(plane),
    ]
    several_devices = len({r.device for r, _, _ in points}) > 1
    for i, (r, kld, tok_s) in enumerate(points):
        label = f"{r.device_label} · {r.runner_label} {r.quantization}"
        shown = label if several_devices else f"{r.runner_label} {r.quantization}"
        out.append(
            f"<circle cx='{plane.x(kld):.1f}' cy='{plane.y(tok_s):.1f}' r='5' fill='{PALETTE[i % len(PALETTE)]}'>"
            f"<title>{escape(label)}: KLD {kld:.3g}, {tok_s:,.1f} tok/s</title></circle>"
            f"<text x='{plane.x(kld) + 8:.1f}' y='{plane.y(tok_s) + 4:.1f}'>{escape(shown[:48])}</text>"
        )
    out.append("</svg>")
    greedy_only = [r for r in rows if r.quality and r.quality.figure("kld_mean") is None and r.quality.status == "ok"]
    if greedy_only:
        names = ", ".join(f"{r.runner_label} {r.quantization} ({r.quality.label()})" for r in greedy_only)
        out.append(f"<p>Not on the chart, no logits to compare: {escape(names)}</p>")
    return "".join(out)
