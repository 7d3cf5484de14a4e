"""llama.cpp end to end on the real default model (SmolLM2-135M-Instruct Q4_1)."""
import pytest

from tests.conftest import edgebench, read_jsonl

pytestmark = pytest.mark.real


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("llamacpp")
    result = edgebench("run", "--runner", "llama.cpp", "--profile", "quick", "--out", str(out), "--threads", "2")
    return result, read_jsonl(next(out.glob("*.jsonl"))), out


def test_the_quick_profile_runs_clean(quick_run):
    result, records, out = quick_run
    assert result.returncode == 0, result.stderr
    assert records and all(r["status"] == "ok" for r in records)
    assert {p.suffix for p in out.iterdir()} == {".jsonl", ".md", ".csv", ".json"}


def test_records_say_what_was_measured(quick_run):
    _, records, _ = quick_run
    r = records[0]
    assert r["runner"] == "llama.cpp" and r["synthetic"] is False and r["runtime_version"] == "0.3.36"
    assert r["quantization"] == "Q4_1" and r["artifact_bytes"] > 90_000_000 and len(r["artifact_sha256"]) == 64
    assert r["threads"] == 2 and r["runner_settings"]["n_threads"] == 2 and r["load_ms"] > 0
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
    _, records, _ = quick_run
    for r in (r for r in records if r["kind"] == "fixed"):
        native = r["native"]
        assert native["n_p_eval"] == r["prompt_tokens"] and native["n_eval"] == r["new_tokens"] - 1
        # The harness clock encloses llama.cpp's prompt eval; the gap is Python overhead.
        assert native["t_p_eval_ms"] <= r["ttft_ms"] <= native["t_p_eval_ms"] * 1.10 + 5


def test_greedy_output_repeats_exactly(quick_run):
    _, records, _ = quick_run
    outputs = {}
    for r in records:
        outputs.setdefault(r["prompt_id"], set()).add(tuple(r["output_token_ids"]))
    assert all(len(o) == 1 for o in outputs.values())


def test_a_prompt_beyond_the_context_is_an_error_record_not_a_crash(tmp_path):
    profile = tmp_path / "small-context.toml"
    profile.write_text('name = "small"\ndescription = ""\nwarmups = 0\nrepetitions = 1\ntags = ["short"]\n'
                       'context_tokens = 96\n')
    result = edgebench("run", "--runner", "llama.cpp", "--profile", str(profile), "--out", str(tmp_path))
    records = {r["prompt_id"]: r for r in read_jsonl(next(tmp_path.glob("*.jsonl")))}
    assert records["pp128-tg64"]["status"] == "error" and "exceeds the context of 96" in records["pp128-tg64"]["error"]
    assert records["autocomplete-reply"]["status"] == "ok" and result.returncode == 1
