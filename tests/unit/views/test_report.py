"""Reports are views of the records: one table for Markdown, CSV and the terminal."""

from bench.analysis import stats
from bench.records import is_failed, make_record
from bench.views import report


def record(prompt_id="p1", repeat=0, warmup=False, ttft=100.0, decode=50.0, status="ok", **extra):
    return make_record(
        run_id="r1",
        runner="llama.cpp",
        model_id="m",
        quantization="Q4_1",
        artifact_sha256="a",
        suite_sha256="s",
        suite_id="default",
        device_fingerprint="d",
        prompt_id=prompt_id,
        category="chat",
        warmup=warmup,
        repeat=repeat,
        ttft_ms=ttft,
        decode_tok_s=decode,
        prefill_tok_s=10.0,
        e2e_ms=1000.0,
        prompt_tokens=10,
        new_tokens=5,
        status=status,
        synthetic=False,
        **extra,
    )


def test_medians_skip_warmups_and_failures():
    records = [
        record(warmup=True, ttft=999),
        record(repeat=0, ttft=100),
        record(repeat=1, ttft=120),
        record(repeat=2, ttft=110),
        record(repeat=3, status="crashed", ttft=None, decode=None),
    ]
    table, notes = report.summary_table(records)
    (row,) = table.to_dict("records")
    assert row["n"] == 3 and row["TTFT ms"] == 110 and row["failed"] == 1
    assert any("1 crashed" in n for n in notes)


def test_a_skipped_repetition_is_reported_but_is_not_a_failure():
    records = [
        record(repeat=0, ttft=100),
        record(repeat=1, status="skipped", ttft=None, decode=None, skip_reason="over budget", estimated_s=30.0),
        record(repeat=2, status="timeout", ttft=None, decode=None),
    ]
    assert [is_failed(r) for r in records] == [False, False, True]
    table, notes = report.summary_table(records)
    (row,) = table.to_dict("records")
    assert row["n"] == 1 and row["failed"] == 1
    assert any("1 timeout generation(s)" in n for n in notes) and not any("skipped generation(s);" in n for n in notes)
    assert any("1 generation(s) skipped by the run profile's prompt_budget" in n for n in notes)


def test_high_variation_is_flagged_with_advice_in_one_line_per_runtime():
    records = [record(repeat=i, decode=d) for i, d in enumerate([50.0, 80.0, 50.0])]
    records += [record(repeat=i, decode=d, prompt_id="p2") for i, d in enumerate([50.0, 90.0, 50.0])]
    _, notes = report.summary_table(records)
    (varying,) = [n for n in notes if "vary" in n]  # not one line per prompt and metric
    assert "2 figure(s) vary" in varying and "p1 decode_tok_s " in varying and "p2 decode_tok_s" in varying
    assert "--threads" in varying


def test_a_slow_first_repetition_asks_for_more_warmups():
    records = [dict(record(repeat=i), e2e_ms=e) for i, e in enumerate([3000.0, 1000.0, 1000.0])]
    _, notes = report.summary_table(records)
    assert any("first repetition took 3.0x" in n and "warmups" in n for n in notes)


def test_records_of_different_artifacts_are_never_averaged():
    records = [record(ttft=100), dict(record(ttft=300), artifact_sha256="other")]
    table, _ = report.summary_table(records)
    assert sorted(table["TTFT ms"]) == [100, 300]


def test_markdown_escapes_text_that_came_from_outside():
    records = [record(prompt_id="a|b<script>")]
    table, notes = report.summary_table(records)
    text = report.markdown(records, table, notes)
    assert "a\\|b&lt;script&gt;" in text and "<script>" not in text


def test_markdown_and_csv_share_one_table(tmp_path):
    records = [record(repeat=i) for i in range(3)]
    md = report.write_report(records, "md", tmp_path / "r.md").read_text()
    csv = report.write_report(records, "csv", tmp_path / "r.csv").read_text()
    headings = csv.splitlines()[0].split(",")
    assert "| " + " | ".join(headings) + " |" in md
    assert not list(tmp_path.glob("*.partial"))


def test_empty_summary_when_nothing_succeeded():
    assert stats.summarize(stats.frame([record(status="timeout")])).empty


def test_failures_and_warnings_land_on_their_own_quantization():
    """Two quantizations of one runner on one prompt: Q8_0 crashes once, Q4_1 has a slow
    first repetition; each figure and warning names only the quantization it belongs to."""
    q4 = [dict(record(repeat=i), e2e_ms=e) for i, e in enumerate([3000.0, 1000.0, 1000.0])]
    q8 = [dict(record(repeat=i), quantization="Q8_0", artifact_sha256="b") for i in range(3)]
    q8.append(
        dict(record(repeat=3, status="crashed", ttft=None, decode=None), quantization="Q8_0", artifact_sha256="b")
    )
    table, notes = report.summary_table(q4 + q8)
    failed = dict(zip(table["quant"], table["failed"]))
    assert failed == {"Q4_1": 0, "Q8_0": 1}
    slow = [n for n in notes if "first repetition" in n]
    assert len(slow) == 1 and slow[0].startswith("llama.cpp Q4_1 / p1:")
    crashed = [n for n in notes if "crashed" in n]
    assert len(crashed) == 1 and crashed[0].startswith("llama.cpp Q8_0 / p1:")
