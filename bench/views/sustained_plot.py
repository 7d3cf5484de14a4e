"""The sustained picture, per runner: decode rate over time with the device's temperature,
frequency and CPU share on the same time axis; burst, floor and drops marked. PNG bytes.

matplotlib is the `plots` extra; it is imported only when a picture is drawn.
"""
from __future__ import annotations

import io

from bench.errors import BenchError
from bench.analysis.sustained import DROPS, SustainedResult

_DROP_COLOURS = {10: "tab:orange", 25: "tab:red"}


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise BenchError("drawing the sustained plot needs matplotlib",
                         "pip install 'edgebench[plots]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _series(samples: list[dict], key: str) -> tuple[list[float], list[float]]:
    kept = [s for s in samples if s.get(key) is not None]
    return [s["t_s"] for s in kept], [s[key] for s in kept]


def _unavailable(axis, what: str) -> None:
    axis.text(0.5, 0.5, f"{what}: not exposed by this device", transform=axis.transAxes,
              ha="center", va="center", color="grey")


def sustained_png(result: SustainedResult) -> bytes:
    plt = _pyplot()
    fig, (rate_ax, heat_ax, cpu_ax) = plt.subplots(3, 1, sharex=True, figsize=(10, 7.5),
                                                   gridspec_kw={"height_ratios": [3, 2, 1.5]})
    span = (0, result.duration_s)
    times = [p.t_s for p in result.points]
    rate_ax.plot(times, [p.tok_s for p in result.points], ".-", color="tab:blue", lw=0.8, ms=3,
                 label="decode rate (one point per generation)")
    if result.burst_tok_s:
        rate_ax.hlines(result.burst_tok_s, 0, result.window_s, colors="tab:green", lw=3,
                       label=f"burst {result.burst_tok_s:.1f} tok/s (first {result.window_s:g} s)")
        for percent in DROPS:
            rate_ax.axhline(result.burst_tok_s * (1 - percent / 100), color=_DROP_COLOURS[percent], ls=":", lw=0.8,
                            label=f"{percent}% below burst")
    if result.floor_tok_s:
        rate_ax.hlines(result.floor_tok_s, 0.75 * result.duration_s, result.duration_s, colors="tab:purple", lw=3,
                       label=f"floor {result.floor_tok_s:.1f} tok/s (last quarter)")
    for axis in (rate_ax, heat_ax, cpu_ax):
        for percent in DROPS:
            when = result.drop_s[percent]
            if when is not None:
                axis.axvline(when, color=_DROP_COLOURS[percent], ls="--", lw=1.2,
                             label=f"{percent}% drop at {when:.1f} s" if axis is rate_ax else None)
    rate_ax.set_ylabel("decode tok/s")
    rate_ax.set_ylim(bottom=0)
    rate_ax.legend(loc="lower left", fontsize=8)
    retained = f", {result.retained_percent:.0f}% retained" if result.retained_percent is not None else ""
    rate_ax.set_title(f"{result.runner}: sustained decode rate{retained}")

    t, temp = _series(result.samples, "temp_c")
    if temp:
        heat_ax.plot(t, temp, color="tab:red", lw=1, label="hottest sensor °C")
        t_trip, trip = _series(result.samples, "temp_trip_c")
        if trip:
            heat_ax.plot(t_trip, trip, color="tab:red", ls=":", lw=1, label="trip point °C")
        heat_ax.set_ylabel("°C")
        heat_ax.legend(loc="upper left", fontsize=8)
    else:
        _unavailable(heat_ax, "temperature")
        heat_ax.set_yticks([])
    freq_ax = heat_ax.twinx()
    t, freq = _series(result.samples, "freq_mhz")
    if freq:
        freq_ax.plot(t, freq, color="tab:cyan", lw=1, label="mean core MHz")
        t_max, top = _series(result.samples, "freq_max_mhz")
        freq_ax.plot(t_max, top, color="tab:cyan", ls=":", lw=1, label="max MHz")
        freq_ax.set_ylabel("MHz")
        freq_ax.legend(loc="upper right", fontsize=8)
    else:
        freq_ax.text(0.5, 0.25, "CPU frequency: not exposed by this device", transform=freq_ax.transAxes,
                     ha="center", va="center", color="grey")
        freq_ax.set_yticks([])

    for key, label, colour in (("worker_cpu_percent", "runner's CPU %", "tab:blue"),
                               ("foreign_cpu_percent", "other programs' CPU %", "tab:grey")):
        t, share = _series(result.samples, key)
        if share:
            cpu_ax.plot(t, share, color=colour, lw=1, label=label)
    cpu_ax.set_ylabel("% of a core")
    cpu_ax.set_xlabel("seconds into the sustained run")
    if any(not line.get_label().startswith("_") for line in cpu_ax.lines):
        cpu_ax.legend(loc="upper left", fontsize=8)
    cpu_ax.set_xlim(*span)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return buffer.getvalue()
