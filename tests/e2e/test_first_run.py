"""The first run as a new user meets it: a quick CLI, progress lines in a log, a time
budget that keeps slow runtimes from holding the job, results early, and a compact summary.

Runs use the FAKE runner (scripted clock: its rates are exact and cost no time) in real
worker processes, with output sent to pipes as a CI log would get it."""

import json
import re
import subprocess
import sys
import time

import pytest

from bench.data.suite import load_suite
from tests.support.helpers import ROOT, cli, edgebench, on_fake, read_jsonl

HEAVY = (
    "pandas",
    "numpy",
    "bench.views.report",
    "bench.artifacts.prepare",
    "bench.run.setup",
    "bench.run.supervisor",
    "bench.views.matrix",
)
DEFAULT_PROFILE = ROOT / "profiles" / "runs" / "default.toml"
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
        *on_fake("run", script),
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
    profile = tmp / "default-45s.toml"  # the default profile, at the budget the figures below are worked out for
    profile.write_text(re.sub(r'prompt_budget = "\w+"', 'prompt_budget = "45s"', DEFAULT_PROFILE.read_text()))
    result = edgebench(
        *on_fake("run", tmp / "slow.json"), "--profile", str(profile), "--out", str(tmp / "out"), budget=True
    )
    return result, tmp


def _measured(records: list[dict]) -> dict[str, list[str]]:
    """prompt -> the statuses of its measured repetitions, in order."""
    found: dict[str, list[str]] = {}
    for r in records:
        if not r["warmup"]:
            found.setdefault(r["prompt_id"], []).append(r["status"])
    return found


def test_a_prompt_whose_warm_up_and_one_repetition_overrun_the_budget_is_skipped_whole(budget_run):
    result, tmp = budget_run
    assert result.returncode == 0, result.stderr  # skipped is reported, not a failure
    records = read_jsonl(next((tmp / "out").glob("*.jsonl")))
    # At 10 tok/s prefill and 8 tok/s decode the ~1,000-token summary takes ~120 s a
    # generation and pp512-tg128 ~67 s: a warm-up and one repetition overrun 45 s.
    for prompt in ("summarize-report", "pp512-tg128"):
        mine = [r for r in records if r["prompt_id"] == prompt]
        assert len(mine) == 4 and all(r["status"] == "skipped" and r["ttft_ms"] is None for r in mine)
        for r in mine:
            assert 2 * r["estimated_s"] > 45
            assert "10.0 tok/s prefill" in r["skip_reason"] and "8.0 tok/s decode" in r["skip_reason"]


def test_repetitions_past_the_prompts_budget_are_cut_and_every_kept_prompt_keeps_one(budget_run):
    _, tmp = budget_run
    records = read_jsonl(next((tmp / "out").glob("*.jsonl")))
    measured = _measured(records)
    kept = {p: s.count("ok") for p, s in measured.items() if "ok" in s}
    # Per generation (scripted): chat-explain 18.4 s, extract-order 13.4 s, pp128-tg64 20.7 s;
    # the short prompts all fit three repetitions and a warm-up into 45 s.
    assert kept == {
        "autocomplete-reply": 3,
        "autocomplete-note": 3,
        "chat-capital": 3,
        "chat-explain": 1,
        "extract-order": 2,
        "classify-ticket": 3,
        "pp128-tg64": 1,
        # the conversation is held whole: its warm-up and one run fit, the second run is cut
        "chat-support/turn1": 1,
        "chat-support/turn2": 1,
        "chat-support/turn3": 1,
    }
    for prompt, statuses in measured.items():
        assert statuses == sorted(statuses)  # "ok" before "skipped": only the last ones are cut
        spent = sum(r["e2e_ms"] / 1e3 for r in records if r["prompt_id"] == prompt and r["status"] == "ok")
        cut = [r for r in records if r["prompt_id"] == prompt and r["status"] == "skipped"]
        # (a conversation's turns are cut as one: tests/real/test_conversations.py)
        if cut and "ok" in statuses and "/turn" not in prompt:
            assert spent <= 45 < spent + cut[0]["estimated_s"]
            assert "cut" in cut[0]["skip_reason"]


def test_the_summary_is_one_table_of_workloads_with_the_budget_and_the_skips(budget_run):
    result, _ = budget_run
    workloads = {"keyboard-autocomplete", "interactive-chat", "summarization", "batch-throughput"}
    assert all(w in result.stdout for w in workloads)
    assert "★" in result.stdout
    line = " ".join(result.stdout.split())  # rich wraps long lines
    assert "time budget 45 s per prompt and runtime: skipped 2 prompt(s)" in line
    assert "summarize-report" in line and "pp512-tg128 (estimated 67 s each)" in line
    assert "fake none extract-order (2 of 3 repetitions)" in line
    assert "autocomplete-note" not in line  # the per-prompt table stays in the .md report


def test_the_budget_line_is_not_repeated_as_warnings_but_the_report_keeps_a_note_per_cell(budget_run):
    result, tmp = budget_run
    assert "prompt_budget (see `skip_reason`)" not in result.stdout
    report = next((tmp / "out").glob("*.md")).read_text()
    # 2 prompts skipped whole, 3 cut, and the conversation's first turn cut; its later turns
    # say why they were not run
    assert report.count("prompt_budget (see `skip_reason`)") == 6
    assert "chat-support/turn2: 2 generation(s) skipped: turn 1 of this conversation was not measured" in report


