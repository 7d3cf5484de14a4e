"""Child-process entry: one runner, one artifact, a list of jobs.

In sustained mode (`sustain_s` in its orders) the last job repeats back to back until that
many seconds have passed on the runner's clock; each repetition gets the next job number
and its start time within the loop (`elapsed_s`).

Started by bench.run.supervisor as `python -m bench.run.worker FD`: reads its orders as one
line of JSON on stdin and writes one JSON message per line to file descriptor FD (never
stdout, which the runtime's own native code may print to). With `ask` in its orders (a run
with a time budget) it says "ready" before each generation and reads the answer, "go" or
"skip", from stdin. Only this process imports the runtime.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from pathlib import Path

from bench.run import harness
from runners import load_class
from runners.base import ArtifactError, GenerationRequest, RunnerOptions


class CountMismatch(Exception):
    """The tokens a generation produced are not the ones asked for or counted: its
    figures would describe another generation than the record says."""


class Channel:
    def __init__(self, fd: int) -> None:
        self._out = os.fdopen(fd, "w", buffering=1)

    def send(self, event: str, **payload) -> None:
        self._out.write(json.dumps({"event": event, **payload}) + "\n")
        self._out.flush()


def fixed_prompt_tokens(runner, fill_text: str, count: int) -> tuple[int, ...]:
    """Exactly `count` tokens of the fill text, repeated if it is too short."""
    ids = runner.tokenize(fill_text)
    if not ids:
        raise ValueError("the fill text tokenizes to nothing")
    while len(ids) < count:
        ids = ids + ids
    return tuple(ids[:count])


def build_request(runner, job: dict, token_cache: dict) -> GenerationRequest:
    kind = job["kind"]
    if kind == "chat":
        messages = [{"role": "system", "content": job["system"]}] if job.get("system") else []
        messages.append({"role": "user", "content": job["user"]})
        return GenerationRequest(job["max_new_tokens"], messages=tuple(messages))
    if kind == "completion":
        return GenerationRequest(job["max_new_tokens"], text=job["text"])
    key = (job["fill_text"], job["prompt_tokens"])
    if key not in token_cache:  # tokenized before the clock starts, like llama-bench's tokens
        token_cache[key] = fixed_prompt_tokens(runner, *key)
    return GenerationRequest(job["max_new_tokens"], token_ids=token_cache[key], ignore_eos=True)


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


def run(orders: dict, channel: Channel) -> None:
    runner_cls = load_class(orders["runner_target"])
    runner = runner_cls()
    clock = runner_cls.scripted_clock or time.perf_counter_ns
    if not load(runner, orders, clock, channel):
        return
    token_cache: dict = {}
    for job, loop_t0 in planned_jobs(orders, clock):
        if orders.get("ask") and not allowed(job, channel):
            continue
        if not generate(runner, job, loop_t0, clock, token_cache, channel) and loop_t0 is not None:
            break  # a failure breaks a sustained series; it is not retried
    channel.send("finished")
    runner.close()


def allowed(job: dict, channel: Channel) -> bool:
    """Ask the supervisor whether to run this generation (its time budget may rule it out)."""
    channel.send("ready", job=job["job"])
    return sys.stdin.readline().strip() == "go"


def load(runner, orders: dict, clock, channel: Channel) -> bool:
    """Load the artifact and say how long it took and what the runtime applied; False when it failed."""
    options = RunnerOptions(**orders["options"])
    t0 = clock()
    try:
        info = runner.load(Path(orders["artifact"]), options)
    except ArtifactError as exc:
        channel.send("load_failed", error=str(exc))
        return False
    except Exception as exc:  # a runtime's own failure: report it, the run goes on
        channel.send("load_failed", error=f"{type(exc).__name__}: {exc}")
        return False
    channel.send("loaded", load_ms=(clock() - t0) / 1e6, info=dataclasses.asdict(info))
    return True


def generate(runner, job: dict, loop_t0: int | None, clock, token_cache: dict, channel: Channel) -> bool:
    """One generation on the harness clock: "start", then "done" with its figures, or "failed"
    (returns False)."""
    try:
        request = build_request(runner, job, token_cache)
        channel.send("start", job=job["job"])
        stream = harness.collect(runner.generate(request), clock)
        gen = runner.generation_info()
        problem = harness.count_problem(request, gen, len(stream.events))
        if problem:
            raise CountMismatch(problem)
    except Exception as exc:
        channel.send("failed", job=job["job"], error=f"{type(exc).__name__}: {exc}")
        return False
    m = harness.measure(stream, gen.prompt_tokens)
    elapsed_s = (stream.t0 - loop_t0) / 1e9 if loop_t0 is not None else None
    channel.send(
        "done",
        job=job["job"],
        measurement=m.__dict__,
        stop_reason=gen.stop_reason,
        native=gen.native,
        elapsed_s=elapsed_s,
        itl_basis="chunk" if gen.chunked else "token",
    )
    return True


def main() -> None:
    channel = Channel(int(sys.argv[1]))
    run(json.loads(sys.stdin.readline()), channel)


if __name__ == "__main__":
    main()
