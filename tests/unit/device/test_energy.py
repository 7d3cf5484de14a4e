"""Energy per token (bench.device.energy): against a fake RAPL powercap tree, and against the
adbd double's battery, whose current trace (tests/support/adbd_double.py) is the truth."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest

from bench.device.energy import EnergyMeter, Span, net_energy
from bench.device.sensors import DeviceReader, Energy
from tests.support.helpers import write_files
from tests.support.phone import PHONES, reader_of, why_no_phone

needs_phone = pytest.mark.skipif(why_no_phone() is not None, reason=why_no_phone() or "")
RAPL = "sys/class/powercap/intel-rapl:0"
WRAP_UJ = 262143328850  # a real package's max_energy_range_uj


def powercap(folder: Path, uj: int) -> None:
    write_files(
        folder, {f"{RAPL}/name": "package-0", f"{RAPL}/energy_uj": str(uj), f"{RAPL}/max_energy_range_uj": str(WRAP_UJ)}
    )


def test_rapl_energy_per_token_is_the_counter_rise_above_idle_across_a_wrap(tmp_path):
    """A package at 5 W idle that draws 20 W during a 2 s generation of 10 tokens: 30 J
    above idle, 3 J a token, though its counter wraps during the generation."""
    reader = DeviceReader(tmp_path)  # the fake powercap tree in place of /sys

    def counter(uj: int) -> Energy:
        powercap(tmp_path, uj)
        return reader.energy()

    start = WRAP_UJ - 10_000_000  # 10 J before the wrap
    idle = Span(counter(start), counter(start + 1_250_000), 0.25)
    generation = Span(counter(start + 2_000_000), counter(start + 42_000_000 - WRAP_UJ), 2.0)
    energy = net_energy(idle, generation, 10)
    assert (energy.idle_w, energy.joules, energy.j_per_token) == (5.0, 30.0, 3.0)
    assert energy.source == "powercap package-0, idle 5 W subtracted" and energy.refused is None


def test_the_meter_reads_rapl_around_a_generation(tmp_path):
    """The meter's own readings of the tree: idle, start and stop; a counter that did not
    move while the generation ran is refused, not a figure of 0."""
    powercap(tmp_path, 5_000_000)
    meter = EnergyMeter(DeviceReader(tmp_path), idle_s=0.05)
    assert meter.available() is None
    meter.idle()
    meter.start()
    powercap(tmp_path, 5_000_000)
    assert "no more than idle" in meter.stop(4).refused


def test_no_rapl_and_root_only_rapl_say_why(tmp_path):
    assert "no RAPL powercap counter" in EnergyMeter(DeviceReader(tmp_path)).available().refused
    powercap(tmp_path, 1)
    os.chmod(tmp_path / RAPL / "energy_uj", 0)
    reader = DeviceReader(tmp_path)
    if os.geteuid() == 0:  # root reads it anyway, as on a real host
        assert reader.energy() is not None
    else:
        assert "readable by root only" in EnergyMeter(reader).available().refused


def span(joules_at: tuple[float, float], seconds: float, readings: tuple[int, int] | None) -> Span:
    before, after = (
        (Energy(((round(j * 1e6), None),), "battery", r),) for j, r in zip(joules_at, readings or (None, None))
    )
    return Span(before[0], after[0], seconds)


def test_a_generation_with_too_few_readings_is_refused_not_guessed():
    idle = span((0, 1), 1.0, (0, 10))
    assert net_energy(idle, span((1, 4), 0.3, (10, 13)), 5).refused.startswith("3 power readings in the 0.30 s")
    assert net_energy(idle, span((1, 4), 0.3, (10, 14)), 5).j_per_token == pytest.approx((3 - 0.3) / 5)
    assert "no more than idle" in net_energy(idle, span((1, 1.5), 1.0, (10, 20)), 5).refused


def phone_meter(phone):
    return EnergyMeter(reader_of(phone))


SPIN = (
    "#!/bin/sh\n# computes for $1 seconds, as a pushed program would\ntimeout $1 sh -c 'while :; do :; done'\nexit 0\n"
)


def trace_integral_j(phone, name: str, start_ns: int, end_ns: int) -> float:
    """The fixture's truth: V × the current above idle, integrated over the trace the double
    wrote (each value held until the next change)."""
    _, sysfs, _, idle, _ = PHONES[name]
    steps = [tuple(map(int, line.split())) for line in (phone.root / "battery-trace").read_text().splitlines()]
    unit = 1e6 if abs(idle) >= 20_000 else 1e3
    total = 0.0
    for (at, current), (until, _) in zip(steps, steps[1:] + [(end_ns, 0)]):
        lo, hi = max(at, start_ns), min(until, end_ns)
        if hi > lo:
            total += (abs(current) - abs(idle)) / unit * (hi - lo) / 1e9
    return int(sysfs["voltage_now"]) / 1e6 * total


def watts(name: str, current: int) -> float:
    _, sysfs, *_ = PHONES[name]
    return int(sysfs["voltage_now"]) / 1e6 * abs(current) / (1e6 if abs(current) >= 20_000 else 1e3)


@needs_phone
@pytest.mark.parametrize("phone", ["pixel", "galaxy"], indirect=True)
def test_battery_energy_per_token_is_the_fixture_traces_integral(phone, tmp_path):
    """A pushed program computes for 3 s between the meter's start and stop: the figure is the
    double's current trace integrated above idle, whatever the vendor's units and sign, to
    within what readings this far apart can resolve (a step between two readings is placed
    half way: at most one interval's error at each edge, twice the mean interval in all)."""
    script = tmp_path / "spin.sh"
    script.write_text(SPIN)
    assert phone.adb("-s", phone.serial, "push", str(script), "/data/local/tmp/spin.sh").returncode == 0
    meter = phone_meter(phone)
    assert meter.available() is None
    meter.idle()
    meter.start()
    began = time.time_ns()
    assert phone.adb("-s", phone.serial, "shell", "sh /data/local/tmp/spin.sh 3").returncode == 0
    energy = meter.stop(10)
    ended = time.time_ns()
    truth = trace_integral_j(phone, phone.kind, began, ended)
    _, _, _, idle, busy = PHONES[phone.kind]
    above_w = watts(phone.kind, busy) - watts(phone.kind, idle)
    assert truth > 0.9 * 3 * above_w  # the program computed for ~3 s
    assert energy.refused is None, energy.refused
    readings = int(re.search(r"(\d+) readings", energy.source).group(1))
    resolution_j = above_w * 2 * (ended - began) / 1e9 / readings
    assert abs(energy.joules - truth) <= resolution_j, (energy, truth, resolution_j)
    assert energy.j_per_token == pytest.approx(energy.joules / 10)
    assert energy.idle_w == pytest.approx(watts(phone.kind, idle))
    assert energy.source.startswith("battery V×I (current_now in")


@needs_phone
@pytest.mark.parametrize("phone", ["charging", "nocurrent"], indirect=True)
def test_battery_energy_is_refused_while_charging_or_without_a_current(phone):
    refused = phone_meter(phone).available().refused
    assert ("charging (AC powered)" if phone.kind == "charging" else "no battery current_now") in refused


@needs_phone
@pytest.mark.parametrize("phone", ["pixel"], indirect=True)
def test_a_generation_too_short_for_the_battery_readings_is_refused(phone):
    meter = phone_meter(phone)
    meter.idle()
    meter.start()
    energy = meter.stop(3)
    assert energy.j_per_token is None and "too coarse for its length" in energy.refused
