"""The worker's CPU share is read precisely enough for one short generation.

A tiny model decodes 256 tokens in ~0.1 s; at psutil's 10 ms ticks that window's CPU share
would be off by up to a fifth of a core, so the monitor must read the kernel's own CPU clock.
"""

from __future__ import annotations

import subprocess
import sys

from bench.device.monitor import ProcessMonitor

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