def test_views_and_resume_take_skipped_records(budget_run):
    _, tmp = budget_run
    results = next((tmp / "out").glob("*.jsonl"))
    report = edgebench("report", str(results), "--format", "md")
    assert report.returncode == 0 and "skipped" in report.stdout
    matrix = edgebench("matrix", str(results), "--out", str(tmp / "matrix"))
    assert matrix.returncode == 0, matrix.stderr
    before = read_jsonl(results)
    resumed = edgebench("run", "--resume", str(results), "--out", str(tmp / "out"))
    assert resumed.returncode == 0, resumed.stderr
    assert read_jsonl(results) == before  # nothing left to do: skipped counts as done


def test_no_budget_measures_everything(tmp_path, fake_script):
    script = fake_script(**SLOW)
    result = edgebench(*on_fake("run", script), "--no-budget", "--out", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    records = read_jsonl(next((tmp_path / "out").glob("*.jsonl")))
    assert not [r for r in records if r["status"] != "ok"]
    assert len(records) == 4 * len(load_suite("default").prompts)


def test_run_prepare_exports_only_when_the_runners_turn_comes(prep, tmp_path, fake_script):  # noqa: F811
    """fake (ready) runs first; scripted's export starts only after fake's last generation.
    A failed export is reported and the others' results are still kept and summarized."""
    script = fake_script(decode_ms=5, eos_after=3)
    run = prep(
        *on_fake("run", script),
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
        *on_fake("run", script),
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


def _on_a_terminal(*args: str) -> str:
    """Run `edgebench ARGS` with stdout and stderr on a pseudo-terminal; what it drew there."""
    import os
    import pty

    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        cli(*args),
        stdout=follower,
        stderr=follower,
        cwd=ROOT,
        env={**os.environ, "TERM": "xterm-256color", "COLUMNS": "160"},
    )
    os.close(follower)
    drawn = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the terminal's far side closed: the run is over
            break
        if not chunk:
            break
        drawn += chunk
    os.close(leader)
    assert proc.wait(timeout=120) == 0, drawn.decode(errors="replace")[-2000:]
    return drawn.decode(errors="replace")


def test_on_a_terminal_a_live_bar_counts_the_generations_and_shows_the_last_figures(tmp_path, fake_script):
    script = fake_script(decode_ms=5, eos_after=3)
    drawn = _on_a_terminal(*on_fake("run", script), "--profile", "quick", "--out", str(tmp_path))
    jobs = 3 * sum("short" in p.tags for p in load_suite("default").prompts)  # a warm-up and two repetitions each
    assert "\x1b[" in drawn and "\r" in drawn  # redrawn in place
    assert f"{jobs}/{jobs}" in drawn  # generations done of all
    assert "last: " in drawn and "TTFT" in drawn
    assert "fake none · " not in drawn  # no plain per-generation lines on a terminal


def test_on_a_device_five_times_slower_than_mlx_here_every_runtime_keeps_its_decode_probe(tmp_path, fake_script):
    # MLX here: 10 tok/s prefill, 8 tok/s decode (SLOW); five times slower, pp128-tg64 takes
    # ~104 s a generation, so its warm-up and one repetition overrun the 30 s budget.
    slower = {**SLOW, "prefill_ms_per_token": 500, "decode_ms": 625}
    scripts = [fake_script(**slower), fake_script(**{**slower, "first_token_ms": 1})]
    result = edgebench(
        "run",
        "--runner",
        "fake",
        *(f"--artifact=fake={s}" for s in scripts),
        "--out",
        str(tmp_path / "out"),
        budget=True,
    )
    assert result.returncode == 0, result.stderr
    records = read_jsonl(next((tmp_path / "out").glob("*.jsonl")))
    for script in scripts:
        probe = [r for r in records if r["prompt_id"] == "pp128-tg64" and r["artifact_path"] == str(script)]
        assert [(r["warmup"], r["status"]) for r in probe] == [
            (True, "skipped"),
            (False, "ok"),
            *[(False, "skipped")] * 2,
        ]
        assert "decode probe keeps one measured repetition" in probe[0]["skip_reason"]
        long = [r for r in records if r["prompt_id"] == "pp512-tg128" and r["artifact_path"] == str(script)]
        assert long and all(r["status"] == "skipped" for r in long)  # other prompts are dropped, not the probe
    from bench.views import matrix

    rows = matrix.from_records(records).rows
    assert len(rows) == 2 and all(row.decode_probe == "pp128-tg64" and row.decode_tok_s == 1.6 for row in rows)


def test_a_step_without_events_of_its_own_still_beats_and_stops_beating_when_done():
    import threading

    from bench.run.progress import PlainProgress, ticking

    lines: list[str] = []
    beat = threading.Event()
    view = PlainProgress(lambda line: (lines.append(line), beat.set()), interval=0.0)
    with ticking(view.wait, "fake", "quality"):
        assert beat.wait(30)  # the quality step sends nothing while it scores: the thread speaks for it
    count = len(lines)
    time.sleep(1.2)
    assert count == len(lines) and lines[0].startswith("... fake: quality: running for")
