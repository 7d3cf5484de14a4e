"""The worker's CPU share is read precisely enough for one short generation.

A tiny model decodes 256 tokens in ~0.1 s; at psutil's 10 ms ticks that window's CPU share
would be off by up to a fifth of a core, so the monitor must read the kernel's own CPU clock.
"""

from __future__ import annotations

import subprocess
import sys
import time

from bench.device.monitor import ProcessMonitor, thread_cpu_ns

# The child burns 15.5 ms of CPU (a figure between two 10 ms ticks), says how much its own
# clock counted, then waits to be read.
SPIN = """import sys, time
while time.process_time() < 0.0155: pass
print(time.process_time(), flush=True)
sys.stdin.readline()
"""


def test_the_worker_cpu_time_is_read_to_the_millisecond():
    child = subprocess.Popen([sys.executable, "-c", SPIN], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        monitor = ProcessMonitor(child.pid, interval_s=3600)
        own = float(child.stdout.readline())
        seen = monitor.cpu_seconds()
        monitor.stop()
    finally:
        child.communicate("\n")
    assert abs(seen - own) < 0.002, (seen, own)


# N threads spin, each until it ran `seconds` of CPU of its own (30: until killed); the main
# thread says "done" when all of them ended, then waits to be killed.
SPINNERS = """
import sys, threading, time
def spin():
    while time.thread_time() < {seconds}:
        pass
threads = [threading.Thread(target=spin) for _ in range({n})]
print("spinning", flush=True)
for t in threads:
    t.start()
for t in threads:
    t.join()
print("done", flush=True)
sys.stdin.readline()
"""


def _busy_threads_of(n: int, until_they_end: bool = False) -> int | None:
    script = SPINNERS.format(n=n, seconds=0.3 if until_they_end else 30)
    child = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        child.stdout.readline()
        monitor = ProcessMonitor(child.pid)
        monitor.window()
        if until_they_end:
            child.stdout.readline()
        else:
            while sum(thread_cpu_ns(child.pid).values()) < 3e8:  # 0.3 s of CPU, however busy the machine is
                time.sleep(0.05)
        found = monitor.window().busy_threads
        monitor.stop()
        return found
    finally:
        child.kill()
        child.wait()


def test_busy_threads_counts_the_threads_that_did_the_work_from_the_schedulers_counts():
    # Python threads take turns on one core (the GIL): each still runs its share, so counts
    # say what a CPU share of wall time cannot on a busy machine: how many threads worked.
    assert _busy_threads_of(1) == 1
    assert _busy_threads_of(3) == 3


def test_threads_that_ended_before_the_reading_still_count():
    # LiteRT-LM's compute threads end with the generation's session, before the parent reads
    # the window: the monitor's polls must have kept what they ran.
    assert _busy_threads_of(3, until_they_end=True) == 3
