"""Samples from the parent: a worker's memory and CPU use, and the device's state.

ProcessMonitor polls the worker's RSS and its threads' CPU times every `interval_s` and,
when a memory limit is set, calls `on_exceed` (the supervisor kills the worker) the first
time RSS crosses it; `window()` returns the peak RSS, the mean CPU share and the busy
threads since the previous call, so each measurement gets its own figures. DeviceMonitor takes the slower time series of temperature,
frequency (of every core, and of the cores the worker is running on), the OS's throttle
counters, power and load.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import Callable, NamedTuple

import psutil

from bench.device.sensors import DeviceReader, energy_delta_j


def _process_cpu_clock(pid: int) -> int:
    """Linux's clockid for another process's CPU time: what clock_getcpuclockid(3) returns
    (the pid, bit-inverted, shifted past the clock type CPUCLOCK_SCHED = 2)."""
    return (~pid << 3) | 2


class Window(NamedTuple):
    """What a worker did between two calls of ProcessMonitor.window."""

    peak_rss_mb: float | None
    cpu_percent: float | None  # CPU time of all its threads over the wall time, in % of one core
    busy_threads: int | None  # threads that ran at least BUSY_SHARE of its busiest thread's CPU time


# A thread counts as busy when it ran at least this share of the busiest thread's CPU time: a
# runtime's compute threads share the work (LiteRT-LM's second XNNPACK thread ran ~25% of its
# engine thread's time here), a waiting or bookkeeping thread is far below (~1% here).
BUSY_SHARE = 0.1


def thread_cpu_ns(pid: int) -> dict[int, int]:
    """Each thread's CPU time so far in nanoseconds (Linux's /proc/PID/task/TID/schedstat):
    counts the scheduler keeps, so another busy program does not change them; {} elsewhere."""
    found = {}
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                found[int(tid)] = int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            continue
    return found


def busy_threads(before: dict[int, int], after: dict[int, int]) -> int | None:
    """How many threads ran at least BUSY_SHARE of the busiest one's CPU time between two readings."""
    ran = [ns - before.get(tid, 0) for tid, ns in after.items()]
    if not ran or max(ran) <= 0:
        return None
    return sum(r >= BUSY_SHARE * max(ran) for r in ran)


class ProcessMonitor:
    def __init__(
        self,
        pid: int,
        interval_s: float = 0.02,
        limit_mb: float | None = None,
        on_exceed: Callable[[], None] = lambda: None,
    ) -> None:
        self._process = psutil.Process(pid)
        self._limit = limit_mb * 2**20 if limit_mb else None
        self._on_exceed = on_exceed
        self.exceeded_mb: float | None = None  # the RSS that crossed the limit, once it did
        self._interval = interval_s
        self._lock = threading.Lock()
        self._peak_rss = 0
        self._stop = threading.Event()
        self._cpu_mark = self.cpu_seconds()
        self._wall_mark = time.monotonic()
        self._threads_mark = thread_cpu_ns(pid)
        self._threads_seen: dict[int, int] = {}  # each thread's latest count this window, kept past its exit
        self._thread = threading.Thread(target=self._loop, name="edgebench-monitor", daemon=True)
        self._thread.start()

    def cpu_seconds(self) -> float:
        """The process's CPU time so far (all threads, user + system), in seconds."""
        # On Linux the kernel's CPU clock of the whole process (every thread, exited ones too)
        # counts nanoseconds; psutil's user+system counts 10 ms ticks, which over a 100 ms
        # generation is up to ±20% of a core.
        if sys.platform == "linux":
            try:
                return time.clock_gettime(_process_cpu_clock(self._process.pid))
            except OSError:
                return 0.0
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
            threads = thread_cpu_ns(self._process.pid)
            with self._lock:
                self._peak_rss = max(self._peak_rss, rss)
                self._threads_seen.update(threads)
            if self._limit and rss > self._limit and self.exceeded_mb is None:
                self.exceeded_mb = rss / 2**20
                self._on_exceed()

    def window(self) -> Window:
        """Peak RSS, CPU share and busy threads since the last call; resets them."""
        try:
            rss = self._process.memory_info().rss
        except psutil.Error:
            rss = 0
        cpu, wall = self.cpu_seconds(), time.monotonic()
        threads = thread_cpu_ns(self._process.pid)
        with self._lock:
            peak = max(self._peak_rss, rss)
            self._peak_rss = rss
            # A runtime may end its threads with the generation (LiteRT-LM does, when its
            # session closes) before this reading: they count with what the last poll saw.
            ran = {**self._threads_seen, **threads}
            self._threads_seen = {}
        span = wall - self._wall_mark
        share = 100 * (cpu - self._cpu_mark) / span if span > 0 and cpu else None
        busy = busy_threads(self._threads_mark, ran)
        self._cpu_mark, self._wall_mark, self._threads_mark = cpu, wall, threads
        return Window(round(peak / 2**20, 1) if peak else None, round(share, 1) if share is not None else None, busy)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=1)


