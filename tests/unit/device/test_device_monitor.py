"""DeviceMonitor samples a fixture device at ≥ 1 Hz, naming sources; power only from RAPL."""

from __future__ import annotations

import os
import threading

from bench.device.monitor import DeviceMonitor
from bench.device.sensors import DeviceReader
from tests.support.helpers import LAPTOP, write_files


def test_samples_carry_state_sources_and_power_from_energy_counters(tmp_path):
    root = write_files(tmp_path, LAPTOP | {"sys/class/powercap/intel-rapl:0/energy_uj": "1000000"})
    got, enough = [], threading.Event()

    def on_sample(sample):
        got.append(sample)
        # the counter moves between samples, as a working package's does
        (root / "sys/class/powercap/intel-rapl:0/energy_uj").write_text(str(1000000 + 500000 * len(got)))
        if len(got) >= 3:
            enough.set()

    monitor = DeviceMonitor(os.getpid(), DeviceReader(root), interval_s=0.1, on_sample=on_sample)
    assert enough.wait(10)
    monitor.stop()
    first_state = monitor.latest()
    assert first_state["temp_c"] == 87.5 and first_state["temp_trip_c"] == 90.0
    assert first_state["freq_mhz"] == 2100 and first_state["freq_source"] == "sysfs cpufreq"
    assert first_state["power_source"] == "powercap package-0" and first_state["load_1m"] == 1.52
    assert all(s["power_w"] > 0 for s in got[1:])
    assert all(b["t_s"] > a["t_s"] for a, b in zip(got, got[1:]))
    assert got[-1]["worker_rss_mb"] > 0


def test_without_rapl_power_is_missing_not_guessed(tmp_path):
    monitor = DeviceMonitor(os.getpid(), DeviceReader(tmp_path), interval_s=0.05)
    monitor.stop()
    state = monitor.latest()
    assert (state["power_w"], state["power_source"], state["temp_c"], state["freq_mhz"]) == (None,) * 4


def test_a_worker_that_has_exited_has_no_memory_figure_not_zero(tmp_path):
    import subprocess
    import sys
    import time

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    time.sleep(1.0)  # it has exited; not yet reaped, it is a zombie, whose RSS the kernel reports as 0
    monitor = DeviceMonitor(child.pid, DeviceReader(tmp_path), interval_s=3600)
    monitor.stop()
    assert monitor.latest()["worker_rss_mb"] is None
    child.wait()
