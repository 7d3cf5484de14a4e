"""Conversations: each turn its own record, the history as the runtime generated it, and a
claim of reuse the runtime's own prefill count must back (issue 26, item 2)."""

from __future__ import annotations

import pandas as pd
import pytest

from tests.support.helpers import edgebench, on_fake, read_jsonl

SYSTEM = "You are a helpful assistant."
TURNS = ["my phone gets warm when I play", "it also drops frames after a while", "which settings help"]
REPLY = 8  # tokens per reply: the FAKE's are words " t0 ... t7"
SUITE = f"""
id = "conversation-test"
description = "one conversation"

[[prompt]]
id = "support"
category = "conversation"
kind = "conversation"
system = "{SYSTEM}"
turns = {TURNS!r}
max_new_tokens = {REPLY}
tags = ["short"]
""".replace("'", '"')


def converse(tmp_path, script, *extra: str) -> tuple:
    """Run the conversation suite on the FAKE runner: the result and its records, by turn."""
    suite = tmp_path / "suite.toml"
    suite.write_text(SUITE)
    out = tmp_path / "out"
    result = edgebench(*on_fake("run", script), "--suite", str(suite), "--out", str(out), *extra, budget=True)
    records = read_jsonl(next(out.glob("*.jsonl")))
    return result, [r for r in records if not r["warmup"]]


def words(*texts: str) -> int:
    return sum(len(t.split()) for t in texts)


def test_each_turn_is_a_record_with_its_whole_history_and_what_was_prefilled(tmp_path, fake_script):
    result, records = converse(tmp_path, fake_script(prefill_ms_per_token=1, first_token_ms=3))
    assert result.returncode == 0, result.stderr
    assert [r["prompt_id"] for r in records[:3]] == ["support/turn1", "support/turn2", "support/turn3"]
    # The history of turn N: the system message, every user message so far and each earlier
    # reply as generated (the FAKE tokenizes words); the FAKE's cache holds all but a reply's last token.
    history = [words(SYSTEM, TURNS[0])]
    history.append(history[0] + REPLY + words(TURNS[1]))
    history.append(history[1] + REPLY + words(TURNS[2]))
    prefilled = [history[0], history[1] - (history[0] + REPLY - 1), history[2] - (history[1] + REPLY - 1)]
    for r in records:
        n = r["turn"] - 1
        assert r["kind"] == "conversation" and r["new_tokens"] == REPLY and r["status"] == "ok"
        assert (r["history_tokens"], r["prompt_tokens"]) == (history[n], prefilled[n])
        assert r["history_reused"] is (None if n == 0 else True) and r["prefill_counted_by"] == "runner"
        assert r["ttft_ms"] == pytest.approx(prefilled[n] + 3)  # the scripted clock: 1 ms per token prefilled
        assert r["prefill_tok_s"] == pytest.approx(prefilled[n] / (prefilled[n] + 3) * 1000)
    assert "support: reuses the history: turn 3 TTFT" in result.stdout
    report = next((tmp_path / "out").glob("*.md")).read_text()
    matrix = edgebench("matrix", str(tmp_path / "out"), "--out", str(tmp_path / "matrix"))
    assert matrix.returncode == 0, matrix.stderr
    for view in (report, (tmp_path / "matrix" / "matrix.md").read_text()):  # each turn's figures
        assert (
            f"| fake (FAKE) | none | support | 3 | 3 | {prefilled[2] + 3:.1f} | 100.0 | {history[2]} | {prefilled[2]} |"
            in view
        )
    page = (tmp_path / "matrix" / "matrix.html").read_text()
    assert "Conversation turns" in page and f">{prefilled[2] + 3:.1f}<" in page and f">{history[2]}<" in page


def test_a_runtime_that_keeps_no_state_re_prefills_the_history_and_its_records_say_so(tmp_path, fake_script):
    result, records = converse(tmp_path, fake_script(prefill_ms_per_token=1, keeps_history=False))
    assert result.returncode == 0, result.stderr
    for r in records:
        assert r["prompt_tokens"] == r["history_tokens"]
        assert r["history_reused"] is (None if r["turn"] == 1 else False)
    assert "support: re-prefills the whole history" in result.stdout


