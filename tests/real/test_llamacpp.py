"""llama.cpp end to end on the real default model (SmolLM2-135M-Instruct Q4_1)."""

import pytest

from tests.support.helpers import assert_decodes_incrementally, edgebench, read_jsonl
from tests.support.reference_logits import PROSE, logprob_gap

pytestmark = pytest.mark.real


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """The quick profile on one thread: the count asked is not the default (this machine's
    cores), and beside a busy core two threads meeting at llama.cpp's spinning barrier decode
    at 0.3-5 tok/s instead of ~90 (seen in a busy-core CI run, which timed this run out)."""
    out = tmp_path_factory.mktemp("llamacpp")
    result = edgebench("run", "--runner", "llama.cpp", "--profile", "quick", "--out", str(out), "--threads", "1")
    return result, read_jsonl(next(out.glob("*.jsonl"))), out


def test_the_quick_profile_runs_clean(quick_run):
    result, records, out = quick_run
    assert result.returncode == 0, result.stderr
    assert records and all(r["status"] == "ok" for r in records)
    assert {p.suffix for p in out.iterdir()} == {".jsonl", ".md", ".csv", ".json", ".html"}


def test_records_say_what_was_measured(quick_run):
    _, records, _ = quick_run
    r = records[0]
    assert r["runner"] == "llama.cpp" and r["synthetic"] is False and r["runtime_version"] == "0.3.36"
    assert r["quantization"] == "Q4_1" and r["artifact_bytes"] > 90_000_000 and len(r["artifact_sha256"]) == 64
    assert r["threads"] == 1 and r["runner_settings"]["n_threads"] == 1 and r["load_ms"] > 0
    assert r["peak_rss_mb"] > 50


def test_the_chat_template_is_the_models_own(quick_run):
    _, records, _ = quick_run
    chat = next(r for r in records if r["prompt_id"] == "chat-capital")
    assert chat["prompt_tokens"] == 37  # SmolLM2's template with its default system prompt


def test_fixed_length_probes_produce_exactly_the_tokens_asked(quick_run):
    _, records, _ = quick_run
    for r in (r for r in records if r["kind"] == "fixed"):
        assert (r["prompt_tokens"], r["new_tokens"]) == (128, 64) and r["stop_reason"] == "length"
        assert len(r["token_times_ns"]) == 64


def test_harness_and_llamacpp_counters_describe_the_same_generation(quick_run):
    from runners.llamacpp import LlamaCppRunner

    _, records, _ = quick_run
    for r in (r for r in records if r["kind"] == "fixed"):
        native = r["native"]
        assert native["n_p_eval"] == r["prompt_tokens"] and native["n_eval"] == r["new_tokens"] - 1
        # The harness clock encloses llama.cpp's prompt eval; the gap is Python overhead.
        assert native["t_p_eval_ms"] <= r["ttft_ms"] <= native["t_p_eval_ms"] * 1.10 + 5
        # The common keys selfcheck compares: llama.cpp times less than the harness around it.
        assert native["runtime_ttft_ms"] <= r["ttft_ms"] and native["runtime_prefill_tok_s"] >= r["prefill_tok_s"]
        assert native["runtime_decode_tok_s"] >= r["decode_tok_s"]
        assert [k for k in native if k.startswith("runtime_")] == list(LlamaCppRunner.runtime_figures)


def test_greedy_output_repeats_exactly(quick_run):
    _, records, _ = quick_run
    outputs = {}
    for r in records:
        outputs.setdefault(r["prompt_id"], set()).add(tuple(r["output_token_ids"]))
    assert all(len(o) == 1 for o in outputs.values())


def test_a_prompt_beyond_the_context_is_an_error_record_not_a_crash(tmp_path):
    profile = tmp_path / "small-context.toml"
    profile.write_text(
        'name = "small"\ndescription = ""\nwarmups = 0\nrepetitions = 1\ntags = ["short"]\ncontext_tokens = 96\n'
    )
    result = edgebench("run", "--runner", "llama.cpp", "--profile", str(profile), "--out", str(tmp_path))
    records = {r["prompt_id"]: r for r in read_jsonl(next(tmp_path.glob("*.jsonl")))}
    assert records["pp128-tg64"]["status"] == "error" and "exceeds the context of 96" in records["pp128-tg64"]["error"]
    assert records["autocomplete-reply"]["status"] == "ok" and result.returncode == 1
    # llama.cpp allocated more than asked; the record says both, and why.
    r = records["autocomplete-reply"]
    assert (r["context_tokens"], r["context_tokens_requested"]) == (256, 96)
    assert "multiple of 256" in r["runner_settings"]["not_applied"]["n_ctx"]


