"""Samples a worker process from the parent: resident memory and CPU use.

A background thread polls psutil every `interval_s` and, when a memory limit is set,
calls `on_exceed` (the orchestrator kills the worker) the first time RSS crosses it; `window()` returns the peak RSS and
the mean CPU share since the previous call, so each measurement gets its own figures.
"""
from __future__ import annotations

import threading
from typing import Callable

import psutil


class ProcessMonitor:
    def __init__(self, pid: int, interval_s: float = 0.02, limit_mb: float | None = None,
                 on_exceed: Callable[[], None] = lambda: None) -> None:
        self._process = psutil.Process(pid)
        self._limit = limit_mb * 2**20 if limit_mb else None
        self._on_exceed = on_exceed
        self.exceeded_mb: float | None = None  # the RSS that crossed the limit, once it did
        self._interval = interval_s
        self._lock = threading.Lock()
        self._peak_rss = 0
        self._stop = threading.Event()
        self._cpu_mark = self._cpu_times()
        self._wall_mark = psutil.time.monotonic()
        self._thread = threading.Thread(target=self._loop, name="edgebench-monitor", daemon=True)
        self._thread.start()

    def _cpu_times(self) -> float:
        try:
            t = self._process.cpu_times()
            return t.user + t.system
        except psutil.Error:
            return 0.0

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                rss = self._process.memory_info().rss
            except psutil.Error:
                return
            with self._lock:
                self._peak_rss = max(self._peak_rss, rss)
            if self._limit and rss > self._limit and self.exceeded_mb is None:
                self.exceeded_mb = rss / 2**20
                self._on_exceed()

    def window(self) -> tuple[float | None, float | None]:
        """(peak RSS in MB, CPU percent of one core) since the last call; resets both."""
        try:
            rss = self._process.memory_info().rss
        except psutil.Error:
            rss = 0
        cpu, wall = self._cpu_times(), psutil.time.monotonic()
        with self._lock:
            peak = max(self._peak_rss, rss)
            self._peak_rss = rss
        span = wall - self._wall_mark
        share = 100 * (cpu - self._cpu_mark) / span if span > 0 and cpu else None
        self._cpu_mark, self._wall_mark = cpu, wall
        return (round(peak / 2**20, 1) if peak else None), (round(share, 1) if share is not None else None)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=1)
