"""Child-process entry of `prepare`: run one exporter function, write its result.

`python -m bench.artifacts.export_worker` reads {"target", "input", "out", "quantization",
"result", "stage_fd"} as JSON on stdin. Its stdout and stderr are the export log. An
exporter function that takes a `stage` keyword gets a callable that names the stage it
enters ("export", "lowering", ...): the name goes to the parent on `stage_fd`, one a line,
and into the log. One that takes none runs as a single stage, "export".
"""

from __future__ import annotations

import inspect
import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Callable

from runners import load_class


def _exit_with_parent() -> None:
    """An export whose `prepare` was killed outright stops too, instead of running on."""
    parent = os.getppid()
    while os.getppid() == parent:
        time.sleep(1)
    os._exit(1)


def stage_reporter(fd: int) -> Callable[[str], None]:
    channel = os.fdopen(fd, "w", buffering=1)

    def stage(name: str) -> None:
        print(f"[edgebench] stage: {name}", flush=True)
        channel.write(f"{name}\n")
        channel.flush()

    return stage


def main() -> None:
    threading.Thread(target=_exit_with_parent, daemon=True).start()
    job = json.loads(sys.stdin.read())
    export = load_class(job["target"])
    stage = stage_reporter(job["stage_fd"])
    if "stage" in inspect.signature(export).parameters:
        result = export(Path(job["input"]), Path(job["out"]), job["quantization"], stage=stage)
    else:  # an exporter that names no stages is one stage long
        stage("export")
        result = export(Path(job["input"]), Path(job["out"]), job["quantization"])
    Path(job["result"]).write_text(json.dumps(result))


if __name__ == "__main__":
    main()
