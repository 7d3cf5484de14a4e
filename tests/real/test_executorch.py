"""ExecuTorch: the checkpoint conversion, the .pte export through `prepare`, and the runner.

Fast tests export a tiny llama (seconds to a minute); the real default model is checked
against transformers when its fp32 export is in the artifact cache (the main job makes it).
"""

import importlib.util
import json
import shutil

import pytest

from tests.support import exports_ahead
from tests.support.helpers import edgebench, read_jsonl
from tests.support.reference_logits import (
    FP32_LOGPROB_GAP,
    PROSE,
    assert_scores_like_transformers,
    logprob_gap,
    scored_against_transformers,
    transformers_greedy,
)
from tests.support.tiny_model import SHARP_FOLDER, sharpened

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("executorch") is None, reason="pip install 'edgebench[executorch,prepare-executorch]'"
)

CAPITAL = ({"role": "user", "content": "What is the capital of France?"},)


@pytest.fixture(scope="session")
def sharp_tiny(tiny_checkpoint, tmp_path_factory):
    """The tiny llama sharpened (tests/support/tiny_model.py), so its greedy tokens depend on the prompt."""
    return sharpened(tiny_checkpoint, tmp_path_factory.mktemp("sharp") / SHARP_FOLDER)


def prepared(model, quantization, cache):
    from bench.artifacts import prepare as stages
    from bench.data import models

    exports_ahead.wait_for("sharp", "executorch", quantization)
    result = edgebench(
        "prepare", "--model", str(model), "--runner", "executorch", "--quant", quantization, "--cache", str(cache)
    )
    assert result.returncode == 0, result.stderr
    return stages.find_artifact(models.get_model(str(model)), "executorch", quantization, cache)


@pytest.fixture(scope="session")
def tiny_fp32(sharp_tiny, artifact_cache):
    return prepared(sharp_tiny, "fp32", artifact_cache)


@pytest.fixture(scope="session")
def tiny_8da4w(sharp_tiny, artifact_cache):
    return prepared(sharp_tiny, "8da4w", artifact_cache)


def load_runner(path, threads=2):
    from runners.base import RunnerOptions
    from runners.executorch import ExecuTorchRunner

    runner = ExecuTorchRunner()
    runner.load_info = runner.load(path, RunnerOptions(threads=threads, context_tokens=1024))
    return runner


@pytest.fixture(scope="module")
def runner(tiny_fp32):
    runner = load_runner(tiny_fp32.path)
    yield runner
    runner.close()


def run(runner, **request):
    from runners.base import GenerationRequest

    tokens = [e.token_id for e in runner.generate(GenerationRequest(**request))]
    return tokens, runner.generation_info()


# The conversion to ExecuTorch's Meta checkpoint format.


