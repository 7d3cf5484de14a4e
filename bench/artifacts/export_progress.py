"""What a running export shows: its stage, elapsed time and an estimate.

The estimate is the last export of the same model, exporter and quantization on this
machine (timings.json beside the cache), else the exporter's typical figure (its
`typical_seconds`). LinePrinter prints plain
lines for logs: one per stage and a heartbeat every few seconds.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from bench.data.models import Model
from bench.records import utc_now
from runners.base import Exporter

TIMINGS = "timings.json"  # beside the cache: how long each export last took on this machine
# Logs get a progress line at least this often while an export runs (never minutes of silence).
HEARTBEAT_S = 5.0
# Where an exporter's typical_seconds come from (runners.base.Exporter).
TYPICAL_BASIS = "typical on a 2-core x86 for SmolLM2-135M"


@dataclass(frozen=True)
class Estimate:
    seconds: float | None
    basis: str  # where the figure comes from, said beside it


@dataclass(frozen=True)
class ExportProgress:
    """One look at a running export: what a progress display shows."""

    label: str  # e.g. "executorch 8da4w"
    stage: str  # the stage the exporter last named ("starting" before the first, "done" at the end)
    elapsed_s: float
    estimate: Estimate

    def status(self) -> str:
        if self.stage == "done":
            return f"done in {_duration(self.elapsed_s)}"
        if self.estimate.seconds is None:
            return f"{self.stage}, {_duration(self.elapsed_s)} elapsed ({self.estimate.basis})"
        return (
            f"{self.stage}, {_duration(self.elapsed_s)} elapsed of ~{_duration(self.estimate.seconds)} "
            f"({self.estimate.basis})"
        )

    def line(self) -> str:
        return f"prepare {self.label}: {self.status()}"


class LinePrinter:
    """Progress for logs and CI: a line whenever the stage changes, and a heartbeat at
    least every `heartbeat_s` (default $EDGEBENCH_HEARTBEAT_S, else HEARTBEAT_S) between."""

    def __init__(self, stream=None, heartbeat_s: float | None = None):
        self.stream = stream
        self.heartbeat_s = heartbeat_s or float(os.environ.get("EDGEBENCH_HEARTBEAT_S") or HEARTBEAT_S)
        self.shown, self.printed_at = None, 0.0

    def __call__(self, progress: ExportProgress) -> None:
        now = time.monotonic()
        if (progress.label, progress.stage) != self.shown or now - self.printed_at >= self.heartbeat_s:
            print(progress.line(), file=self.stream or sys.stderr, flush=True)
            self.shown, self.printed_at = (progress.label, progress.stage), now


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def _timing_key(model: Model, exporter: Exporter, quantization: str) -> str:
    return f"{model.id} | {exporter.tool} | {quantization}"


def _read_timings(root: Path) -> dict:
    try:
        return json.loads((root / TIMINGS).read_text())
    except (OSError, ValueError):
        return {}


def estimate(model: Model, exporter: Exporter, quantization: str, root: Path) -> Estimate:
    """How long this export should take: the last one of the same model, exporter and
    quantization on this machine, else the typical figure, else none."""
    last = _read_timings(root).get(_timing_key(model, exporter, quantization))
    if last:
        return Estimate(last["seconds"], f"last export here took {_duration(last['seconds'])}")
    typical = exporter.typical_seconds.get(quantization)
    if typical:
        return Estimate(typical, TYPICAL_BASIS)
    return Estimate(None, "no estimate: first export of this kind here")


def remember_timing(model: Model, exporter: Exporter, quantization: str, root: Path, seconds: float) -> None:
    timings = _read_timings(root)
    timings[_timing_key(model, exporter, quantization)] = {"seconds": seconds, "at": utc_now()}
    (root / TIMINGS).write_text(json.dumps(timings, indent=2, sort_keys=True))
