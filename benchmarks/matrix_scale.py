"""Scale benchmark: merge 1,000 results files / 1,000,000 records into the device matrix.

Generates complete records (every field, raw token stamps and output text included, as
real files hold them) for simulated devices in a temporary folder, then times
`matrix.load` (the column reader; cold, then through its column cache) and `matrix.build`
(grouping and verdicts). Figures
depend on the machine and its load; run it on a quiet one.

    python benchmarks/matrix_scale.py [--files 1000] [--records 1000000]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import matrix  # noqa: E402
from tests import simulated_devices as sim  # noqa: E402


def generate(folder: Path, files: int, records: int) -> int:
    """`files` files of records cycling through simulated devices, runtimes and quantizations."""
    devices = list(sim.PROFILES)
    per_file = records // files
    written = 0
    for i in range(files):
        device = devices[i % len(devices)]
        template = sim.records(device, runner=("llama.cpp", "onnxruntime")[i % 2], quant=("Q4_1", "Q8_0")[(i // 2) % 2],
                               decode=20 + i % 7, ttft=100 + i % 13, run=str(i))
        lines = [json.dumps(r, ensure_ascii=False) for r in template]
        with (folder / f"{device}-{i:04d}.jsonl").open("w") as f:
            for n in range(per_file):
                f.write(lines[n % len(lines)] + "\n")
        written += per_file
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--records", type=int, default=1_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="edgebench-scale-") as tmp:
        folder = Path(tmp) / "results"
        folder.mkdir()
        os.environ["EDGEBENCH_COLUMN_CACHE"] = str(Path(tmp) / "column-cache")
        start = time.perf_counter()
        count = generate(folder, args.files, args.records)
        size = sum(p.stat().st_size for p in folder.iterdir())
        print(f"generated {args.files} files, {count:,} records, {size / 2**20:,.0f} MB "
              f"in {time.perf_counter() - start:.1f} s")
        for what in ("first merge (parses every file, fills the column cache)", "merge again (column cache)"):
            start = time.perf_counter()
            frame, files = matrix.load([str(folder)])
            loaded = time.perf_counter() - start
            start = time.perf_counter()
            built = matrix.build(frame, files)
            merged = time.perf_counter() - start
            print(f"{what}: read {len(frame):,} records ({len(matrix.COLUMNS)} columns) in {loaded:.1f} s "
                  f"({len(frame) / loaded:,.0f} records/s); built {len(built.rows)} matrix rows in {merged:.1f} s; "
                  f"total {loaded + merged:.1f} s")


if __name__ == "__main__":
    main()
