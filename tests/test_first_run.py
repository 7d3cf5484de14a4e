"""The first run as a new user meets it: a quick CLI, progress lines in a log, a time
budget that keeps slow runtimes from holding the job, results early, and a compact summary.

Runs use the FAKE runner (scripted clock: its rates are exact and cost no time) in real
worker processes, with output sent to pipes as a CI log would get it."""

import json
import subprocess
import sys

import pytest

from bench.data.suite import load_suite
from tests.helpers import ROOT, edgebench, read_jsonl

HEAVY = (
    "pandas",
    "numpy",
    "bench.views.report",
    "bench.artifacts.prepare",
    "bench.run.setup",
    "bench.run.supervisor",
    "bench.views.matrix",
)
# Paced like MLX on this machine's CPU: prefill 10 tok/s, decode 8 tok/s (scripted, so instant).
SLOW = dict(load_ms=50, prefill_ms_per_token=100, first_token_ms=0, decode_ms=125, eos_after=10_000)


def loaded_after(code: str) -> list[str]:
    probe = f"import sys\n{code}\nprint('loaded:' + ','.join(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, check=True)
    return [m for m in out.stdout.strip().splitlines()[-1].removeprefix("loaded:").split(",") if m]


def test_the_cli_imports_no_command_modules_up_front():
    assert loaded_after("import bench.cli") == []


def test_help_answers_without_the_command_modules():
    code = (
        "sys.argv = ['edgebench', '--help']\nfrom bench.cli import main\ntry:\n    main()\nexcept SystemExit:\n    pass"
    )
    assert loaded_after(code) == []


def test_a_log_gets_a_heartbeat_while_a_generation_runs_long(tmp_path, fake_script):
    """classify-ticket's warm-up hangs for real until the 4 s generation timeout; with a
    0.5 s heartbeat the log must say what runs, and for how long, several times meanwhile."""
    script = fake_script(decode_ms=1, hang_on="charged twice")
    profile = tmp_path / "slow.toml"
    profile.write_text(
        'name = "slow"\ndescription = ""\nwarmups = 1\nrepetitions = 1\ntags = ["short"]\ngeneration_timeout_s = 4\n'
    )
    result = edgebench(
        "run",
        "--runner",
        "fake",
        "--artifact",
        f"fake={script}",
        "--profile",
        str(profile),
        "--out",
        str(tmp_path / "out"),
        env={"EDGEBENCH_HEARTBEAT_S": "0.5"},
    )
    lines = result.stderr.splitlines()
    beats = [line for line in lines if line.startswith("... fake: classify-ticket warm-up: running for")]
    assert len(beats) >= 3, result.stderr
    records = read_jsonl(next((tmp_path / "out").glob("*.jsonl")))
    finished = [line for line in lines if line.startswith("fake ") and "TTFT" in line]
    assert len(finished) == sum(r["status"] == "ok" for r in records)  # one line per finished generation
    assert any("classify-ticket warm-up: timeout" in line for line in lines)


@pytest.fixture(scope="module")
def budget_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("budget")
    (tmp / "slow.json").write_text(json.dumps(SLOW))
    result = edgebench("run", "--runner", "fake", "--artifact", f"fake={tmp / 'slow.json'}", "--out", str(tmp / "out"))
    return result, tmp


def test_a_prompt_too_slow_for_the_budget_is_skipped_with_the_rates_it_used(budget_run):
    result, tmp = budget_run
    assert result.returncode == 0, result.stderr  # skipped is reported, not a failure
    records = read_jsonl(next((tmp / "out").glob("*.jsonl")))
    skipped = [r for r in records if r["status"] == "skipped"]
    # The ~1,000-token summary would take ~120 s at 10 tok/s prefill and 8 tok/s decode, over
    # the default profile's 90 s; pp512-tg128 (~67 s) still runs.
    assert {r["prompt_id"] for r in skipped} == {"summarize-report"}
    assert len(skipped) == 4  # its warm-up and three repetitions
    for r in skipped:
        assert r["estimated_s"] > 90 and r["ttft_ms"] is None
        assert "10.0 tok/s prefill" in r["skip_reason"] and "8.0 tok/s decode" in r["skip_reason"]
    assert sum(r["prompt_id"] == "pp512-tg128" and r["status"] == "ok" for r in records) == 4


def test_the_summary_is_one_table_of_workloads_with_the_budget_and_the_skips(budget_run):
    result, _ = budget_run
    workloads = {"keyboard-autocomplete", "interactive-chat", "summarization", "batch-throughput"}
    assert all(w in result.stdout for w in workloads)
    assert "★" in result.stdout
    assert "time budget 90 s per generation: skipped 1 prompt(s)" in result.stdout
    assert "summarize-report" in result.stdout
    assert "pp512-tg128" not in result.stdout  # the per-prompt table stays in the .md report


def test_views_and_resume_take_skipped_records(budget_run):
    _, tmp = budget_run
    results = next((tmp / "out").glob("*.jsonl"))
    report = edgebench("report", str(results), "--format", "md")
    assert report.returncode == 0 and "skipped" in report.stdout
    matrix = edgebench("matrix", str(results), "--out", str(tmp / "matrix"))
    assert matrix.returncode == 0, matrix.stderr
    before = read_jsonl(results)
    resumed = edgebench("run", "--resume", str(results))
    assert resumed.returncode == 0, resumed.stderr
    assert read_jsonl(results) == before  # nothing left to do: skipped counts as done


def test_no_budget_measures_everything(tmp_path, fake_script):
    script = fake_script(**SLOW)
    result = edgebench(
        "run", "--runner", "fake", "--artifact", f"fake={script}", "--no-budget", "--out", str(tmp_path / "out")
    )
    assert result.returncode == 0, result.stderr
    records = read_jsonl(next((tmp_path / "out").glob("*.jsonl")))
    assert not [r for r in records if r["status"] != "ok"]
    assert len(records) == 4 * len(load_suite("default").prompts)


def test_run_prepare_exports_only_when_the_runners_turn_comes(prep, tmp_path, fake_script):  # noqa: F811
    """fake (ready) runs first; scripted's export starts only after fake's last generation.
    A failed export is reported and the others' results are still kept and summarized."""
    script = fake_script(decode_ms=5, eos_after=3)
    run = prep(
        "run",
        "--runner",
        "fake",
        "--artifact",
        f"fake={script}",
        "--runner",
        "scripted",
        "--prepare",
        "--profile",
        "quick",
        "--out",
        str(tmp_path / "out"),
    )
    assert run.returncode == 0, run.stderr
    lines = run.stderr.splitlines()
    first_export = next(i for i, line in enumerate(lines) if line.startswith("preparing scripted"))
    fake_lines = [i for i, line in enumerate(lines) if line.startswith("fake ") and "TTFT" in line]
    scripted_lines = [i for i, line in enumerate(lines) if line.startswith("scripted ") and "TTFT" in line]
    assert fake_lines and scripted_lines
    assert max(fake_lines) < first_export < min(scripted_lines)

    failed = prep(
        "run",
        "--runner",
        "fake",
        "--artifact",
        f"fake={script}",
        "--runner",
        "scripted",
        "--quant",
        "scripted=q4",
        "--prepare",
        "--profile",
        "quick",
        "--out",
        str(tmp_path / "out2"),
        mode="fail",
    )
    assert failed.returncode == 1, failed.stderr  # asked for by name: its missing results fail the run
    assert "not run, export failed: scripted q4" in failed.stdout
    records = read_jsonl(next((tmp_path / "out2").glob("*.jsonl")))
    assert records and {r["runner"] for r in records} == {"fake"}
