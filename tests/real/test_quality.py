"""Quality against the fp32 reference: the metrics on hand-computed distributions, the
scoring windows, the cached reference (transformers on the tiny checkpoint), the pipeline
with the FAKE runner's scripted logits, and ONNX Runtime end to end."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import entropy

from bench.quality import metrics as quality
from tests.support.helpers import edgebench, read_jsonl
from tests.support.reference_logits import transformers_logits

VOCAB = 49152  # the default model's tokenizer, which the tiny checkpoint shares


# The metrics.


def _logp(probs) -> np.ndarray:
    return np.log(np.asarray(probs, dtype=np.float64))


def test_kl_over_every_token_is_the_full_kl_and_fewer_buckets_give_a_lower_bound():
    p, q = np.array([[0.5, 0.3, 0.2]]), np.array([[0.5, 0.2, 0.3]])
    full = 0.3 * math.log(0.3 / 0.2) + 0.2 * math.log(0.2 / 0.3)  # by hand: 0.0405465...
    assert quality.kl_divergence(quality.compact(_logp(p), 3), _logp(q))[0] == pytest.approx(full, rel=1e-12)
    # Top-1 plus a rest bucket: P (0.5, 0.5) against Q (0.5, 0.5) -- the bound is 0, below the true 0.0405.
    assert quality.kl_divergence(quality.compact(_logp(p), 1), _logp(q))[0] == pytest.approx(0.0, abs=1e-15)
    # Top-2 plus rest: 0.5 ln(0.5/0.5) + 0.3 ln(0.3/0.2) + 0.2 ln(0.2/0.3) = the full KL again (rest is one token).
    assert quality.kl_divergence(quality.compact(_logp(p), 2), _logp(q))[0] == pytest.approx(full, rel=1e-12)


def test_a_reference_against_itself_gives_kl_zero_and_full_top1_and_a_shifted_one_scipys_kl():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, size=(40, 300))
    targets = rng.integers(0, 300, size=40)
    ref, target_logp = quality.reference_rows(logits, targets, 300)  # every token kept: the bound is the full KL
    same = quality.position_figures(logits, targets, ref)
    assert np.abs(same.kld).max() < 1e-12 and same.top1.all()
    np.testing.assert_allclose(-same.nll, target_logp, rtol=1e-12)
    shifted = logits.copy()
    shifted[:, 7] += 6.0  # one token made e^6 times likelier everywhere: the argmax of some rows
    moved = quality.position_figures(shifted, targets, ref)
    p, q = (np.exp(quality.log_softmax(x)) for x in (logits, shifted))
    np.testing.assert_allclose(moved.kld, entropy(p, q, axis=-1), rtol=1e-9)
    assert (moved.top1 == (shifted.argmax(-1) == logits.argmax(-1))).all() and not moved.top1.all()


def test_uniform_logits_have_the_vocabulary_size_as_perplexity():
    targets = np.arange(50) % 1000
    ref, _ = quality.reference_rows(np.random.default_rng(1).normal(size=(50, 1000)), targets, 64)
    figures = quality.summary(quality.position_figures(np.zeros((50, 1000)), targets, ref))
    assert figures["perplexity"] == pytest.approx(1000, rel=1e-12) and figures["tokens_scored"] == 50


@pytest.mark.parametrize(
    "reference, output, expected",
    [
        ([5, 6, 7, 8], [5, 6, 7, 8], (1.0, None)),
        ([5, 6, 7, 8], [5, 6, 9, 8], (0.75, 2)),
        ([5, 6, 7, 8], [5, 6], (0.5, 2)),  # stopped early: the positions it never produced are misses
        ([5, 6, quality.END_OF_TURN], [5, 6, quality.END_OF_TURN], (1.0, None)),  # both stopped there
        ([5, 6, quality.END_OF_TURN], [5, 6, 7, 8], (2 / 3, 2)),  # ran past the reference's end of turn
        ([5, 6, 7, 8, 9, 10], [5, 6, 7, 8, 0, 0], (1.0, None)),  # only the first n = 4 count
    ],
)
def test_greedy_agreement_position_by_position(reference, output, expected):
    assert quality.greedy_agreement(reference, output, 4) == expected


# The scoring windows.


@pytest.mark.parametrize(
    "n_tokens, n_ctx", [(1018, 2048), (1018, 1018), (1018, 1017), (1018, 300), (1018, 256), (1018, 7), (10, 4)]
)
def test_windows_score_every_target_once_with_half_a_window_of_context(n_tokens, n_ctx):
    plan = quality.windows(n_tokens, n_ctx)
    targets = [t for w in plan for t in range(w.first_target, w.end)]
    assert targets == list(range(1, n_tokens))  # each target once, in order
    for w in plan:
        assert w.end - w.start <= n_ctx
        assert len(range(w.end - w.start)[w.rows]) == w.end - w.first_target  # one logits row per target
        if w.start > 0:
            assert w.first_target - w.start >= n_ctx // 2
    assert (len(plan) == 1) == (n_tokens <= n_ctx)


# The reference: transformers on the tiny checkpoint, cached.


@pytest.fixture(scope="module")
def quality_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("quality-cache")


@pytest.fixture(scope="module")
def tiny_reference(tiny_checkpoint, quality_cache):
    from bench.data import models
    from bench.data.suite import load_suite
    from bench.quality import reference as quality_reference
    from bench.quality.run import chat_prompts

    model = models.get_model(str(tiny_checkpoint))
    text, prompts = quality_reference.eval_text(), chat_prompts(load_suite("default"))

    def ensure(n_ctx=None, cache=quality_cache):
        return quality_reference.ensure(model, cache, text, prompts, n_ctx, threads=2)

    return ensure


def test_the_reference_is_transformers_own_log_probs_and_is_cached(tiny_reference, tiny_checkpoint):
    first = tiny_reference()
    stamp = (first.folder / "reference.npz").stat().st_mtime_ns
    again = tiny_reference()
    assert first.built and not again.built and again.folder == first.folder
    assert (again.folder / "reference.npz").stat().st_mtime_ns == stamp  # not recomputed
    arrays = first.arrays()
    ids = arrays["token_ids"].tolist()
    assert first.manifest["tokens"] == len(ids) == 1018 and arrays["target_logp"].size == len(ids) - 1
    logp = quality.log_softmax(transformers_logits(tiny_checkpoint, ids))
    np.testing.assert_allclose(arrays["target_logp"], logp[np.arange(len(ids) - 1), ids[1:]], atol=2e-5)
    assert (arrays["topk_ids"][:, 0] == logp[:-1].argmax(-1)).all()
    assert set(first.greedy()) == {
        "chat-capital",
        "chat-explain",
        "extract-order",
        "classify-ticket",
        "summarize-report",
    }


def test_the_reference_is_deterministic(tiny_reference, tmp_path):
    one, two = tiny_reference(), tiny_reference(cache=tmp_path)
    assert two.built and two.manifest["key"] == one.manifest["key"]
    for name, values in one.arrays().items():
        np.testing.assert_array_equal(two.arrays()[name], values, err_msg=name)
    assert two.greedy() == one.greedy()


def test_a_reference_cached_before_keys_took_recipes_is_found_under_its_new_key(tiny_reference, tmp_path):
    import hashlib
    import importlib.metadata

    from bench.data.suite import load_suite
    from bench.quality import reference as quality_reference
    from bench.quality.run import chat_prompts

    made = tiny_reference(cache=tmp_path)
    # the key as it was then: the reference module's source sha256 where the key now holds a recipe
    material = {
        "checkpoint": made.manifest["checkpoint_sha256"],
        "text": quality_reference.eval_text().sha256,
        "prompts": chat_prompts(load_suite("default")),
        "window": None,
        "top_k": made.manifest["top_k"],
        "greedy_tokens": made.manifest["greedy_tokens"],
        **{name: importlib.metadata.version(name) for name in ("transformers", "torch")},
        "code": "1de1f2bdfcf07246d9413275126b2bdb265639d780de76ec01aa653ccc46d960",
    }
    legacy = made.folder.with_name(hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()[:16])
    made.folder.rename(legacy)
    found = tiny_reference(cache=tmp_path)
    assert not found.built and found.folder == made.folder and not legacy.exists()
    assert found.manifest["key"] == made.folder.name


def test_a_windowed_reference_scores_each_window_from_an_empty_cache(tiny_reference, tiny_checkpoint):
    windowed = tiny_reference(300)
    arrays = windowed.arrays()
    assert windowed.manifest["windows"] == 6 and arrays["target_logp"].size == 1017
    ids = arrays["token_ids"].tolist()
    last = quality.windows(len(ids), 300)[-1]
    logp = quality.log_softmax(transformers_logits(tiny_checkpoint, ids[last.start : last.end]))[last.rows]
    expected = logp[np.arange(logp.shape[0]), ids[last.first_target : last.end]]
    np.testing.assert_allclose(arrays["target_logp"][-expected.size :], expected, atol=2e-5)


# The pipeline, with the FAKE runner's scripted logits (uniform: perplexity = vocabulary).


def test_quality_records_for_logits_no_logits_a_crash_and_windows(
    tiny_checkpoint, quality_cache, fake_script, tiny_reference, tmp_path
):
    tiny_reference(300)  # the windowed reference, already computed above when the module runs whole
    uniform = fake_script(score_vocab=VOCAB)
    crashing = fake_script(score_vocab=VOCAB, crash_on="score")
    no_logits = fake_script()
    small_context = fake_script(score_vocab=VOCAB, context_tokens=300)
    result = edgebench(
        "quality",
        "--runner",
        "fake",
        *(f"--artifact=fake={p}" for p in (uniform, crashing, no_logits, small_context)),
        "--model",
        str(tiny_checkpoint),
        "--cache",
        str(quality_cache),
        "--out",
        str(tmp_path),
    )
    assert result.returncode == 1, result.stderr  # the crash fails the command, after every runner ran
    records = read_jsonl(next(tmp_path.glob("*.jsonl")))
    assert [r["mode"] for r in records] == ["quality"] * 4 and {r["prompt_id"] for r in records} == {"quality"}
    ok, crashed, bare, windowed = records
    assert ok["status"] == "ok" and ok["tokens_scored"] == 1017
    assert ok["perplexity"] == pytest.approx(VOCAB, rel=1e-9)
    assert ok["quality_detail"]["windows"] == 1 and ok["greedy_agreement"] is not None
    assert crashed["status"] == "crashed" and "scoring" in crashed["error"] and "SIGSEGV" in crashed["error"]
    assert bare["status"] == "ok" and bare["perplexity"] is None and bare["kld_mean"] is None
    assert "no score_vocab" in bare["quality_detail"]["no_logits"] and bare["greedy_agreement"] is not None
    assert windowed["status"] == "ok" and windowed["tokens_scored"] == 1017
    assert windowed["quality_detail"]["windows"] == 6 and windowed["quality_detail"]["n_ctx"] == 300
    assert windowed["perplexity"] == pytest.approx(VOCAB, rel=1e-9)
    assert windowed["reference_perplexity"] != ok["reference_perplexity"]  # scored in windows, as the runtime was
    for r in records:
        assert r["run_id"] == ok["run_id"] and r["device_fingerprint"] and r["artifact_sha256"] and r["tool_version"]
    assert "no logits" in result.stdout and "fake (FAKE)" in result.stdout


def test_bad_input_is_a_one_line_error(tmp_path):
    result = edgebench("quality", "--runner", "fake", "--artifact", "fake", "--out", str(tmp_path))
    assert result.returncode == 2 and "Error: --artifact 'fake' is not RUNNER=VALUE" in result.stderr
    assert "Traceback" not in result.stderr


# ONNX Runtime end to end on the tiny checkpoint.


@pytest.mark.real
def test_onnxruntime_fp32_agrees_with_the_reference_and_int4_does_not(tiny_checkpoint, artifact_cache, tmp_path):
    common = ("--model", str(tiny_checkpoint), "--cache", str(artifact_cache))
    prepared = edgebench("prepare", "--runner", "onnxruntime", "--quant", "int4", "--quant", "fp32", *common)
    assert prepared.returncode == 0, prepared.stderr
    runs = []
    for out in (tmp_path / "one", tmp_path / "two"):
        result = edgebench("quality", "--runner", "onnxruntime", "--threads", "2", "--out", str(out), *common)
        assert result.returncode == 0, result.stderr
        runs.append({r["quantization"]: r for r in read_jsonl(next(out.glob("*.jsonl")))})
    first, second = runs
    assert set(first) == {"fp32", "int4"}  # every quantization prepared in the cache
    fp32, int4 = first["fp32"], first["int4"]
    assert fp32["status"] == "ok" and fp32["top1_agreement"] == 1.0 and fp32["kld_mean"] < 1e-6
    assert fp32["perplexity"] == pytest.approx(fp32["reference_perplexity"], rel=1e-5)
    assert fp32["greedy_agreement"] == 1.0 and fp32["greedy_first_divergence"] is None
    assert int4["kld_mean"] > 100 * fp32["kld_mean"]
    for quant in first:  # scoring is deterministic
        for figure in ("perplexity", "kld_mean", "top1_agreement", "greedy_agreement"):
            assert first[quant][figure] == second[quant][figure], (quant, figure)


def test_without_a_prepared_checkpoint_the_reference_is_refused_not_made(tmp_path):
    result = edgebench("quality", "--runner", "llama.cpp", "--cache", str(tmp_path / "empty"), "--out", str(tmp_path))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "Error: no prepared checkpoint of smollm2-135m" in result.stderr
    assert "edgebench prepare --model smollm2-135m" in result.stderr
    assert not (tmp_path / "empty" / "smollm2-135m" / "checkpoint").exists()