# --- What the runner applies and reports, read against llama.cpp's and the file's own figures ---

GGUF_PACKAGE_HINT = "the gguf package comes with edgebench[prepare]"


@pytest.fixture(scope="module")
def default_gguf():
    from bench.data import models

    return models.get_model(models.default_model_id()).source_path()


def load_runner(gguf, context_tokens=1024, **settings):
    from runners.base import RunnerOptions
    from runners.llamacpp import LlamaCppRunner

    runner = LlamaCppRunner()
    info = runner.load(
        gguf, RunnerOptions(threads=2, context_tokens=context_tokens, settings={**LlamaCppRunner.defaults, **settings})
    )
    return runner, info


def test_records_carry_llama_benchs_settings_as_the_context_got_them(quick_run):
    _, records, _ = quick_run
    r = records[0]
    applied = r["runner_settings"]
    # llama-bench's defaults; flash attention `auto` is resolved by llama.cpp (never echoed as "auto").
    assert applied["flash_attn"] in ("on", "off") and applied["n_ubatch"] == 512
    assert (applied["type_k"], applied["type_v"]) == ("f16", "f16") and applied["use_mmap"] is True
    assert r["threads"] == applied["n_threads"] == applied["n_threads_batch"] == 1 == r["threads_requested"]
    assert r["context_tokens"] == applied["n_ctx"] == applied["kv_cells"] == r["context_tokens_requested"] == 1024
    # llama.cpp holds a batch to the context: the 2048 asked is recorded as not applied, with why.
    assert applied["n_batch"] == 1024 and "1024" in applied["not_applied"]["n_batch"]


def test_a_setting_override_reaches_llama_cpp(tmp_path):
    # One pass of the short prompts on one thread: the settings are the point, not the figures.
    profile = tmp_path / "once.toml"
    profile.write_text('name = "once"\ndescription = ""\nwarmups = 0\nrepetitions = 1\ntags = ["short"]\n')
    result = edgebench(
        "run",
        "--runner",
        "llama.cpp",
        "--profile",
        str(profile),
        "--out",
        str(tmp_path / "out"),
        "--threads",
        "1",
        "--setting",
        "llama.cpp:flash_attn=off",
        "--setting",
        "llama.cpp:n_ubatch=256",
    )
    assert result.returncode == 0, result.stderr
    applied = read_jsonl(next((tmp_path / "out").glob("*.jsonl")))[0]["runner_settings"]
    assert (applied["flash_attn"], applied["n_ubatch"]) == ("off", 256)
    assert "flash_attn" not in applied.get("not_applied", {})


def test_weights_bytes_are_every_tensor_once_for_a_tied_head(default_gguf):
    gguf = pytest.importorskip("gguf", reason=GGUF_PACKAGE_HINT)
    import llama_cpp

    runner, info = load_runner(default_gguf)
    reader = gguf.GGUFReader(default_gguf)
    names = {t.name for t in reader.tensors}
    assert "token_embd.weight" in names and "output.weight" not in names  # SmolLM2 ties its head
    # llama.cpp's own count of the model's bytes, and the file's tensor-data section (padding aside).
    assert info.weights_bytes == llama_cpp.llama_model_size(runner.llm._model.model)
    data = default_gguf.stat().st_size - reader.tensors[0].data_offset
    assert data - reader.alignment * len(reader.tensors) <= info.weights_bytes <= data
    runner.close()


def test_weights_bytes_count_one_embedding_row_when_the_head_is_its_own_tensor(default_gguf, tmp_path):
    gguf = pytest.importorskip("gguf", reason=GGUF_PACKAGE_HINT)
    import llama_cpp

    untied = tmp_path / "untied.gguf"
    write_with_output_head(gguf, default_gguf, untied)
    runner, info = load_runner(untied)
    embedding = next(t for t in gguf.GGUFReader(untied).tensors if t.name == "token_embd.weight")
    rows = int(embedding.shape[-1])
    total = llama_cpp.llama_model_size(runner.llm._model.model)
    assert info.weights_bytes == total - int(embedding.n_bytes) + int(embedding.n_bytes) // rows
    runner.close()


