"""`edgebench run` end to end on the FAKE runner: real worker processes, real files,
scripted figures, so every number in the records can be checked exactly."""

import json

import pytest

from bench.data.suite import load_suite
from bench.records import SCHEMA_VERSION
from tests.support.helpers import edgebench, on_fake, read_jsonl

SCRIPT = dict(load_ms=50, prefill_ms_per_token=1, first_token_ms=4, decode_ms=8, eos_after=5)


@pytest.fixture
def quick_run(tmp_path, fake_script):
    script = fake_script(**SCRIPT)
    result = edgebench(
        *on_fake("run", script),
        "--profile",
        "quick",
        "--out",
        str(tmp_path / "out"),
        "--threads",
        "1",
    )
    return result, tmp_path / "out"


def test_a_run_writes_jsonl_markdown_and_csv(quick_run):
    result, out = quick_run
    assert result.returncode == 0, result.stderr
    stems = {p.suffix: p for p in out.iterdir()}
    assert set(stems) == {".jsonl", ".md", ".csv", ".html", ".json"}  # .run.json: the options, for --resume
    assert "<table" in stems[".html"].read_text()  # the run's own matrix page
    assert "pp128-tg64" in stems[".md"].read_text() and "pp128-tg64" in stems[".csv"].read_text()
    assert "results:" in result.stdout and "FAKE" in result.stdout


def test_records_carry_exact_scripted_figures(quick_run):
    _, out = quick_run
    records = read_jsonl(next(out.glob("*.jsonl")))
    quick_prompts = [p for p in load_suite("default").prompts if "short" in p.tags]
    assert len(records) == len(quick_prompts) * 3  # 1 warm-up + 2 repetitions each
    fixed = [r for r in records if r["prompt_id"] == "pp128-tg64" and not r["warmup"]]
    assert len(fixed) == 2
    for r in fixed:
        assert r["prompt_tokens"] == 128 and r["new_tokens"] == 64
        assert r["ttft_ms"] == 128 + 4
        assert r["decode_tok_s"] == pytest.approx(1000 / 8)
        assert r["itl_p50_ms"] == r["itl_p99_ms"] == 8
        assert r["e2e_ms"] == 132 + 63 * 8
        assert r["load_ms"] == 50
    chat = [r for r in records if r["kind"] == "chat"]
    assert all(r["new_tokens"] == 5 and r["stop_reason"] == "eos" for r in chat)


def test_every_fake_record_says_it_is_synthetic(quick_run):
    _, out = quick_run
    for r in read_jsonl(next(out.glob("*.jsonl"))):
        assert r["synthetic"] is True and r["backend"] == "FAKE (scripted clock)"
        assert r["status"] == "ok" and r["schema_version"] == SCHEMA_VERSION
        assert r["suite_sha256"] and r["profile_sha256"] and r["device_fingerprint"]


def test_warmups_are_recorded_but_not_summarized(quick_run):
    _, out = quick_run
    records = read_jsonl(next(out.glob("*.jsonl")))
    assert sum(r["warmup"] for r in records) == len(records) // 3
    csv_rows = next(out.glob("*.csv")).read_text().splitlines()[1:]
    assert all(row.split(",")[4] == "2" for row in csv_rows)  # n = 2 measured repetitions


def test_json_output_is_machine_readable(tmp_path, fake_script):
    script = fake_script(**SCRIPT)
    result = edgebench(
        *on_fake("run", script),
        "--profile",
        "quick",
        "--out",
        str(tmp_path),
        "--json",
    )
    payload = json.loads(result.stdout)
    assert payload["failed"] == 0 and payload["results"].endswith(".jsonl")
    assert {row["prompt"] for row in payload["summary"]} >= {"pp128-tg64", "chat-capital"}


def test_the_fake_runner_is_never_picked_by_default():
    listing = edgebench("runners")
    assert "fake" not in listing.stdout
    assert "FAKE" in edgebench("runners", "--all").stdout


def test_a_fixed_length_generation_short_of_its_tokens_is_an_error_record(tmp_path, fake_script):
    script = fake_script(**SCRIPT, fixed_short_by=1)
    result = edgebench(
        *on_fake("run", script),
        "--profile",
        "quick",
        "--out",
        str(tmp_path),
        "--threads",
        "1",
    )
    assert result.returncode == 1
    records = read_jsonl(next(tmp_path.glob("*.jsonl")))
    fixed = [r for r in records if r["kind"] == "fixed"]
    assert fixed and all(r["status"] == "error" and r["decode_tok_s"] is None for r in fixed)
    assert "64 new tokens were asked, the runtime made 63" in fixed[0]["error"]
    assert all(r["status"] == "ok" for r in records if r["kind"] == "chat")


def test_records_carry_what_the_runner_applied_beside_what_was_asked(tmp_path, fake_script):
    script = fake_script(**SCRIPT, setup_ms=3, weights_bytes=1000, kv_bytes_per_token=10, applied_threads=1)
    edgebench(
        *on_fake("run", script),
        "--profile",
        "quick",
        "--out",
        str(tmp_path),
        "--threads",
        "2",
    )
    record = read_jsonl(next(tmp_path.glob("*.jsonl")))[0]
    assert (record["threads"], record["threads_requested"]) == (1, 2)
    assert (record["weights_bytes"], record["kv_bytes_per_token"], record["setup_ms"]) == (1000, 10, 3)
    assert record["itl_basis"] == "token"


def test_each_measured_record_has_an_energy_figure_or_says_why_not(quick_run):
    """This host's energy counter (RAPL) meters each measured generation, or every measured
    record says why there is none (here: no powercap zone, or root-only); warm-ups are not metered."""
    from bench.device.sensors import DeviceReader

    _, out = quick_run
    records = read_jsonl(next(out.glob("*.jsonl")))
    counter = DeviceReader().energy() is not None
    for r in records:
        if r["warmup"]:
            assert (r["energy_j_per_token"], r["energy_refused"]) == (None, None)
        elif counter:
            assert r["energy_source"].startswith("powercap") and (r["energy_j_per_token"] or r["energy_refused"])
        else:
            assert r["energy_j_per_token"] is None and r["energy_refused"] == DeviceReader().energy_refusal()