class DeviceMonitor:
    """Samples the device (bench.device.sensors) and the worker at `interval_s` (≥ 1 Hz) from the
    parent. Each sample is a flat dict naming its sources; `on_sample` sees every one, and
    `latest()` is the state a measurement starts in."""

    def __init__(
        self,
        pid: int,
        reader: DeviceReader,
        interval_s: float = 0.5,
        origin: float | None = None,
        on_sample: Callable[[dict], None] = lambda sample: None,
    ) -> None:
        self._process = psutil.Process(pid)
        self._reader = reader
        self._interval = interval_s
        self._origin = time.monotonic() if origin is None else origin
        self._on_sample = on_sample
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._marks = self._cpu_marks()
        self._energy = reader.energy()
        self._thread_ticks: dict[int, int] = {}
        self._latest = self.sample()
        on_sample(self._latest)
        self._thread = threading.Thread(target=self._loop, name="edgebench-device-monitor", daemon=True)
        self._thread.start()

    def _cpu_marks(self) -> tuple[float, float, float | None]:
        """(now, seconds the whole machine was busy, seconds the worker used)."""
        times = psutil.cpu_times()
        # guest time is already inside user and nice; steal is the hypervisor's, not a program's
        busy = sum(getattr(times, name, 0.0) for name in ("user", "nice", "system", "irq", "softirq"))
        try:
            worker = self._process.cpu_times()
            worker_s = worker.user + worker.system + worker.children_user + worker.children_system
        except psutil.Error:
            worker_s = None
        return time.monotonic(), busy, worker_s

    def _worker_cpus(self) -> list[int]:
        """The CPUs the worker's threads ran on since the previous sample (threads that used
        CPU time meanwhile; at the first sample, every thread that has used any)."""
        threads = self._reader.thread_cpus(self._process.pid)
        busy = {t.cpu for t in threads if t.cpu_ticks > self._thread_ticks.get(t.tid, 0)}
        self._thread_ticks = {t.tid: t.cpu_ticks for t in threads}
        return sorted(busy)

    def sample(self) -> dict:
        """The device's and the worker's state now (the loop calls it every interval)."""
        now, busy, worker = marks = self._cpu_marks()
        was, was_busy, was_worker = self._marks
        self._marks = marks
        span = now - was
        worker_share = 100 * (worker - was_worker) / span if span > 0 and None not in (worker, was_worker) else None
        machine_share = 100 * (busy - was_busy) / span if span > 0 else None
        try:
            rss = self._process.memory_info().rss
        except psutil.Error:
            rss = 0
        rss_mb = round(rss / 2**20, 1) if rss else None  # an exited, unreaped worker (a zombie) reads 0
        temp, freq, energy = self._reader.temperature(), self._reader.frequency(), self._reader.energy()
        throttle = self._reader.throttle_counts()
        worker_cpus = self._worker_cpus()
        power_w = None
        if energy and self._energy and span > 0:
            joules = energy_delta_j(self._energy, energy)
            power_w = round(joules / span, 3) if joules is not None else None
        self._energy = energy
        sample = {
            "t_s": round(now - self._origin, 3),
            "temp_c": temp.celsius if temp else None,
            "temp_trip_c": temp.trip_celsius if temp else None,
            "temp_source": temp.source if temp else None,
            "freq_mhz": round(freq.current_mhz, 1) if freq else None,
            "freq_max_mhz": round(freq.max_mhz, 1) if freq else None,
            "freq_source": freq.source if freq else None,
            # CPU number (as text: JSON keys) -> MHz, for the CPUs the worker ran on since the last sample
            "worker_cpu_mhz": {str(c): round(freq.per_core_mhz[c], 1) for c in worker_cpus if c in freq.per_core_mhz}
            if freq and worker_cpus
            else None,
            "throttle_core_events": throttle.core_events if throttle else None,
            "throttle_package_events": throttle.package_events if throttle else None,
            "throttle_source": throttle.source if throttle else None,
            "power_w": power_w,
            "power_source": energy.source if energy else None,
            "load_1m": self._reader.load_1m(),
            "load_source": "loadavg",
            "worker_rss_mb": rss_mb,
            "worker_cpu_percent": round(worker_share, 1) if worker_share is not None else None,
            # CPU time spent by everything but the worker, in percent of one core
            "foreign_cpu_percent": (
                round(max(0.0, machine_share - worker_share), 1)
                if machine_share is not None and worker_share is not None
                else None
            ),
        }
        return sample

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            sample = self.sample()
            with self._lock:
                self._latest = sample
            self._on_sample(sample)

    def latest(self) -> dict:
        with self._lock:
            return dict(self._latest)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
