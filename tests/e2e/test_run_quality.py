"""Quality in the main job: `run` scores each runner's quality right after its suite (profiles
with `quality = true`), cut when its estimate overruns the profile's `quality_budget`; the
terminal summary and the matrix take their verdicts from one function. On the FAKE runner
(scripted clock, uniform FAKE logits) and the tiny checkpoint's fp32 reference."""

from __future__ import annotations

import json
import re

import pytest

from bench.views import matrix, summary
from tests.support.helpers import edgebench, on_fake, read_jsonl

VOCAB = 49152  # the default model's tokenizer, which the tiny checkpoint shares
QUICK_WITH_QUALITY = """
name = "quick-quality"
description = "quick, with quality"
warmups = 0
repetitions = 1
tags = ["short"]
prompt_budget = "45s"
quality = true
quality_budget = "{budget}"
"""


def _profile(tmp_path, budget: str):
    path = tmp_path / f"quality-{budget}.toml"
    path.write_text(QUICK_WITH_QUALITY.format(budget=budget))
    return str(path)


def _run(tmp_path, script, model, *extra):
    out = tmp_path / "out"
    result = edgebench(
        *on_fake("run", script),
        "--model",
        str(model),
        "--out",
        str(out),
        "--json",
        *extra,
        profile_quality=True,
        budget=True,
    )
    return result, read_jsonl(next(out.glob("*.jsonl"))) if out.exists() else []


def _verdicts(records: list[dict]) -> tuple[dict, dict]:
    """(summary cell verdicts, matrix verdicts), both by (workload, runner)."""
    found = summary.build(records)
    said = {(w, r.split(" ")[0]): c.verdict for (w, r), c in found.cells.items()}
    judged = {(v.workload, row.runner): v.label() for row in matrix.from_records(records).rows for v in row.verdicts}
    return said, {k: v for k, v in judged.items() if k in said}


@pytest.fixture(scope="module")
def quality_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("run-quality-cache")


def test_the_main_job_scores_quality_after_each_suite_so_quality_budgets_are_judged(
    tmp_path, fake_script, tiny_checkpoint, quality_cache
):
    script = fake_script(prefill_ms_per_token=1, decode_ms=10, eos_after=5, score_vocab=VOCAB)
    result, records = _run(
        tmp_path, script, tiny_checkpoint, "--profile", _profile(tmp_path, "90s"), "--cache", str(quality_cache)
    )
    assert result.returncode == 0, result.stderr
    scored = [r for r in records if r["mode"] == "quality"]
    assert len(scored) == 1 and scored[0]["status"] == "ok"
    assert records[-1] is not scored[0] or records.index(scored[0]) > 0  # after the suite's records
    assert scored[0]["perplexity"] == pytest.approx(VOCAB, rel=1e-9)  # uniform FAKE logits
    said, judged = _verdicts(records)
    assert said == judged
    # Chat's perplexity budget judged on the quality record's figure, not left "unchecked".
    assert said[("interactive-chat", "fake")] in ("pass", "fail")
    assert not any(v.startswith("unchecked") for v in said.values())
    (row,) = matrix.from_records(records).rows
    chat = next(v for v in row.verdicts if v.workload == "interactive-chat")
    assert any(re.match(r"perplexity [+-]\d", reason) for reason in chat.reasons)
    assert "quality" in result.stderr  # its progress line


def test_a_quality_step_estimated_over_its_budget_is_cut_with_a_skipped_record_saying_why(
    tmp_path, fake_script, tiny_checkpoint
):
    # 1,000 tok/s prefill, 100 tok/s decode: ~1 s for the text, ~1.7 s for the greedy prompts;
    # the budget is 1 s. Every timing budget passes, so the cut shows in the verdicts.
    script = fake_script(prefill_ms_per_token=1, decode_ms=10, eos_after=5, score_vocab=VOCAB)
    result, records = _run(tmp_path, script, tiny_checkpoint, "--profile", _profile(tmp_path, "1s"))
    assert result.returncode == 0, result.stderr  # a cut is not a failure
    (cut,) = [r for r in records if r["mode"] == "quality"]
    assert cut["status"] == "skipped" and cut["estimated_s"] > 1
    assert "> quality budget 1 s" in cut["skip_reason"] and "100.0 tok/s decode" in cut["skip_reason"]
    said, judged = _verdicts(records)
    assert said == judged
    assert (
        said[("interactive-chat", "fake")]
        == f"unchecked: quality skipped (estimated {cut['estimated_s']:,.0f} s) (perplexity)"
    )
    # keyed as _verdicts keys the summary: a busy machine adds "(busy machine)" to the runtime's label
    shown = {(c["workload"], c["runtime"].split(" ")[0]): c["verdict"] for c in json.loads(result.stdout)["workloads"]}
    assert shown[("interactive-chat", "fake")] == said[("interactive-chat", "fake")]


def test_no_quality_leaves_quality_budgets_unchecked_with_the_reason_in_every_view(tmp_path, fake_script):
    result, records = _run(
        tmp_path, fake_script(decode_ms=10, eos_after=5), "smollm2-135m", "--profile", "quick", "--no-quality"
    )
    assert result.returncode == 0, result.stderr
    assert not [r for r in records if r["mode"] == "quality"]
    said, judged = _verdicts(records)
    assert said == judged  # the summary once said "pass" where the matrix said "unchecked"
    assert said[("interactive-chat", "fake")] == "unchecked: no quality record (perplexity)"
