"""The real tests' slowest exports, made ahead by one background process.

With an empty test cache (a new CI machine) the real tests export LiteRT and ExecuTorch
artifacts one after another (~5 min on 2 idle cores, ~16 min on a loaded one), while the
second core idles. When a session collects the tests that need them, conftest starts this
module as a process: it builds the inputs the fixtures build (the same content, so the same
cache keys) and prepares each artifact into the tests' cache, in the order the tests need
them, while the unit and end-to-end tests run.

A fixture that needs one of them calls `wait_for(...)` first, then prepares it as before:
from the cache, or, where the process failed or was not started, by exporting it itself. So
no verdict depends on this process; it only moves work onto the idle core. With a warm
cache it finds every artifact in seconds.

    python -m tests.support.exports_ahead CACHE STATUS_FILE
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.support.helpers import ROOT

DEFAULT_MODEL = "smollm2-135m"
# (model, runner, quantization) in the order the real test modules need them: tests/real runs
# test_accelerators (tiny LiteRT int8), then test_executorch (sharp tiny), then test_litert.
AHEAD = (
    ("tiny", "litert", "int8"),
    ("tiny", "litert", "fp32"),
    ("sharp", "executorch", "fp32"),
    ("sharp", "executorch", "8da4w"),
    (DEFAULT_MODEL, "litert", "fp32"),
)
CHECKPOINT = (DEFAULT_MODEL, "checkpoint", "fp32")
# The test modules that use them: a session that collects none starts no process.
NEEDED_BY = ("test_accelerators.py", "test_executorch.py", "test_litert.py")
# A fixture waits at most this long, then exports itself (a stuck export must not hang the session).
WAIT_LIMIT_S = 30 * 60

_started: tuple[subprocess.Popen, Path] | None = None


def key(model: str, runner: str, quantization: str) -> str:
    return f"{model} {runner} {quantization}"


def start(cache: Path) -> None:
    """Start the process (once per session); its log goes to CACHE/exports-ahead.log."""
    global _started
    if _started is not None:
        return
    descriptor, name = tempfile.mkstemp(prefix="edgebench-exports-ahead-")
    os.close(descriptor)
    status = Path(name)
    with (cache / "exports-ahead.log").open("w") as log:  # the child keeps its own copy
        process = subprocess.Popen(
            [sys.executable, "-m", "tests.support.exports_ahead", str(cache), str(status)],
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its exports' workers are stopped with it
        )
    _started = (process, status)


def stop() -> None:
    """End the process and its export workers if the session ends before it does."""
    global _started
    if _started is None:
        return
    process, status = _started
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait()
    status.unlink(missing_ok=True)
    _started = None


def wait_for(model: str, runner: str, quantization: str) -> None:
    """Return once the process has made (or failed) this artifact, or has ended; at once for
    an artifact it does not make."""
    if _started is None or (model, runner, quantization) not in (CHECKPOINT, *AHEAD):
        return
    process, status = _started
    wanted, deadline = key(model, runner, quantization), time.monotonic() + WAIT_LIMIT_S
    while process.poll() is None and time.monotonic() < deadline:
        if any(line.split(" ", 1)[1] == wanted for line in status.read_text().splitlines()):
            return
        time.sleep(1)


def _prepare_all(cache: Path, status: Path, work: Path) -> None:
    from bench.artifacts import prepare
    from bench.data import models
    from runners import load_class, registrations
    from tests.support.tiny_model import SHARP_FOLDER, TINY_FOLDER, build_tiny_checkpoint, sharpened

    def done(outcome: str, what: tuple[str, str, str]) -> None:
        with status.open("a") as f:
            f.write(f"{outcome} {key(*what)}\n")

    quiet = {"progress": lambda progress: None}
    default = prepare.checkpoint(models.get_model(DEFAULT_MODEL), cache, **quiet).path
    done("ready", CHECKPOINT)
    tiny = build_tiny_checkpoint(work / TINY_FOLDER, default)
    inputs = {"tiny": tiny, "sharp": sharpened(tiny, work / SHARP_FOLDER), DEFAULT_MODEL: DEFAULT_MODEL}
    for what in AHEAD:
        model, runner, quantization = what
        try:
            exporter = load_class(registrations()[runner].target).exporter
            prepare.prepare_artifact(
                models.get_model(str(inputs[model])), runner, exporter, quantization, cache, **quiet
            )
            done("ready", what)
        except Exception as error:  # the fixture exports it itself, and reports what went wrong
            print(f"{key(*what)}: {error}", flush=True)
            done("failed", what)


if __name__ == "__main__":
    with tempfile.TemporaryDirectory(prefix="edgebench-exports-ahead-") as work:
        _prepare_all(Path(sys.argv[1]), Path(sys.argv[2]), Path(work))
