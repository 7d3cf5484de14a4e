"""Readers of the device state the OS exposes: temperatures, CPU frequencies, energy, load.

Every reader works against a root folder (default "/"), so tests can point it at a fixture
tree shaped like a laptop's or phone's sysfs. A signal the OS does not expose is reported
as missing (None, with the reason), never guessed. Sources are named in each reading.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import psutil

RAPL_ZONE = re.compile(r"[a-z-]+rapl:\d+")  # a package zone (intel-rapl:0); its sub-zones are inside it
# Trip types that mean "the device starts protecting itself here", coolest first.
_TRIP_TYPES = ("passive", "hot", "critical")


@dataclass(frozen=True)
class Temperature:
    celsius: float
    trip_celsius: float | None  # where throttling starts, if the zone says
    source: str


@dataclass(frozen=True)
class Frequency:
    current_mhz: float  # mean over cores
    max_mhz: float  # the highest maximum any core reaches
    per_core_mhz: dict[int, float]  # CPU number -> its frequency now (empty when only a mean is known)
    source: str


@dataclass(frozen=True)
class ThrottleCounts:
    """The OS's own count of thermal throttling events since boot (Linux x86 thermal_throttle)."""

    core_events: int  # summed over CPUs
    package_events: int  # summed over packages (every CPU of a package repeats its count)
    source: str


@dataclass(frozen=True)
class ThreadCpu:
    tid: int
    cpu: int  # the CPU the thread last ran on
    cpu_ticks: int  # user + system time so far, in clock ticks


@dataclass(frozen=True)
class Energy:
    counters: tuple[tuple[int, int | None], ...]  # (energy_uj, wrap range) per package
    source: str
    # How many discrete power readings the counter integrates so far (a phone's battery
    # V×I, read over adb); None for a hardware counter (RAPL) that counts continuously.
    readings: int | None = None


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _number(path: Path) -> float | None:
    text = _read(path)
    try:
        return float(text) if text is not None else None
    except ValueError:
        return None


