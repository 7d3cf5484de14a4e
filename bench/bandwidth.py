"""A short memory-copy benchmark: the memory bandwidth that bounds decode speed.

Decoding one token reads every weight once, so a device's sustained copy bandwidth is the
figure that matters (STREAM "copy": each byte copied is read once and written once, so
bytes moved = 2 x buffer size). Buffers are far larger than any CPU cache; the best of
several passes is reported, as STREAM does, because slower passes measure interference
(other processes), not the memory.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Bandwidth:
    gbs: float  # best pass, GB/s (10^9 bytes)
    median_gbs: float
    buffer_mb: int
    passes: int


def measure(buffer_mb: int = 256, passes: int = 8) -> Bandwidth:
    src = np.ones(buffer_mb * 2**20, dtype=np.uint8)
    dst = np.empty_like(src)
    np.copyto(dst, src)  # first touch: page faults are not bandwidth
    rates = []
    for _ in range(passes):
        start = time.perf_counter_ns()
        np.copyto(dst, src)
        elapsed = time.perf_counter_ns() - start
        rates.append(2 * src.nbytes / elapsed)  # bytes per ns = GB/s
    rates.sort()
    return Bandwidth(round(rates[-1], 2), round(rates[len(rates) // 2], 2), buffer_mb, passes)
