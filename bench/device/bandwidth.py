"""A short memory-copy benchmark: the memory bandwidth that bounds decode speed.

Decoding one token reads every weight once, so a device's sustained copy bandwidth is the
figure that matters (STREAM "copy": each byte copied is read once and written once, so
bytes moved = 2 x buffer size). Decode runs on `threads` cores, and one core alone
rarely saturates the memory bus, so the copy runs on as many threads as the run decodes
with, each on its own slice (numpy releases the GIL while copying). Buffers are far larger
than any CPU cache; the best of several passes is reported, as STREAM does, because slower
passes measure interference (other processes), not the memory.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

SOURCE = "measured (memory copy, best pass)"


@dataclass(frozen=True)
class Bandwidth:
    gbs: float  # best pass, GB/s (10^9 bytes)
    median_gbs: float
    buffer_mb: int
    passes: int
    threads: int


def measure(threads: int = 1, buffer_mb: int = 256, passes: int = 8) -> Bandwidth:
    if threads < 1:
        raise ValueError("threads must be at least 1")
    src = np.ones(buffer_mb * 2**20, dtype=np.uint8)
    dst = np.empty_like(src)
    bounds = np.linspace(0, src.size, threads + 1, dtype=np.int64)
    slices = [slice(a, b) for a, b in zip(bounds, bounds[1:])]
    start_line = threading.Barrier(threads)

    def copy(part: slice) -> tuple[int, int]:
        start_line.wait()  # every thread starts its slice at once: the pass is one copy
        start = time.perf_counter_ns()
        np.copyto(dst[part], src[part])
        return start, time.perf_counter_ns()

    rates = []
    with ThreadPoolExecutor(threads) as pool:
        for number in range(passes + 1):
            spans = list(pool.map(copy, slices))
            elapsed = max(end for _, end in spans) - min(start for start, _ in spans)
            if number:  # the first pass touches the pages: page faults are not bandwidth
                rates.append(2 * src.nbytes / elapsed)  # bytes per ns = GB/s
    rates.sort()
    return Bandwidth(round(rates[-1], 2), round(rates[len(rates) // 2], 2), buffer_mb, passes, threads)
