"""A phone's state before each runner: its screen, its charger, and whether it was idle.

An unrooted phone cannot be made quiet (other apps and system services run, the governor and
thermal policy are the vendor's), so edgebench records what the phone was doing instead,
for every record of the runner: what `dumpsys display` (or `dumpsys power`) says of the
screen, whether `dumpsys battery` says it is on a charger, and how busy its CPUs were over
the second before the runner (all cores, from /proc/stat).
"""

from __future__ import annotations

import re

BUSY_WINDOW_S = 1
IDLE_PERCENT = 10.0  # of all cores over BUSY_WINDOW_S: above this the phone was busy with other work
# One adb shell: the screen, the charger, and /proc/stat's CPU line twice, BUSY_WINDOW_S apart.
SCRIPT = (
    "echo @@display; dumpsys display | grep -E 'mScreenState='; "
    "echo @@power; dumpsys power | grep -E 'mWakefulness='; "
    "echo @@battery; dumpsys battery; "
    f"echo @@stat; head -1 /proc/stat; sleep {BUSY_WINDOW_S}; head -1 /proc/stat"
)
SCREEN_STATE = re.compile(r"mScreenState=(\w+)")
WAKEFULNESS = re.compile(r"mWakefulness=(\w+)")
# dumpsys power's wakefulness, in dumpsys display's words
WAKEFUL_SCREEN = {"Awake": "ON", "Asleep": "OFF", "Dozing": "DOZE", "Dreaming": "ON"}


def screen_state(display: list[str], power: list[str]) -> str | None:
    """ON, OFF, DOZE (always-on display) ...: dumpsys display's word, else dumpsys power's."""
    for line in display:
        if m := SCREEN_STATE.search(line):
            return m.group(1)
    for line in power:
        if m := WAKEFULNESS.search(line):
            return WAKEFUL_SCREEN.get(m.group(1), m.group(1).upper())
    return None


def chargers(battery: list[str]) -> list[str] | None:
    """The chargers dumpsys battery says power the phone (AC, USB, Wireless; "status 2" when
    it only says charging); None when it says nothing."""
    fields = dict(line.split(": ", 1) for line in battery if ": " in line)
    if not fields:
        return None
    powered = [k.split()[0] for k in ("AC powered", "USB powered", "Wireless powered") if fields.get(k) == "true"]
    return powered or (["status 2"] if fields.get("status") == "2" else [])


def cpu_busy_percent(stat_lines: list[str]) -> float | None:
    """All cores' busy share between two /proc/stat "cpu" lines (idle and iowait are not busy)."""
    rows = [[int(v) for v in line.split()[1:]] for line in stat_lines if line.startswith("cpu ")]
    if len(rows) < 2:
        return None
    spent = [b - a for a, b in zip(rows[0], rows[1])]
    total = sum(spent[:8])  # user nice system idle iowait irq softirq steal (guest is inside user)
    return round(100 * (1 - (spent[3] + spent[4]) / total), 1) if total > 0 else None


def runner_state(read: dict[str, list[str]]) -> dict:
    """The record fields of the phone's state before a runner, from SCRIPT's sections."""
    powered = chargers(read.get("battery", []))
    busy = cpu_busy_percent(read.get("stat", []))
    return {
        "screen_state": screen_state(read.get("display", []), read.get("power", [])),
        "charging": None if powered is None else bool(powered),
        "cpu_busy_percent_before": busy,
    }
