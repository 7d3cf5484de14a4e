"""Speed at context depth: a depth sweep's figures per runtime and depth (one row each), as a
table for every format and, on the HTML page, decode tok/s and TTFT against depth as line
charts. Built from any frame of records that has the sweep's columns (a run's records, or
the matrix's merged results); records without a depth never enter it."""

from __future__ import annotations

from html import escape

import pandas as pd

from bench.analysis import stats
from bench.records import FAILED
from bench.views.table import PALETTE, Table, fixed, number, runner_label, text

# The sweep's figures: record column -> (how the table shows its median, the scale applied)
FIGURES = {
    "prefill_tok_s": (number("prefill tok/s", fixed(1)), 1.0),
    "decode_tok_s": (number("decode tok/s", fixed(1)), 1.0),
    "ttft_ms": (number("TTFT ms", fixed(0)), 1.0),
    "fill_tok_s": (number("fill tok/s", fixed(1)), 1.0),
    "peak_rss_mb": (number("peak RSS MB", fixed(0)), 1.0),
    "kv_bytes": (number("KV MB", fixed(1)), 2**-20),
    "mbu": (number("MBU %", fixed(1)), 100.0),
}
COLUMNS = ["runner", "synthetic", "quantization", "depth", "status", "warmup", "mode", "skip_reason", *FIGURES]


def frame(records: list[dict]) -> pd.DataFrame:
    """One run's records as the frame `summary` reads."""
    return pd.DataFrame.from_records([{c: r.get(c) for c in COLUMNS} for r in records], columns=COLUMNS)


def summary(df: pd.DataFrame) -> pd.DataFrame:
    """One row per (device where the frame says, runner, quantization, depth) of the sweep's
    suite records: the medians of its measured repetitions, how many, and why it was skipped
    where none was measured. Devices are never pooled."""
    key = ["device", "runner", "quantization", "depth"] if "device" in df else ["runner", "quantization", "depth"]
    sweep = df.loc[pd.to_numeric(df["depth"], errors="coerce").notna() & (df["mode"] != "sustained")]
    sweep = sweep.reindex(columns=list(dict.fromkeys([*key, *COLUMNS])))
    if sweep.empty:
        return pd.DataFrame(columns=[*key, "synthetic", "n", "note", *FIGURES])
    sweep = sweep.assign(depth=sweep["depth"].astype(int), **{c: pd.to_numeric(sweep[c]) for c in FIGURES})
    measured = stats.measured(sweep).groupby(key, sort=False)
    medians, counts = measured[list(FIGURES)].median(), measured.size()
    rows = []
    for at, group in sweep.groupby(key, sort=False):
        n = int(counts.get(at, 0))
        skipped = group.loc[group["status"] == "skipped", "skip_reason"].dropna()
        failed = group.loc[group["status"].isin(FAILED), "status"]
        note = "" if n else str(skipped.iloc[0]) if len(skipped) else f"{failed.iloc[0]}" if len(failed) else "–"
        figures = medians.loc[at].to_dict() if n else {}
        rows.append(
            dict(zip(key, at)) | {"synthetic": bool(group["synthetic"].iloc[0]), "n": n, "note": note} | figures
        )
    return pd.DataFrame(rows).sort_values(key, kind="stable", ignore_index=True)


def _label(row: dict, devices: int) -> str:
    """A runtime's label: with its device where the sweep has several."""
    return (f"{row['device']} · " if devices > 1 else "") + runner_label(row["runner"], row["synthetic"])


def table(sweep: pd.DataFrame) -> Table:
    """The sweep's summary as a table: runtime × depth, with each figure's median."""
    columns = (text("runner"), text("quant"), number("depth", fixed(0)), number("n", fixed(0)))
    figures = tuple(shown for shown, _ in FIGURES.values())
    devices = sweep["device"].nunique() if "device" in sweep else 1
    rows = tuple(
        (
            _label(r, devices),
            r["quantization"],
            r["depth"],
            r["n"],
            *(None if pd.isna(r.get(c)) else r[c] * scale for c, (_, scale) in FIGURES.items()),
            r["note"],
        )
        for r in sweep.to_dict("records")
    )
    return Table((*columns, *figures, text("note")), rows)


