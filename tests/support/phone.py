"""TEST DOUBLE set-up: a phone's userland as fixture files, and the adbd double serving it
to the real Debian `adb` on a private server port.

Each phone below stands for one vendor convention the phone-state readers must handle:
battery current in µA or mA, negative or positive while discharging, charging, or no
current at all. Readings are what those phones print (getprop's `[key]: [value]`, dumpsys
battery's tenths of °C and mV, thermalservice's HAL temperatures and status).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BATTERY = "sys/class/power_supply/battery"

PIXEL_PROPS = {
    "ro.product.manufacturer": "Google",
    "ro.product.model": "Pixel 8",
    "ro.product.name": "shiba",
    "ro.product.device": "shiba",
    "ro.soc.manufacturer": "Google",
    "ro.soc.model": "Tensor G3",
    "ro.board.platform": "zuma",
    "ro.product.cpu.abi": "arm64-v8a",
    "ro.build.version.release": "14",
    "ro.build.version.sdk": "34",
}

# name -> (props overrides, battery sysfs, dumpsys battery fields, idle/busy current_now)
PHONES = {
    # The kernel ABI: µA, negative while discharging.
    "pixel": (
        {},
        {"voltage_now": "3900000", "status": "Discharging", "temp": "312"},
        {"status": "3"},
        -250000,
        -1250000,
    ),
    # A vendor reporting mA with discharge positive.
    "galaxy": (
        {"ro.product.manufacturer": "samsung", "ro.product.model": "SM-S918B", "ro.soc.model": "SM8550"},
        {"voltage_now": "4100000", "status": "Discharging", "temp": "295"},
        {"status": "3"},
        300,
        1300,
    ),
    # On the charger: energy cannot be measured.
    "charging": (
        {},
        {"voltage_now": "4300000", "status": "Charging", "temp": "330"},
        {"status": "2", "AC powered": "true"},
        900000,
        500000,
    ),
    # No current_now at all.
    "nocurrent": ({}, {"voltage_now": "3800000", "status": "Discharging", "temp": "300"}, {"status": "3"}, None, None),
}

# name -> dumpsys display's mScreenState, dumpsys power's mWakefulness (the screen's state)
SCREENS = {"pixel": ("OFF", "Asleep"), "galaxy": ("ON", "Awake"), "charging": ("DOZE", "Dozing")}


def thermalservice(celsius: float = 41.5, status: int = 1) -> str:
    """dumpsys thermalservice with the CPU sensor at `celsius` and Android's thermal `status`."""
    return f"""IsStatusOverride: false
ThermalEventListeners:
	callbacks: 1
Thermal Status: {status}
Cached temperatures:
	Temperature{{mValue=44.0, mType=0, mName=AP, mStatus=0}}
HAL Ready: true
HAL connection:
	ThermalHAL 2.0 connected: yes
Current temperatures from HAL:
	Temperature{{mValue={celsius}, mType=0, mName=AP, mStatus=1}}
	Temperature{{mValue=31.2, mType=2, mName=battery, mStatus=0}}
	Temperature{{mValue=36.0, mType=3, mName=skin, mStatus=0}}
Current cooling devices from HAL:
	CoolingDevice{{mValue=0, mType=2, mName=cpu0}}
"""


GETPROP = """#!/bin/sh
# TEST DOUBLE of Android's getprop: the fixture's properties.
if [ $# -eq 0 ]; then sed 's/^\\([^=]*\\)=\\(.*\\)$/[\\1]: [\\2]/' /fixtures/props; exit 0; fi
grep "^$1=" /fixtures/props | head -1 | cut -d= -f2-
"""
DF = """#!/bin/sh
# TEST DOUBLE of Android's df -k: the fixture's free space on /data.
echo "Filesystem     1K-blocks    Used Available Use% Mounted on"
echo "/dev/block/dm-5 {total} {used} {free} 99% /data"
"""
DUMPSYS = """#!/bin/sh
# TEST DOUBLE of Android's dumpsys: the fixture's service dumps.
[ -f "/fixtures/dumpsys/$1" ] && cat "/fixtures/dumpsys/$1" || echo "Can't find service: $1"
"""


def dumpsys_battery(fields: dict, sysfs: dict) -> str:
    charging = fields.get("AC powered", "false")
    return (
        "Current Battery Service state:\n"
        f"  AC powered: {charging}\n  USB powered: false\n  Wireless powered: false\n"
        f"  status: {fields['status']}\n  health: 2\n  present: true\n  level: 80\n  scale: 100\n"
        f"  voltage: {int(sysfs['voltage_now']) // 1000}\n  temperature: {sysfs['temp']}\n  technology: Li-ion\n"
    )