class DeviceReader:
    # How often an energy meter must read energy() to follow the draw (bench.device.energy):
    # None for a hardware counter, which two readings bracket exactly.
    energy_poll_s: float | None = None
    cool_before_first = False  # --cooldown-until-temp waits between runners only (a phone: before each)

    def __init__(self, root: str | Path = "/") -> None:
        self.root = Path(root)
        self._live = self.root == Path("/")  # psutil only describes the real machine

    def temperature(self) -> Temperature | None:
        """The hottest sensor, with its trip point: thermal zones first, then psutil's hwmon."""
        best: Temperature | None = None
        for zone in sorted((self.root / "sys/class/thermal").glob("thermal_zone*")):
            milli = _number(zone / "temp")
            if milli is None:
                continue
            reading = Temperature(milli / 1000, self._trip(zone), f"sysfs {zone.name} ({_read(zone / 'type') or '?'})")
            if best is None or reading.celsius > best.celsius:
                best = reading
        if best is not None or not self._live:
            return best
        sensors = getattr(psutil, "sensors_temperatures", lambda: {})() or {}
        for chip, entries in sensors.items():
            for entry in entries:
                trip = entry.high or entry.critical or None
                reading = Temperature(entry.current, trip, f"psutil {chip} {entry.label or ''}".strip())
                if best is None or reading.celsius > best.celsius:
                    best = reading
        return best

    @staticmethod
    def _trip(zone: Path) -> float | None:
        trips = {}
        for type_file in zone.glob("trip_point_*_type"):
            kind = _read(type_file)
            milli = _number(zone / type_file.name.replace("_type", "_temp"))
            if kind in _TRIP_TYPES and milli and milli > 0:
                trips[kind] = min(trips.get(kind, milli), milli)
        for kind in _TRIP_TYPES:
            if kind in trips:
                return trips[kind] / 1000
        return None

    def _cpus(self) -> list[tuple[int, Path]]:
        """(CPU number, its sysfs folder), in CPU order."""
        found = [(int(p.name[3:]), p) for p in (self.root / "sys/devices/system/cpu").glob("cpu[0-9]*")]
        return sorted(found)

    def frequency(self) -> Frequency | None:
        """Per-core cpufreq (kHz in sysfs); psutil only when it knows a real maximum."""
        current, maxima = {}, []
        for number, cpu in self._cpus():
            cur = _number(cpu / "cpufreq/scaling_cur_freq")
            top = _number(cpu / "cpufreq/cpuinfo_max_freq") or _number(cpu / "cpufreq/scaling_max_freq")
            if cur is not None and top:
                current[number] = cur / 1000
                maxima.append(top / 1000)
        if current:
            return Frequency(sum(current.values()) / len(current), max(maxima), current, "sysfs cpufreq")
        if self._live:
            cores = psutil.cpu_freq(percpu=True) or []
            # A maximum of 0 means psutil only read a nominal figure from /proc/cpuinfo.
            if cores and all(c.max > 0 for c in cores):
                now = {number: c.current for number, c in enumerate(cores)}
                return Frequency(sum(now.values()) / len(now), max(c.max for c in cores), now, "psutil cpu_freq")
        return None

    def throttle_counts(self) -> ThrottleCounts | None:
        """Linux's thermal_throttle counters: per core, and per package (counted once)."""
        core, packages, seen = 0, {}, False
        for _, cpu in self._cpus():
            folder = cpu / "thermal_throttle"
            core_count, package_count = (
                _number(folder / "core_throttle_count"),
                _number(folder / "package_throttle_count"),
            )
            if core_count is None and package_count is None:
                continue
            seen = True
            core += int(core_count or 0)
            package = _read(cpu / "topology/physical_package_id") or "0"
            packages[package] = max(packages.get(package, 0), int(package_count or 0))
        return ThrottleCounts(core, sum(packages.values()), "sysfs thermal_throttle") if seen else None

    def thread_cpus(self, pid: int) -> list[ThreadCpu]:
        """Each thread of process `pid`: the CPU it last ran on and the CPU time it used
        (/proc/PID/task/*/stat fields 14, 15 and 39); empty where the OS has no /proc."""
        threads = []
        for task in (self.root / f"proc/{pid}/task").glob("*"):
            text = _read(task / "stat")
            # The command name (field 2) may hold spaces and parentheses: fields follow the last ")".
            fields = text.rsplit(")", 1)[-1].split() if text else []
            if len(fields) > 36 and task.name.isdigit():
                threads.append(ThreadCpu(int(task.name), int(fields[36]), int(fields[11]) + int(fields[12])))
        return threads

    def _rapl_zones(self) -> list[Path]:
        return [z for z in sorted((self.root / "sys/class/powercap").glob("*")) if RAPL_ZONE.fullmatch(z.name)]

    def energy(self) -> Energy | None:
        """Linux RAPL powercap package counters (sub-zones are inside them, not added)."""
        counters, names = [], []
        for zone in self._rapl_zones():
            uj = _number(zone / "energy_uj")
            if uj is None:
                continue
            wrap = _number(zone / "max_energy_range_uj")
            counters.append((int(uj), int(wrap) if wrap else None))
            names.append(_read(zone / "name") or zone.name)
        if not names:
            return None
        return Energy(tuple(counters), f"powercap {'+'.join(names)}")

    def energy_refusal(self) -> str:
        """Why energy() is None here, in words for a record."""
        zones = self._rapl_zones()
        if not zones:
            return f"no RAPL powercap counter ({self.root / 'sys/class/powercap'} has no intel-rapl zone)"
        try:
            (zones[0] / "energy_uj").read_text()
        except PermissionError:
            return (
                f"{zones[0] / 'energy_uj'} is readable by root only (Linux 5.10+ since CVE-2020-8694): "
                "run as root or chmod o+r it"
            )
        except OSError as exc:
            return f"cannot read {zones[0] / 'energy_uj'}: {exc.strerror}"
        return "the RAPL counters give no number"

    def thermal_status(self) -> int | None:
        """The OS's own thermal status where it has one (Android's); None here."""
        return None

    def runner_state(self) -> dict:
        """Record fields of the device's state before a runner that only some devices give
        (a phone's screen, charger and idleness: bench.device.phone_hygiene); none here."""
        return {}

    def load_1m(self) -> float | None:
        text = _read(self.root / "proc/loadavg")
        try:
            return float(text.split()[0]) if text else None
        except ValueError:
            return None

    def missing(self) -> list[str]:
        """The signals this device does not expose, in words for a report."""
        gaps = []
        if self.temperature() is None:
            gaps.append("temperature (no thermal zone or hwmon sensor)")
        if self.frequency() is None:
            gaps.append("CPU frequency (no cpufreq)")
        if self.energy() is None:
            gaps.append("power (no RAPL powercap counter)")
        return gaps


def energy_delta_j(before: Energy, after: Energy) -> float | None:
    """Joules between two readings of the same counters, each allowed one wrap-around."""
    if len(before.counters) != len(after.counters):
        return None
    total = 0
    for (was, wrap), (now, _) in zip(before.counters, after.counters):
        if now < was:
            if wrap is None:
                return None
            now += wrap
        total += now - was
    return total / 1e6
