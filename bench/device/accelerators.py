"""Accelerators: what each runtime can use here, a request checked before anything loads, and
what a record says about where the model ran.

The parent never imports a runtime: a runner's `accelerators()` (which may import it) is asked
in a child process, so a runtime that crashes on the question cannot take the caller down.
"""

from __future__ import annotations

import json
import subprocess
import sys

from bench.errors import BenchError
from runners.base import ACCELERATORS

_ASK = "import json, sys; from runners import load_class; print(json.dumps(load_class(sys.argv[1]).accelerators()))"
# Every runner runs on the CPU; `auto` is the runtime's own choice, proven by what it reports.
_NEEDS_NO_CHECK = ("auto", "cpu")


def available(target: str, timeout_s: float = 120) -> dict[str, str]:
    """Runner `target`'s accelerators on this machine ({"cpu": "...", "gpu": "CUDA0 (...)"}),
    as its runtime reports them. Raises RuntimeError with the child's last words if it fails."""
    try:
        done = subprocess.run([sys.executable, "-c", _ASK, target], capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"no answer within {timeout_s:g} s") from None
    lines = done.stdout.strip().splitlines()
    if done.returncode or not lines:
        tail = done.stderr.strip().splitlines()[-1:] or [f"exit code {done.returncode}"]
        raise RuntimeError(tail[0])
    return json.loads(lines[-1])  # the last line: a runtime may print to stdout on import


def check_request(name: str, target: str, asked: str | None) -> None:
    """Refuse, in one line and before any model loads, an accelerator that is not a kind, or
    that this runner's runtime cannot use here (naming what it can)."""
    if asked is None or asked in _NEEDS_NO_CHECK:
        return
    if asked not in ACCELERATORS:
        raise BenchError(
            f"--accelerator {name}={asked}: not an accelerator", f"use one of {', '.join(ACCELERATORS)}", exit_code=2
        )
    try:
        found = available(target)
    except RuntimeError as exc:
        raise BenchError(
            f"could not ask {name} which accelerators it can use: {exc}",
            f"run `edgebench device` to see each runtime's accelerators, or use --accelerator {name}=cpu",
        ) from None
    if asked not in found:
        seen = ", ".join(f"{kind} ({what})" for kind, what in found.items())
        raise BenchError(
            f"{name} finds no {asked} it can use here; it sees: {seen}",
            f"use --accelerator {name}={next(iter(found))}, or run where {name} has a {asked}",
        )


def record_fields(asked: str | None, loaded: dict, allow_fallback: bool, status: str) -> dict:
    """The record's placement fields from what the runtime reported at load, and the status:
    a generation that ran elsewhere than asked (a GPU run that fell back to the CPU) is an
    `error` saying so, unless the run allows fallback."""
    used = loaded.get("accelerator")
    fields = {
        "accelerator_requested": asked,
        "accelerator": used,
        "placement": loaded.get("placement") or None,
        "accelerator_memory_mb": loaded.get("accelerator_memory_mb"),
    }
    if status == "ok" and not allow_fallback and asked not in (None, "auto") and used != asked:
        ran = f"the runtime reports it ran on the {used}" if used else "the runtime did not report where it ran"
        fields |= {
            "status": "error",
            "error": f"asked for the {asked}, but {ran} (pass --allow-fallback to keep "
            "such results, marked as run elsewhere)",
        }
    return fields
