"""The tiered device matrix over result files of several simulated devices (see
tests/support/simulated_devices.py): tiers, verdicts, comparability, outputs, fast reading."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from html import escape

import pandas as pd
import pytest

from bench.analysis import resultset, verdicts
from bench.data import workloads as workload_data
from bench.errors import BenchError
from bench.views import matrix, matrix_html, matrix_tables
from tests.support import simulated_devices as sim
from tests.support.helpers import FIXTURES, ROOT, edgebench


@pytest.fixture
def farm(tmp_path):
    """Three devices' results as a CI device farm would upload them."""
    root = tmp_path / "farm"
    sim.write(
        root / "pixel-8-pro" / "run.jsonl",
        sim.records("pixel-8-pro", decode=60, ttft=40),
        sim.records("pixel-8-pro", quant="Q8_0", decode=35, ttft=48, artifact_sha256="b" * 64),
    )
    sim.write(root / "galaxy-a54" / "run.jsonl", sim.records("galaxy-a54", decode=25, ttft=300))
    sim.write(
        root / "raspberry-pi-5" / "run.jsonl",
        sim.records("raspberry-pi-5", decode=12, ttft=900, spread=0.2),
        sim.records("raspberry-pi-5", decode=13, ttft=850, artifact_sha256="c" * 64),
    )
    return root


def _built(*targets_, workloads=None):
    frame, files = matrix.load([str(t) for t in targets_])
    return matrix.build(frame, files, workloads)


def _timing_budgets_only() -> tuple[workload_data.Workload, ...]:
    """The packaged workloads without their quality budgets (for tests of timing verdicts)."""
    return tuple(
        dataclasses.replace(w, max_kld=None, max_perplexity_increase=None, min_greedy_agreement=None)
        for w in workload_data.load_workloads()
    )


def _row(m, device, quant="Q4_1", artifact="a" * 64):
    return next(r for r in m.rows if r.device == device and r.quantization == quant and r.artifact_sha256 == artifact)


def _verdict(row, workload):
    return next(v for v in row.verdicts if v.workload == workload)


def test_devices_land_in_their_tiers_in_tier_order(farm):
    m = _built(farm)
    assert m.tiers == ["flagship", "mid", "entry"]
    assert {r.device: r.tier for r in m.rows} == {
        "pixel-8-pro": "flagship",
        "galaxy-a54": "mid",
        "raspberry-pi-5": "entry",
    }
    assert m.files == 3 and m.records == sum(len(sim.SUITE.prompts) * 4 for _ in range(5))


def test_medians_and_roofline_of_a_cell(farm):
    row = _row(_built(farm), "pixel-8-pro")
    assert row.decode_tok_s == pytest.approx(60) and row.decode_probe == "pp128-tg64"
    assert row.n == len(sim.SUITE.prompts) * 3  # warm-ups excluded
    assert row.mbu_datasheet == pytest.approx(60 / row.roofline_datasheet_tok_s, rel=1e-3)
    assert (row.mbu_measured, row.roofline_measured_tok_s) == (
        None,
        None,
    )  # the farm's bandwidths are datasheet figures


def test_verdicts_pass_fail_and_marginal_within_the_spread(farm):
    m = _built(farm)
    assert _verdict(_row(m, "pixel-8-pro"), "keyboard-autocomplete").verdict == "pass"  # 38-42 ms <= 50
    assert (
        _verdict(_row(m, "pixel-8-pro", "Q8_0", "b" * 64), "keyboard-autocomplete").verdict == "marginal"
    )  # 45.6-50.4
    assert _verdict(_row(m, "galaxy-a54"), "keyboard-autocomplete").verdict == "fail"
    chat = _verdict(_row(m, "raspberry-pi-5"), "interactive-chat")  # TTFT 720-1080 around the 1 s budget
    assert chat.verdict == "marginal" and any("budget ≤ 1000: marginal" in r for r in chat.reasons)


