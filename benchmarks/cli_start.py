"""How fast does `edgebench` answer? `--help` and `runners` against bare `python -c pass`.

Interleaves the commands (so a busy machine slows all of them alike), runs each N times
(default 10) and prints the medians, the difference and the ratio to Python's own start.
Usage: python benchmarks/cli_start.py [N]
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

EDGEBENCH = str(Path(sys.executable).with_name("edgebench"))
COMMANDS = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "edgebench --help": [EDGEBENCH, "--help"],
    "edgebench runners": [EDGEBENCH, "runners"],
}


def wall_time(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - start


def main(repeats: int = 10) -> None:
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for _ in range(repeats):
        for name, argv in COMMANDS.items():
            times[name].append(wall_time(argv))
    base = statistics.median(times["python -c pass"])
    for name, samples in times.items():
        median = statistics.median(samples)
        print(
            f"{name:20} median {median:.3f} s (min {min(samples):.3f}, max {max(samples):.3f}); "
            f"{median - base:+.3f} s, {median / base:.1f}x python -c pass"
        )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 10)
