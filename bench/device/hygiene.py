"""Thermal hygiene: cool down between runners, and warn about measurements that started
hot or while other programs were using the CPU."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

from bench.device.sensors import DeviceReader
from bench.records import is_measured

HOT_C = 70.0  # laptops and phones start throttling around 80-95 °C; 70 leaves little headroom
FOREIGN_LOAD_PERCENT = 25.0  # other programs using a quarter of a core or more
POLL_S = 1.0


@dataclass(frozen=True)
class Cooldown:
    seconds: float = 0.0  # always wait this long
    until_temp_c: float | None = None  # then wait until the device is at most this warm
    limit_s: float = 600.0  # but never longer than this for the temperature
    # and, where the OS has a thermal status (Android's), until it is at most this: 1, LIGHT,
    # is Android's "UX not impacted"; 2, MODERATE, and above throttle
    max_thermal_status: int = 1


def cool_down(
    cooldown: Cooldown,
    reader: DeviceReader,
    say: Callable[[str], None],
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Wait between runners as asked; say what happened (including a missing sensor). The
    device is cool at most `until_temp_c` warm with its thermal status (where it has one)
    at most `max_thermal_status`."""
    if cooldown.seconds > 0:
        say(f"cooling down for {cooldown.seconds:g} s")
        sleep(cooldown.seconds)
    if cooldown.until_temp_c is None:
        return
    reading = reader.temperature()
    if reading is None:
        say(f"--cooldown-until-temp {cooldown.until_temp_c:g}: this device exposes no temperature; not waiting")
        return
    deadline = clock() + cooldown.limit_s

    def hot(reading) -> bool:
        status = reader.thermal_status()
        return reading.celsius > cooldown.until_temp_c or (status or 0) > cooldown.max_thermal_status

    while reading is not None and hot(reading):
        if clock() >= deadline:
            say(f"still {reading.celsius:.0f} °C after {cooldown.limit_s:g} s of cooling ({reading.source}); going on")
            return
        sleep(POLL_S)
        reading = reader.temperature()
    if reading is not None:
        say(f"device at {reading.celsius:.0f} °C ({reading.source})")


def busy_runners(records: list[dict]) -> dict[str, tuple[int, int, float]]:
    """Per runner measured while other programs used the CPU: (measurements under that load,
    measurements, the highest foreign load in % of a core)."""
    measured = [r for r in records if is_measured(r) and r.get("mode") != "quality"]
    found = {}
    for runner in dict.fromkeys(r["runner"] for r in measured):
        mine = [r for r in measured if r["runner"] == runner]
        busy = [
            r["foreign_cpu_percent_start"]
            for r in mine
            if (r.get("foreign_cpu_percent_start") or 0) >= FOREIGN_LOAD_PERCENT
        ]
        if busy:
            found[runner] = (len(busy), len(mine), max(busy))
    return found


def start_warnings(records: list[dict]) -> list[str]:
    """A busy machine first, in one line naming the runners it touched; then per runner how
    many measurements started hot."""
    busy = busy_runners(records)
    warnings = (
        [
            "this machine was busy: other programs used the CPU when measurements started ("
            + ", ".join(
                f"{runner} {n} of {total}, up to {most:.0f}% of a core" for runner, (n, total, most) in busy.items()
            )
            + "); their figures may be slow or vary: close them and run again"
        ]
        if busy
        else []
    )
    measured = [r for r in records if is_measured(r) and r.get("mode") != "quality"]
    for runner in dict.fromkeys(r["runner"] for r in measured):
        mine = [r for r in measured if r["runner"] == runner]
        hot = [r["temp_c_start"] for r in mine if (r.get("temp_c_start") or 0) >= HOT_C]
        if hot:
            warnings.append(
                f"{runner}: {len(hot)} of {len(mine)} measurements started hot (up to "
                f"{max(hot):.0f} °C); use --cooldown or --cooldown-until-temp"
            )
    return warnings
