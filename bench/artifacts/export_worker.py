"""`prepare`'s work in its child process (bench.workers.child): run one exporter function.

The task `export` gets {"target", "input", "out", "quantization", "context"} (context: None for
the exporter's own KV capacity, else passed as its `context` keyword) and returns what the
exporter returns (said as Finished). What the child prints is the export log. An exporter
function that takes a `stage` keyword gets a callable that names the stage it enters
("export", "lowering", ...): the name goes to the parent as a Step message and into the log.
One that takes none runs as a single stage, "export".
"""

from __future__ import annotations

import inspect
from pathlib import Path

from bench.workers.child import Channel
from bench.workers.protocol import Step
from runners import load_class


def export(work: dict, channel: Channel) -> dict:
    exporter = load_class(work["target"])

    def stage(name: str) -> None:
        print(f"[edgebench] stage: {name}", flush=True)
        channel.send(Step(name))

    context = {"context": work["context"]} if work.get("context") is not None else {}
    if "stage" in inspect.signature(exporter).parameters:
        return exporter(Path(work["input"]), Path(work["out"]), work["quantization"], stage=stage, **context)
    stage("export")  # an exporter that names no stages is one stage long
    return exporter(Path(work["input"]), Path(work["out"]), work["quantization"], **context)
