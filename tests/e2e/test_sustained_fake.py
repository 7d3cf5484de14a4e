"""Sustained mode end to end on the FAKE runner, whose scripted clock makes the decay exact:
100 tok/s, then 80 tok/s from measured generation 50, then 50 tok/s from generation 80."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from tests.support.helpers import edgebench, on_fake, read_jsonl

# pp128-tg64 decodes 64 tokens: 63 steps. 10 ms steps take 0.63 s per generation, so the
# 51st measured generation (the warm-up is generation 0) starts at 50 x 0.63 = 31.5 s; the
# 12.5 ms steps take 0.7875 s, so the 81st starts at 31.5 + 30 x 0.7875 = 55.125 s.
DECAY = {"decode_ms": 10, "decode_ms_from": [[51, 12.5], [81, 20]]}


@pytest.fixture(scope="module")
def decayed(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sustained")
    script = folder / "decay.json"
    script.write_text(json.dumps(DECAY))
    done = edgebench(
        *on_fake("sustained", script),
        "--duration",
        "2m",
        "--window",
        "10s",
        "--out",
        str(folder / "out"),
        "--json",
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_figures_follow_the_scripted_curve_exactly(decayed):
    (summary,) = decayed["summary"]
    assert summary["burst tok/s"] == "100.0" and summary["floor tok/s"] == "50.0"
    assert summary["retained"] == "50.0%"
    assert summary["drop_s"] == {"10": pytest.approx(31.5, abs=1e-9), "25": pytest.approx(55.125, abs=1e-9)}


def test_every_generation_is_a_sustained_record_on_the_loop_clock(decayed):
    records = read_jsonl(Path(decayed["results"]))
    assert {r["mode"] for r in records} == {"sustained"}
    warmups = [r for r in records if r["warmup"]]
    measured = [r for r in records if not r["warmup"]]
    assert len(warmups) == 1 and warmups[0]["elapsed_s"] is None
    assert [r["repeat"] for r in measured] == list(range(len(measured)))
    assert measured[50]["elapsed_s"] == pytest.approx(31.5) and measured[49]["decode_tok_s"] == pytest.approx(100)
    assert measured[-1]["elapsed_s"] < 120 <= measured[-1]["elapsed_s"] + measured[-1]["e2e_ms"] / 1000
    assert all("temp_c_start" in r and "foreign_cpu_percent_start" in r for r in records)


def test_device_series_names_its_sources_and_this_machines_gaps(decayed):
    samples = read_jsonl(Path(decayed["samples"]))
    assert samples and all(s["runner"] == "fake" and s["load_source"] == "loadavg" for s in samples)
    assert all(s["worker_rss_mb"] is None or s["worker_rss_mb"] > 0 for s in samples)
    assert set(decayed["summary"][0]["missing_signals"]) <= {"temperature", "CPU frequency", "power"}


def test_plot_and_html_report_are_written(decayed):
    png = open(decayed["reports"]["png fake"], "rb").read()
    assert png.startswith(b"\x89PNG")
    page = open(decayed["reports"]["html"], encoding="utf-8").read()
    assert base64.b64encode(png).decode() in page and "31.5 s" in page


def test_suite_runs_mark_their_records_as_suite_mode(tmp_path, fake_script):
    done = edgebench(
        *on_fake("run", fake_script(decode_ms=5)),
        "--profile",
        "quick",
        "--out",
        str(tmp_path),
        "--json",
    )
    assert done.returncode == 0, done.stderr
    records = read_jsonl(tmp_path / f"{json.loads(done.stdout)['run_id']}.jsonl")
    assert {r["mode"] for r in records} == {"suite"} and {r["elapsed_s"] for r in records} == {None}


@pytest.mark.parametrize(
    "args, message",
    [
        (["--duration", "10x"], "unknown unit 'x'"),
        (["--duration", "0s"], "must be positive"),
        (["--window", "-5s"], "must be positive"),
        (["--duration", "30s", "--window", "10s"], "shorter than four windows"),
        (["--profile", "quick"], "has no sustained settings"),
        (["--cooldown", "soon"], "is not a duration"),
    ],
)
def test_bad_sustained_settings_are_one_line_usage_errors(args, message, fake_script, tmp_path):
    done = edgebench(*on_fake("sustained", fake_script()), "--out", str(tmp_path), *args)
    assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr


def test_a_scripted_clock_that_never_moves_ends_the_loop(tmp_path, fake_script):
    done = edgebench(
        *on_fake("sustained", fake_script(decode_ms=0)),
        "--duration",
        "1m",
        "--window",
        "10s",
        "--out",
        str(tmp_path),
        "--json",
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    records = read_jsonl(Path(json.loads(done.stdout)["results"]))
    assert [r["warmup"] for r in records] == [True, False]
