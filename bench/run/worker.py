"""A run's work in its child process (bench.workers.child): one runner, a list of jobs.

The task `run` gets the loaded runner and {"jobs", "sustain_s", "ask"}. Each generation is
timed on the harness clock: Start, then Done with its figures or Failed. With `ask` (a run
with a time budget) it says Ready before each generation and runs it only if the answer
says go. In sustained mode (`sustain_s`) the last job repeats back to back until that many
seconds have passed on the runner's clock; each repetition gets the next job number and
its start time within the loop (`elapsed_s`).
"""

from __future__ import annotations

from bench.run import harness
from bench.workers.child import Channel, clock_of
from bench.workers.protocol import Answer, Done, Failed, Ready, Skipped, Start
from runners.base import ContextFull, GenerationRequest


class CountMismatch(Exception):
    """The tokens a generation produced are not the ones asked for or counted: its
    figures would describe another generation than the record says."""


def fixed_prompt_tokens(runner, fill_text: str, count: int) -> tuple[int, ...]:
    """Exactly `count` tokens of the fill text, repeated if it is too short."""
    ids = runner.tokenize(fill_text)
    if not ids:
        raise ValueError("the fill text tokenizes to nothing")
    while len(ids) < count:
        ids = ids + ids
    return tuple(ids[:count])


def build_request(runner, job: dict, token_cache: dict, replies: dict | None = None) -> GenerationRequest:
    kind = job["kind"]
    if kind == "conversation":
        return conversation_turn(job, replies if replies is not None else {})
    if kind == "chat":
        messages = [{"role": "system", "content": job["system"]}] if job.get("system") else []
        messages.append({"role": "user", "content": job["user"]})
        return GenerationRequest(job["max_new_tokens"], messages=tuple(messages))
    if kind == "completion":
        return GenerationRequest(job["max_new_tokens"], text=job["text"])
    ids = cached_tokens(runner, job["fill_text"], job["prompt_tokens"], token_cache)
    return GenerationRequest(job["max_new_tokens"], token_ids=ids, ignore_eos=True, history=job.get("depth"))


def cached_tokens(runner, fill_text: str, count: int, token_cache: dict) -> tuple[int, ...]:
    """`count` tokens of the fill text, tokenized once, before any clock starts (like
    llama-bench's tokens)."""
    if (fill_text, count) not in token_cache:
        token_cache[fill_text, count] = fixed_prompt_tokens(runner, fill_text, count)
    return token_cache[fill_text, count]


def fill_history(runner, job: dict, request: GenerationRequest, token_cache: dict, clock) -> dict:
    """A depth job's history put in the runner's cache before its request, timed apart on the
    harness clock (the fill's own rate). The runtime's own count after it must be the depth."""
    depth = request.history
    history = cached_tokens(runner, job["fill_text"], depth, token_cache) if depth else ()
    t0 = clock()
    held = runner.fill(history, len(request.token_ids) + request.max_new_tokens)
    elapsed_ms = (clock() - t0) / 1e6
    if held != depth:
        raise CountMismatch(f"{depth} tokens of history were filled, the runtime holds {held}")
    return {"fill_ms": elapsed_ms, "fill_tok_s": depth / (elapsed_ms / 1000) if depth and elapsed_ms else None}


def conversation_turn(job: dict, replies: dict) -> GenerationRequest:
    """Turn N of a conversation: the system message, the earlier user messages each followed by
    the reply this worker generated for it (as an app keeps its history), then message N; a
    fixed-length reply. `replies` maps the conversation's run to its replies so far."""
    turn, key = job["turn"], job["conversation"]
    earlier = replies.get(key, [])
    if len(earlier) != turn - 1:
        raise MissingTurns(
            f"turn {turn} needs the replies of turns 1-{turn - 1} of this conversation, "
            f"and this worker has {len(earlier)} (an earlier turn failed, was skipped or ran in a worker that ended)"
        )
    messages = [{"role": "system", "content": job["system"]}] if job.get("system") else []
    for user, reply in zip(job["turns"], [*earlier, None]):
        messages.append({"role": "user", "content": user})
        if reply is not None:
            messages.append({"role": "assistant", "content": reply})
    return GenerationRequest(job["max_new_tokens"], messages=tuple(messages), ignore_eos=True, turn=turn)