def make_phone(folder: Path, name: str = "pixel", free_bytes: int | None = None) -> Path:
    """The userland of phone `name` in `folder` (the adbd double's ROOT)."""
    overrides, sysfs, battery_fields, idle, busy = PHONES[name]
    props = {**PIXEL_PROPS, **overrides}
    (folder / "fixtures/dumpsys").mkdir(parents=True)
    (folder / "fixtures/props").write_text("".join(f"{k}={v}\n" for k, v in props.items()))
    (folder / "fixtures/dumpsys/battery").write_text(dumpsys_battery(battery_fields, sysfs))
    (folder / "fixtures/dumpsys/thermalservice").write_text(thermalservice())
    screen, wakefulness = SCREENS.get(name, SCREENS["pixel"])
    (folder / "fixtures/dumpsys/display").write_text(f"DISPLAY MANAGER (dumpsys display)\n  mScreenState={screen}\n")
    (folder / "fixtures/dumpsys/power").write_text(f"POWER MANAGER (dumpsys power)\n  mWakefulness={wakefulness}\n")
    (folder / "system/bin").mkdir(parents=True)
    tools = {"getprop": GETPROP, "dumpsys": DUMPSYS}
    if free_bytes is not None:
        tools["df"] = DF.format(total=free_bytes // 1024 + 1000, used=1000, free=free_bytes // 1024)
    for tool, script in tools.items():
        (folder / "system/bin" / tool).write_text(script)
        (folder / "system/bin" / tool).chmod(0o755)
    (folder / BATTERY).mkdir(parents=True)
    for key, value in sysfs.items():
        (folder / BATTERY / key).write_text(value + "\n")
    for cpu, (low, high) in enumerate([(300000, 1704000)] * 4 + [(400000, 2367000)] * 4):
        freq = folder / f"sys/devices/system/cpu/cpu{cpu}/cpufreq"
        freq.mkdir(parents=True)
        for key, value in (("cpuinfo_min_freq", low), ("cpuinfo_max_freq", high), ("scaling_cur_freq", high)):
            (freq / key).write_text(f"{value}\n")
    zone = folder / "sys/class/thermal/thermal_zone0"
    zone.mkdir(parents=True)
    (zone / "type").write_text("cpu-0-0\n")
    (zone / "temp").write_text("41500\n")
    (folder / "data/local/tmp").mkdir(parents=True)
    config = {"props": props, "battery_sysfs": BATTERY}
    if idle is not None:
        config |= {"idle_current": idle, "busy_current": busy}
    (folder / "phone.json").write_text(json.dumps(config))
    return folder


def why_no_phone() -> str | None:
    """Why the double cannot run here, or None."""
    if shutil.which("adb") is None:
        return "Debian's adb is not installed (apt-get install adb)"
    if os.geteuid() != 0:
        return "the adbd double needs root (a mount namespace and chroot for the phone's userland)"
    if shutil.which("unshare") is None or shutil.which("chroot") is None:
        return "unshare/chroot (util-linux, coreutils) are missing"
    probe = subprocess.run(["unshare", "-m", "true"], capture_output=True)
    if probe.returncode:
        return f"cannot make a mount namespace here: {probe.stderr.decode().strip()}"
    return None


def why_no_aarch64() -> str | None:
    """Why static aarch64 binaries cannot run here, or None."""
    registered = Path("/proc/sys/fs/binfmt_misc/qemu-aarch64")
    if not registered.exists() and os.geteuid() == 0 and shutil.which("update-binfmts"):
        if not Path("/proc/sys/fs/binfmt_misc/register").exists():
            subprocess.run(
                ["mount", "-t", "binfmt_misc", "binfmt_misc", "/proc/sys/fs/binfmt_misc"], capture_output=True
            )
        subprocess.run(["update-binfmts", "--enable", "qemu-aarch64"], capture_output=True)
    if not registered.exists():
        return "aarch64 binaries cannot run: apt-get install qemu-user-static binfmt-support, as root"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class AttachedPhone:
    """A phone double served on 127.0.0.1:port, attached to a private adb server."""

    root: Path
    port: int
    env: dict  # ANDROID_ADB_SERVER_PORT for every adb (and edgebench) the test starts
    kind: str = "pixel"  # which of PHONES
    proc: subprocess.Popen | None = None

    @property
    def serial(self) -> str:
        return f"127.0.0.1:{self.port}"

    def adb(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["adb", *args], capture_output=True, text=True, env={**os.environ, **self.env}, timeout=timeout
        )

    def start(self, mode: str = "device") -> None:
        """Serve the phone: `mode` "device", or "unauthorized" / "offline" as adb will list it."""
        self.proc = subprocess.Popen(
            ["unshare", "-m", sys.executable, "-m", "tests.support.adbd_double", str(self.root), str(self.port), mode],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        assert self.proc.stdout.readline().strip() == b"listening"
        self.adb("connect", self.serial)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and f"{self.serial}\t{mode}" not in self.adb("devices").stdout:
            time.sleep(0.2)

    def stop(self) -> None:
        """Unplug: the daemon dies, adb sees the device go."""
        if self.proc:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def close(self) -> None:
        self.stop()
        self.adb("kill-server")


def attached_phone(folder: Path, name: str = "pixel", free_bytes: int | None = None, mode: str = "device"):
    """A started phone double of kind `name` with its own adb server (close() it)."""
    phone = AttachedPhone(
        make_phone(folder / "phone", name, free_bytes),
        free_port(),
        {"ANDROID_ADB_SERVER_PORT": str(free_port())},
        name,
    )
    phone.start(mode)
    return phone


def reader_of(phone: AttachedPhone):
    """bench's PhoneReader of the phone double."""
    from bench.device.adb import AdbTarget
    from bench.device.phone import PhoneReader

    return PhoneReader(AdbTarget(f"adb://{phone.serial}", phone.serial))
