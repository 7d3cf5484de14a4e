"""Device readers against fixture trees shaped like a laptop's and a phone's sysfs."""

from __future__ import annotations

from bench.device.sensors import DeviceReader, Energy, energy_delta_j
from tests.support.helpers import LAPTOP, write_files

PHONE = {  # Android-like: many zones, big.LITTLE clusters, no RAPL
    "sys/class/thermal/thermal_zone0/type": "cpu-1-0-usr",
    "sys/class/thermal/thermal_zone0/temp": "48200",
    "sys/class/thermal/thermal_zone0/trip_point_0_type": "hot",
    "sys/class/thermal/thermal_zone0/trip_point_0_temp": "95000",
    "sys/class/thermal/thermal_zone1/type": "battery",
    "sys/class/thermal/thermal_zone1/temp": "31000",
    "sys/devices/system/cpu/cpu0/cpufreq/scaling_cur_freq": "1804800",
    "sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq": "1804800",
    "sys/devices/system/cpu/cpu4/cpufreq/scaling_cur_freq": "2419200",
    "sys/devices/system/cpu/cpu4/cpufreq/cpuinfo_max_freq": "2419200",
}


def test_laptop_hottest_zone_with_its_passive_trip_point(tmp_path):
    reader = DeviceReader(write_files(tmp_path, LAPTOP))
    temp = reader.temperature()
    assert (temp.celsius, temp.trip_celsius) == (87.5, 90.0)
    assert temp.source == "sysfs thermal_zone1 (x86_pkg_temp)"


def test_laptop_frequency_mean_per_core_and_maximum(tmp_path):
    freq = DeviceReader(write_files(tmp_path, LAPTOP)).frequency()
    assert (freq.current_mhz, freq.per_core_mhz, freq.max_mhz, freq.source) == (
        2100,
        {0: 1800, 1: 2400},
        4200,
        "sysfs cpufreq",
    )


def test_throttle_counters_per_core_summed_per_package_once(tmp_path):
    throttle = {
        f"sys/devices/system/cpu/cpu{cpu}/{name}": text
        for cpu in range(4)
        for name, text in (
            ("topology/physical_package_id", str(cpu // 2)),
            ("thermal_throttle/core_throttle_count", str(cpu)),
            ("thermal_throttle/package_throttle_count", str(10 * (cpu // 2 + 1))),
        )
    }
    counts = DeviceReader(write_files(tmp_path, LAPTOP | throttle)).throttle_counts()
    assert (counts.core_events, counts.package_events, counts.source) == (6, 30, "sysfs thermal_throttle")
    assert DeviceReader(write_files(tmp_path / "phone", PHONE)).throttle_counts() is None


def test_a_workers_threads_and_the_cpus_they_last_ran_on(tmp_path):
    from tests.support.helpers import stat_line

    reader = DeviceReader(
        write_files(
            tmp_path, {"proc/42/task/42/stat": stat_line(42, 3, 120), "proc/42/task/43/stat": stat_line(43, 1, 5)}
        )
    )
    assert sorted((t.tid, t.cpu, t.cpu_ticks) for t in reader.thread_cpus(42)) == [(42, 3, 120), (43, 1, 5)]
    assert reader.thread_cpus(7) == []


def test_rapl_counts_packages_only_and_survives_a_wrap(tmp_path):
    energy = DeviceReader(write_files(tmp_path, LAPTOP)).energy()
    assert energy.counters == ((262143000000, 262143328850),) and energy.source == "powercap package-0"
    after = Energy(((671150, 262143328850),), energy.source)  # wrapped: 1.0 J later
    assert energy_delta_j(energy, after) == 1.0


def test_load_average_from_the_root(tmp_path):
    assert DeviceReader(write_files(tmp_path, LAPTOP)).load_1m() == 1.52


def test_phone_without_rapl_reports_power_missing(tmp_path):
    reader = DeviceReader(write_files(tmp_path, PHONE))
    assert reader.temperature().trip_celsius == 95.0
    assert reader.frequency().max_mhz == 2419.2
    assert reader.energy() is None
    assert reader.missing() == ["power (no RAPL powercap counter)"]


def test_an_empty_tree_exposes_nothing_and_says_so(tmp_path):
    reader = DeviceReader(tmp_path)
    assert (reader.temperature(), reader.frequency(), reader.energy(), reader.load_1m(), reader.throttle_counts()) == (
        None,
    ) * 5
    assert len(reader.missing()) == 3
