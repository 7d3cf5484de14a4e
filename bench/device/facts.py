"""Facts about the machine a run measures on, collected once per run, and the state
(load) at the start of each measurement.

Readers of OS files take a root folder, so tests run them on fixture trees (a Raspberry
Pi's /proc, a Jetson's device tree) instead of this machine's.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import subprocess
from pathlib import Path

import psutil


def _read(root: Path, relative: str) -> str | None:
    try:
        return (root / relative).read_text(errors="replace").replace("\x00", "").strip()
    except OSError:
        return None


def cpu_model(root: Path = Path("/")) -> str:
    text = _read(root, "proc/cpuinfo") or ""
    for line in text.splitlines():
        # x86 says "model name"; Arm boards often only "Hardware" or "Model".
        if line.startswith(("model name", "Model", "Hardware")):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def max_freq_mhz(root: Path = Path("/")) -> float | None:
    """The highest maximum frequency of any core (big.LITTLE: the big cores)."""
    best = None
    for path in sorted((root / "sys/devices/system/cpu").glob("cpu[0-9]*/cpufreq/cpuinfo_max_freq")):
        try:
            khz = int(path.read_text().strip())
        except (OSError, ValueError):
            continue
        best = max(best or 0, khz / 1000)
    if best is None and root == Path("/"):
        freq = psutil.cpu_freq() if hasattr(psutil, "cpu_freq") else None
        best = freq.max if freq and freq.max else None
    return round(best, 0) if best else None


def board(root: Path = Path("/")) -> str | None:
    """The board or SoC where the OS names it: the device tree model (Raspberry Pi,
    Jetson and other Arm boards), Android properties, the Apple chip."""
    model = _read(root, "proc/device-tree/model") or _read(root, "sys/firmware/devicetree/base/model")
    if model:
        return model
    props = android_properties(root)
    if props:
        soc = props.get("ro.soc.model") or props.get("ro.board.platform")
        name = " ".join(v for v in (props.get("ro.product.manufacturer"), props.get("ro.product.model")) if v)
        return ", ".join(v for v in (name, soc) if v) or None
    if root == Path("/") and platform.system() == "Darwin":
        return _command(["sysctl", "-n", "machdep.cpu.brand_string"])
    return None


def android_properties(root: Path = Path("/")) -> dict[str, str]:
    """Android build properties: from build.prop files under root, else `getprop` on a
    live Android system."""
    props: dict[str, str] = {}
    for relative in ("system/build.prop", "vendor/build.prop"):
        for line in (_read(root, relative) or "").splitlines():
            key, sep, value = line.partition("=")
            if sep and not key.startswith("#"):
                props.setdefault(key.strip(), value.strip())
    if not props and root == Path("/") and shutil.which("getprop"):
        for key in ("ro.product.manufacturer", "ro.product.model", "ro.soc.model", "ro.board.platform"):
            value = _command(["getprop", key])
            if value:
                props[key] = value
    return props


def accelerators(root: Path = Path("/")) -> dict[str, str | None]:
    """GPU and NPU present, by the device nodes and drivers the OS exposes."""
    gpu = None
    if (root / "dev/nvidia0").exists() or (root / "proc/driver/nvidia").exists():
        gpu = "nvidia"
    elif (root / "dev/nvhost-gpu").exists() or (root / "dev/nvgpu").exists():
        gpu = "nvidia-tegra"
    elif (root / "dev/kgsl-3d0").exists():
        gpu = "adreno"
    elif (root / "dev/mali0").exists():
        gpu = "mali"
    elif list((root / "dev/dri").glob("renderD*")):
        gpu = "drm"
    elif root == Path("/") and platform.system() == "Darwin" and platform.machine() == "arm64":
        gpu = "apple"
    npu = None
    if (root / "dev/accel").is_dir() and any((root / "dev/accel").iterdir()):
        npu = "accel"
    elif (root / "dev/apex_0").exists():
        npu = "edgetpu"
    elif root == Path("/") and platform.system() == "Darwin" and platform.machine() == "arm64":
        npu = "apple-neural-engine"
    return {"gpu": gpu, "npu": npu}


def _command(argv: list[str]) -> str | None:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None if done.returncode == 0 else None


def device_facts(root: Path = Path("/")) -> dict:
    """Flat `device_*` fields for every record of a run."""
    extra = accelerators(root)
    facts = {
        "device_cpu_model": cpu_model(root),
        "device_cores_physical": psutil.cpu_count(logical=False),
        "device_cores_logical": psutil.cpu_count(logical=True),
        "device_max_freq_mhz": max_freq_mhz(root),
        "device_ram_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "device_os": f"{platform.system()} {platform.release()}",
        "device_arch": platform.machine(),
        "device_board": board(root),
        "device_gpu": extra["gpu"],
        "device_npu": extra["npu"],
        "device_python": platform.python_version(),
    }
    stable = [facts[k] for k in ("device_cpu_model", "device_cores_logical", "device_ram_gb", "device_arch")]
    facts["device_fingerprint"] = hashlib.sha256(repr(stable).encode()).hexdigest()[:16]
    return facts


def load_average_1m() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except (OSError, AttributeError):
        return None


def runtime_accelerators() -> dict[str, dict[str, str] | str]:
    """The accelerators each installed runtime can use here (its runner's `accelerators()`,
    asked in a child process of its own), or why it could not say: one broken runtime never
    breaks the list."""
    from concurrent.futures import ThreadPoolExecutor

    from bench.device.accelerators import available
    from runners import load_class, registrations

    targets = {
        name: reg.target
        for name, reg in registrations().items()
        if not reg.hidden and load_class(reg.target).probe().available
    }

    def ask(target: str) -> dict[str, str] | str:
        try:
            return available(target)
        except (RuntimeError, ValueError) as exc:
            return f"could not say: {exc}"

    with ThreadPoolExecutor(max_workers=len(targets) or 1) as pool:
        return dict(zip(targets, pool.map(ask, targets.values())))