def write_with_output_head(gguf, source, target):
    """A copy of the GGUF with its tied head stored as a separate output.weight tensor."""
    reader = gguf.GGUFReader(source)
    writer = gguf.GGUFWriter(target, arch=reader.fields["general.architecture"].contents())
    for field in reader.fields.values():
        if field.name == "general.architecture" or field.name.startswith("GGUF."):
            continue
        kind = field.types[0]
        writer.add_key_value(
            field.name, field.contents(), kind, sub_type=field.types[-1] if kind == gguf.GGUFValueType.ARRAY else None
        )
    embedding = next(t for t in reader.tensors if t.name == "token_embd.weight")
    tensors = [(t.name, t) for t in reader.tensors] + [("output.weight", embedding)]
    for name, t in tensors:
        writer.add_tensor_info(name, t.data.shape, t.data.dtype, t.data.nbytes, t.tensor_type)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    for _, t in tensors:
        writer.write_tensor_data(t.data)
    writer.close()


@pytest.mark.parametrize("cache_type", ["f16", "q8_0"])
def test_kv_bytes_per_token_are_what_llama_cpp_saves_per_token(default_gguf, cache_type):
    import llama_cpp

    runner, info = load_runner(default_gguf, type_k=cache_type, type_v=cache_type)
    assert (info.settings["type_k"], info.settings["type_v"]) == (cache_type, cache_type)
    llm, sizes = runner.llm, {}
    llm.reset()
    for tokens in (16, 272):
        llm.eval(list(range(1000, 1000 + tokens - llm.n_tokens)))
        sizes[tokens] = llama_cpp.llama_state_get_size(runner.ctx)
    saved_per_token = (sizes[272] - sizes[16]) / (272 - 16)
    # The saved state holds each cell's K and V rows plus its position and sequence ids.
    assert info.kv_bytes_per_token <= saved_per_token <= info.kv_bytes_per_token + 16
    runner.close()


# --- teacher-forced scoring (edgebench quality), checked against transformers' own logits ---

# An f32 GGUF vs transformers, max |delta log p| over every position and vocabulary entry: float
# rounding and llama-bench's f16 K/V cache (observed 2.7e-4 to 5.3e-4 on the tiny model).
F32_LOGPROB_GAP = 2e-3


@pytest.fixture(scope="module")
def tiny_f32_gguf(tiny_checkpoint, tmp_path_factory):
    """The tiny llama as an f32 GGUF, converted by llama.cpp's own convert_hf_to_gguf.py (with
    its gguf-py) from the llama-cpp-python source scripts/build-llama-bench.sh keeps."""
    import os
    import subprocess
    import sys
    import tarfile

    import llama_cpp

    from bench.run import llama_bench

    # The script alone knows its cache folder: llama-bench goes to CACHE/llama-bench-KEY/, the source to CACHE/sdists/.
    sdist = llama_bench.built_path().parent.parent / "sdists" / f"llama_cpp_python-{llama_cpp.__version__}.tar.gz"
    if not sdist.is_file():
        pytest.skip(f"no llama-cpp-python source at {sdist}: scripts/build-llama-bench.sh downloads it")
    work = tmp_path_factory.mktemp("convert")
    source = f"llama_cpp_python-{llama_cpp.__version__}/vendor/llama.cpp/"
    wanted = (source + "convert_hf_to_gguf.py", source + "conversion/", source + "gguf-py/")
    with tarfile.open(sdist) as tar:
        tar.extractall(work, members=[m for m in tar.getmembers() if m.name.startswith(wanted)], filter="data")
    out = work / "tiny-f32.gguf"
    converted = subprocess.run(
        [
            sys.executable,
            str(work / source / "convert_hf_to_gguf.py"),
            str(tiny_checkpoint),
            "--outtype",
            "f32",
            "--outfile",
            str(out),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(work / source / "gguf-py")},
    )
    assert converted.returncode == 0, converted.stderr[-2000:]
    return out


