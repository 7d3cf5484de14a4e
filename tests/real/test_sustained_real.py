"""Sustained mode on llama.cpp and the default model: a competing CPU load that starts
partway through must show up as a drop within one window of its onset."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from bench.records import iter_records, read_records
from bench.run import setup as run_setup
from bench.run.execute import execute
from bench.views.sustained_report import results_for

DURATION_S, WINDOW_S, ONSET_AFTER_S = 40, 5, 20

# Short generations (about a second each here) give every window several points.
SUITE = """id = "sustained-probe"
description = "A short fixed-length probe."
version = 1
[[prompt]]
id = "text"
category = "source"
kind = "completion"
description = "Fill text."
text = "The quarterly report describes sales, costs and the plans for the next year in detail."
max_new_tokens = 8
[[prompt]]
id = "pp16-tg32"
category = "throughput"
kind = "fixed"
description = "Prefill 16 tokens, decode 32."
prompt_tokens = 16
fill_from = "text"
max_new_tokens = 32
"""
PROFILE = """name = "sustained-probe"
description = "One warm-up, then the probe back to back."
warmups = 1
repetitions = 1
context_tokens = 256
[sustained]
prompt = "pp16-tg32"
duration = "40s"
window = "5s"
"""


@pytest.mark.real
@pytest.mark.idle  # the onset is told from the throughput before it: other load would blur both
def test_competing_load_is_found_within_one_window_of_its_onset(tmp_path):
    pytest.importorskip("llama_cpp")
    (tmp_path / "suite.toml").write_text(SUITE)
    (tmp_path / "profile.toml").write_text(PROFILE)
    # One thread: a busy-waiting thread pool would collapse under the competing load
    # (see RECIPES) instead of slowing down the way time-sharing does.
    setup = run_setup.setup_run(
        run_setup.RunOptions(
            runners=("llama.cpp",),
            suite=str(tmp_path / "suite.toml"),
            profile=str(tmp_path / "profile.toml"),
            threads=1,
            out=tmp_path / "out",
            sustained=True,
        )
    )
    hogs: list[subprocess.Popen] = []
    onset: list[float] = []

    def on_record(record: dict) -> None:
        if record["elapsed_s"] is None or hogs:
            return
        now = record["elapsed_s"] + record["e2e_ms"] / 1000  # the loop's clock, just after this generation
        if now >= ONSET_AFTER_S:
            onset.append(now)
            # Each busy loop in its own session: with the kernel's autogroup scheduling, loops
            # sharing one session would only compete as one program.
            hogs.extend(
                subprocess.Popen([sys.executable, "-c", "while True: pass"], start_new_session=True)
                for _ in range(2 * (os.cpu_count() or 2))
            )

    try:
        result = execute(setup, on_record=on_record)
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()
    assert not result.outcomes[0].failed and onset
    (found,) = results_for(
        read_records([setup.results_path]), list(iter_records(setup.samples_path)), DURATION_S, WINDOW_S
    )
    print(
        f"\nload onset {onset[0]:.1f} s; burst {found.burst_tok_s:.1f} tok/s, floor {found.floor_tok_s:.1f} tok/s, "
        f"drops {found.drop_s}, evidence {found.evidence}"
    )
    assert found.drop_s[25] is not None and abs(found.drop_s[25] - onset[0]) <= WINDOW_S
    assert found.floor_tok_s < 0.75 * found.burst_tok_s
    assert any("other programs" in seen for seen in found.evidence[25])
