"""A worker that crashes, hangs or fails becomes a record, and the run goes on."""

import pytest

from tests.support.helpers import edgebench, on_fake, read_jsonl

PROFILE = """name = "tight"
description = "quick prompts, 1 repetition, short timeouts"
warmups = 0
repetitions = 1
tags = ["short"]
context_tokens = 1024
generation_timeout_s = 3
load_timeout_s = 20
"""


@pytest.fixture
def run_fake(tmp_path, fake_script):
    profile = tmp_path / "tight.toml"
    profile.write_text(PROFILE)

    def run(**script):
        out = tmp_path / "out"
        result = edgebench(
            *on_fake("run", fake_script(**script)),
            "--profile",
            str(profile),
            "--out",
            str(out),
        )
        return result, {r["prompt_id"]: r for r in read_jsonl(next(out.glob("*.jsonl")))}

    return run


def test_a_segfault_is_recorded_as_crashed_and_the_other_prompts_still_run(run_fake):
    result, records = run_fake(crash_on="capital of France")
    assert result.returncode == 1
    assert records["chat-capital"]["status"] == "crashed"
    assert "SIGSEGV" in records["chat-capital"]["error"]
    others = [r for p, r in records.items() if p != "chat-capital"]
    assert len(others) == 5 and all(r["status"] == "ok" for r in others)
    assert "1 crashed" in result.stdout


def test_a_hang_past_the_generation_timeout_is_recorded_as_timeout(run_fake):
    result, records = run_fake(hang_on="charged twice")
    assert records["classify-ticket"]["status"] == "timeout"
    assert "exceeded 3 s" in records["classify-ticket"]["error"]
    assert records["pp128-tg64"]["status"] == "ok"  # the prompt after it, in a fresh worker


def test_an_exception_in_the_runtime_is_an_error_record_and_the_worker_goes_on(run_fake):
    result, records = run_fake(raise_on="Maria Lopez")
    assert records["extract-order"]["status"] == "error"
    assert "scripted failure" in records["extract-order"]["error"]
    assert sum(r["status"] == "ok" for r in records.values()) == 5


def test_an_artifact_the_runtime_cannot_load_ends_that_runner_with_one_record(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    out = tmp_path / "out"
    result = edgebench(*on_fake("run", bad), "--profile", "quick", "--out", str(out))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    (record,) = read_jsonl(next(out.glob("*.jsonl")))
    assert record["status"] == "error" and "not a fake-runner script" in record["error"]
    assert record["prompt_id"] is None