def test_an_f32_gguf_scores_with_transformers_log_probs_at_every_position(tiny_f32_gguf, tiny_checkpoint):
    from tests.support.reference_logits import transformers_logits

    runner, _ = load_runner(tiny_f32_gguf)
    ids = runner.tokenize(PROSE)
    assert 55 <= len(ids) <= 70
    scored, reference = runner.score(ids), transformers_logits(tiny_checkpoint, ids)
    runner.close()
    assert scored.dtype.name == "float32" and scored.shape == reference.shape == (len(ids), 49152)
    assert logprob_gap(scored, reference) < F32_LOGPROB_GAP
    assert (scored.argmax(-1) == reference.argmax(-1)).all()  # top-1 agreement 100%


def test_a_sequence_longer_than_a_batch_is_scored_in_batches_that_continue_its_positions(tiny_f32_gguf):

    runner, _ = load_runner(tiny_f32_gguf)
    ids = runner.tokenize(PROSE)
    whole = runner.score(ids)
    runner.close()
    runner, info = load_runner(tiny_f32_gguf, n_batch=16)
    assert info.settings["n_batch"] == 16
    batched = runner.score(ids)  # four batches
    runner.close()
    assert logprob_gap(batched, whole) < F32_LOGPROB_GAP and (batched.argmax(-1) == whole.argmax(-1)).all()


def test_the_q4_1_gguf_scores_near_the_checkpoint_dequantized_from_it(default_gguf, default_checkpoint):
    """Same weights, but llama.cpp quantizes activations to q8 in its Q4_1 matrix products."""
    import numpy as np

    from tests.support.reference_logits import transformers_logits

    runner, _ = load_runner(default_gguf)
    ids = runner.tokenize(PROSE)
    scored = runner.score(ids)
    assert np.array_equal(runner.score(ids), scored)  # deterministic
    runner.close()
    reference = transformers_logits(default_checkpoint, ids)
    # Observed: top-1 agreement 1.0 on this text (0.95 on another), max |delta log p| 0.89.
    assert (scored.argmax(-1) == reference.argmax(-1)).mean() >= 0.9
    assert logprob_gap(scored, reference) > 100 * F32_LOGPROB_GAP  # measurably further than an f32 GGUF


def test_scoring_is_deterministic_and_leaves_nothing_for_the_next_generation(default_gguf):
    import numpy as np

    from runners.base import GenerationRequest

    runner, _ = load_runner(default_gguf)
    request = GenerationRequest(16, text="Then", ignore_eos=True)  # a continuation: any context left changes it
    before = [e.token_id for e in runner.generate(request)]
    ids = runner.tokenize(PROSE)
    scored = runner.score(ids)
    assert [e.token_id for e in runner.generate(request)] == before
    assert np.array_equal(runner.score(ids), scored)  # and the generation left nothing for scoring
    runner.close()


def test_each_token_is_decoded_in_a_short_window_of_llama_cpps_own_pieces(default_gguf):
    from runners.base import GenerationRequest

    runner, _ = load_runner(default_gguf)
    request = GenerationRequest(96, messages=({"role": "user", "content": "Say something in French."},))
    events = assert_decodes_incrementally(runner, request)
    runner.close()
    assert len(events) > 8 and runner.generation_info().stop_reason == "eos"


@pytest.mark.real
def test_llama_cpps_own_kv_count_shows_the_history_and_catches_a_runner_that_drops_it():
    from bench.data import models
    from bench.run import harness
    from runners.base import GenerationRequest

    runner, _ = load_runner(models.get_model(models.default_model_id()).source_path(), context_tokens=512)
    history = runner.tokenize(PROSE * 5)[:200]
    request = GenerationRequest(8, token_ids=tuple(history[:16]), ignore_eos=True, history=200)

    def measured(runner) -> str | None:
        assert runner.fill(history, 24) == 200  # llama.cpp's own count after the fill
        stream = harness.collect(runner.generate(request))
        return harness.count_problem(request, runner.generation_info(), len(stream.events))

    assert measured(runner) is None and runner.generation_info().runtime_context == 224
    # llama.cpp's own counters describe the request alone, not the history under it
    assert runner.generation_info().native["n_p_eval"] == 16
    # Broken on purpose: a generate that clears the cache first, as a runner re-prefilling would.
    generate = runner.generate

    def forgetting(request):
        runner.llm.reset()
        runner.llm._ctx.kv_cache_clear()
        return generate(request)

    runner.generate = forgetting
    assert "history was not in its cache" in measured(runner)
    runner.close()