def test_q_and_k_rows_go_back_to_metas_interleaved_layout():
    import torch

    from runners.executorch_export import _unpermute

    n_heads, head_dim, dim = 3, 8, 12
    meta = torch.randn(n_heads * head_dim, dim)
    # transformers' conversion script turns Meta's layout into rotate-half this way.
    hf = meta.view(n_heads, head_dim // 2, 2, dim).transpose(1, 2).reshape(n_heads * head_dim, dim)
    assert torch.equal(_unpermute(hf, n_heads), meta)


def test_params_come_from_the_transformers_config(default_checkpoint):
    from runners.executorch_export import meta_params

    params = meta_params(json.loads((default_checkpoint / "config.json").read_text()))
    assert params["rope_theta"] == 100000.0  # nested under rope_parameters by transformers 5
    assert (params["dim"], params["n_heads"], params["n_kv_heads"], params["n_layers"]) == (576, 9, 3, 30)
    assert (params["hidden_dim"], params["head_dim"], params["vocab_size"]) == (1536, 64, 49152)


def test_only_the_declared_families_convert():
    from runners.executorch_export import meta_params

    with pytest.raises(ValueError, match="only llama, qwen2, qwen3, phi3"):
        meta_params({"model_type": "gemma2"})


def test_generation_ends_at_the_declared_eos_and_the_vocabularys_end_tokens(default_checkpoint):
    from runners.executorch_export import special_ids

    assert special_ids(default_checkpoint) == (1, [0, 2])  # <|endoftext|>, <|im_end|>


# prepare -> .pte -> runner, on the tiny llama.


def test_prepare_writes_the_program_the_tokenizer_and_its_options(tiny_fp32):
    names = {f["path"] for f in tiny_fp32.manifest["files"]}
    assert {"model.pte", "tokenizer.json", "chat_template.jinja"} <= names
    options = tiny_fp32.manifest["options"]
    assert options["max_context_length"] >= 1024 and options["use_sdpa_with_kv_cache"] is True
    assert options["backend"] == "xnnpack" and options["eos_ids"] == [0, 2]


def test_chat_prompt_and_greedy_tokens_agree_with_transformers(runner, sharp_tiny):
    tokens, info = run(runner, max_new_tokens=16, messages=CAPITAL)
    prompt, expected = transformers_greedy(sharp_tiny, 16, messages=CAPITAL)
    assert info.prompt_tokens == len(prompt) == 37
    assert tokens == expected and len(tokens) == 16


def test_completion_prompt_and_greedy_tokens_agree_with_transformers(runner, sharp_tiny):
    text = "The pump at the north well stopped twice this morning, so the technician replaced the"
    tokens, info = run(runner, max_new_tokens=8, text=text)
    prompt, expected = transformers_greedy(sharp_tiny, 8, text=text)
    assert info.prompt_tokens == len(prompt) and tokens == expected


def test_a_prompt_longer_than_one_call_is_prefilled_in_pieces_with_the_same_result(runner, monkeypatch):
    whole, _ = run(runner, max_new_tokens=12, messages=CAPITAL, ignore_eos=True)
    monkeypatch.setattr(runner, "max_chunk", 7)
    pieces, info = run(runner, max_new_tokens=12, messages=CAPITAL, ignore_eos=True)
    assert pieces == whole and info.native["adapter_forward_prefill_calls"] == 6  # 37 tokens, 7 a call


def test_chat_stops_at_end_of_turn_and_fixed_length_never_produces_it(runner, monkeypatch):
    free, info = run(runner, max_new_tokens=20, messages=CAPITAL)
    assert len(free) == 20 and info.stop_reason == "length"
    monkeypatch.setattr(runner, "eos_ids", frozenset({free[5]}))  # make the 6th token the end of turn
    chat, info = run(runner, max_new_tokens=20, messages=CAPITAL)
    assert chat == free[:5] and info.stop_reason == "eos"
    fixed, info = run(runner, max_new_tokens=20, messages=CAPITAL, ignore_eos=True)
    assert len(fixed) == 20 and fixed[:5] == free[:5] and free[5] not in fixed and info.stop_reason == "length"


def test_a_new_prompt_does_not_see_the_previous_ones_cache(runner):
    first, _ = run(runner, max_new_tokens=10, messages=CAPITAL, ignore_eos=True)
    run(
        runner,
        max_new_tokens=30,
        text="Something else entirely, and longer than the first prompt was.",
        ignore_eos=True,
    )
    again, _ = run(runner, max_new_tokens=10, messages=CAPITAL, ignore_eos=True)
    assert again == first


def test_native_figures_describe_the_generation(runner):
    tokens, info = run(runner, max_new_tokens=10, token_ids=tuple(range(100, 140)), ignore_eos=True)
    assert len(tokens) == 10 and info.prompt_tokens == 40
    native = info.native
    assert native["adapter_forward_prefill_calls"] == 1 and native["adapter_forward_decode_calls"] == 9
    assert native["adapter_forward_prefill_ms"] > 0 and native["adapter_forward_decode_tok_s"] > 0


def test_a_prompt_past_the_context_asked_for_is_refused(runner):
    assert runner.context_tokens == 1024 < runner.max_context  # the run asked for less than the program holds
    with pytest.raises(ValueError, match="exceeds the context of 1024"):
        run(runner, max_new_tokens=10, token_ids=(100,) * 1020)


def test_8da4w_is_smaller_and_decodes_exactly_the_tokens_asked(tiny_8da4w, tiny_fp32):
    pte_bytes = {f["path"]: f["bytes"] for f in tiny_8da4w.manifest["files"]}["model.pte"]
    fp32_bytes = {f["path"]: f["bytes"] for f in tiny_fp32.manifest["files"]}["model.pte"]
    assert pte_bytes < fp32_bytes / 3
    assert tiny_8da4w.manifest["options"]["qmode"] == "8da4w"
    quantized = load_runner(tiny_8da4w.path)
    try:
        tokens, info = run(quantized, max_new_tokens=24, token_ids=tuple(range(100, 164)), ignore_eos=True)
    finally:
        quantized.close()
    assert len(tokens) == 24 and info.stop_reason == "length"


def test_weights_bytes_are_the_programs_stored_tensors_with_the_embedding_as_one_row(runner, tiny_fp32, sharp_tiny):
    config = json.loads((sharp_tiny / "config.json").read_text())
    vocab, dim = config["vocab_size"], config["hidden_size"]
    pte = (tiny_fp32.path / "model.pte").stat().st_size
    embedding = vocab * dim * 4  # fp32, read one row per token
    streamed = runner.load_info.weights_bytes
    # The .pte holds the weights (the head as XNNPACK's own copy) and a small program:
    # without the embedding's other rows, what is left is the program and padding.
    assert 0 < pte - (embedding - embedding // vocab) - streamed < 0.01 * pte


def test_kv_bytes_per_token_are_the_programs_caches_in_their_dtype(runner, sharp_tiny):
    config = json.loads((sharp_tiny / "config.json").read_text())
    head_dim = config["hidden_size"] // config["num_attention_heads"]
    # fp32 K and V per layer, kv heads x head size each (the model's own config, not the code's).
    expected = config["num_hidden_layers"] * 2 * config["num_key_value_heads"] * head_dim * 4
    assert runner.load_info.kv_bytes_per_token == expected


def test_the_8da4w_program_streams_far_fewer_bytes(tiny_8da4w, runner):
    quantized = load_runner(tiny_8da4w.path)
    try:
        assert quantized.load_info.weights_bytes < runner.load_info.weights_bytes / 3
        assert quantized.load_info.kv_bytes_per_token == runner.load_info.kv_bytes_per_token  # KV stays fp32
    finally:
        quantized.close()


# Teacher-forced scoring (edgebench quality), checked against transformers' own logits.


def test_scoring_gives_transformers_log_probs_at_every_position(runner, sharp_tiny):
    assert_scores_like_transformers(runner, sharp_tiny)


def test_the_8da4w_program_scores_measurably_further_from_transformers(tiny_8da4w, runner, sharp_tiny):
    fp32_gap = logprob_gap(*scored_against_transformers(runner, sharp_tiny))
    quantized = load_runner(tiny_8da4w.path)
    try:
        quantized_gap = logprob_gap(*scored_against_transformers(quantized, sharp_tiny))
    finally:
        quantized.close()
    assert quantized_gap > max(FP32_LOGPROB_GAP, 100 * fp32_gap)


def test_scoring_is_deterministic_and_never_sees_an_earlier_generation(runner):
    import numpy as np

    ids = runner.tokenize(PROSE)
    first = runner.score(ids)
    run(
        runner,
        max_new_tokens=30,
        text="Something else entirely, and longer than the first prompt was.",
        ignore_eos=True,
    )
    assert np.array_equal(runner.score(ids), first)


def test_a_generation_after_scoring_gives_the_tokens_it_gave_before(runner):
    before, _ = run(runner, max_new_tokens=12, messages=CAPITAL, ignore_eos=True)
    runner.score(runner.tokenize(PROSE * 3))
    after, _ = run(runner, max_new_tokens=12, messages=CAPITAL, ignore_eos=True)
    assert after == before


def test_a_sequence_longer_than_the_programs_context_is_refused(runner):
    assert runner.load_info.context_tokens == runner.max_context == 2048
    with pytest.raises(ValueError, match="cannot score 2049 tokens at once: the KV cache holds 2048"):
        runner.score([100] * 2049)
    with pytest.raises(ValueError, match="empty"):
        runner.score([])


def test_the_threadpool_size_is_read_back_from_the_runtime(tiny_fp32):
    """Resets the process-wide threadpool, which crashes (SIGSEGV) a program loaded before it
    when that program runs again: tests using the module's `runner` stay above this one."""
    from executorch.extension.pybindings import portable_lib

    one = load_runner(tiny_fp32.path, threads=1)
    try:
        assert one.load_info.threads == portable_lib._threadpool_get_thread_count() == 1
        assert "threads" not in one.load_info.not_applied
    finally:
        one.close()
        portable_lib._unsafe_reset_threadpool(2)


def test_the_artifact_check_names_what_is_wrong(tmp_path, tiny_fp32):
    from runners.base import ArtifactError
    from runners.executorch import ExecuTorchRunner

    with pytest.raises(ArtifactError, match="exactly one .pte"):
        ExecuTorchRunner.check_artifact(tmp_path)
    (tmp_path / "model.pte").write_bytes(b"GGUF" + bytes(60))
    with pytest.raises(ArtifactError, match="not an ExecuTorch program"):
        ExecuTorchRunner.check_artifact(tmp_path)
    shutil.copy(tiny_fp32.path / "model.pte", tmp_path / "model.pte")
    with pytest.raises(ArtifactError, match="no tokenizer.json"):
        ExecuTorchRunner.check_artifact(tmp_path)
    ExecuTorchRunner.check_artifact(tiny_fp32.path)


def test_a_quick_run_through_the_cli_records_both_quantizations(
    sharp_tiny, tiny_fp32, tiny_8da4w, artifact_cache, tmp_path
):
    result = edgebench(
        "run",
        "--model",
        str(sharp_tiny),
        "--runner",
        "executorch",
        "--quant",
        "executorch=fp32",
        "--quant",
        "executorch=8da4w",
        "--profile",
        "quick",
        "--cache",
        str(artifact_cache),
        "--threads",
        "2",
        "--out",
        str(tmp_path),
    )
    assert result.returncode == 0, result.stderr
    records = read_jsonl(next(tmp_path.glob("*.jsonl")))
    assert records and all(r["status"] == "ok" for r in records)
    assert {r["quantization"] for r in records} == {"fp32", "8da4w"}
    assert all(
        r["backend"] == "xnnpack" and r["threads"] == r["runner_settings"]["threadpool_threads"] == 2 for r in records
    )
    # The KV cache is the program's, fixed at export: the record says so beside the request.
    assert all((r["context_tokens"], r["context_tokens_requested"]) == (2048, 1024) for r in records)
    assert all("fixed at export" in r["runner_settings"]["not_applied"]["context_tokens"] for r in records)
    # The runtime times nothing here: the runner's own timings never pass for the runtime's.
    assert not any(key.startswith("runtime_") for r in records for key in r["native"])
    assert all(r["setup_ms"] is None for r in records)  # state is reused: no per-request set-up
    for r in (r for r in records if r["kind"] == "fixed"):
        assert (r["prompt_tokens"], r["new_tokens"], r["stop_reason"]) == (128, 64, "length")
        assert r["native"]["adapter_forward_decode_calls"] == 63
        # The harness clock encloses the prefill calls: templating and sampling are the gap.
        assert r["native"]["adapter_forward_prefill_ms"] <= r["ttft_ms"]
    chat = [r for r in records if r["prompt_id"] == "chat-capital"]
    assert chat and all(r["prompt_tokens"] == 37 for r in chat)


# The real default model, when its fp32 export is in the artifact cache.


@pytest.fixture(scope="module")
def real_fp32():
    from bench.artifacts import prepare as stages
    from bench.artifacts.cache import cache_root
    from bench.data import models

    found = stages.find_artifact(models.get_model("smollm2-135m"), "executorch", "fp32", cache_root())
    if found is None:
        pytest.skip("no fp32 export yet: edgebench prepare --runner executorch --quant fp32")
    real = load_runner(found.path)
    yield real
    real.close()


@pytest.mark.real
def test_the_default_models_fp32_program_agrees_with_transformers(real_fp32, default_checkpoint):
    tokens, info = run(real_fp32, max_new_tokens=32, messages=CAPITAL)
    prompt, expected = transformers_greedy(default_checkpoint, 32, messages=CAPITAL)
    assert info.prompt_tokens == len(prompt) == 37
    assert tokens == expected[:-1] and expected[-1] == 2 and info.stop_reason == "eos"  # "...is Paris." <|im_end|>


@pytest.mark.real
def test_the_default_models_fp32_program_scores_like_transformers(real_fp32, default_checkpoint):
    assert_scores_like_transformers(real_fp32, default_checkpoint)
