"""The clock. Wraps a runner's token stream into a Measurement.

t0 is taken immediately before the request is handed to the runner's generator, so
templating, tokenization and prefill all count toward the time to first token. Each token
gets a `perf_counter_ns` stamp as it arrives. Every figure derives from those stamps.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

from runners.base import TokenEvent

Clock = Callable[[], int]


@dataclass(frozen=True)
class Measurement:
    prompt_tokens: int
    new_tokens: int
    ttft_ms: float | None
    prefill_tok_s: float | None
    decode_tok_s: float | None
    itl_p50_ms: float | None
    itl_p90_ms: float | None
    itl_p99_ms: float | None
    e2e_ms: float
    token_times_ns: tuple[int, ...]  # offsets from t0
    token_ids: tuple[int, ...]
    output_text: str


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (numpy's default), q in [0, 100]."""
    if not values:
        raise ValueError("percentile of nothing")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def collect(events: Iterable[TokenEvent], clock: Clock = time.perf_counter_ns):
    """Drain the token stream, stamping each event. Returns (t0, t_end, stamps, events).

    `events` must be a not-yet-started generator: its work begins at the first next().
    """
    stamps: list[int] = []
    received: list[TokenEvent] = []
    t0 = clock()
    for event in events:
        stamps.append(clock())
        received.append(event)
    return t0, clock(), stamps, received


def measure(t0: int, t_end: int, stamps: Sequence[int], events: Sequence[TokenEvent],
            prompt_tokens: int) -> Measurement:
    """The figures of one generation, from its raw stamps (all in ns)."""
    ms = 1e-6
    n = len(stamps)
    ttft_ms = (stamps[0] - t0) * ms if n else None
    gaps = [(b - a) * ms for a, b in zip(stamps, stamps[1:])]
    decode_span_s = (stamps[-1] - stamps[0]) * 1e-9 if n > 1 else 0.0
    return Measurement(
        prompt_tokens=prompt_tokens,
        new_tokens=n,
        ttft_ms=ttft_ms,
        prefill_tok_s=prompt_tokens / (ttft_ms / 1000) if ttft_ms else None,
        decode_tok_s=(n - 1) / decode_span_s if decode_span_s > 0 else None,
        itl_p50_ms=percentile(gaps, 50) if gaps else None,
        itl_p90_ms=percentile(gaps, 90) if gaps else None,
        itl_p99_ms=percentile(gaps, 99) if gaps else None,
        e2e_ms=(t_end - t0) * ms,
        token_times_ns=tuple(s - t0 for s in stamps),
        token_ids=tuple(e.token_id for e in events),
        output_text="".join(e.text for e in events),
    )
