"""A phone's hygiene: its screen, charger and idleness before each runner, and a cool-down on
its own temperature and thermal status, against the adbd double's fixture phones."""

from __future__ import annotations

import threading

import pytest

from bench.device import phone_hygiene
from bench.device.hygiene import Cooldown, cool_down
from tests.support.phone import reader_of, thermalservice, why_no_phone

needs_phone = pytest.mark.skipif(why_no_phone() is not None, reason=why_no_phone() or "")


def test_the_phones_cpu_use_is_its_busy_share_between_two_proc_stat_lines():
    """user nice system idle iowait irq softirq steal: 30 of 200 ticks busy, iowait is idle."""
    lines = ["cpu  100 0 50 1000 10 0 0 0 0 0", "cpu  120 0 60 1160 20 0 0 0 0 0"]
    assert phone_hygiene.cpu_busy_percent(lines) == 15.0
    assert phone_hygiene.cpu_busy_percent(lines[:1]) is None


def test_the_screen_is_what_dumpsys_display_says_else_dumpsys_power():
    assert phone_hygiene.screen_state(["  mScreenState=DOZE"], ["  mWakefulness=Awake"]) == "DOZE"
    assert phone_hygiene.screen_state([], ["  mWakefulness=Asleep"]) == "OFF"
    assert phone_hygiene.screen_state([], []) is None


@needs_phone
@pytest.mark.parametrize(
    "phone,screen,charging", [("pixel", "OFF", False), ("charging", "DOZE", True)], indirect=["phone"]
)
def test_the_state_before_a_runner_is_read_from_the_phone(phone, screen, charging):
    """Under the double /proc/stat is the host's, so the busy share is this machine's."""
    state = reader_of(phone).runner_state()
    assert (state["screen_state"], state["charging"]) == (screen, charging)
    assert 0 <= state["cpu_busy_percent_before"] <= 100


@needs_phone
@pytest.mark.parametrize("phone", ["pixel"], indirect=True)
def test_the_cool_down_waits_for_the_phones_temperature_and_thermal_status(phone):
    """48 °C at thermal status 3 (severe), cooling to 38 °C at status 1 after ~2 s: the
    cool-down waits for it and says where the phone ended up."""
    fixture = phone.root / "fixtures/dumpsys/thermalservice"
    fixture.write_text(thermalservice(48.0, 3))
    cools = threading.Timer(2.0, lambda: fixture.write_text(thermalservice(38.0, 1)))
    cools.start()
    said: list[str] = []
    cool_down(Cooldown(until_temp_c=40, limit_s=60), reader_of(phone), said.append)
    cools.join()
    assert said == ["device at 38 °C (dumpsys thermalservice AP (thermal status 1))"]


@needs_phone
@pytest.mark.parametrize("phone", ["pixel"], indirect=True)
def test_a_throttling_status_keeps_a_cool_phone_waiting_until_the_limit(phone):
    """38 °C is under the threshold, but Android says moderate throttling (2): the cool-down
    waits out its limit and says so."""
    (phone.root / "fixtures/dumpsys/thermalservice").write_text(thermalservice(38.0, 2))
    said: list[str] = []
    cool_down(Cooldown(until_temp_c=40, limit_s=1.5), reader_of(phone), said.append)
    assert said == ["still 38 °C after 1.5 s of cooling (dumpsys thermalservice AP (thermal status 2)); going on"]