def test_sustained_figures_are_used_where_they_exist():
    workload = workload_data.Workload("chat", "d", ("chat",), ttft_ms_max=1000)
    rows = pd.DataFrame(
        {
            "category": ["chat"] * 4,
            "prompt_id": ["chat-capital"] * 4,
            "mode": [None, None, "sustained", "sustained"],
            "ttft_ms": [500.0, 600.0, 1500.0, 1600.0],
            "decode_tok_s": [None] * 4,
            "e2e_ms": [None] * 4,
        }
    )
    judged = verdicts.judge(rows, workload)
    assert judged.verdict == "fail" and judged.sustained and judged.n == 2
    without_mode = verdicts.judge(rows.drop(columns="mode"), workload)  # records from before the field existed
    assert without_mode.verdict == "marginal" and not without_mode.sustained


def test_results_of_different_artifacts_are_never_averaged(farm):
    m = _built(farm)
    pi = [r for r in m.rows if r.device == "raspberry-pi-5"]
    assert sorted(r.decode_tok_s for r in pi) == [pytest.approx(12), pytest.approx(13)]
    assert all("artifact" in r.not_comparable and "differs" in r.not_comparable for r in pi)
    assert "Not comparable with each other (never averaged)" in matrix_tables.markdown(m)


def test_results_of_a_different_suite_stand_apart(tmp_path):
    sim.write(
        tmp_path / "a.jsonl",
        sim.records("galaxy-a54", decode=25, ttft=300),
        sim.records("galaxy-a54", decode=20, ttft=300, suite_sha256="e" * 64),
    )
    rows = _built(tmp_path).rows
    assert len(rows) == 2 and all("suite default" in r.not_comparable for r in rows)


def test_outputs_markdown_csv_junit(farm):
    m = _built(farm)
    md = matrix_tables.markdown(m)
    assert md.index("## Tier: flagship") < md.index("## Tier: mid") < md.index("## Tier: entry")
    assert (
        f"| llama.cpp | smollm2-135m | Q4_1 | {3 * len(sim.SUITE.prompts)} | 60.0 |" in md
        and "✅ pass (TTFT 40.0 ms)" in md
    )
    csv = pd.read_csv(pd.io.common.StringIO(matrix_tables.csv(m)))
    assert len(csv) == 5 and set(csv["keyboard-autocomplete"]) == {"pass", "marginal", "fail"}
    from bench.views.junit import to_xml

    root = ET.fromstring(to_xml("m", matrix_tables.junit_cases(m)))
    failures = root.findall(".//failure")
    assert int(root.get("failures")) == len(failures) > 0
    assert int(root.get("tests")) == 5 * len(m.workloads)


def test_html_is_self_contained_and_escapes_record_text(tmp_path):
    records = sim.records("galaxy-a54", decode=25, ttft=300)
    for r in records:
        r["device_profile"], r["tier"] = None, None
        r["device_cpu_model"] = "<img src=x onerror=alert(1)>"
        r["runner"] = "evil<script>alert(2)</script>"
    sim.write(tmp_path / "x.jsonl", records)
    m = _built(tmp_path)
    page = matrix_html.page(m, workload_data.load_workloads())
    assert "<img src=x" not in page and "<script>alert(2)" not in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page
    assert "http://" not in page.replace("http://www.w3.org/2000/svg", "") and "https://" not in page
    assert page.count("<svg class='chart'") == 2  # decode, and each workload's TTFT against its budget, of the one tier
    timed = [w.id for w in workload_data.load_workloads() if w.ttft_ms_max and w.depth is None]  # no sweep here
    assert all(f"Q4_1 · {w}: 300.0</title>" in page for w in timed)  # each workload's bar: its own prompts' TTFT
    assert m.rows[0].tier == "mid"  # assigned here: 5.6 GB < 7.5 for flagship; 34.1 GB/s and 8 cores hold for mid


def _rows(frame: pd.DataFrame) -> list[tuple]:
    """A frame's cells as plain values, None where missing."""
    return [tuple(resultset.known(v) for v in row) for row in frame.astype(object).itertuples(index=False)]


def _parsed_whole(*paths) -> list[tuple]:
    return [tuple(r.get(c) for c in matrix.COLUMNS) for p in paths for r in map(json.loads, p.read_text().splitlines())]


def test_every_matrix_column_comes_before_the_heavy_fields_the_reader_cuts():
    from bench.records import FIELDS

    kept = FIELDS[: FIELDS.index("token_times_ns")] + FIELDS[FIELDS.index("status") :]
    assert set(matrix.COLUMNS) <= set(kept)


