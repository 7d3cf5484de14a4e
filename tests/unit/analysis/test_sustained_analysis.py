"""The sustained rules on hand-made series: drops must hold for a window, evidence is what
the device showed near the drop, energy only from real power readings."""

from __future__ import annotations

import pytest

from bench.analysis.sustained import Point, analyse, drop_time, energy_per_token, evidence_near
from bench.device.hygiene import Cooldown, cool_down, start_warnings


def records(rates: list[tuple[float, float]], tokens: int = 64) -> list[dict]:
    return [
        {"mode": "sustained", "status": "ok", "warmup": False, "elapsed_s": t, "decode_tok_s": r, "new_tokens": tokens}
        for t, r in rates
    ]


def test_a_dip_that_recovers_within_the_window_is_not_a_drop():
    points = [Point(t, 50.0 if t == 3 else 100.0, 64) for t in range(20)]
    assert drop_time(points, 90, window_s=4) is None


def test_a_drop_counts_from_the_first_generation_that_stays_low():
    points = [Point(t, 100.0 if t < 7 or t == 8 else 60.0, 64) for t in range(20)]
    assert drop_time(points, 90, window_s=4) == 9


def test_a_drop_too_close_to_the_end_to_hold_a_window_is_not_claimed():
    points = [Point(t, 100.0 if t < 18 else 60.0, 64) for t in range(20)]
    assert drop_time(points, 90, window_s=4) is None


def test_evidence_names_frequency_temperature_and_foreign_load_near_the_drop():
    samples = [
        {"t_s": 1.0, "worker_cpu_mhz": {"2": 3600.0}, "freq_source": "sysfs cpufreq"},
        {
            "t_s": 9.0,
            "worker_cpu_mhz": {"2": 1800.0, "3": 1000.0},
            "freq_source": "sysfs cpufreq",
            "temp_c": 88.0,
            "temp_trip_c": 90.0,
            "temp_source": "sysfs thermal_zone1 (x86_pkg_temp)",
            "foreign_cpu_percent": 150.0,
        },
        {"t_s": 30.0, "worker_cpu_mhz": {"2": 1000.0}, "freq_source": "sysfs cpufreq"},
    ]
    found = evidence_near(samples, 10.0, window_s=5)
    # CPU 3 has no first-window figure of its own: its low clock is not judged
    assert found == [
        "worker's CPU 2 at 1800 MHz, 3600 MHz in the first window (sysfs cpufreq)",
        "88 °C, trip point 90 °C (sysfs thermal_zone1 (x86_pkg_temp))",
        "other programs using 150% of a core",
    ]
    assert evidence_near(samples, 20.0, window_s=5) == []


def test_energy_per_token_integrates_power_over_the_loop():
    points = [Point(t, 100.0, 10) for t in range(10)]
    samples = [{"t_s": float(t), "power_w": 5.0} for t in range(11)]
    assert energy_per_token(points, samples, 10) == pytest.approx(50 / 100)
    samples[4]["power_w"] = None  # one gap: no figure rather than an invented one
    assert energy_per_token(points, samples, 10) is None


def test_analyse_without_device_signals_works_from_throughput_and_lists_the_gaps():
    result = analyse(
        "llama.cpp",
        records([(t, 100.0 if t < 10 else 70.0) for t in range(40)]),
        [{"t_s": 1.0, "temp_c": None, "freq_mhz": None, "power_w": None}],
        40,
        5,
    )
    assert (result.burst_tok_s, result.floor_tok_s, result.retained_percent) == (100.0, 70.0, 70.0)
    assert result.drop_s == {10: 10, 25: 10}
    assert result.missing_signals == ["temperature", "CPU frequency", "power"]
    assert result.energy_j_per_token is None


class FakeSensor:
    def __init__(self, temps):
        self.temps = list(temps)

    def temperature(self):
        from bench.device.sensors import Temperature

        t = self.temps.pop(0) if len(self.temps) > 1 else self.temps[0]
        return Temperature(t, 90.0, "fixture") if t is not None else None

    def thermal_status(self):
        return None  # a host's: only Android has one


def test_cooldown_waits_until_cool_enough():
    slept, said = [], []
    cool_down(
        Cooldown(5, 45, 60), FakeSensor([60, 52, 46, 44]), said.append, sleep=slept.append, clock=lambda: sum(slept)
    )
    assert slept == [5, 1, 1, 1] and said[-1] == "device at 44 °C (fixture)"


def test_cooldown_gives_up_at_its_limit_and_says_so():
    slept, said = [], []
    cool_down(Cooldown(0, 45, 3), FakeSensor([80]), said.append, sleep=slept.append, clock=lambda: sum(slept))
    assert slept == [1, 1, 1] and said == ["still 80 °C after 3 s of cooling (fixture); going on"]


def test_cooldown_to_a_temperature_without_a_sensor_says_it_cannot():
    said = []
    cool_down(Cooldown(0, 45, 3), FakeSensor([None]), said.append, sleep=lambda s: None)
    assert "exposes no temperature" in said[0]


def test_warnings_for_measurements_started_hot_or_under_foreign_load():
    base = {"status": "ok", "warmup": False, "runner": "mlx", "temp_c_start": None, "foreign_cpu_percent_start": None}
    rows = [
        base | {"temp_c_start": 81.0},
        base | {"foreign_cpu_percent_start": 90.0},
        base,
        base | {"warmup": True, "temp_c_start": 99.0},
    ]
    assert start_warnings(rows) == [
        "this machine was busy: other programs used the CPU when measurements started (mlx 1 of 3, up to 90% "
        "of a core); their figures may be slow or vary: close them and run again",
        "mlx: 1 of 3 measurements started hot (up to 81 °C); use --cooldown or --cooldown-until-temp",
    ]
