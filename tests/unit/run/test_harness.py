"""The harness arithmetic, exact to the nanosecond on the FAKE runner's scripted clock."""

from pathlib import Path

import pytest

from bench.run import harness
from runners.base import GenerationInfo, GenerationRequest, RunnerOptions, TokenEvent
from runners.fake import FakeRunner


def fake_runner(tmp_path: Path, **script) -> FakeRunner:
    path = tmp_path / "script.json"
    path.write_text(__import__("json").dumps(script))
    runner = FakeRunner()
    runner.load(path, RunnerOptions(threads=1, context_tokens=512))
    return runner


def measure(runner: FakeRunner, request: GenerationRequest) -> harness.Measurement:
    stream = harness.collect(runner.generate(request), FakeRunner.scripted_clock)
    return harness.measure(stream, runner.generation_info().prompt_tokens)


def test_figures_follow_from_the_token_stamps(tmp_path):
    runner = fake_runner(tmp_path, prefill_ms_per_token=2, first_token_ms=5, decode_ms=[10, 20])
    m = measure(runner, GenerationRequest(5, token_ids=tuple(range(100)), ignore_eos=True))
    assert m.prompt_tokens == 100 and m.new_tokens == 5
    assert m.ttft_ms == 205.0  # 100 tokens x 2 ms + 5 ms
    assert m.prefill_tok_s == pytest.approx(100 / 0.205)
    assert m.token_times_ns == (205_000_000, 215_000_000, 235_000_000, 245_000_000, 265_000_000)
    assert m.decode_tok_s == pytest.approx(4 / 0.060)  # (n - 1) / (last - first)
    assert m.itl_p50_ms == 15.0 and m.itl_p90_ms == pytest.approx(20.0) and m.e2e_ms == 265.0


def test_one_token_has_a_ttft_but_no_decode_rate(tmp_path):
    runner = fake_runner(tmp_path, first_token_ms=7)
    m = measure(runner, GenerationRequest(1, text="hello there"))
    assert (m.new_tokens, m.ttft_ms, m.decode_tok_s, m.itl_p50_ms) == (1, 7.0, None, None)


def test_chat_stops_at_end_of_turn_but_fixed_length_does_not(tmp_path):
    runner = fake_runner(tmp_path, eos_after=3)
    chat = measure(runner, GenerationRequest(10, messages=({"role": "user", "content": "hi"},)))
    assert chat.new_tokens == 3 and runner.generation_info().stop_reason == "eos"
    fixed = measure(runner, GenerationRequest(10, token_ids=(1, 2, 3), ignore_eos=True))
    assert fixed.new_tokens == 10 and runner.generation_info().stop_reason == "length"


def test_per_request_set_up_is_stamped_by_the_harness_and_stays_inside_ttft(tmp_path):
    runner = fake_runner(tmp_path, setup_ms=30, prefill_ms_per_token=1, first_token_ms=2)
    m = measure(runner, GenerationRequest(3, token_ids=tuple(range(10)), ignore_eos=True))
    assert m.setup_ms == 30.0 and m.ttft_ms == 30 + 10 + 2 and m.new_tokens == 3
    assert measure(fake_runner(tmp_path), GenerationRequest(3, text="a b")).setup_ms is None


def test_a_fixed_length_generation_that_drifts_is_named_not_trusted(tmp_path):
    runner = fake_runner(tmp_path, fixed_short_by=2)
    request = GenerationRequest(8, token_ids=tuple(range(16)), ignore_eos=True)
    stream = harness.collect(runner.generate(request), FakeRunner.scripted_clock)
    problem = harness.count_problem(request, runner.generation_info(), len(stream.events))
    assert problem == "8 new tokens were asked, the runtime made 6 and the harness received 6 event(s)"


def test_a_prompt_the_runtime_prefilled_differently_is_named():
    request = GenerationRequest(4, token_ids=tuple(range(16)), ignore_eos=True)
    info = GenerationInfo(prompt_tokens=15, stop_reason="length", runtime_new_tokens=4)
    assert harness.count_problem(request, info, 4) == "prompt of 16 tokens was asked, the runtime prefilled 15"


def test_events_that_disagree_with_the_runtimes_own_count_are_named_unless_declared_chunks():
    request = GenerationRequest(32, messages=({"role": "user", "content": "hi"},))
    merged = GenerationInfo(prompt_tokens=9, stop_reason="eos", runtime_new_tokens=12)
    assert "counted 12 new tokens, the harness received 7" in harness.count_problem(request, merged, 7)
    chunks = GenerationInfo(prompt_tokens=9, stop_reason="eos", runtime_new_tokens=12, chunked=True)
    assert harness.count_problem(request, chunks, 7) is None


def test_the_clock_starts_before_the_runner_does_any_work():
    clock_reads = []

    def stream():
        clock_reads.append("runner started")
        yield TokenEvent(1, "a")

    ticks = iter(range(0, 10**9, 1000))

    def clock():
        clock_reads.append("clock")
        return next(ticks)

    harness.collect(stream(), clock)
    assert clock_reads[:2] == ["clock", "runner started"]


def test_percentile_interpolates_like_numpy():
    values = [1.0, 2.0, 3.0, 4.0]
    assert harness.percentile(values, 50) == 2.5
    assert harness.percentile(values, 90) == pytest.approx(3.7)
    assert harness.percentile([5.0], 99) == 5.0


def test_a_request_takes_exactly_one_prompt_form():
    with pytest.raises(ValueError):
        GenerationRequest(4, text="a", token_ids=(1,))
    with pytest.raises(ValueError):
        GenerationRequest(4)


def test_the_count_check_needs_the_runtimes_own_count_for_a_request_with_history():
    request = GenerationRequest(4, token_ids=(1, 2, 3), ignore_eos=True, history=100)
    assert harness.count_problem(request, GenerationInfo(3, "length", runtime_context=107), 4) is None
    assert "not in its cache" in harness.count_problem(request, GenerationInfo(3, "length", runtime_context=7), 4)
    assert "no count" in harness.count_problem(request, GenerationInfo(3, "length"), 4)