def test_old_schema_files_read_as_the_current_schema():

    from bench.records import read_records

    fixture = FIXTURES / "results-v1.jsonl"
    assert resultset._fast_records(fixture.read_bytes()) is not None
    expected = [tuple(r.get(c) for c in matrix.COLUMNS) for r in read_records([fixture])]
    assert _rows(resultset.load([fixture], matrix.COLUMNS)) == expected


def test_the_fast_reader_matches_a_full_parse(tmp_path):
    tricky = sim.records("galaxy-a54", decode=25, ttft=300, text='he said "status": "error", "token_times_ns": [1]')
    path = sim.write(tmp_path / "t.jsonl", tricky)
    assert len(resultset._fast_records(path.read_bytes())) == len(tricky)  # the fast path took it
    assert _rows(resultset.load([path], matrix.COLUMNS)) == _parsed_whole(path)


def test_a_file_the_fast_path_cannot_cut_is_read_whole(tmp_path):
    path = sim.write(tmp_path / "t.jsonl", sim.records("galaxy-a54", decode=25, ttft=300))
    complete = path.read_text()
    path.write_text(complete + complete.splitlines()[0][:500])  # the last write of an interrupted run
    assert resultset._fast_records(path.read_bytes()) is None
    frame = resultset.load([path], matrix.COLUMNS)
    assert len(frame) == len(complete.splitlines()) and frame["decode_tok_s"].notna().all()


def test_columns_of_different_kinds_across_files_merge(tmp_path):
    a = sim.records("galaxy-a54", decode=25, ttft=300)
    b = sim.records("pixel-8-pro", decode=60, ttft=40)
    for r in a:
        r["device_profile"], r["mbu"], r["tier"] = None, None, None  # missing in every record of one file
    for r in b:
        r["device_ram_gb"] = "12 GB"  # text where the other file has numbers
    paths = [sim.write(tmp_path / "a.jsonl", a), sim.write(tmp_path / "b.jsonl", b)]
    frame = resultset.load(paths, matrix.COLUMNS)
    assert _rows(frame) == _parsed_whole(*paths)
    assert isinstance(frame["device_profile"].dtype, pd.CategoricalDtype) and frame["mbu"].dtype == float


def test_bad_inputs_are_one_line_errors(tmp_path):
    with pytest.raises(BenchError, match="no such results file"):
        resultset.expand([str(tmp_path / "missing.jsonl")])
    (tmp_path / "notes.jsonl").write_text("hello\n")
    with pytest.raises(BenchError, match="is not a JSON record"):
        resultset.read_file(tmp_path / "notes.jsonl", matrix.COLUMNS)
    result = edgebench("matrix", str(tmp_path / "nothing-*.jsonl"))
    assert result.returncode == 1 and "Error: no .jsonl results found" in result.stderr
    crashed = sim.records("galaxy-a54", decode=25, ttft=300)[:1]
    crashed[0].update(status="crashed", error="worker killed by SIGSEGV", ttft_ms=None, decode_tok_s=None, mbu=None)
    for name, records in (("empty.jsonl", []), ("crashed.jsonl", crashed)):
        result = edgebench("matrix", str(sim.write(tmp_path / name, records)))
        assert result.returncode == 1 and "Traceback" not in result.stderr
        assert "Error: the results hold no successful measured generation" in result.stderr


def test_a_figure_that_is_not_a_number_counts_as_missing(tmp_path):
    records = sim.records("galaxy-a54", decode=25, ttft=300)
    for r in records:
        r["ttft_ms"] = "fast"
    row = _built(sim.write(tmp_path / "odd.jsonl", records)).rows[0]
    assert row.decode_tok_s == pytest.approx(25)
    assert _verdict(row, "keyboard-autocomplete").verdict == "n/a"


def test_the_matrix_command_writes_every_output(farm, tmp_path):
    out = tmp_path / "m"
    result = edgebench("matrix", str(farm / "*" / "*.jsonl"), "--out", str(out), "--junit", str(out / "verdicts.xml"))
    assert result.returncode == 0, result.stderr
    assert {p.name for p in out.iterdir()} == {"matrix.md", "matrix.csv", "matrix.html", "verdicts.xml"}
    ET.parse(out / "verdicts.xml")


