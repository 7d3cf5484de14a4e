"""A phone over adb: its facts (what `device_facts` reads on the host) and its state
(what bench.device.sensors reads on the host), from the phone.

One `adb shell` script prints getprop, the CPUs' frequency limits, memory and the kernel;
the record fields are the host's `device_*` fields with the phone's values (the tier is
then placed from them, as on the host). Another, once per sample, reads the battery, the
thermal HAL, cpufreq and load. Under the tests' adbd double the readings are fixture
files; on a phone they are its own.
"""

from __future__ import annotations

import hashlib
import re
import threading
import time
from dataclasses import dataclass

from bench.device import phone_hygiene
from bench.device.adb import AdbTarget
from bench.device.phone_hygiene import chargers
from bench.device.sensors import DeviceReader, Energy, Frequency, Temperature, ThreadCpu

SECTIONS = "getprop; echo @@freq; cat /sys/devices/system/cpu/cpu[0-9]*/cpufreq/cpuinfo_max_freq; echo @@mem; cat /proc/meminfo; echo @@kernel; uname -r"
PROP = re.compile(r"^\[([^\]]+)\]: \[(.*)\]$")


def sections(text: str) -> dict[str, list[str]]:
    """The script's output, by section (getprop's lines come first, under "props")."""
    found: dict[str, list[str]] = {"props": []}
    current = "props"
    for line in text.splitlines():
        if line.startswith("@@"):
            current = line[2:].strip()
            found[current] = []
        elif line.strip():
            found[current].append(line.strip())
    return found


def properties(lines: list[str]) -> dict[str, str]:
    return {m.group(1): m.group(2) for m in map(PROP.match, lines) if m}


def phone_facts(target: AdbTarget) -> dict:
    """Flat `device_*` fields of the phone, as bench.device.facts.device_facts has them."""
    read = sections(target.shell(SECTIONS, check=False).stdout)
    props = properties(read["props"])
    freqs = [int(v) for v in read.get("freq", []) if v.isdigit()]
    mem = next((line.split()[1] for line in read.get("mem", []) if line.startswith("MemTotal:")), None)
    soc = props.get("ro.soc.model") or props.get("ro.board.platform")
    name = " ".join(v for v in (props.get("ro.product.manufacturer"), props.get("ro.product.model")) if v)
    release, sdk = props.get("ro.build.version.release"), props.get("ro.build.version.sdk")
    facts = {
        "device_cpu_model": soc,
        "device_cores_physical": len(freqs) or None,
        "device_cores_logical": len(freqs) or None,
        "device_max_freq_mhz": max(freqs) / 1000 if freqs else None,
        "device_ram_gb": round(int(mem) / 2**20, 1) if mem else None,
        "device_os": f"Android {release} (SDK {sdk}, kernel {read.get('kernel', ['?'])[0]})" if release else None,
        "device_arch": props.get("ro.product.cpu.abi"),
        "device_board": ", ".join(v for v in (name, soc) if v) or None,
        "device_gpu": None,  # the device runner is a CPU build; the phone's GPU is not probed
        "device_npu": None,
        "device_python": None,  # a phone runs no Python: the host drives it
    }
    stable = [facts[k] for k in ("device_cpu_model", "device_cores_logical", "device_ram_gb", "device_arch")]
    facts["device_fingerprint"] = hashlib.sha256(repr(stable + [name]).encode()).hexdigest()[:16]
    return facts


# One adb shell per sample: the battery's sysfs, dumpsys battery and thermalservice, cpufreq, load.
STATE = (
    "cd /sys/class/power_supply/battery && echo @@current && cat current_now; echo @@voltage && cat voltage_now; "
    "echo @@battery; dumpsys battery; echo @@thermal; dumpsys thermalservice; "
    "echo @@cur; cat /sys/devices/system/cpu/cpu[0-9]*/cpufreq/scaling_cur_freq; "
    "echo @@max; cat /sys/devices/system/cpu/cpu[0-9]*/cpufreq/cpuinfo_max_freq; echo @@load; cat /proc/loadavg"
)
BATTERY = STATE.split("; echo @@thermal")[0]  # the battery's part: what an energy meter reads
HAL_TEMPERATURE = re.compile(r"Temperature\{mValue=([\d.]+), mType=(\d+), mName=([^,]+),")
HAL_CPU = 0  # android.os.Temperature.TYPE_CPU
THERMAL_STATUS = "Thermal Status: "
MICRO_FROM_MILLI = 20_000  # |current_now| below this is mA (a phone draws 0.02-5 A), above it µA


@dataclass(frozen=True)
class BatteryPower:
    """The battery's draw now, or why it cannot be measured."""

    watts: float | None
    source: str  # the units and sign convention detected, or the reason there is no figure


def battery_power(read: dict[str, list[str]]) -> BatteryPower:
    """V × I of the battery while it discharges. current_now is µA by the kernel ABI, but some
    vendors give mA (told by magnitude); its sign for discharging is negative by the ABI and
    positive on some vendors: whichever sign it has while dumpsys says discharging is that
    phone's. Refused while charging (the charger, not the battery, powers the phone)."""
    current, voltage = _int(read.get("current")), _int(read.get("voltage"))
    powered = chargers(read.get("battery", []))
    if powered:
        return BatteryPower(None, f"charging ({'+'.join(powered)} powered): no battery draw to measure")
    if current is None or voltage is None:
        return BatteryPower(None, "the phone exposes no battery current_now/voltage_now")
    if current == 0:
        return BatteryPower(None, "current_now reads 0: too coarse to measure a draw")
    amps = abs(current) / (1e6 if abs(current) >= MICRO_FROM_MILLI else 1e3)
    volts = voltage / (1e6 if voltage >= 100_000 else 1e3)  # µV by the ABI, mV on some vendors
    unit = "µA" if abs(current) >= MICRO_FROM_MILLI else "mA"
    sign = "negative" if current < 0 else "positive"
    return BatteryPower(round(volts * amps, 4), f"battery V×I (current_now in {unit}, {sign} while discharging)")


