"""Throttling evidence on fixture devices, sampled through DeviceMonitor as a run samples
them: each signal is judged against its own baseline (the worker's cores against their
first-window frequency, the OS's throttle counters against their value at the start), so
a healthy big.LITTLE phone with idle and little cores and all-core turbo below the
single-core maximum shows none, and a throttled one does."""

from __future__ import annotations

import os

from bench.analysis.sustained import evidence_near
from bench.device.monitor import DeviceMonitor
from bench.device.sensors import DeviceReader
from tests.support.helpers import stat_line, write_files

WINDOW_S, DROP_S, DURATION_S = 10, 20, 40


def phone(t: float, big_khz: int, throttle: int | None = None) -> dict[str, str]:
    """A big.LITTLE phone at second `t`: little cores 0-3 idle at their lowest frequency,
    big cores 4-7 able to reach 3.2 GHz alone; the worker's two busy threads on CPUs 4
    and 5 at `big_khz`, an idle worker thread last seen on CPU 0."""
    files = {
        "sys/class/thermal/thermal_zone0/type": "cpu-1-0-usr",
        "sys/class/thermal/thermal_zone0/temp": "52000",
        "sys/class/thermal/thermal_zone0/trip_point_0_type": "passive",
        "sys/class/thermal/thermal_zone0/trip_point_0_temp": "95000",
    }
    for cpu in range(8):
        little = cpu < 4
        files[f"sys/devices/system/cpu/cpu{cpu}/cpufreq/cpuinfo_max_freq"] = "1800000" if little else "3200000"
        files[f"sys/devices/system/cpu/cpu{cpu}/cpufreq/scaling_cur_freq"] = (
            "300000" if little else str(big_khz) if cpu in (4, 5) else "800000"
        )
        if throttle is not None:
            files[f"sys/devices/system/cpu/cpu{cpu}/thermal_throttle/core_throttle_count"] = "0"
            files[f"sys/devices/system/cpu/cpu{cpu}/thermal_throttle/package_throttle_count"] = str(throttle)
    task = f"proc/{os.getpid()}/task"
    ticks = int(100 * (t + 1))
    files |= {
        f"{task}/101/stat": stat_line(101, 4, ticks),
        f"{task}/102/stat": stat_line(102, 5, ticks),
        f"{task}/103/stat": stat_line(103, 0, 7),
    }
    return files


def sampled(root, state_at) -> list[dict]:
    """Samples of a 40 s run, one a second, each taken after the fixture moved to that second."""
    write_files(root, state_at(-1.0))
    monitor = DeviceMonitor(os.getpid(), DeviceReader(root), interval_s=3600)  # sampled by hand below
    samples = []
    try:
        for t in range(DURATION_S):
            write_files(root, state_at(float(t)))
            # CPU shares describe this machine (shared with other tests), not the fixture
            samples.append(monitor.sample() | {"t_s": float(t), "foreign_cpu_percent": None})
    finally:
        monitor.stop()
    return samples


def test_a_healthy_idle_big_little_phone_shows_no_throttling(tmp_path):
    # All-core turbo 2.8 GHz (below the 3.2 GHz single-core maximum), little cores at
    # 0.3 of 1.8 GHz, idle big cores at 0.8 GHz: nothing here is throttling.
    samples = sampled(tmp_path, lambda t: phone(t, 2_800_000 if int(t) % 2 else 2_750_000, throttle=3))
    assert samples[5]["worker_cpu_mhz"] == {"4": 2800.0, "5": 2800.0}  # only the busy threads' cores
    assert evidence_near(samples, DROP_S, WINDOW_S) == []


def test_the_workers_cores_falling_below_their_first_window_frequency_is_evidence(tmp_path):
    samples = sampled(tmp_path, lambda t: phone(t, 2_800_000 if t < 15 else 1_600_000))
    assert evidence_near(samples, DROP_S, WINDOW_S) == [
        "worker's CPU 4 at 1600 MHz, 2800 MHz in the first window (sysfs cpufreq)"
    ]


def test_throttle_counters_that_rise_during_the_run_are_evidence(tmp_path):
    # Every core at its maximum the whole run: only the OS's own counters tell.
    def laptop(t: float) -> dict[str, str]:
        files = {}
        for cpu in range(4):
            base = f"sys/devices/system/cpu/cpu{cpu}/"
            files |= {
                base + "cpufreq/cpuinfo_max_freq": "4200000",
                base + "cpufreq/scaling_cur_freq": "4200000",
                base + "topology/physical_package_id": "0",
                base + "thermal_throttle/core_throttle_count": str(2 if t >= 18 and cpu == 1 else 0),
                base + "thermal_throttle/package_throttle_count": str(5 if t >= 18 else 1),
            }
        return files

    samples = sampled(tmp_path, laptop)
    assert evidence_near(samples, DROP_S, WINDOW_S) == [
        "OS throttle counters rose since the run began: core +2, package +4 (sysfs thermal_throttle)"
    ]
    assert evidence_near(samples, 5, 3) == []  # before they rose