def test_the_column_cache_returns_the_same_rows_and_notices_a_changed_file(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEBENCH_COLUMN_CACHE", str(tmp_path / "cache"))
    path = sim.write(tmp_path / "r.jsonl", sim.records("galaxy-a54", decode=25, ttft=300))
    first = _rows(resultset.load([path], matrix.COLUMNS))
    assert len(list((tmp_path / "cache").iterdir())) == 1 and first == _parsed_whole(path)
    assert _rows(resultset.load([path], matrix.COLUMNS)) == first  # from the cache
    entry = next((tmp_path / "cache").iterdir())
    entry.write_bytes(entry.read_bytes()[:200])  # damaged: read past, then written anew
    assert _rows(resultset.load([path], matrix.COLUMNS)) == first and entry.stat().st_size > 200
    sim.write(path, sim.records("galaxy-a54", decode=50, ttft=300))  # same path, new content
    again = _rows(resultset.load([path], matrix.COLUMNS))
    assert again != first and again == _parsed_whole(path)


def test_the_column_cache_drops_the_least_recently_used_beyond_its_limit(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEBENCH_COLUMN_CACHE", str(tmp_path / "cache"))
    paths = [sim.write(tmp_path / f"{i}.jsonl", sim.records("galaxy-a54", decode=25 + i, ttft=300)) for i in range(3)]
    for p in paths:
        resultset.load([p], matrix.COLUMNS)
    entries = sorted((tmp_path / "cache").iterdir(), key=lambda e: e.stat().st_mtime_ns)
    os.utime(entries[0], ns=(1, 1))  # the oldest use
    resultset.prune(limit_bytes=sum(e.stat().st_size for e in entries) - 1)
    assert sorted((tmp_path / "cache").iterdir()) == sorted(entries[1:])


def test_the_scale_benchmark_runs_and_merges_every_device(tmp_path):
    """benchmarks/matrix_scale.py at a small size: 2 devices x 2 runtimes x 2 quantizations."""
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "matrix_scale.py"),
            "--files",
            "8",
            "--records",
            "800",
            "--devices",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "TMPDIR": str(tmp_path)},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.count(f"read 800 records ({len(matrix.COLUMNS)} columns)") == 2
    assert "read 900 records" in result.stdout
    assert result.stdout.count("built 8 matrix rows") == 3 and "`edgebench matrix RESULTS --out DIR`" in result.stdout


def _set(records: list[dict], prompt_id: str, **figures) -> list[dict]:
    """The records with the given figures scaled per repetition as sim.records does: value x (1 + 0.05 (i - 2))."""
    for r in records:
        if r["prompt_id"] == prompt_id and not r["warmup"]:
            r.update({k: v * (1 + 0.05 * (r["repeat"] - 2)) for k, v in figures.items()})
    return records


@pytest.mark.parametrize("explain_ttft, expected", [(1250, "fail"), (1000, "marginal"), (600, "pass")])
def test_marginal_means_one_prompts_repetitions_straddle_the_budget(tmp_path, explain_ttft, expected):
    # chat-capital answers in 400-440 ms; chat-explain's repetitions (±5%) decide. Pooled,
    # 400-1312 ms would straddle the 1 s budget and read "marginal" whatever chat-explain did.
    records = _set(sim.records("galaxy-a54", decode=25, ttft=300), "chat-capital", ttft_ms=420)
    _set(records, "chat-explain", ttft_ms=explain_ttft)
    chat = _verdict(
        _built(sim.write(tmp_path / "r.jsonl", records), workloads=_timing_budgets_only()).rows[0], "interactive-chat"
    )
    assert chat.verdict == expected
    assert any(r.startswith("TTFT chat-explain") and r.endswith(expected) for r in chat.reasons)
    assert chat.figure("ttft_ms") == pytest.approx(max(420, explain_ttft))  # the worst prompt's median


