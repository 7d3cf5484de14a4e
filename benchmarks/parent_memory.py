"""Does the parent's memory stay flat as records pile up?

Runs the real supervisor in this process over thousands of FAKE-runner generations
(scripted, so they cost nothing but the worker round trip) and prints this process's RSS
every 1,000 records. Usage: python benchmarks/parent_memory.py [GENERATIONS]
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import psutil

from bench.run import setup as run_setup
from bench.run.execute import execute


def main(generations: int = 6000) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "script.json").write_text(json.dumps({"decode_ms": 5, "eos_after": 4}))
        quick_prompts = 6
        (tmp / "many.toml").write_text(
            f'name = "many"\ndescription = ""\nwarmups = 0\nrepetitions = {generations // quick_prompts}\n'
            'tags = ["short"]\n'
        )
        setup = run_setup.setup_run(
            run_setup.RunOptions(
                runners=("fake",),
                artifacts=(f"fake={tmp / 'script.json'}",),
                profile=str(tmp / "many.toml"),
                out=tmp / "out",
            )
        )
        me = psutil.Process()
        samples = []

        def on_record(record: dict) -> None:
            count = len(samples) + 1
            samples.append(None)
            if count % 1000 == 0 or count == 1:
                rss = me.memory_info().rss / 2**20
                print(f"{count:>7} records  parent RSS {rss:7.1f} MB", flush=True)
                samples[-1] = rss

        execute(setup, on_record=on_record)
        rss = [s for s in samples if s is not None]
        print(
            f"growth from record 1,000 to {len(samples):,}: {rss[-1] - rss[1]:+.1f} MB "
            f"({(rss[-1] - rss[1]) * 1024 / max(1, len(samples) - 1000):.2f} KB per record)"
        )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 6000)
