"""Every record of a run is built by one builder (bench.run.record): a quality record and a
suite record of the same run carry the same provenance, device state, roofline and placement."""

from __future__ import annotations

import json
import types
from pathlib import Path

import numpy as np
import pytest

from bench.data.models import Artifact
from bench.data.run_profiles import load_profile
from bench.data.suite import load_suite
from bench.quality import metrics as quality
from bench.quality import reference as quality_reference
from bench.quality.run import Shared, chat_prompts, score_plan
from bench.records import ResultsWriter, utc_now
from bench.run.supervisor import RunnerPlan, Supervisor, jobs_for
from tests.support.helpers import read_jsonl

# What a record says of where and with what it was measured, and of where the model ran.
SHARED_KEYS = (
    "run_id",
    "tool_version",
    "device_cpu_model",
    "bandwidth_gbs",
    "bandwidth_source",
    "bandwidth_threads",
    "temp_c_start",
    "cpu_freq_mhz_start",
    "cpu_freq_max_mhz",
    "foreign_cpu_percent_start",
    "runner",
    "runtime_version",
    "backend",
    "runner_settings",
    "artifact_sha256",
    "threads",
    "context_tokens",
    "weights_bytes",
    "kv_bytes_per_token",
    "suite_sha256",
    "profile_sha256",
    "decode_roofline_tok_s",
    "accelerator_requested",
    "accelerator",
    "placement",
)
VOCAB = 16


def _fake_reference(folder: Path, prompts: list[dict]) -> quality_reference.Reference:
    """A reference the FAKE runner's uniform logits can be scored against: 12 tokens in one window."""
    folder.mkdir()
    token_ids = np.arange(12) % VOCAB
    rows, _ = quality.reference_rows(np.random.default_rng(0).normal(size=(11, VOCAB)), token_ids[1:], 4)
    np.savez(
        folder / "reference.npz",
        token_ids=token_ids,
        windows=np.asarray([[0, 12, 1]]),
        topk_ids=rows.topk_ids,
        topk_logp=rows.topk_logp,
        rest_logp=rows.rest_logp,
    )
    greedy = {p["id"]: {"tokens": [1, 2], "stopped_at_end_of_turn": True} for p in prompts}
    (folder / "greedy.json").write_text(json.dumps(greedy))
    manifest = {
        "tokens": 12,
        "windows": 1,
        "n_ctx": None,
        "key": "test",
        "top_k": 4,
        "rest_mass_mean": 0.1,
        "greedy_tokens": 4,
        "perplexity": 10.0,
        "checkpoint": str(folder),
    }
    return quality_reference.Reference(folder, manifest, built=False)


def test_a_quality_record_and_a_suite_record_of_one_run_carry_the_same_fields(tmp_path, fake_script):
    suite, profile = load_suite("default"), load_profile("quick")
    script = fake_script(score_vocab=VOCAB, weights_bytes=10**8, kv_bytes_per_token=1000, eos_after=3)
    artifact = Artifact(script, "ab" * 32, script.stat().st_size, "fp32", "user")
    plan = RunnerPlan("fake", "runners.fake:FakeRunner", artifact, 1, True, settings={"accelerator": "auto"})
    run_fields = {
        "run_id": "test-run",
        "started_at": utc_now(),
        "tool_version": "0",
        "device_cpu_model": "test cpu",
        "bandwidth_gbs": 10.0,
        "bandwidth_source": "measured",
        "bandwidth_threads": 1,
    }
    writer = ResultsWriter(tmp_path / "run.jsonl")
    jobs = jobs_for(suite, profile)[:2]
    Supervisor(run_fields=run_fields, suite=suite, profile=profile, jobs=jobs, writer=writer).run_runner(plan)
    writer.close()
    suite_record = read_jsonl(tmp_path / "run.jsonl")[-1]

    prompts = chat_prompts(suite)
    setup = types.SimpleNamespace(run_fields=run_fields, suite=suite, profile=profile)
    whole = _fake_reference(tmp_path / "reference", prompts)
    shared = Shared(setup, tmp_path, quality_reference.eval_text(), prompts, whole, 1, lambda message: None)
    quality_record = score_plan(shared, plan)

    assert suite_record["status"] == "ok" and suite_record["mode"] == "suite"
    assert quality_record["status"] == "ok" and quality_record["mode"] == "quality", quality_record["error"]
    assert quality_record["perplexity"] == pytest.approx(VOCAB)  # the worker scored the FAKE logits: uniform over VOCAB
    present = {k for k in SHARED_KEYS if suite_record[k] is not None}
    assert {k for k in SHARED_KEYS if quality_record[k] is not None} == present
    assert {"decode_roofline_tok_s", "accelerator", "placement", "weights_bytes"} <= present
    for key in ("run_id", "bandwidth_gbs", "accelerator", "placement", "runner_settings", "weights_bytes"):
        assert quality_record[key] == suite_record[key], key
