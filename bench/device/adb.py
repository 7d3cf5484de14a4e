"""The adb transport of `--target adb://[SERIAL]`: the phone's state, shell and files.

The platform's own `adb` client (Debian's `adb` package, or the Android SDK's
platform-tools) is used, as `ssh` is for ssh:// targets: its server, keys and USB or
wireless pairing are the user's own. $ANDROID_ADB_SERVER_PORT picks its server as adb
itself reads it. Every failure is one line: no device, unauthorized, offline, no space,
a binary the phone cannot execute.
"""

from __future__ import annotations

import hashlib
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from bench.errors import BenchError

FOLDER = "/data/local/tmp/edgebench"  # the one folder edgebench writes on a phone
# ELF e_machine of each Android ABI (getprop ro.product.cpu.abi)
ABI_MACHINES = {"arm64-v8a": 183, "armeabi-v7a": 40, "x86_64": 62, "x86": 3}
MACHINE_NAMES = {183: "aarch64", 40: "32-bit Arm", 62: "x86-64", 3: "x86"}
STATE_ERRORS = {
    "unauthorized": (
        "{spec}: the phone has not authorized this computer",
        "unlock it and tap Allow on its 'Allow USB debugging?' prompt",
    ),
    "offline": ("{spec}: the phone is offline", "reconnect its cable (or run `adb reconnect`) and unlock it"),
}


@dataclass(frozen=True)
class AdbTarget:
    spec: str  # as given: adb://SERIAL or adb://
    serial: str | None  # None: the one device attached

    def adb(self, *args: str) -> list[str]:
        return ["adb", *(["-s", self.serial] if self.serial else []), *args]

    def shell(self, script: str, check: bool = True) -> subprocess.CompletedProcess:
        """`script` run by the phone's shell; a failure (check) is a one-line error."""
        done = _adb(self.adb("shell", script))
        if check and done.returncode:
            raise BenchError(
                f"{self.spec}: `{script}` failed (exit {done.returncode}): {_last_line(done.stderr + done.stdout)}",
                "check the phone with `adb shell`",
            )
        return done

    def attached(self) -> "AdbTarget":
        """This target with its serial, once the phone answers; one-line errors otherwise."""
        listed = _devices()
        if self.serial is None:
            if len(listed) != 1:
                raise BenchError(
                    "no phone attached over adb"
                    if not listed
                    else f"{len(listed)} devices attached: {', '.join(listed)}",
                    "plug one in with USB debugging on" if not listed else "name one: --target adb://SERIAL",
                )
            serial = next(iter(listed))
        else:
            serial = self.serial
        state = listed.get(serial)
        if state is None:
            raise BenchError(
                f"no device {serial} attached over adb (`adb devices` lists {', '.join(listed) or 'none'})",
                "plug it in with USB debugging on, or `adb connect HOST:PORT` for wireless debugging",
            )
        if state != "device":
            message, hint = STATE_ERRORS.get(state, (f"{{spec}}: the phone is {state}", "check it with `adb devices`"))
            raise BenchError(message.format(spec=self.spec), hint)
        return AdbTarget(self.spec, serial)

    def abi(self) -> str:
        return self.shell("getprop ro.product.cpu.abi").stdout.strip()

    def push(self, local: Path, sha256: str | None = None) -> str:
        """The phone's copy of `local`, pushed into FOLDER under its sha256 unless it is
        there already (same name, same size)."""
        sha256 = sha256 or _sha256(local)
        remote = f"{FOLDER}/{sha256}{local.suffix}"
        size = local.stat().st_size
        there = self.shell(f"stat -c %s {shlex.quote(remote)} 2>/dev/null", check=False).stdout.strip()
        if there == str(size):
            return remote
        self._check_space(size)
        done = _adb(self.adb("push", str(local), remote))
        if done.returncode:
            said = _last_line(done.stderr + done.stdout)
            if "No space left" in said:
                raise self._no_space(size, said)
            raise BenchError(f"{self.spec}: cannot push {local.name}: {said}", "check the phone with `adb shell`")
        return remote

    def push_binary(self, local: Path) -> str:
        """Push an executable after checking the phone's ABI can run it."""
        machine = elf_machine(local)
        abi = self.abi()
        if machine is None or ABI_MACHINES.get(abi, machine) != machine:
            what = "not an ELF executable" if machine is None else f"a {MACHINE_NAMES.get(machine, machine)} binary"
            raise BenchError(
                f"{self.spec}: the phone ({abi}) cannot execute {local}: it is {what}",
                "build the device runner for it: bash scripts/build-device-runner.sh",
            )
        remote = self.push(local)
        self.shell(f"chmod 755 {shlex.quote(remote)}")
        return remote

    def _check_space(self, size: int) -> None:
        free = self.free_bytes()
        if free is not None and size > free:
            raise self._no_space(size, f"{free // 2**20} MiB free")

    def free_bytes(self) -> int | None:
        """Free space where FOLDER is, from the phone's `df -k` (None if it says nothing usable)."""
        self.shell(f"mkdir -p {FOLDER}")
        lines = self.shell(f"df -k {FOLDER}", check=False).stdout.strip().splitlines()
        fields = lines[-1].split() if len(lines) > 1 else []
        return int(fields[3]) * 1024 if len(fields) > 3 and fields[3].isdigit() else None

    def _no_space(self, size: int, said: str) -> BenchError:
        return BenchError(
            f"{self.spec}: no space on the phone for {size // 2**20} MiB in {FOLDER} ({said})",
            f"free space on it, or clear edgebench's copies: adb shell rm -r {FOLDER}",
        )


def parse_target(spec: str) -> AdbTarget:
    parts = urlsplit(spec)
    serial = parts.netloc + parts.path.rstrip("/") if parts.netloc else None
    if parts.scheme != "adb" or (serial or "").startswith("-") or parts.query:
        raise BenchError(f"--target '{spec}' is not adb://[SERIAL]", "e.g. --target adb://R58N12ABCDE", exit_code=2)
    return AdbTarget(spec, serial)


def elf_machine(path: Path) -> int | None:
    """The ELF e_machine of a binary; None when it is no ELF file."""
    with path.open("rb") as f:
        header = f.read(20)
    if len(header) < 20 or header[:4] != b"\x7fELF":
        return None
    return int.from_bytes(header[18:20], "little" if header[5] == 1 else "big")


def _devices() -> dict[str, str]:
    """`adb devices`: serial -> state (device, unauthorized, offline, ...)."""
    done = _adb(["adb", "devices"])
    listed = {}
    for line in done.stdout.splitlines()[1:]:
        serial, _, state = line.partition("\t")
        if state:
            listed[serial.strip()] = state.strip()
    return listed


def _adb(argv: list[str]) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=600)
    except FileNotFoundError:
        raise BenchError(
            "adb is not installed", "apt-get install adb (or the Android SDK's platform-tools), then plug the phone in"
        ) from None
    except subprocess.TimeoutExpired:
        raise BenchError(
            f"`{shlex.join(argv)}` did not answer in 10 minutes", "check the phone and its cable"
        ) from None


def _last_line(text: str) -> str:
    return next((line.strip() for line in reversed(text.strip().splitlines()) if line.strip()), "no message")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
