"""The views of quality records (mode "quality": scores against the fp32 reference) beside
suite records of simulated farm devices (tests/support/simulated_devices.py): suite tables stay
as they were, and the report, the matrix, workload verdicts and the compare gate show and
judge the quality figures."""

from __future__ import annotations

import dataclasses
import xml.etree.ElementTree as ET

import pandas as pd
import pytest

from bench.data import workloads as workload_data
from bench.errors import BenchError
from bench.records import make_record
from bench.views import compare, matrix, matrix_html, matrix_tables, report
from bench.views.junit import to_xml
from tests.support import simulated_devices as sim
from tests.support.helpers import edgebench

TIMING = (
    "ttft_ms",
    "prefill_tok_s",
    "decode_tok_s",
    "itl_p50_ms",
    "itl_p90_ms",
    "itl_p99_ms",
    "e2e_ms",
    "decode_roofline_tok_s",
    "mbu",
    "token_times_ns",
    "output_token_ids",
    "output_text",
    "new_tokens",
    "prompt_tokens",
    "max_new_tokens",
    "stop_reason",
    "category",
    "kind",
    "native",
)


def quality(
    device: str,
    runner: str = "llama.cpp",
    quant: str = "Q4_1",
    *,
    kld: float | None = 0.0523,
    top1: float | None = 0.912,
    ppl: float | None = 12.1,
    ref_ppl: float = 11.0,
    greedy: float = 0.85,
    divergence: int | None = 12,
    tokens: int = 1000,
    status: str = "ok",
    error: str | None = None,
    no_logits: str | None = None,
    artifact_sha256: str = "a" * 64,
    run: str = "1",
) -> dict:
    """A quality record with the provenance of that simulated device's suite records."""
    first = sim.records(device, runner, quant, decode=1, ttft=1, repeats=0, artifact_sha256=artifact_sha256, run=run)[0]
    fields = {k: v for k, v in first.items() if k not in ("schema_version", *TIMING)}
    failed = status != "ok"
    return make_record(
        **fields
        | dict(
            mode="quality",
            prompt_id="quality",
            warmup=False,
            repeat=0,
            status=status,
            error=error,
            tokens_scored=None if failed else tokens,
            perplexity=None if failed else ppl,
            reference_perplexity=None if failed else ref_ppl,
            kld_mean=None if failed else kld,
            kld_p99=None if failed or kld is None else 10 * kld,
            top1_agreement=None if failed else top1,
            greedy_agreement=None if failed else greedy,
            greedy_first_divergence=None if failed else divergence,
            quality_detail={"no_logits": no_logits} if no_logits else {},
        )
    )


def no_logits(device: str, runner: str = "litert-lm", quant: str = "int8", greedy: float = 0.85, **extra) -> dict:
    return quality(
        device,
        runner,
        quant,
        kld=None,
        top1=None,
        ppl=None,
        greedy=greedy,
        no_logits="LiteRT-LM returns text, not logits",
        **extra,
    )


def _suite(device: str, **extra) -> list[dict]:
    return sim.records(device, decode=60, ttft=40, **extra)


def _timing_budgets_only() -> tuple[workload_data.Workload, ...]:
    return tuple(
        dataclasses.replace(w, max_kld=None, max_perplexity_increase=None, min_greedy_agreement=None)
        for w in workload_data.load_workloads()
    )


def _built(*paths, workloads=None) -> matrix.Matrix:
    frame, files = matrix.load([str(p) for p in paths])
    return matrix.build(frame, files, workloads)


# --- 1. quality records disturb no suite view --------------------------------------------


