"""Every results file ever written by edgebench stays readable: one fixture per schema."""

from bench.records import FIELDS, SCHEMA_VERSION, iter_records
from tests.support.helpers import FIXTURES


def test_every_old_schema_reads_as_the_current_one():
    fixtures = sorted(FIXTURES.glob("results-v*.jsonl"))
    assert len(fixtures) >= 1
    for path in fixtures:
        records = list(iter_records(path))
        assert records, path
        for record in records:
            assert record["schema_version"] == SCHEMA_VERSION
            assert set(FIELDS) <= set(record), set(FIELDS) - set(record)


def test_a_fixture_exists_for_every_version_before_this_one():
    versions = {int(p.stem.split("-v")[1]) for p in FIXTURES.glob("results-v*.jsonl")}
    assert set(range(1, SCHEMA_VERSION + 1)) <= versions | {SCHEMA_VERSION}


def test_schema_1_records_read_as_suite_runs_with_an_unknown_start_state():
    (record, *_) = iter_records(FIXTURES / "results-v1.jsonl")
    assert record["mode"] == "suite" and record["elapsed_s"] is None
    assert (record["temp_c_start"], record["cpu_freq_mhz_start"], record["foreign_cpu_percent_start"]) == (None,) * 3


def test_schema_2_rooflines_from_the_folder_size_are_dropped_and_threads_were_the_request():
    for record in iter_records(FIXTURES / "results-v2.jsonl"):
        assert (record["decode_roofline_tok_s"], record["mbu"]) == (None, None)
        assert record["weights_bytes"] is None and record["threads_requested"] == record["threads"]


def test_schema_3_runs_read_as_local_cpu_runs_with_no_quality_figures():
    for record in iter_records(FIXTURES / "results-v3.jsonl"):
        assert record["accelerator"] == "cpu" and record["remote_target"] is None
        assert record["perplexity"] is None and record["skip_reason"] is None


def test_schema_4_records_read_with_no_busy_thread_count():
    records = list(iter_records(FIXTURES / "results-v4.jsonl"))
    assert records and all(r["busy_threads"] is None for r in records)
    assert {r["mode"] for r in records} == {"suite", "quality"}


def test_schema_5_records_read_with_no_energy_figure():
    records = list(iter_records(FIXTURES / "results-v5.jsonl"))
    assert records and all(r["energy_j_per_token"] is None and r["energy_refused"] is None for r in records)


def test_schema_6_records_read_as_no_conversation_turn():
    records = list(iter_records(FIXTURES / "results-v6.jsonl"))
    assert records and all(r["turn"] is None and r["history_tokens"] is None for r in records)


def test_schema_7_records_read_as_requests_on_an_empty_cache():
    records = list(iter_records(FIXTURES / "results-v7.jsonl"))
    assert records and all((r["depth"], r["fill_ms"], r["fill_tok_s"], r["kv_bytes"]) == (None,) * 4 for r in records)
