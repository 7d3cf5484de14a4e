"""--resume in process, on the FAKE runner: a run stopped partway and resumed holds each
measurement once, redoes the warm-ups of an unfinished prompt (its new worker starts cold),
and refuses a changed suite."""

from __future__ import annotations

import collections
import dataclasses

import pytest

from bench.errors import BenchError
from bench.records import iter_records
from bench.run.execute import execute
from bench.run.setup import RunOptions, setup_run

PROFILE = 'name = "two"\ndescription = ""\nwarmups = 1\nrepetitions = 2\ntags = ["short"]\ncontext_tokens = 1024\n'


def _options(tmp_path, script) -> RunOptions:
    (tmp_path / "profile.toml").write_text(PROFILE)
    return RunOptions(
        runners=("fake",),
        artifacts=(f"fake={script}",),
        profile=str(tmp_path / "profile.toml"),
        out=tmp_path / "out",
        quality=False,
    )


def _stop_after(measured: int):
    """An on_record that stops the run (as Ctrl-C does) once `measured` generations are in."""
    seen = []

    def on_record(record: dict) -> None:
        if not record["warmup"]:
            seen.append(record)
            if len(seen) == measured:
                raise KeyboardInterrupt

    return on_record


def test_a_resumed_run_holds_each_measurement_once_and_warms_up_again_where_it_stopped(tmp_path, fake_script):
    options = _options(tmp_path, fake_script())
    first = setup_run(options)
    assert execute(first, on_record=_stop_after(3)).interrupted
    # Prompt 1's two repetitions are in; prompt 2 stopped after its first (and the stop is
    # recorded, as Ctrl-C's is).
    stopped = [r for r in iter_records(first.results_path) if not r["warmup"] and r["status"] == "ok"]
    assert len(stopped) == 3

    resumed = setup_run(dataclasses.replace(options, resume=first.run_id))
    assert resumed.results_path == first.results_path and not execute(resumed).interrupted

    records = list(iter_records(first.results_path))
    measured = collections.Counter(
        (r["prompt_id"], r["repeat"]) for r in records if not r["warmup"] and r["status"] == "ok"
    )
    prompts = {job.prompt_id for job in first.jobs}
    assert set(measured) == {(p, n) for p in prompts for n in (0, 1)} and set(measured.values()) == {1}
    warmups = collections.Counter(r["prompt_id"] for r in records if r["warmup"])
    unfinished = stopped[-1]["prompt_id"]
    assert warmups[unfinished] == 2 and warmups[stopped[0]["prompt_id"]] == 1


def test_resume_refuses_a_suite_that_changed_since_the_run_started(tmp_path, fake_script):
    options = _options(tmp_path, fake_script())
    first = setup_run(options)
    execute(first, on_record=_stop_after(1))
    (tmp_path / "profile.toml").write_text(PROFILE.replace("repetitions = 2", "repetitions = 3"))
    with pytest.raises(BenchError, match="profile file changed"):
        setup_run(dataclasses.replace(options, resume=first.run_id))