def test_suite_tables_are_the_same_with_quality_records_in_the_file(tmp_path):
    """Suite records alone, and the same with ok, failed and no-logits quality records among
    them: report, matrix (figures, counts, prompt sets, timing verdicts) and compare agree."""
    suite = _suite("pixel-8-pro") + sim.records(
        "pixel-8-pro", quant="Q8_0", decode=35, ttft=48, artifact_sha256="b" * 64
    )
    scored = [
        quality("pixel-8-pro"),
        quality("pixel-8-pro", quant="Q8_0", status="error", error="scoring failed", artifact_sha256="b" * 64),
        no_logits("pixel-8-pro"),
    ]
    mixed = suite[:10] + scored + suite[10:]
    plain_table, plain_notes = report.summary_table(suite)
    mixed_table, mixed_notes = report.summary_table(mixed)
    pd.testing.assert_frame_equal(mixed_table, plain_table)
    assert mixed_notes == plain_notes
    assert report.render(mixed, "csv") == report.render(suite, "csv")

    def cells(m: matrix.Matrix) -> list[dict]:
        return [{k: v for k, v in dataclasses.asdict(r).items() if k != "quality"} for r in m.rows if r.n]

    plain = _built(sim.write(tmp_path / "plain.jsonl", suite), workloads=_timing_budgets_only())
    with_quality = _built(sim.write(tmp_path / "mixed.jsonl", mixed), workloads=_timing_budgets_only())
    assert cells(with_quality) == cells(plain) and cells(plain)
    assert all(r.failed == 0 and r.prompt_set == plain.rows[0].prompt_set for r in with_quality.rows if r.n)
    junit = [c for c in matrix_tables.junit_cases(with_quality) if "litert-lm" not in c.name]
    assert junit == matrix_tables.junit_cases(plain)
    timing = [
        d
        for d in compare.compare(str(tmp_path / "mixed.jsonl"), str(tmp_path / "mixed.jsonl"), 5.0)
        if d.prompt_id != "quality"
    ]
    assert timing == compare.compare(str(tmp_path / "plain.jsonl"), str(tmp_path / "plain.jsonl"), 5.0)


# --- 2. the report's quality table --------------------------------------------------------


def test_the_report_shows_a_quality_table_in_markdown_and_csv(tmp_path):
    records = _suite("pixel-8-pro") + [
        quality("pixel-8-pro"),
        no_logits("pixel-8-pro"),
        quality("pixel-8-pro", "mlx", "4bit", status="error", error="scoring failed: context too short"),
    ]
    md = report.write_report(records, "md", tmp_path / "r.md").read_text()
    assert "## Quality against the fp32 reference" in md
    assert "| llama.cpp | Q4_1 | 1,000 | 12.100 | 11.000 | 10.00 | 0.0523 | 0.523 | 91.2 | 85.0 | 12 |  |" in md
    assert (
        "| litert-lm | int8 | 1,000 | – | 11.000 | – | – | – | – | 85.0 | 12 | no logits: LiteRT-LM returns text" in md
    )
    assert "| mlx | 4bit | – | – | – | – | – | – | – | – | – | error: scoring failed: context too short |" in md
    csv_path = report.write_report(records, "csv", tmp_path / "r.csv")
    assert pd.read_csv(csv_path)["prompt"].tolist() == report.summary_table(records)[0]["prompt"].tolist()
    table = pd.read_csv(report.quality_csv_path(csv_path))
    assert table["runner"].tolist() == ["llama.cpp", "litert-lm", "mlx"]
    assert table["KLD mean"].tolist()[:1] == [0.0523] and table["top-1 %"].tolist()[0] == pytest.approx(91.2)
    assert (
        not report.write_report(_suite("pixel-8-pro"), "csv", tmp_path / "s.csv").with_suffix(".quality.csv").exists()
    )


def test_the_report_command_prints_quality_alone(tmp_path):
    path = sim.write(tmp_path / "q.jsonl", [quality("galaxy-a54"), no_logits("galaxy-a54")])
    result = edgebench("report", str(path), "--format", "csv")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0].startswith("runner,quant,tokens scored,perplexity")
    assert len(result.stdout.splitlines()) == 3


# --- 3. the matrix's quality column and speed-vs-quality chart ------------------------------


@pytest.fixture
def farm(tmp_path):
    root = tmp_path / "farm"
    sim.write(
        root / "pixel.jsonl",
        _suite("pixel-8-pro"),
        sim.records("pixel-8-pro", quant="Q8_0", decode=35, ttft=48, artifact_sha256="b" * 64),
        sim.records("pixel-8-pro", runner="litert-lm", quant="int8", decode=70, ttft=30),
        [
            quality("pixel-8-pro", kld=0.0523, top1=0.912),
            no_logits("pixel-8-pro", greedy=0.9),
            quality("pixel-8-pro", status="crashed", error="worker killed by SIGSEGV"),
        ],
    )  # a later retry crashed
    sim.write(
        root / "a54.jsonl",
        sim.records("galaxy-a54", runner="litert-lm", quant="int8", decode=25, ttft=300),
        [no_logits("galaxy-a54", greedy=0.85)],
    )
    sim.write(
        root / "pi.jsonl",
        sim.records("raspberry-pi-5", decode=12, ttft=900),
        sim.records("raspberry-pi-5", decode=13, ttft=850, artifact_sha256="c" * 64),
        [
            quality("raspberry-pi-5", kld=0.031, top1=0.95, artifact_sha256="c" * 64),
            quality("raspberry-pi-5", "onnxruntime", "fp32", kld=2e-6, top1=1.0, ppl=11.0),
        ],
    )
    return root


