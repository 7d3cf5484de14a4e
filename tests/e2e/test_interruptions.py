"""Interrupted runs keep what they measured, and can be finished later."""

import signal
import subprocess
import time

import psutil
import pytest

from bench.records import ResultsWriter, iter_records
from tests.support.helpers import ROOT, cli, edgebench, on_fake, read_jsonl

SLOW = dict(decode_ms=1, hang_on="charged twice")  # classify-ticket sleeps for real


def start_run(tmp_path, script, *extra):
    return subprocess.Popen(
        cli(*on_fake("run", script), "--profile", "quick", "--out", str(tmp_path / "out"), *extra),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=like_a_foreground_job,
    )


def like_a_foreground_job():
    """Ctrl-C reaches the run even when the tests themselves run as a background job, which ignores SIGINT."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def wait_for_records(tmp_path, count, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        files = list((tmp_path / "out").glob("*.jsonl"))
        if files and len(read_jsonl(files[0])) >= count:
            return files[0]
        time.sleep(0.1)
    raise AssertionError("the run never got that far")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_stop_signal_records_the_generation_in_flight_and_exits_130(tmp_path, fake_script, sig):
    proc = start_run(tmp_path, fake_script(**SLOW))
    results = wait_for_records(tmp_path, 12)  # everything before classify-ticket
    time.sleep(0.5)
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130 and "Traceback" not in stderr
    records = read_jsonl(results)  # every line is complete JSON
    assert records[-1]["prompt_id"] == "classify-ticket" and records[-1]["status"] == "interrupted"
    assert results.with_suffix(".md").exists()


def test_a_worker_killed_with_sigkill_is_recorded_as_crashed_and_the_run_goes_on(tmp_path, fake_script):
    proc = start_run(tmp_path, fake_script(**SLOW), "--profile", str(tight_profile(tmp_path)))
    results = wait_for_records(tmp_path, 4)
    time.sleep(0.5)
    worker = next(c for c in psutil.Process(proc.pid).children() if "bench.workers.child" in " ".join(c.cmdline()))
    worker.kill()
    proc.communicate(timeout=60)
    records = {r["prompt_id"]: r for r in read_jsonl(results)}
    assert records["classify-ticket"]["status"] == "crashed"
    assert "SIGKILL" in records["classify-ticket"]["error"]
    assert records["pp128-tg64"]["status"] == "ok"


def tight_profile(tmp_path):
    path = tmp_path / "one.toml"
    path.write_text('name = "one"\ndescription = ""\nwarmups = 0\nrepetitions = 1\ntags = ["short"]\n')
    return path


def test_a_worker_over_its_memory_limit_is_recorded_as_oom(tmp_path, fake_script):
    script = fake_script(grow_on="capital of France", grow_mb=600)
    result = edgebench(
        *on_fake("run", script),
        "--profile",
        str(tight_profile(tmp_path)),
        "--out",
        str(tmp_path),
        "--memory-limit-mb",
        "300",
    )
    records = {r["prompt_id"]: r for r in read_jsonl(next(tmp_path.glob("*.jsonl")))}
    assert records["chat-capital"]["status"] == "oom" and "limit of 300 MB" in records["chat-capital"]["error"]
    assert records["pp128-tg64"]["status"] == "ok" and result.returncode == 1


def test_a_resumed_run_finishes_with_the_same_measurements_as_an_uninterrupted_one(tmp_path, fake_script):
    script = fake_script(decode_ms=1, hang_on="charged twice", hang_once=str(tmp_path / "hung"))
    proc = start_run(tmp_path, script)
    results = wait_for_records(tmp_path, 12)
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=30)
    resumed = edgebench("run", "--resume", results.stem, "--out", str(tmp_path / "out"))
    assert resumed.returncode == 0, resumed.stderr
    measured = [(r["prompt_id"], r["repeat"]) for r in read_jsonl(results) if not r["warmup"] and r["status"] == "ok"]
    full = edgebench(
        *on_fake("run", script),
        "--profile",
        "quick",  # hangs no more
        "--out",
        str(tmp_path / "full"),
    )
    expected = [
        (r["prompt_id"], r["repeat"]) for r in read_jsonl(next((tmp_path / "full").glob("*.jsonl"))) if not r["warmup"]
    ]
    assert sorted(measured) == sorted(expected) and full.returncode == 0
    assert len({r["run_id"] for r in read_jsonl(results)}) == 1


def test_resume_refuses_a_run_it_cannot_find(tmp_path):
    result = edgebench("run", "--resume", "20990101-000000-abcd", "--out", str(tmp_path))
    assert result.returncode == 1 and "no resumable run" in result.stderr


def test_a_truncated_last_line_is_skipped_by_readers_and_cut_before_appending(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text('{"schema_version": 1, "a": 1}\n{"schema_version": 1, "a"')
    warnings = []
    assert [r["a"] for r in iter_records(path, warnings.append)] == [1] and "truncated" in warnings[0]
    writer = ResultsWriter(path, warnings.append)
    writer.append({"schema_version": 1, "a": 2})
    writer.close()
    assert [r["a"] for r in iter_records(path)] == [1, 2] and "unfinished last line" in warnings[1]


def test_resume_refuses_when_an_artifact_changed(tmp_path, fake_script):
    script = fake_script(decode_ms=1, hang_on="charged twice")
    proc = start_run(tmp_path, script)
    results = wait_for_records(tmp_path, 12)
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=30)
    script.write_text('{"decode_ms": 2}')
    result = edgebench("run", "--resume", str(results))
    assert result.returncode == 1 and "artifact of fake changed" in result.stderr


def test_two_runs_into_one_folder_at_once_keep_their_own_files(tmp_path, fake_script):
    script = fake_script(decode_ms=1)
    runs = [start_run(tmp_path, script) for _ in range(2)]
    assert all(proc.wait(timeout=120) == 0 for proc in runs)
    files = sorted((tmp_path / "out").glob("*.jsonl"))
    assert len(files) == 2
    for path in files:
        records = read_jsonl(path)  # every line whole: nothing interleaved
        assert len(records) == 18 and len({r["run_id"] for r in records}) == 1


@pytest.mark.parametrize(
    "command",
    [
        ("report", "{file}", "--format", "md"),
        ("matrix", "{file}", "--out", "{tmp}/matrix"),
        ("compare", "{file}", "{file}", "--allow-missing"),
    ],
)
def test_every_reader_warns_of_a_truncated_last_line_with_its_file_and_line(tmp_path, command):
    path = tmp_path / "cut.jsonl"
    whole = (ROOT / "tests" / "fixtures" / "results-v3.jsonl").read_text()
    path.write_text(whole + whole.splitlines()[0][:40])  # a seventh line, cut short
    for _ in range(2):  # the second read of matrix and compare comes from the column cache
        result = edgebench(
            *(part.format(file=path, tmp=tmp_path) for part in command),
            env={"EDGEBENCH_COLUMN_CACHE": str(tmp_path / "columns")},
        )
        assert result.returncode in (0, 1) and "Traceback" not in result.stderr, result.stderr
        assert f"{path}:7: skipped a truncated last line" in result.stderr