def test_a_runner_that_re_prefills_while_claiming_reuse_gets_error_records(tmp_path, fake_script):
    result, records = converse(tmp_path, fake_script(prefill_ms_per_token=1, refills_claiming_kept=True))
    assert result.returncode == 1
    by_turn = {r["turn"]: r for r in records if r["repeat"] == 0}
    assert by_turn[1]["status"] == "ok"
    assert by_turn[2]["status"] == "error" and "claims it kept" in by_turn[2]["error"]
    # Its history was not measured: turn 3 does not go on from it.
    assert by_turn[3]["status"] in ("error", "skipped") and "turn" in (by_turn[3]["error"] or by_turn[3]["skip_reason"])


def test_a_turn_budget_is_judged_on_that_turns_conversation_records_only(tmp_path, fake_script):
    from bench.analysis import stats, verdicts
    from bench.data.workloads import Workload

    _, records = converse(tmp_path, fake_script(prefill_ms_per_token=1, first_token_ms=3))
    # A chat prompt of the same category, far slower, is no conversation turn.
    records += [records[0] | {"turn": None, "kind": "chat", "prompt_id": "chat-slow", "ttft_ms": 9000.0}]
    rows = stats.measured(pd.DataFrame.from_records(records))
    ttft = {r["turn"]: r["ttft_ms"] for r in records if r["turn"]}
    assert ttft[3] < 13 < ttft[1]
    for turn, expected in ((3, "pass"), (1, "fail")):
        budget = Workload("t", "", ("conversation",), ttft_ms_max=13, turn=turn)
        verdict = verdicts.judge(rows, budget)
        assert verdict.verdict == expected, verdict.reasons
        assert all(f"support/turn{turn}" in reason for reason in verdict.reasons)


def test_the_packaged_conversation_budget_is_for_a_turn_and_the_default_suite_has_one():
    from bench.data.suite import load_suite
    from bench.data.workloads import load_workloads

    workload = next(w for w in load_workloads() if "conversation" in w.categories)
    turns = [p for p in load_suite("default").prompts if p.kind == "conversation"]
    assert workload.turn is not None and len(turns) >= workload.turn
    assert all(p.category == "conversation" and p.max_new_tokens <= 32 for p in turns)


def test_a_conversation_without_turns_is_refused_in_one_line(tmp_path):
    suite = tmp_path / "bad.toml"
    suite.write_text(SUITE.replace(f"turns = {TURNS!r}".replace("'", '"'), "turns = []"))
    result = edgebench("validate", str(suite))
    assert result.returncode != 0 and "needs 'turns'" in result.stderr and "Traceback" not in result.stderr


# --- The real runtime: llama.cpp's own prefill count backs the claim ---


@pytest.mark.real
def test_llamacpp_keeps_its_kv_cache_between_turns_by_its_own_count():
    """Three turns on the default GGUF through the worker's conversation path: from turn 2 on,
    llama.cpp's own prompt-eval counter is what the record says was prefilled, less than the
    history, and what was kept plus it is the whole history the template renders."""
    from bench.data import models
    from bench.run import harness
    from bench.run.worker import conversation_turn
    from runners.base import RunnerOptions
    from runners.llamacpp import LlamaCppRunner

    runner = LlamaCppRunner()
    runner.load(
        models.get_model(models.default_model_id()).source_path(),
        RunnerOptions(threads=2, context_tokens=1024, settings=dict(LlamaCppRunner.defaults)),
    )
    job = {"system": SYSTEM, "turns": TURNS, "conversation": "c", "max_new_tokens": REPLY}
    replies: dict = {}
    try:
        for turn in (1, 2, 3):
            request = conversation_turn(job | {"turn": turn}, replies)
            stream = harness.collect(runner.generate(request))
            info = runner.generation_info()
            assert harness.count_problem(request, info, len(stream.events)) is None
            assert info.prompt_tokens == len(runner._chat_ids(list(request.messages)))  # the whole history
            assert info.prefilled_tokens == info.native["n_p_eval"] and info.prefill_counted_by == "runtime"
            assert info.kept_tokens + info.prefilled_tokens == info.prompt_tokens
            if turn > 1:
                assert info.kept_tokens > 0 and info.prefilled_tokens < info.prompt_tokens / 2
            replies.setdefault("c", []).append("".join(e.text for e in stream.events))
    finally:
        runner.close()