def _row(m: matrix.Matrix, device: str, runner: str = "llama.cpp", quant: str = "Q4_1", artifact: str = "a" * 64):
    return next(
        r
        for r in m.rows
        if (r.device, r.runner, r.quantization, r.artifact_sha256) == (device, runner, quant, artifact)
    )


def test_each_matrix_cell_shows_its_own_quality_record_or_a_dash(farm):
    m = _built(farm)
    md = matrix_tables.markdown(m)
    n = 3 * len(sim.SUITE.prompts)  # every prompt's repetitions
    assert (
        f"| llama.cpp | smollm2-135m | Q4_1 | {n} | 60.0 | KLD 0.0523 · top-1 91.2% |" in md
    )  # the crash hides no figure
    assert f"| llama.cpp | smollm2-135m | Q8_0 | {n} | 35.0 | – |" in md  # no quality record: nothing made up
    assert f"| litert-lm | smollm2-135m | int8 | {n} | 25.0 | no logits: greedy 85% |" in md
    # the pi's record scored artifact c: the row of artifact a stays without one
    assert _row(m, "raspberry-pi-5").quality is None
    assert _row(m, "raspberry-pi-5", artifact="c" * 64).quality.kld_mean == 0.031
    fp32 = _row(m, "raspberry-pi-5", "onnxruntime", "fp32")  # scored, never timed: quality alone
    assert (fp32.n, fp32.decode_tok_s, fp32.prompt_set) == (0, None, "quality only")
    csv = pd.read_csv(pd.io.common.StringIO(matrix_tables.csv(m)))
    by_quant = csv[csv["device"] == "pixel-8-pro"].set_index("quant")
    assert by_quant.loc["Q4_1", "kld_mean"] == 0.0523 and pd.isna(by_quant.loc["Q8_0", "kld_mean"])
    assert by_quant.loc["Q8_0", "quality"] == "–"


def test_no_quality_column_without_quality_records(tmp_path):
    m = _built(sim.write(tmp_path / "r.jsonl", _suite("galaxy-a54")))
    heading = next(line for line in matrix_tables.markdown(m).splitlines() if line.startswith("| runtime"))
    assert heading.startswith("| runtime | model | quant | n | decode tok/s | roofline") and "quality" not in heading
    assert "kld_mean" not in matrix_tables.csv(m)


def test_the_html_page_charts_speed_against_quality(farm):
    m = _built(farm)
    page = matrix_html.page(m, workload_data.load_workloads())
    # flagship's and entry's speed-vs-quality; mid has no runtime with logits to chart
    assert page.count("<svg class='chart'") == 2 * len(m.tiers) + 2
    assert "pixel-8-pro · llama.cpp Q4_1: KLD 0.0523, 60.0 tok/s</title>" in page
    assert (
        "mean KL divergence from the fp32 reference (nats, log scale)</text>" in page and ">decode tok/s</text>" in page
    )
    assert "Not on the chart, no logits to compare: litert-lm int8 (no logits: greedy 90%)" in page
    assert "onnxruntime fp32" not in page.split("decode tok/s against quality")[-1].split("</svg>")[0]  # no speed
    assert "http://" not in page.replace("http://www.w3.org/2000/svg", "") and "https://" not in page


# --- 4. quality budgets in workload verdicts ------------------------------------------------


def _workload(**budgets) -> workload_data.Workload:
    return workload_data.Workload("chat", "d", ("chat",), ttft_ms_max=1000, **budgets)