class MissingTurns(Exception):
    """A conversation turn whose earlier turns did not all run in this worker."""


def planned_jobs(orders: dict, clock):
    """(job, loop start on the clock or None) for each generation to run, in order."""
    if orders.get("sustain_s") is None:
        yield from ((job, None) for job in orders["jobs"])
        return
    *warmups, measured = orders["jobs"]
    yield from ((job, None) for job in warmups)
    loop_t0, limit, n = clock(), orders["sustain_s"] * 1e9, 0
    while (now := clock()) - loop_t0 < limit:
        yield measured | {"job": measured["job"] + n}, loop_t0
        n += 1
        if clock() == now:  # a scripted clock that a generation does not move never ends the loop
            break


def run(runner, work: dict, channel: Channel) -> None:
    """Every job of `work` in turn (a failure breaks a sustained series: it is not retried)."""
    clock, token_cache, replies = clock_of(runner), {}, {}
    for job, loop_t0 in planned_jobs(work, clock):
        if work.get("ask") and not allowed(job, channel):
            continue
        if not generate(runner, job, loop_t0, clock, token_cache, channel, replies) and loop_t0 is not None:
            break


def allowed(job: dict, channel: Channel) -> bool:
    """Ask the supervisor whether to run this generation (its time budget may rule it out)."""
    channel.send(Ready(job["job"]))
    answer = channel.receive()
    return isinstance(answer, Answer) and answer.go


def generate(
    runner, job: dict, loop_t0: int | None, clock, token_cache: dict, channel: Channel, replies: dict | None = None
) -> bool:
    """One generation on the harness clock: Start, then Done with its figures, or Failed
    (returns False). A conversation turn's reply joins `replies` for the next turn."""
    replies = {} if replies is None else replies
    try:
        request = build_request(runner, job, token_cache, replies)
        channel.send(Start(job["job"]))
        filled = fill_history(runner, job, request, token_cache, clock) if request.history is not None else {}
        stream = harness.collect(runner.generate(request), clock)
        gen = runner.generation_info()
        problem = harness.count_problem(request, gen, len(stream.events))
        if problem:
            raise CountMismatch(problem)
    except ContextFull as exc:
        channel.send(Skipped(job["job"], f"the depth sweep stops here: {exc}"))
        return False
    except Exception as exc:
        channel.send(Failed(f"{type(exc).__name__}: {exc}", job["job"]))
        return False
    turn = job.get("turn")
    prefilled = gen.prompt_tokens if turn is None or gen.prefilled_tokens is None else gen.prefilled_tokens
    m = harness.measure(stream, prefilled)
    elapsed_s = (stream.t0 - loop_t0) / 1e9 if loop_t0 is not None else None
    figures = m.__dict__ | filled if turn is None else {**m.__dict__, **turn_figures(gen, turn)}
    channel.send(Done(job["job"], figures, gen.stop_reason, gen.native, elapsed_s, "chunk" if gen.chunked else "token"))
    if turn is not None:
        replies.setdefault(job["conversation"], []).append(m.output_text)
    return True


def turn_figures(gen, turn: int) -> dict:
    """A conversation turn's record fields: the tokens in its history and whether the runtime
    kept them (turn 1 has none to keep); its `prompt_tokens` are those prefilled for it."""
    return {
        "turn": turn,
        "history_tokens": gen.prompt_tokens,
        "history_reused": bool(gen.kept_tokens) if turn > 1 else None,
        # a runner that says nothing kept nothing: it fed the whole history (the runner contract)
        "prefill_counted_by": gen.prefill_counted_by or "runner",
    }
