"""What a sustained run shows: how fast a runner starts, where it settles, when it drops.

Input: one runner's sustained records (each generation's start within the loop,
`elapsed_s`, and its decode rate) and the device samples taken meanwhile. The rules:
- burst: the median decode rate of the generations that start in the first window;
- floor: the median decode rate of the generations that start in the last quarter;
- a drop of p%: the start of the first generation below (1 - p) x burst such that every
  generation starting within one window after it is below too (it stays there);
- throttling evidence: device samples within a window of a drop showing the cores the
  worker ran on well below their own frequency during the first window (never a core's
  or another core's maximum: idle cores, little cores and all-core turbo sit below it on
  a healthy machine), the OS's throttle counters risen since the run began, a
  temperature near its zone's trip point, or other programs' CPU load;
- energy per token: only when every sample of the loop has a power reading.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

from bench.device.hygiene import FOREIGN_LOAD_PERCENT
from bench.records import is_measured

DROPS = (10, 25)  # percent below burst
NEAR_TRIP_C = 5.0  # a temperature this close to its trip point counts as evidence
FREQ_BELOW = 0.9  # a worker's core under 90% of its own first-window frequency counts as evidence

SIGNALS = {"temp_c": "temperature", "freq_mhz": "CPU frequency", "power_w": "power"}


@dataclass(frozen=True)
class Point:
    t_s: float  # start of the generation within the loop
    tok_s: float
    tokens: int


@dataclass
class SustainedResult:
    runner: str
    duration_s: float
    window_s: float
    generations: int
    burst_tok_s: float | None
    floor_tok_s: float | None
    retained_percent: float | None
    drop_s: dict[int, float | None]  # percent -> seconds until the drop, None: never
    evidence: dict[int, list[str]]  # percent -> what the device showed around that drop
    energy_j_per_token: float | None
    missing_signals: list[str]
    points: list[Point] = field(repr=False, default_factory=list)
    samples: list[dict] = field(repr=False, default_factory=list)


def points_of(records: list[dict]) -> list[Point]:
    """The measured sustained generations with a decode rate, in loop order."""
    usable = [
        r
        for r in records
        if r.get("mode") == "sustained" and is_measured(r) and r.get("elapsed_s") is not None and r.get("decode_tok_s")
    ]
    return sorted((Point(r["elapsed_s"], r["decode_tok_s"], r["new_tokens"] or 0) for r in usable), key=lambda p: p.t_s)


def drop_time(points: list[Point], threshold: float, window_s: float) -> float | None:
    """Start of the first generation below `threshold` that stays below for a window."""
    for i, p in enumerate(points):
        if p.tok_s >= threshold:
            continue
        following = [q for q in points[i:] if q.t_s <= p.t_s + window_s]
        covered = points[-1].t_s >= p.t_s + window_s
        if covered and all(q.tok_s < threshold for q in following):
            return p.t_s
    return None


def first_window_mhz(samples: list[dict], window_s: float) -> dict[str, float]:
    """Each CPU's median frequency over the first window's samples in which the worker ran on it."""
    seen: dict[str, list[float]] = {}
    for s in samples:
        if 0 <= s["t_s"] < window_s:
            for cpu, mhz in (s.get("worker_cpu_mhz") or {}).items():
                seen.setdefault(cpu, []).append(mhz)
    return {cpu: statistics.median(values) for cpu, values in seen.items()}


def _slower_cores(near: list[dict], baseline: dict[str, float]) -> str | None:
    """The worker's core that fell furthest below its own first-window frequency, in words."""
    drops = [
        (mhz / baseline[cpu], cpu, mhz, s["freq_source"])
        for s in near
        for cpu, mhz in (s.get("worker_cpu_mhz") or {}).items()
        if baseline.get(cpu)
    ]
    ratio, cpu, mhz, source = min(drops, default=(1.0, None, None, None))
    if ratio >= FREQ_BELOW:
        return None
    return f"worker's CPU {cpu} at {mhz:.0f} MHz, {baseline[cpu]:.0f} MHz in the first window ({source})"


def _throttle_counts_rose(samples: list[dict], near: list[dict]) -> str | None:
    """The OS's throttle counters near the drop against their value when the run began."""
    counted = [s for s in samples if s.get("throttle_source")]
    later = [s for s in near if s.get("throttle_source")]
    if not counted or not later:
        return None
    start, end = min(counted, key=lambda s: s["t_s"]), max(later, key=lambda s: s["t_s"])
    rose = {kind: end[f"throttle_{kind}_events"] - start[f"throttle_{kind}_events"] for kind in ("core", "package")}
    if not any(n > 0 for n in rose.values()):
        return None
    return (
        f"OS throttle counters rose since the run began: core +{rose['core']}, package +{rose['package']} "
        f"({end['throttle_source']})"
    )