def test_a_resumed_conversation_rebuilds_its_history_before_the_turns_left(tmp_path, fake_script):
    result, _ = converse(tmp_path, fake_script(prefill_ms_per_token=1))
    results = next((tmp_path / "out").glob("*.jsonl"))
    lines = results.read_text().splitlines(keepends=True)
    results.write_text("".join(lines[:-2]))  # the last repetition's turns 2 and 3 never happened
    resumed = edgebench("run", "--resume", str(results), "--out", str(tmp_path / "out"))
    assert resumed.returncode == 0, resumed.stderr
    measured = [(r["turn"], r["repeat"]) for r in read_jsonl(results) if not r["warmup"] and r["status"] == "ok"]
    assert sorted(measured) == sorted({(t, k) for t in (1, 2, 3) for k in range(3)})  # each once
    last = [r for r in read_jsonl(results)[len(lines) - 2 :] if r["turn"] in (2, 3)]
    assert [r["history_reused"] for r in last if not r["warmup"]] == [True, True]


def test_a_runner_that_says_nothing_of_the_history_is_recorded_as_re_prefilling_it():
    from bench.run import harness
    from bench.run.worker import turn_figures
    from runners.base import GenerationInfo

    silent = GenerationInfo(50, "length")  # e.g. a plugin runner that knows nothing of conversations
    assert harness.kept_problem(silent) == []
    assert turn_figures(silent, 2) == {
        "turn": 2,
        "history_tokens": 50,
        "history_reused": False,
        "prefill_counted_by": "runner",
    }
    assert harness.kept_problem(GenerationInfo(50, "length", kept_tokens=40))  # a claim with no count
    assert harness.kept_problem(GenerationInfo(50, "length", kept_tokens=0, prefilled_tokens=10))  # nor too few


def test_compare_treats_each_turn_as_its_own_cell(tmp_path, fake_script):
    (tmp_path / "base").mkdir()
    (tmp_path / "cand").mkdir()
    converse(tmp_path / "base", fake_script(prefill_ms_per_token=1, first_token_ms=3))
    converse(tmp_path / "cand", fake_script(prefill_ms_per_token=1, first_token_ms=3, keeps_history=False))
    baseline, candidate = (next((tmp_path / d / "out").glob("*.jsonl")) for d in ("base", "cand"))
    result = edgebench("compare", str(baseline), str(candidate))
    assert result.returncode == 1  # the later turns' TTFT regressed: the history is prefilled again
    rows = [[c.strip() for c in line.split("|")] for line in result.stdout.splitlines()]
    regressed = {r[5] for r in rows if len(r) > 6 and r[1] == "regression" and r[6] == "TTFT ms"}
    assert {"support/turn2", "support/turn3"} <= regressed and "support/turn1" not in regressed, result.stdout


def test_the_time_budget_holds_a_conversation_whole_and_cuts_only_whole_runs(tmp_path, fake_script):
    # ~5 s a turn on the scripted clock: 15 s a run. Turn by turn every prompt fits the quick
    # profile's 45 s; the conversation as a whole fits its warm-up and one repetition only.
    script = fake_script(prefill_ms_per_token=10, decode_ms=700)
    result, records = converse(tmp_path, script, "--profile", "quick")
    assert result.returncode == 0, result.stderr
    status = {(r["repeat"], r["turn"]): r["status"] for r in records}
    assert [status[(0, t)] for t in (1, 2, 3)] == ["ok"] * 3
    assert [status[(1, t)] for t in (1, 2, 3)] == ["skipped"] * 3
    cut = next(r for r in records if r["repeat"] == 1 and r["turn"] == 1)
    assert "3 turns" in cut["skip_reason"] and cut["estimated_s"] > 10