def markdown(sweep: pd.DataFrame) -> list[str]:
    """The report's section on the sweep (nothing when the records hold none)."""
    from bench.views import table as view

    if sweep.empty:
        return []
    return [
        "",
        "## Speed at depth",
        "",
        "Each depth's request (fixed prefill and decode) on top of that many tokens of history in the "
        "runtime's own cache; fill tok/s is the history's own rate, outside the request; KV MB the cache "
        "at the request's end; MBU against the roofline at that depth.",
        "",
        *view.markdown(table(sweep)),
    ]


def line_chart(sweep: pd.DataFrame, column: str, title: str) -> str:
    """`column`'s median against depth, one line per runtime and quantization, as inline SVG."""
    devices = sweep["device"].nunique() if "device" in sweep else 1
    series = [c for c in ("device", "runner", "quantization") if c in sweep]
    lines = {
        f"{_label(group.iloc[0].to_dict(), devices)} {group['quantization'].iloc[0]}": group.dropna(subset=[column])
        for _, group in sweep.groupby(series, sort=False)
    }
    lines = {label: g for label, g in lines.items() if not g.empty}
    if not lines:
        return f"<p>{escape(title)}: no data</p>"
    left, top, width, height = 60, 28, 520, 220
    depth_max = max(int(g["depth"].max()) for g in lines.values()) or 1
    high = max(float(g[column].max()) for g in lines.values()) * 1.1 or 1.0

    def point(depth: float, value: float) -> str:
        return f"{left + width * depth / depth_max:.1f},{top + height - height * value / high:.1f}"

    out = [
        f"<svg class='chart' role='img' width='{left + width + 220}' height='{top + height + 40}' "
        f"xmlns='http://www.w3.org/2000/svg'><title>{escape(title)}</title>",
        f"<text x='0' y='14' font-weight='bold'>{escape(title)}</text>",
        f"<line x1='{left}' y1='{top + height}' x2='{left + width}' y2='{top + height}' stroke='#889'/>",
        f"<line x1='{left}' y1='{top}' x2='{left}' y2='{top + height}' stroke='#889'/>",
        f"<text x='{left + width / 2}' y='{top + height + 32}' text-anchor='middle'>tokens of history</text>",
        f"<text x='{left - 6}' y='{top + 4}' text-anchor='end'>{high:,.0f}</text>",
    ]
    for depth in sorted({int(d) for g in lines.values() for d in g["depth"]}):
        x = left + width * depth / depth_max
        out.append(f"<text x='{x:.1f}' y='{top + height + 16}' text-anchor='middle'>{depth:,}</text>")
    for i, (label, g) in enumerate(lines.items()):
        colour = PALETTE[i % len(PALETTE)]
        points = " ".join(point(d, v) for d, v in zip(g["depth"], g[column]))
        out.append(f"<polyline fill='none' stroke='{colour}' stroke-width='2' points='{points}'/>")
        for d, v in zip(g["depth"], g[column]):
            x, y = point(d, v).split(",")
            out.append(
                f"<circle cx='{x}' cy='{y}' r='3' fill='{colour}'><title>{escape(label)} at {int(d):,}: "
                f"{v:,.1f}</title></circle>"
            )
        out.append(f"<text x='{left + width + 12}' y='{top + 14 + 16 * i}' fill='{colour}'>{escape(label)}</text>")
    out.append("</svg>")
    return "".join(out)


def html(sweep: pd.DataFrame) -> list[str]:
    """The HTML page's section on the sweep: decode tok/s and TTFT against depth, and the table."""
    from bench.views import table as view

    if sweep.empty:
        return []
    return [
        "<h2>Speed at depth</h2>",
        line_chart(sweep, "decode_tok_s", "decode tok/s against tokens of history (median)"),
        line_chart(sweep, "ttft_ms", "TTFT ms against tokens of history (median)"),
        view.html(table(sweep)),
    ]