def hal_temperatures(lines: list[str]) -> list[tuple[float, int, str]]:
    """(°C, type, name) of each sensor under dumpsys thermalservice's "Current temperatures
    from HAL" (its "Cached temperatures" are older readings)."""
    found, inside = [], False
    for line in lines:
        if line.endswith(":") and not line.startswith("Temperature{"):
            inside = line.startswith("Current temperatures from HAL")
        elif inside and (m := HAL_TEMPERATURE.match(line)):
            found.append((float(m.group(1)), int(m.group(2)), m.group(3)))
    return found


class PhoneReader(DeviceReader):
    """bench.device.sensors' readers for a phone over adb: the DeviceMonitor samples it as it
    samples this machine. Each sample is one `adb shell` (read once, shared by the readers);
    energy is the battery's V×I integrated between readings (and the last one held until
    now). An energy meter (bench.device.energy) reads only the battery (BATTERY), every
    energy_poll_s; the monitor's thread and the meter's share the reader, hence the lock."""

    energy_poll_s = 0.1
    cool_before_first = True  # a phone in a hand or on a charger is warm before the first runner too

    def __init__(self, target: AdbTarget, fresh_s: float = 0.25) -> None:
        super().__init__()
        self.target, self.fresh_s = target, fresh_s
        self._read: dict[str, list[str]] = {}
        self._at = -1e9
        self._power_at = -1e9
        self._joules = 0.0
        self._readings = 0
        self._lock = threading.Lock()
        self.power = BatteryPower(None, "not read yet")

    def _state(self) -> dict[str, list[str]]:
        with self._lock:
            if time.monotonic() - self._at > self.fresh_s:
                self._read = sections(self.target.shell(STATE, check=False).stdout)
                self._at = time.monotonic()
                self._battery(self._read, self._at)
            return self._read

    def _battery(self, read: dict[str, list[str]], now: float) -> None:
        """A new battery reading at `now`: the draw since the last one is counted as the mean
        of the two (a step between readings counts half, early or late alike)."""
        power = battery_power(read)
        if self.power.watts is not None:
            mean = (self.power.watts + power.watts) / 2 if power.watts is not None else self.power.watts
            self._joules += mean * (now - self._power_at)
        self.power, self._power_at = power, now
        self._readings += 1

    def temperature(self) -> Temperature | None:
        """The hottest CPU sensor of Android's thermal HAL, else the battery's."""
        read = self._state()
        hal = [(celsius, name) for celsius, kind, name in hal_temperatures(read.get("thermal", [])) if kind == HAL_CPU]
        if hal:
            celsius, name = max(hal)
            said = "?" if (status := self.thermal_status()) is None else status
            return Temperature(celsius, None, f"dumpsys thermalservice {name} (thermal status {said})")
        battery = dict(line.split(": ", 1) for line in read.get("battery", []) if ": " in line)
        tenths = _int([battery.get("temperature", "")])
        return Temperature(tenths / 10, None, "dumpsys battery (battery)") if tenths is not None else None

    def thermal_status(self) -> int | None:
        """Android's thermal status (0 none, 1 light, 2 moderate, 3 severe ... 6 shutdown)."""
        lines = self._state().get("thermal", [])
        return _int([next((line.split(": ")[1] for line in lines if line.startswith(THERMAL_STATUS)), "")])

    def runner_state(self) -> dict:
        """The phone's screen, charger and CPU use over the second before a runner."""
        return phone_hygiene.runner_state(sections(self.target.shell(phone_hygiene.SCRIPT, check=False).stdout))

    def frequency(self) -> Frequency | None:
        read = self._state()
        current = [int(v) / 1000 for v in read.get("cur", []) if v.isdigit()]
        highest = [int(v) / 1000 for v in read.get("max", []) if v.isdigit()]
        if not current:
            return None
        return Frequency(
            sum(current) / len(current), max(highest or current), dict(enumerate(current)), "phone cpufreq"
        )

    def throttle_counts(self) -> None:
        return None  # Android says its thermal status instead (in the temperature's source)

    def thread_cpus(self, pid: int) -> list[ThreadCpu]:
        return []  # the worker is the host's; the device runner's threads are the phone's

    def energy(self) -> Energy | None:
        """The battery's energy counter: its draw integrated up to now, each reading held
        until the next; the battery is read again when its last reading is older than
        energy_poll_s."""
        with self._lock:
            if time.monotonic() - self._power_at > self.energy_poll_s:
                read = sections(self.target.shell(BATTERY, check=False).stdout)
                self._battery(read, time.monotonic())
            if self.power.watts is None:
                return None
            joules = self._joules + self.power.watts * (time.monotonic() - self._power_at)
            return Energy(((round(joules * 1e6), None),), self.power.source, self._readings)

    def energy_refusal(self) -> str:
        return self.power.source

    def load_1m(self) -> float | None:
        return _float(self._state().get("load", ["?"])[0].split()[:1])


def _int(lines: list[str] | None) -> int | None:
    value = (lines or [""])[0].strip()
    return int(value) if value.lstrip("-").isdigit() else None


def _float(words: list[str]) -> float | None:
    try:
        return float(words[0])
    except (IndexError, ValueError):
        return None
