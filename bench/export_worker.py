"""Child-process entry of `prepare`: run one exporter function, write its result.

`python -m bench.export_worker` reads {"target", "input", "out", "quantization",
"result"} as JSON on stdin. Its stdout and stderr are the export log.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from runners import load_class


def main() -> None:
    job = json.loads(sys.stdin.read())
    export = load_class(job["target"])
    result = export(Path(job["input"]), Path(job["out"]), job["quantization"])
    Path(job["result"]).write_text(json.dumps(result))


if __name__ == "__main__":
    main()