def evidence_near(samples: list[dict], t_s: float, window_s: float) -> list[str]:
    near = [s for s in samples if abs(s["t_s"] - t_s) <= window_s]
    found = [
        line
        for line in (_slower_cores(near, first_window_mhz(samples, window_s)), _throttle_counts_rose(samples, near))
        if line
    ]
    hot = [
        s
        for s in near
        if s.get("temp_c") is not None and s.get("temp_trip_c") and s["temp_c"] >= s["temp_trip_c"] - NEAR_TRIP_C
    ]
    if hot:
        top = max(hot, key=lambda s: s["temp_c"])
        found.append(f"{top['temp_c']:.0f} °C, trip point {top['temp_trip_c']:.0f} °C ({top['temp_source']})")
    busy = [s for s in near if (s.get("foreign_cpu_percent") or 0) >= FOREIGN_LOAD_PERCENT]
    if busy:
        top = max(busy, key=lambda s: s["foreign_cpu_percent"])
        found.append(f"other programs using {top['foreign_cpu_percent']:.0f}% of a core")
    return found


def energy_per_token(points: list[Point], samples: list[dict], duration_s: float) -> float | None:
    loop = sorted((s for s in samples if 0 <= s["t_s"] <= duration_s), key=lambda s: s["t_s"])
    if len(loop) < 2 or any(s.get("power_w") is None for s in loop):
        return None
    # each sample's power covers the span since the previous one
    joules = sum(b["power_w"] * (b["t_s"] - a["t_s"]) for a, b in zip(loop, loop[1:]))
    tokens = sum(p.tokens for p in points if loop[0]["t_s"] <= p.t_s <= loop[-1]["t_s"])
    return joules / tokens if tokens else None


def missing_signals(samples: list[dict]) -> list[str]:
    return [name for key, name in SIGNALS.items() if not any(s.get(key) is not None for s in samples)]


def analyse(
    runner: str, records: list[dict], samples: list[dict], duration_s: float, window_s: float
) -> SustainedResult:
    points = points_of(records)
    first = [p.tok_s for p in points if p.t_s < window_s]
    last = [p.tok_s for p in points if p.t_s >= 0.75 * duration_s]
    burst = statistics.median(first) if first else None
    floor = statistics.median(last) if last else None
    drops, evidence = {}, {}
    for percent in DROPS:
        drops[percent] = drop_time(points, burst * (1 - percent / 100), window_s) if burst else None
        evidence[percent] = evidence_near(samples, drops[percent], window_s) if drops[percent] is not None else []
    return SustainedResult(
        runner=runner,
        duration_s=duration_s,
        window_s=window_s,
        generations=len(points),
        burst_tok_s=burst,
        floor_tok_s=floor,
        retained_percent=100 * floor / burst if burst and floor is not None else None,
        drop_s=drops,
        evidence=evidence,
        energy_j_per_token=energy_per_token(points, samples, duration_s),
        missing_signals=missing_signals(samples),
        points=points,
        samples=samples,
    )


def summary_lines(result: SustainedResult) -> list[str]:
    """The figures in words, for the terminal and the reports."""

    def rate(v):
        return f"{v:.1f} tok/s" if v is not None else "n/a"

    lines = [
        f"{result.runner}: {result.generations} generations in {result.duration_s:g} s "
        f"(windows of {result.window_s:g} s)",
        f"burst {rate(result.burst_tok_s)}, sustained floor {rate(result.floor_tok_s)}"
        + (f", {result.retained_percent:.1f}% of burst retained" if result.retained_percent is not None else ""),
    ]
    for percent in DROPS:
        when = result.drop_s[percent]
        if when is None:
            lines.append(f"never stayed {percent}% below burst")
        else:
            seen = "; ".join(result.evidence[percent]) or "no throttling signal seen"
            lines.append(f"dropped {percent}% below burst at {when:.1f} s ({seen})")
    if result.energy_j_per_token is not None:
        lines.append(f"energy {result.energy_j_per_token * 1000:.2f} mJ/token")
    if result.missing_signals:
        lines.append(
            "not exposed by this device: " + ", ".join(result.missing_signals) + " (figures come from throughput alone)"
        )
    return lines
