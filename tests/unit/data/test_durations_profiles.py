"""Durations with units, and the sustained settings of run profiles."""

from __future__ import annotations

import pytest

from bench.data.durations import parse_duration
from bench.data.run_profiles import load_profile
from bench.errors import BenchError


@pytest.mark.parametrize("text, seconds", [("90s", 90), ("10m", 600), ("1.5h", 5400), ("45", 45), (" 2M ", 120)])
def test_durations_with_units(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    "text, message",
    [
        ("10d", "unknown unit 'd'"),
        ("0m", "must be positive"),
        ("-3s", "must be positive"),
        ("soon", "is not a duration"),
    ],
)
def test_bad_durations_say_what_is_wrong(text, message):
    with pytest.raises(BenchError, match=message):
        parse_duration(text, "--duration")


def test_packaged_sustained_profiles():
    full, ci = load_profile("sustained").sustained, load_profile("sustained-ci").sustained
    assert (full.duration_s, full.window_s, full.prompt) == (600, 30, "pp128-tg64")
    assert (ci.duration_s, ci.window_s) == (60, 10)
    assert load_profile("default").sustained is None


def test_a_profile_with_a_bad_sustained_table_is_refused(tmp_path):
    path = tmp_path / "hot.toml"
    path.write_text(
        'name = "hot"\ndescription = "x"\nwarmups = 1\nrepetitions = 1\n'
        '[sustained]\nprompt = "pp128-tg64"\nduration = "10 minutes"\nwindow = "30s"\n'
    )
    with pytest.raises(BenchError, match="sustained duration '10 minutes' has unknown unit"):
        load_profile(str(path))
    path.write_text(path.read_text().replace('"10 minutes"', '"10m"\nrepeat = 3'))
    with pytest.raises(BenchError, match="unknown key"):
        load_profile(str(path))


def test_the_main_jobs_profiles_carry_a_time_budget_and_full_measures_everything():
    assert load_profile("default").prompt_budget_s == 30
    assert load_profile("quick").prompt_budget_s == 45
    assert load_profile("full").prompt_budget_s is None


@pytest.mark.parametrize(
    "budget, message", [('"0s"', "must be positive"), ('"90 seconds"', "unknown unit"), ("90", "prompt_budget")]
)
def test_a_bad_prompt_budget_is_refused(tmp_path, budget, message):
    path = tmp_path / "budget.toml"
    path.write_text(f'name = "b"\ndescription = "x"\nwarmups = 1\nrepetitions = 1\nprompt_budget = {budget}\n')
    with pytest.raises(BenchError, match=message):
        load_profile(str(path))
