"""Scale benchmark: merge 1,000 results files / 1,000,000 records into the device matrix.

Generates complete records (every field, raw token stamps and output text included, as
real files hold them) for simulated devices in a temporary folder, then times
`matrix.load` (the column reader; cold, then through its column cache) and `matrix.build`
(grouping and verdicts). References measured in the same run: reading the files' bytes
alone (the floor any reader pays), and the plain reader (`json.loads` of every line, as
`records.read_records` does) on a sample of files, scaled to all records. Figures depend
on the machine and its load; run it on a quiet one.

    python benchmarks/matrix_scale.py [--files 1000] [--records 1000000]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.records import read_records  # noqa: E402
from bench.views import matrix  # noqa: E402
from tests.support import simulated_devices as sim  # noqa: E402


def generate(folder: Path, files: int, records: int, units: int) -> int:
    """`files` files from a farm of `units` simulated devices (each a copy of one of the
    simulated phones and boards, under its own name), cycling runtimes and quantizations."""
    profiles = list(sim.PROFILES)
    per_file = records // files
    written = 0
    for i in range(files):
        unit = i % units
        profile = profiles[unit % len(profiles)]
        template = sim.records(
            profile,
            runner=("llama.cpp", "onnxruntime")[(i // units) % 2],
            quant=("Q4_1", "Q8_0")[(i // units // 2) % 2],
            decode=20 + i % 7,
            ttft=100 + i % 13,
            run=str(i),
        )
        for r in template:
            r["device_profile"] = r["device_fingerprint"] = f"{profile}-unit{unit:03d}"
        lines = [json.dumps(r, ensure_ascii=False) for r in template]
        with (folder / f"{profile}-{i:04d}.jsonl").open("w") as f:
            for n in range(per_file):
                f.write(lines[n % len(lines)] + "\n")
        written += per_file
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--devices", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="edgebench-scale-") as tmp:
        folder = Path(tmp) / "results"
        folder.mkdir()
        os.environ["EDGEBENCH_COLUMN_CACHE"] = str(Path(tmp) / "column-cache")
        start = time.perf_counter()
        count = generate(folder, args.files, args.records, args.devices)
        size = sum(p.stat().st_size for p in folder.iterdir())
        print(
            f"generated {args.files} files, {count:,} records, {size / 2**20:,.0f} MB "
            f"in {time.perf_counter() - start:.1f} s"
        )
        paths = sorted(folder.iterdir())
        start = time.perf_counter()
        for path in paths:
            path.read_bytes()
        floor = time.perf_counter() - start
        sample = paths[: max(1, len(paths) // 50)]
        start = time.perf_counter()
        sampled = len(read_records(sample))
        plain = (time.perf_counter() - start) * count / sampled
        print(
            f"reference: reading the bytes {floor:.2f} s; plain json reader {plain:.1f} s "
            f"(measured on {len(sample)} files, scaled to {count:,} records)"
        )
        steps = (
            "first merge (parses every file, fills the column cache)",
            "merge again (column cache)",
            "merge after one more job's file lands (only it is parsed)",
        )
        for what in steps:
            if what == steps[2]:
                shutil.copy(paths[0], folder / "one-more-job.jsonl")
            start = time.perf_counter()
            frame, files = matrix.load([str(folder)])
            loaded = time.perf_counter() - start
            start = time.perf_counter()
            built = matrix.build(frame, files)
            merged = time.perf_counter() - start
            print(
                f"{what}: read {len(frame):,} records ({len(matrix.COLUMNS)} columns) in {loaded:.1f} s "
                f"({len(frame) / loaded:,.0f} records/s); built {len(built.rows)} matrix rows in {merged:.1f} s; "
                f"total {loaded + merged:.1f} s = {(loaded + merged) / plain:.3f}x the plain reader, "
                f"{(loaded + merged) / floor:.1f}x reading the bytes"
            )
        start = time.perf_counter()
        subprocess.run(
            [
                sys.executable,
                "-c",
                "from bench.cli import main; main()",
                "matrix",
                str(folder),
                "--out",
                str(Path(tmp) / "matrix"),
            ],
            check=True,
            capture_output=True,
        )
        print(
            f"`edgebench matrix RESULTS --out DIR` as a user runs it again (start-up, merge, Markdown, CSV, "
            f"HTML): {time.perf_counter() - start:.1f} s"
        )


if __name__ == "__main__":
    main()
