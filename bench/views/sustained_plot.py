"""The sustained picture, per runner: decode rate over time with the device's temperature,
frequency and CPU share on the same time axis; burst, floor and drops marked. PNG bytes.

matplotlib is the `plots` extra; it is imported only when a picture is drawn.
"""

from __future__ import annotations

import io

from bench.analysis.sustained import DROPS, SustainedResult
from bench.errors import BenchError

_DROP_COLOURS = {10: "tab:orange", 25: "tab:red"}


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise BenchError("drawing the sustained plot needs matplotlib", "pip install 'edgebench[plots]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _series(samples: list[dict], key: str) -> tuple[list[float], list[float]]:
    kept = [s for s in samples if s.get(key) is not None]
    return [s["t_s"] for s in kept], [s[key] for s in kept]


def _unavailable(axis, what: str) -> None:
    axis.text(
        0.5,
        0.5,
        f"{what}: not exposed by this device",
        transform=axis.transAxes,
        ha="center",
        va="center",
        color="grey",
    )


def sustained_png(result: SustainedResult) -> bytes:
    """Three panels on one time axis: decode rate; temperature and frequency; CPU shares."""
    plt = _pyplot()
    fig, axes = plt.subplots(3, 1, sharex=True, figsize=(10, 7.5), gridspec_kw={"height_ratios": [3, 2, 1.5]})
    rate_ax, heat_ax, cpu_ax = axes
    _rate(rate_ax, result)
    for axis in axes:
        _drops(axis, result, labelled=axis is rate_ax)
    _rate_labels(rate_ax, result)
    _temperature(heat_ax, result.samples)
    _frequency(heat_ax.twinx(), result.samples)
    _cpu(cpu_ax, result.samples)
    cpu_ax.set_xlim(0, result.duration_s)
    return _png(plt, fig)


def _rate(axis, result: SustainedResult) -> None:
    """Each generation's decode rate, the burst and its drop thresholds, the floor."""
    axis.plot(
        [p.t_s for p in result.points],
        [p.tok_s for p in result.points],
        ".-",
        color="tab:blue",
        lw=0.8,
        ms=3,
        label="decode rate (one point per generation)",
    )
    if result.burst_tok_s:
        axis.hlines(
            result.burst_tok_s,
            0,
            result.window_s,
            colors="tab:green",
            lw=3,
            label=f"burst {result.burst_tok_s:.1f} tok/s (first {result.window_s:g} s)",
        )
        for percent in DROPS:
            axis.axhline(
                result.burst_tok_s * (1 - percent / 100),
                color=_DROP_COLOURS[percent],
                ls=":",
                lw=0.8,
                label=f"{percent}% below burst",
            )
    if result.floor_tok_s:
        axis.hlines(
            result.floor_tok_s,
            0.75 * result.duration_s,
            result.duration_s,
            colors="tab:purple",
            lw=3,
            label=f"floor {result.floor_tok_s:.1f} tok/s (last quarter)",
        )


def _drops(axis, result: SustainedResult, labelled: bool) -> None:
    """A vertical line where the rate dropped and stayed down (named in one panel's legend)."""
    for percent in DROPS:
        when = result.drop_s[percent]
        if when is not None:
            axis.axvline(
                when,
                color=_DROP_COLOURS[percent],
                ls="--",
                lw=1.2,
                label=f"{percent}% drop at {when:.1f} s" if labelled else None,
            )


def _rate_labels(axis, result: SustainedResult) -> None:
    axis.set_ylabel("decode tok/s")
    axis.set_ylim(bottom=0)
    axis.legend(loc="lower left", fontsize=8)
    retained = f", {result.retained_percent:.0f}% retained" if result.retained_percent is not None else ""
    axis.set_title(f"{result.runner}: sustained decode rate{retained}")


def _temperature(axis, samples: list[dict]) -> None:
    t, temp = _series(samples, "temp_c")
    if not temp:
        _unavailable(axis, "temperature")
        axis.set_yticks([])
        return
    axis.plot(t, temp, color="tab:red", lw=1, label="hottest sensor °C")
    t_trip, trip = _series(samples, "temp_trip_c")
    if trip:
        axis.plot(t_trip, trip, color="tab:red", ls=":", lw=1, label="trip point °C")
    axis.set_ylabel("°C")
    axis.legend(loc="upper left", fontsize=8)


def _frequency(axis, samples: list[dict]) -> None:
    """On the temperature panel's second y axis."""
    t, freq = _series(samples, "freq_mhz")
    if not freq:
        axis.text(
            0.5,
            0.25,
            "CPU frequency: not exposed by this device",
            transform=axis.transAxes,
            ha="center",
            va="center",
            color="grey",
        )
        axis.set_yticks([])
        return
    axis.plot(t, freq, color="tab:cyan", lw=1, label="mean core MHz")
    t_max, top = _series(samples, "freq_max_mhz")
    axis.plot(t_max, top, color="tab:cyan", ls=":", lw=1, label="max MHz")
    axis.set_ylabel("MHz")
    axis.legend(loc="upper right", fontsize=8)


def _cpu(axis, samples: list[dict]) -> None:
    for key, label, colour in (
        ("worker_cpu_percent", "runner's CPU %", "tab:blue"),
        ("foreign_cpu_percent", "other programs' CPU %", "tab:grey"),
    ):
        t, share = _series(samples, key)
        if share:
            axis.plot(t, share, color=colour, lw=1, label=label)
    axis.set_ylabel("% of a core")
    axis.set_xlabel("seconds into the sustained run")
    if any(not line.get_label().startswith("_") for line in axis.lines):
        axis.legend(loc="upper left", fontsize=8)


def _png(plt, fig) -> bytes:
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return buffer.getvalue()