def test_cell_figures_come_from_the_decode_probe_not_a_pool_of_unlike_prompts(tmp_path):
    records = sim.records("galaxy-a54", decode=25, ttft=300)
    _set(records, "pp128-tg64", decode_tok_s=14.0)  # the probe decodes slower than the short answers
    row = _built(sim.write(tmp_path / "r.jsonl", records)).rows[0]
    assert row.decode_probe == "pp128-tg64" and row.decode_tok_s == pytest.approx(14.0)


def test_sustained_runs_and_other_prompt_sets_are_never_pooled(tmp_path):
    full = sim.records("galaxy-a54", decode=25, ttft=300, run="default")
    short = {"autocomplete-reply", "autocomplete-note", "chat-capital", "pp128-tg64"}
    quick = [r for r in sim.records("galaxy-a54", decode=50, ttft=300, run="quick") if r["prompt_id"] in short]
    sustained = [
        r
        for r in sim.records("galaxy-a54", decode=10, ttft=300, run="sustained", mode="sustained")
        if r["prompt_id"] == "pp128-tg64"
    ]
    rows = _built(sim.write(tmp_path / "r.jsonl", full, quick, sustained)).rows
    by_set = {r.prompt_set: r for r in rows}
    assert len(rows) == 3 and "sustained: pp128-tg64" in by_set
    assert {k.split(" #")[0] for k in by_set if k.startswith("suite")} == {
        "suite: 4 prompts",
        f"suite: {len(sim.SUITE.prompts)} prompts",
    }
    assert sorted(r.decode_tok_s for r in rows) == [pytest.approx(10), pytest.approx(25), pytest.approx(50)]
    assert all("prompt set" in r.not_comparable and "differs" in r.not_comparable for r in rows)
    assert _verdict(by_set["sustained: pp128-tg64"], "batch-throughput").sustained


def test_mbu_of_measured_and_datasheet_bandwidth_never_share_one_aggregate(tmp_path):
    """Pixel's bandwidth measured on the device, galaxy's from its datasheet; one pixel run
    of each kind: every MBU figure comes from records of its own source only."""
    measured = sim.records("pixel-8-pro", decode=60, ttft=40, run="2", measured_bandwidth_gbs=20.0)
    datasheet = sim.records("pixel-8-pro", decode=60, ttft=40, run="1")
    paths = [
        sim.write(tmp_path / "pixel.jsonl", datasheet, measured),
        sim.write(tmp_path / "a54.jsonl", sim.records("galaxy-a54", decode=25, ttft=300, measured_bandwidth_gbs=9.0)),
    ]
    m = _built(*paths)
    pixel, a54 = _row(m, "pixel-8-pro"), _row(m, "galaxy-a54")

    def own(records):
        return pd.Series([r["mbu"] for r in records if r["prompt_id"] == "pp128-tg64" and not r["warmup"]]).median()

    assert pixel.mbu_measured == pytest.approx(own(measured)) and pixel.mbu_datasheet == pytest.approx(own(datasheet))
    assert own(measured) > 2 * own(datasheet)  # the two sources differ: a pooled median would lie between
    assert (a54.mbu_measured, a54.mbu_datasheet) == (
        pytest.approx(own(sim.records("galaxy-a54", decode=25, ttft=300, measured_bandwidth_gbs=9.0))),
        None,
    )
    csv = pd.read_csv(pd.io.common.StringIO(matrix_tables.csv(m)))
    assert {"mbu_pct_measured_bandwidth", "mbu_pct_datasheet_bandwidth"} <= set(csv.columns)
    md = matrix_tables.markdown(m)
    assert "| MBU % (measured bw) |" in md and "| MBU % (datasheet bw) |" in md and "| MBU % |" not in md


def test_chart_labels_are_whole_and_the_bars_start_after_the_longest():
    label = "AMD EPYC 9R14 96-Core Processor [92742bb9] · executorch 8da4w · keyboard-autocomplete"
    chart = matrix_html.bar_chart("TTFT", [label, "short"], [120.0, 80.0], [None, None])
    assert f">{escape(label)}</text>" in chart  # not cut at ~48 characters
    left = int(re.search(r"<rect x='(\d+)'", chart).group(1))
    assert left >= 7 * len(label)  # the label's ~7 px a character fit left of the bars
