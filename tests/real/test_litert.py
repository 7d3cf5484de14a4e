"""The LiteRT runners: one litert-torch conversion, run raw (`litert`) and through LiteRT-LM
(`litert-lm`). The tiny random model goes through the real converter and both runtimes;
the default model's fp32 conversion checks that both runners produce the same text."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from tokenizers import Tokenizer

from tests.support import exports_ahead
from tests.support.helpers import ROOT, edgebench, read_jsonl
from tests.support.reference_logits import (
    FP32_LOGPROB_GAP,
    PROSE,
    assert_scores_like_transformers,
    logprob_gap,
    scored_against_transformers,
)

pytest.importorskip("ai_edge_litert")
pytest.importorskip("litert_lm")
pytest.importorskip("litert_torch")

from bench.run.harness import collect, count_problem  # noqa: E402
from runners.base import GenerationRequest, RunnerOptions  # noqa: E402
from runners.litert import LiteRTRunner, prefill_chunks  # noqa: E402
from runners.litert_artifact import EXPORTER, read_decode_graph  # noqa: E402
from runners.litert_export import part_aware_template  # noqa: E402
from runners.litert_lm import LiteRTLMRunner  # noqa: E402

RUNNERS = (LiteRTRunner, LiteRTLMRunner)
# The raw runner's activations: LiteRT-LM's default on CPU is fp16 (emulated on x86).
FP32_ACTIVATIONS = {"activation_data_type": "FLOAT32"}
CHAT = (
    {"role": "system", "content": "You answer in one sentence."},
    {"role": "user", "content": "What is the capital of France?"},
)


def test_prefill_uses_the_smallest_signature_that_holds_the_prompt():
    assert prefill_chunks(20, 0, (32, 128, 512, 1024), 2048) == [(32, 20)]
    assert prefill_chunks(127, 0, (32, 128, 512, 1024), 2048) == [(128, 127)]


def test_a_longer_prompt_is_prefilled_in_chunks_that_end_inside_the_cache():
    assert prefill_chunks(1500, 0, (32, 128, 512, 1024), 2048) == [(1024, 1024), (512, 476)]
    assert prefill_chunks(40, 900, (32, 128), 1060) == [(128, 40)]
    assert prefill_chunks(40, 990, (32, 128), 1060) == [(32, 32), (32, 8)]  # 128 would overrun the cache
    with pytest.raises(ValueError, match="KV cache"):
        prefill_chunks(40, 1000, (32, 128), 1050)  # the last 32-token chunk would end past slot 1050


def test_the_part_aware_template_renders_like_the_original(default_checkpoint):
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    stock = (default_checkpoint / "chat_template.jinja").read_text()
    rewritten = part_aware_template(stock, "<|im_start|>")
    for messages in (list(CHAT), list(CHAT[1:])):
        expected = env.from_string(stock).render(
            messages=messages, bos_token="<|im_start|>", add_generation_prompt=True
        )
        assert (
            env.from_string(rewritten).render(messages=messages, bos_token="<|im_start|>", add_generation_prompt=True)
            == expected
        )
        # LiteRT-LM's way: content as parts, bos_token empty, the start token added as an id.
        parts = [{**m, "content": [{"type": "text", "text": m["content"]}]} for m in messages]
        as_litert_lm = env.from_string(rewritten).render(messages=parts, bos_token="", add_generation_prompt=True)
        assert "<|im_start|>" + as_litert_lm == expected


def test_both_runners_share_one_exporter_and_one_cache_folder():
    from bench.artifacts.cache import artifact_stage

    assert LiteRTRunner.exporter is LiteRTLMRunner.exporter is EXPORTER
    assert artifact_stage("litert", EXPORTER) == artifact_stage("litert-lm", EXPORTER) == "litert"


@pytest.fixture(scope="session")
def tiny_litert(tiny_checkpoint, artifact_cache) -> dict[str, Path]:
    """The tiny model converted by the real converter, fp32 and int8, through prepare."""
    from bench.artifacts import prepare
    from bench.data import models

    model = models.get_model(str(tiny_checkpoint))
    for quantization in ("fp32", "int8"):
        exports_ahead.wait_for("tiny", "litert", quantization)
    return {q: prepare.prepare_artifact(model, "litert", EXPORTER, q, artifact_cache).path for q in ("fp32", "int8")}


def test_the_artifact_holds_both_models_the_tokenizer_and_a_template(tiny_litert):
    for folder in tiny_litert.values():
        assert {"model.tflite", "model.litertlm", "tokenizer.json", "chat_template.jinja", "litert.json"} <= {
            p.name for p in folder.iterdir()
        }
        meta = json.loads((folder / "litert.json").read_text())
        assert meta["cache_length"] >= 1024 and max(meta["prefill_lengths"]) >= 1024
        assert meta["start_token_ids"] == [1] and meta["stop_token_ids"] == [2]
    assert (tiny_litert["int8"] / "model.tflite").stat().st_size < (tiny_litert["fp32"] / "model.tflite").stat().st_size


def _generate(cls, artifact: Path, requests, settings=None) -> list[tuple[list[int], int, str]]:
    runner = cls()
    runner.load(artifact, RunnerOptions(threads=2, context_tokens=2048, settings=settings or {}))
    try:
        results = []
        for request in requests:
            events = collect(runner.generate(request)).events
            info = runner.generation_info()
            results.append(([e.token_id for e in events], info.prompt_tokens, info.stop_reason))
        return results
    finally:
        runner.close()


@pytest.mark.parametrize("quant", ["fp32", "int8"])
def test_fixed_length_mode_gives_exactly_n_tokens_on_both_runners(tiny_litert, quant):
    tokenizer = Tokenizer.from_file(str(tiny_litert[quant] / "tokenizer.json"))
    fill = tuple(
        tokenizer.encode("The pump at the north well stopped twice. " * 40, add_special_tokens=False).ids[:300]
    )
    requests = [
        GenerationRequest(24, token_ids=fill, ignore_eos=True),
        GenerationRequest(5, text="Hello", ignore_eos=True),
    ]
    raw, lm = (_generate(cls, tiny_litert[quant], requests) for cls in RUNNERS)
    for (ids, _prompt_tokens, stop), request in zip(raw + lm, requests * 2):
        assert len(ids) == request.max_new_tokens and stop == "length"
    assert [r[1] for r in raw] == [r[1] for r in lm] == [300, 2]


def test_both_runners_agree_on_prompt_tokens_and_greedy_tokens_of_fp32(tiny_litert):
    requests = [
        GenerationRequest(12, messages=CHAT),
        GenerationRequest(12, messages=CHAT[1:]),
        GenerationRequest(12, text="The capital of France is"),
    ]
    raw = _generate(LiteRTRunner, tiny_litert["fp32"], requests)
    lm = _generate(LiteRTLMRunner, tiny_litert["fp32"], requests, FP32_ACTIVATIONS)
    assert raw == lm


def _load(cls, artifact: Path, **options):
    runner = cls()
    return runner, runner.load(artifact, RunnerOptions(**{"threads": 2, "context_tokens": 2048, **options}))


def test_weights_bytes_are_the_checkpoints_weights_once_not_the_folder(tiny_litert, tiny_checkpoint):
    # The tiny checkpoint ties its head to the embedding: the head reads the whole table, so
    # a decoded token streams every weight once, which the fp32 safetensors file holds once.
    checkpoint_bytes = (tiny_checkpoint / "model.safetensors").stat().st_size
    folder = tiny_litert["fp32"]
    for cls in RUNNERS:
        runner, info = _load(cls, folder)
        runner.close()
        assert abs(info.weights_bytes - checkpoint_bytes) < 0.01 * checkpoint_bytes, cls.name
        # One model's weights: nearly all of the .tflite, not the folder with its second copy.
        assert (
            info.weights_bytes
            < (folder / "model.tflite").stat().st_size
            < 0.55 * sum(f.stat().st_size for f in folder.iterdir())
        )
    int8 = read_decode_graph(tiny_litert["int8"] / "model.tflite")
    assert 0.25 * checkpoint_bytes < int8.weights_bytes < 0.3 * checkpoint_bytes  # a byte a weight, plus scales


def test_the_bundle_counts_its_tflite_model_only_and_a_shared_buffer_once(tiny_litert):
    from ai_edge_litert import schema_py_generated as schema

    for folder in tiny_litert.values():
        bundle, tflite = read_decode_graph(folder / "model.litertlm"), read_decode_graph(folder / "model.tflite")
        assert bundle == tflite  # the tokenizer and metadata sections are not weights
        # LiteRT's own flatbuffer reader: the decode graph's buffers, each once.
        model = schema.Model.GetRootAs((folder / "model.tflite").read_bytes(), 0)
        graph = model.Subgraphs(
            next(i for i in range(model.SignatureDefsLength()) if model.SignatureDefs(i).SignatureKey() == b"decode")
        )
        buffers = {graph.Tensors(t).Buffer() for t in range(graph.TensorsLength())}
        stored = sum(model.Buffers(b).DataLength() or model.Buffers(b).Size() for b in buffers)
        scales = sum(
            graph.Tensors(t).Quantization().ScaleLength() * 4
            for t in range(graph.TensorsLength())
            if graph.Tensors(t).Quantization()
            and model.Buffers(graph.Tensors(t).Buffer()).Size() + model.Buffers(graph.Tensors(t).Buffer()).DataLength()
        )
        assert tflite.weights_bytes == stored + scales
        assert tflite.tied and tflite.vocab_rows == 49152


def test_kv_bytes_and_context_are_the_exported_cache_not_the_request(tiny_litert, tiny_checkpoint):
    config = json.loads((tiny_checkpoint / "config.json").read_text())
    head_dim = config["hidden_size"] // config["num_attention_heads"]
    fp32_kv = config["num_hidden_layers"] * 2 * config["num_key_value_heads"] * head_dim * 4
    cache = json.loads((tiny_litert["int8"] / "litert.json").read_text())["cache_length"]
    for cls in RUNNERS:
        runner, info = _load(cls, tiny_litert["int8"], context_tokens=4096)
        runner.close()
        assert info.kv_bytes_per_token == fp32_kv, cls.name
        assert info.context_tokens == cache and "4096 was asked" in info.not_applied["context_tokens"]
        assert info.threads is None and "threads" in info.not_applied
        _, asked_as_exported = _load(cls, tiny_litert["int8"], context_tokens=cache)
        assert "context_tokens" not in asked_as_exported.not_applied


def test_litert_lm_marks_setup_and_reports_its_own_counts_and_timing(tiny_litert):
    runner, _ = _load(LiteRTLMRunner, tiny_litert["int8"])
    try:
        request = GenerationRequest(6, text="Hello", ignore_eos=True)
        stream = collect(runner.generate(request))
        info = runner.generation_info()
    finally:
        runner.close()
    assert stream.setup_done is not None and stream.t0 < stream.setup_done < stream.stamps[0]
    assert info.runtime_new_tokens == info.native["decode_tokens"] == len(stream.events) == 6
    assert info.prompt_tokens == info.native["prefill_tokens"] == 2 and not info.chunked
    assert info.native["runtime_decode_tok_s"] > 0 and info.native["runtime_prefill_tok_s"] > 0
    assert 0 < info.native["runtime_ttft_ms"] < (stream.stamps[0] - stream.t0) / 1e6
    assert [k for k in info.native if k.startswith("runtime_")] == list(LiteRTLMRunner.runtime_figures)
    assert count_problem(request, info, len(stream.events)) is None


def test_a_fixed_prompt_that_does_not_survive_detokenizing_is_an_error(tiny_litert):
    runner, _ = _load(LiteRTLMRunner, tiny_litert["int8"])
    try:
        vocab = Tokenizer.from_file(str(tiny_litert["int8"] / "tokenizer.json")).get_vocab()
        whole = runner.tokenize(" lighthouse")
        halves = [vocab["Ġlight"], vocab["house"]]  # the same text, split as BPE never splits it
        assert len(whole) == 1 and runner.engine.detokenize(halves) == " lighthouse"
        fill = runner.tokenize(" The pump at the north well stopped twice.")
        request = GenerationRequest(4, token_ids=(1, *fill, *halves), ignore_eos=True)
        events = collect(runner.generate(request)).events
        info = runner.generation_info()
    finally:
        runner.close()
    assert info.prompt_tokens == len(request.token_ids) - 1  # LiteRT-LM prefilled the retokenized text
    assert "prompt of" in count_problem(request, info, len(events))


def test_litert_lm_runs_with_its_own_fp16_activations_by_default_and_takes_an_override(tiny_litert):
    assert LiteRTLMRunner.defaults == {"activation_data_type": "FLOAT16", "accelerator": "auto"}
    runner, info = _load(LiteRTLMRunner, tiny_litert["int8"], settings=FP32_ACTIVATIONS)
    runner.close()
    assert info.settings["activation_data_type"] == "FLOAT32"


def test_run_time_imports_neither_torch_nor_tensorflow(tiny_litert):
    code = (
        "import sys; from pathlib import Path\n"
        "from runners.base import GenerationRequest, RunnerOptions\n"
        "from runners.litert import LiteRTRunner\nfrom runners.litert_lm import LiteRTLMRunner\n"
        "for cls in (LiteRTRunner, LiteRTLMRunner):\n"
        "    r = cls(); r.load(Path(sys.argv[1]), RunnerOptions(threads=1, context_tokens=256))\n"
        "    list(r.generate(GenerationRequest(3, text='Hi'))); r.close()\n"
        "print(sorted(m for m in ('torch', 'tensorflow', 'transformers') if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(tiny_litert["int8"])],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_one_prepare_serves_both_runners_in_a_run(tiny_checkpoint, tiny_litert, artifact_cache, tmp_path):
    done = edgebench(
        "run",
        "--model",
        str(tiny_checkpoint),
        "--runner",
        "litert",
        "--runner",
        "litert-lm",
        "--quant",
        "litert=int8",
        "--quant",
        "litert-lm=int8",
        "--profile",
        "quick",
        "--threads",
        "2",
        "--cache",
        str(artifact_cache),
        "--out",
        str(tmp_path),
    )
    assert done.returncode == 0, done.stderr[-3000:]
    records = [r for r in read_jsonl(next(tmp_path.glob("*.jsonl"))) if not r["warmup"]]
    assert {r["status"] for r in records} == {"ok"}
    by_runner = {
        name: {(r["prompt_id"], r["repeat"]): r for r in records if r["runner"] == name}
        for name in ("litert", "litert-lm")
    }
    assert by_runner["litert"].keys() == by_runner["litert-lm"].keys()
    assert {r["artifact_path"] for r in records} == {str(tiny_litert["int8"])}
    for key, raw in by_runner["litert"].items():
        lm = by_runner["litert-lm"][key]
        assert raw["prompt_tokens"] == lm["prompt_tokens"], key
        assert raw["output_token_ids"] == lm["output_token_ids"], key
        if raw["kind"] == "fixed":
            assert raw["new_tokens"] == lm["new_tokens"] == raw["max_new_tokens"]
    assert all(r["native"]["decode_tokens"] >= r["new_tokens"] for r in by_runner["litert-lm"].values())
    # What each record says was applied: the one model's weights, the exported cache, no thread count.
    tflite = (tiny_litert["int8"] / "model.tflite").stat().st_size
    for r in records:
        assert 0 < r["weights_bytes"] < tflite and r["context_tokens"] == 2048 and r["threads"] is None
        assert r["threads_requested"] == 2 and r["itl_basis"] == "token"
        # Only LiteRT-LM builds per-request state (a Conversation), inside the time to first token.
        assert (r["setup_ms"] is not None) == (r["runner"] == "litert-lm")
        if r["setup_ms"] is not None:
            assert 0 < r["setup_ms"] < r["ttft_ms"]


# Teacher-forced scoring (edgebench quality) by the raw runner, against transformers' own logits.


def _scoring_of(artifact: Path, check, checkpoint: Path):
    """check(runner, checkpoint) on the raw runner loaded from `artifact`."""
    runner, _ = _load(LiteRTRunner, artifact)
    try:
        return check(runner, checkpoint)
    finally:
        runner.close()


def test_scoring_gives_transformers_log_probs_at_every_position(tiny_litert, tiny_checkpoint):
    _scoring_of(tiny_litert["fp32"], assert_scores_like_transformers, tiny_checkpoint)


def test_the_int8_model_scores_measurably_further_from_transformers(tiny_litert, tiny_checkpoint):
    def gap(runner, checkpoint):
        return logprob_gap(*scored_against_transformers(runner, checkpoint))

    fp32_gap = _scoring_of(tiny_litert["fp32"], gap, tiny_checkpoint)
    int8_gap = _scoring_of(tiny_litert["int8"], gap, tiny_checkpoint)
    assert int8_gap > max(FP32_LOGPROB_GAP, 100 * fp32_gap)


def test_scoring_is_deterministic_and_leaves_generation_untouched(tiny_litert):
    import numpy as np

    runner, _ = _load(LiteRTRunner, tiny_litert["int8"])
    try:
        ids = runner.tokenize(PROSE)
        request = GenerationRequest(12, messages=CHAT, ignore_eos=True)
        before = [e.token_id for e in collect(runner.generate(request)).events]
        first = runner.score(ids)
        after = [e.token_id for e in collect(runner.generate(request)).events]
        # A longer generation fills cache slots the next scoring must not see.
        collect(runner.generate(GenerationRequest(200, text="Something else entirely.", ignore_eos=True)))
        again = runner.score(ids)
    finally:
        runner.close()
    assert after == before
    assert np.array_equal(again, first)


def test_a_sequence_longer_than_the_kv_cache_is_refused(tiny_litert):
    runner, info = _load(LiteRTRunner, tiny_litert["int8"])
    try:
        assert info.context_tokens == 2048
        with pytest.raises(ValueError, match="cannot score 2049 tokens at once: the KV cache holds 2048"):
            runner.score([100] * 2049)
        with pytest.raises(ValueError, match="empty"):
            runner.score([])
    finally:
        runner.close()


@pytest.mark.real
def test_default_model_fp32_scores_like_transformers(artifact_cache, default_checkpoint):
    from bench.artifacts import prepare
    from bench.data import models

    exports_ahead.wait_for(exports_ahead.DEFAULT_MODEL, "litert", "fp32")
    found = prepare.find_artifact(models.get_model("smollm2-135m"), "litert", "fp32", artifact_cache)
    if found is None:
        pytest.skip("no fp32 conversion of the default model in the test cache")
    _scoring_of(found.path, assert_scores_like_transformers, default_checkpoint)


@pytest.mark.real
def test_default_model_fp32_both_runners_write_the_same_answer(artifact_cache, default_checkpoint):
    from bench.artifacts import prepare
    from bench.data import models

    exports_ahead.wait_for(exports_ahead.DEFAULT_MODEL, "litert", "fp32")
    artifact = prepare.prepare_artifact(
        models.get_model("smollm2-135m"), "litert", EXPORTER, "fp32", artifact_cache
    ).path
    checkpoint_bytes = (default_checkpoint / "model.safetensors").stat().st_size  # tied: every weight once
    for name in ("model.tflite", "model.litertlm"):
        assert abs(read_decode_graph(artifact / name).weights_bytes - checkpoint_bytes) < 0.01 * checkpoint_bytes
    requests = [GenerationRequest(48, messages=CHAT), GenerationRequest(24, text="The capital of France is")]
    raw = _generate(LiteRTRunner, artifact, requests)
    lm = _generate(LiteRTLMRunner, artifact, requests, FP32_ACTIVATIONS)
    assert raw == lm
    assert raw[0][2] == "eos"  # the chat answer ends at the model's end of turn
    # LiteRT-LM's own default, fp16 activations (emulated on x86), answers the same.
    assert _generate(LiteRTLMRunner, artifact, requests) == raw


@pytest.mark.real
def test_default_model_litert_lm_counts_a_chat_answer_without_its_end_of_turn(artifact_cache):
    from bench.artifacts import prepare
    from bench.data import models

    exports_ahead.wait_for(exports_ahead.DEFAULT_MODEL, "litert", "fp32")
    artifact = prepare.prepare_artifact(
        models.get_model("smollm2-135m"), "litert", EXPORTER, "fp32", artifact_cache
    ).path
    runner, _ = _load(LiteRTLMRunner, artifact)
    try:
        request = GenerationRequest(48, messages=CHAT)
        events = collect(runner.generate(request)).events
        info = runner.generation_info()
    finally:
        runner.close()
    assert info.stop_reason == "eos" and info.native["decode_tokens"] == len(events) + 1  # the end of turn
    assert info.runtime_new_tokens == len(events) and not info.chunked
    assert count_problem(request, info, len(events)) is None  # the chat answer ends at the model's end of turn