@pytest.mark.parametrize(
    "budgets, expected, reason",
    [
        ({"max_kld": 0.05}, "fail", "KLD 0.0523, budget ≤ 0.05: fail"),
        ({"max_kld": 0.06}, "pass", "KLD 0.0523, budget ≤ 0.06: pass"),
        ({"max_perplexity_increase": 0.05}, "fail", "perplexity +10.0%, budget ≤ +5.0%: fail"),
        ({"max_perplexity_increase": 0.15}, "pass", "perplexity +10.0%, budget ≤ +15.0%: pass"),
        ({"min_greedy_agreement": 0.9}, "fail", "greedy agreement 85.0%, budget ≥ 90.0%: fail"),
    ],
)
def test_quality_budgets_judge_the_cells_quality_record(tmp_path, budgets, expected, reason):
    path = sim.write(tmp_path / "r.jsonl", _suite("pixel-8-pro"), [quality("pixel-8-pro")])
    (verdict,) = _row(_built(path, workloads=(_workload(**budgets),)), "pixel-8-pro").verdicts
    assert verdict.verdict == expected and reason in verdict.reasons


def test_a_quality_budget_without_a_figure_is_unchecked_never_pass(tmp_path):
    path = sim.write(
        tmp_path / "r.jsonl",
        _suite("pixel-8-pro"),
        sim.records("pixel-8-pro", "litert-lm", "int8", decode=60, ttft=40),
        [no_logits("pixel-8-pro")],
        sim.records("pixel-8-pro", "mlx", "4bit", decode=60, ttft=40),
        [quality("pixel-8-pro", "mlx", "4bit", status="error", error="boom")],
    )
    m = _built(path, workloads=(_workload(max_kld=0.1, min_greedy_agreement=0.8),))
    (missing,), (greedy_only,), (failed,) = (
        _row(m, "pixel-8-pro", *cell).verdicts
        for cell in (("llama.cpp", "Q4_1"), ("litert-lm", "int8"), ("mlx", "4bit"))
    )
    assert missing.verdict == "unchecked" and "KLD: no quality record, budget ≤ 0.1: unchecked" in missing.reasons
    assert greedy_only.verdict == "unchecked"
    assert "KLD: not measured (no logits), budget ≤ 0.1: unchecked" in greedy_only.reasons
    assert "greedy agreement 85.0%, budget ≥ 80.0%: pass" in greedy_only.reasons
    assert failed.verdict == "unchecked" and "KLD: quality record error, budget ≤ 0.1: unchecked" in failed.reasons
    root = ET.fromstring(to_xml("m", matrix_tables.junit_cases(m)))
    assert len(root.findall(".//skipped")) == 3 and not root.findall(".//failure")
    assert "❔ unchecked" in matrix_tables.markdown(m) and "no quality record" in matrix_tables.markdown(m)


def test_a_measured_timing_failure_outranks_a_missing_quality_record(tmp_path):
    path = sim.write(tmp_path / "r.jsonl", sim.records("raspberry-pi-5", decode=12, ttft=2000))
    (verdict,) = _row(_built(path, workloads=(_workload(max_kld=0.1),)), "raspberry-pi-5").verdicts
    assert verdict.verdict == "fail" and any(r.endswith("unchecked") for r in verdict.reasons)


def test_the_packaged_workloads_state_quality_budgets_and_validate():
    workloads = {w.id: w for w in workload_data.load_workloads()}
    assert workloads["summarization"].max_perplexity_increase == 0.05 and workloads["extraction"].max_kld == 0.05
    assert workloads["extraction"].min_greedy_agreement == 0.8
    assert workloads["keyboard-autocomplete"].max_kld is None  # a suggestion's speed is what counts
    result = edgebench("validate", "profiles/workloads.toml")
    assert result.returncode == 0 and "8 workloads" in result.stdout, result.stderr


@pytest.mark.parametrize(
    "budget, message",
    [
        ("min_greedy_agreement = 80", "min_greedy_agreement = 80 is out of range"),
        ("max_kld = -0.1", "max_kld = -0.1 is out of range"),
        ('max_perplexity_increase = "10%"', "'max_perplexity_increase' must be float"),
    ],
)
def test_bad_quality_budgets_are_refused(tmp_path, budget, message):
    path = tmp_path / "w.toml"
    path.write_text(f'[[workload]]\nid="a"\ndescription="d"\ncategories=["chat"]\n{budget}\n')
    with pytest.raises(BenchError) as info:
        workload_data.load_workloads(path)
    assert message in info.value.message


