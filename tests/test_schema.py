"""Every results file ever written by edgebench stays readable: one fixture per schema."""
from pathlib import Path

from bench.records import FIELDS, SCHEMA_VERSION, iter_records

FIXTURES = Path(__file__).parent / "fixtures"


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
