"""Facts about the machine a run measures on, collected once per run, and the state
(load) at the start of each measurement."""
from __future__ import annotations

import hashlib
import os
import platform
from pathlib import Path

import psutil


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_facts() -> dict:
    """Flat `device_*` fields for every record of a run."""
    facts = {
        "device_cpu_model": cpu_model(),
        "device_cores_physical": psutil.cpu_count(logical=False),
        "device_cores_logical": psutil.cpu_count(logical=True),
        "device_ram_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "device_os": f"{platform.system()} {platform.release()}",
        "device_arch": platform.machine(),
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