def test_a_workload_may_state_quality_budgets_alone(tmp_path):
    path = tmp_path / "w.toml"
    path.write_text('[[workload]]\nid="a"\ndescription="d"\ncategories=["chat"]\nmax_kld=0.02\n')
    assert workload_data.load_workloads(path)[0].budgets() == {"max_kld": 0.02}


# --- 5. the compare gate on quality ---------------------------------------------------------


def _sides(tmp_path, base: list[dict], cand: list[dict], suite: bool = True):
    extra = (_suite("pixel-8-pro"),) if suite else ()
    return (
        sim.write(tmp_path / "base.jsonl", *extra, base),
        sim.write(tmp_path / "cand.jsonl", *(_suite("pixel-8-pro", run="2"),) if suite else (), cand),
    )


def _quality_deltas(base, cand, threshold=5.0) -> dict[str, compare.Delta]:
    return {d.metric: d for d in compare.compare(str(base), str(cand), threshold) if d.prompt_id == "quality"}


@pytest.mark.parametrize(
    "change, metric",
    [
        ({"kld": 0.0523 * 1.2}, "KLD mean"),
        ({"ppl": 12.1 * 1.08}, "perplexity"),
        ({"top1": 0.912 * 0.9}, "top-1 agreement"),
        ({"greedy": 0.85 * 0.9}, "greedy agreement"),
    ],
)
def test_a_quality_regression_fails_the_gate(tmp_path, change, metric):
    base, cand = _sides(tmp_path, [quality("pixel-8-pro")], [quality("pixel-8-pro", run="2", **change)])
    deltas = _quality_deltas(base, cand)
    assert deltas[metric].status == "regression"
    assert {d.status for m, d in deltas.items() if m != metric} == {"same"}
    gate = edgebench("compare", str(base), str(cand))
    assert gate.returncode == 1 and any(
        line.startswith("| regression") and metric in line for line in gate.stdout.splitlines()
    ), gate.stdout


def test_quality_within_the_threshold_or_the_kld_noise_passes(tmp_path):
    base, cand = _sides(
        tmp_path,
        [quality("pixel-8-pro"), quality("pixel-8-pro", "onnxruntime", "fp32", kld=1e-6)],
        [
            quality("pixel-8-pro", run="2", ppl=12.1 * 1.04),
            quality("pixel-8-pro", "onnxruntime", "fp32", kld=3e-6, run="2"),
        ],
    )  # +200%, 2e-6 nats
    deltas = compare.compare(str(base), str(cand), 5.0)
    scored = [d for d in deltas if d.prompt_id == "quality"]
    assert len(scored) == 8 and {d.status for d in scored} == {"same"}
    assert not compare.gate_fails(deltas, allow_missing=False)
    assert {d.status for d in _quality_deltas(base, cand, threshold=3.0).values()} == {"same", "regression"}


def test_a_quality_record_missing_from_the_candidate_counts_as_missing(tmp_path):
    base, cand = _sides(
        tmp_path,
        [quality("pixel-8-pro"), no_logits("pixel-8-pro")],
        [no_logits("pixel-8-pro", run="2", status="error", error="boom")],
    )
    deltas = [d for d in compare.compare(str(base), str(cand), 5.0) if d.status == "missing"]
    assert sorted((d.runner, d.note) for d in deltas) == [
        ("litert-lm", "no successful quality record in the candidate, only error"),
        ("llama.cpp", "absent from the candidate"),
    ]
    gate = edgebench("compare", str(base), str(cand))
    assert gate.returncode == 1 and "2 missing" in gate.stdout
    assert edgebench("compare", str(base), str(cand), "--allow-missing").returncode == 0


@pytest.mark.parametrize(
    "other, shown",
    [({"tokens": 512}, "1000 vs 512 tokens scored"), ({"ref_ppl": 14.0}, "reference perplexity 11 vs 14")],
)
def test_quality_only_results_compare_and_differ_in_evaluation(tmp_path, other, shown):
    base, cand = _sides(tmp_path, [quality("pixel-8-pro")], [quality("pixel-8-pro", run="2", **other)], suite=False)
    (delta,) = compare.compare(str(base), str(cand), 5.0)
    assert delta.status == "not comparable" and shown in delta.note
