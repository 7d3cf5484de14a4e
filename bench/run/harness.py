"""The clock. Wraps a runner's token stream into a Measurement.

t0 is taken immediately before the request is handed to the runner's generator, so
templating, tokenization and prefill all count toward the time to first token. Each token
gets a `perf_counter_ns` stamp as it arrives. Every figure derives from those stamps.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

from runners.base import GenerationInfo, GenerationRequest, SetupDone, TokenEvent

Clock = Callable[[], int]


@dataclass(frozen=True)
class Measurement:
    prompt_tokens: int
    new_tokens: int
    ttft_ms: float | None
    prefill_tok_s: float | None
    decode_tok_s: float | None
    itl_p50_ms: float | None
    itl_p90_ms: float | None
    itl_p99_ms: float | None
    e2e_ms: float
    setup_ms: float | None  # t0 to the runner's SETUP_DONE, where it marks one
    token_times_ns: tuple[int, ...]  # offsets from t0
    token_ids: tuple[int, ...]
    output_text: str


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (numpy's default), q in [0, 100]."""
    if not values:
        raise ValueError("percentile of nothing")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


@dataclass(frozen=True)
class Stream:
    """The raw stamps of one generation (ns on the harness clock)."""

    t0: int
    t_end: int
    stamps: list[int]  # one per token event
    events: list[TokenEvent]
    setup_done: int | None = None  # when the runner said its per-request set-up was done


def collect(events: Iterable[TokenEvent | SetupDone], clock: Clock = time.perf_counter_ns) -> Stream:
    """Drain the token stream, stamping each event.

    `events` must be a not-yet-started generator: its work begins at the first next().
    """
    stamps: list[int] = []
    received: list[TokenEvent] = []
    setup_done = None
    t0 = clock()
    for event in events:
        now = clock()
        if isinstance(event, SetupDone):
            if setup_done is not None or received:
                raise RuntimeError("a runner marks its set-up done once, before the first token")
            setup_done = now
            continue
        stamps.append(now)
        received.append(event)
    return Stream(t0, clock(), stamps, received, setup_done)


def measure(stream: Stream, prompt_tokens: int) -> Measurement:
    """The figures of one generation, from its raw stamps (all in ns)."""
    ms = 1e-6
    t0, stamps, events = stream.t0, stream.stamps, stream.events
    n = len(stamps)
    ttft_ms = (stamps[0] - t0) * ms if n else None
    gaps = [(b - a) * ms for a, b in zip(stamps, stamps[1:])]
    decode_span_s = (stamps[-1] - stamps[0]) * 1e-9 if n > 1 else 0.0
    return Measurement(
        prompt_tokens=prompt_tokens,
        new_tokens=n,
        ttft_ms=ttft_ms,
        prefill_tok_s=prompt_tokens / (ttft_ms / 1000) if ttft_ms else None,
        decode_tok_s=(n - 1) / decode_span_s if decode_span_s > 0 else None,
        itl_p50_ms=percentile(gaps, 50) if gaps else None,
        itl_p90_ms=percentile(gaps, 90) if gaps else None,
        itl_p99_ms=percentile(gaps, 99) if gaps else None,
        e2e_ms=(stream.t_end - t0) * ms,
        setup_ms=(stream.setup_done - t0) * ms if stream.setup_done is not None else None,
        token_times_ns=tuple(s - t0 for s in stamps),
        token_ids=tuple(e.token_id for e in events),
        output_text="".join(e.text for e in events),
    )


def count_problem(request: GenerationRequest, info: GenerationInfo, received: int) -> str | None:
    """Why a generation's token counts cannot be trusted, or None.

    A fixed-length request (ignore_eos) must prefill exactly the tokens given and produce
    exactly max_new_tokens; any request must produce as many events as the runtime's own
    count says, unless the runner declared its events chunks. A conversation turn whose
    runner claims it kept tokens of the history must have the tokens kept and those prefilled
    (by the runtime's own count where it keeps one) make up its prompt. A request with history
    must end with the runtime holding history + prompt + tokens made, by its own count.
    """
    problems = []
    if request.continues:
        problems.extend(kept_problem(info))
    if request.history is not None:
        expected = request.history + info.prompt_tokens + received
        if info.runtime_context is None:
            problems.append("the runtime gave no count of the tokens in its context: the history is unchecked")
        elif info.runtime_context != expected:
            problems.append(
                f"the runtime holds {info.runtime_context} tokens, not the {request.history} of history + "
                f"{info.prompt_tokens} of prompt + {received} made ({expected}): the history was not in its cache"
            )
    if info.runtime_new_tokens is not None and info.runtime_new_tokens != received and not info.chunked:
        problems.append(f"the runtime counted {info.runtime_new_tokens} new tokens, the harness received {received}")
    if request.ignore_eos:
        if request.token_ids is not None and info.prompt_tokens != len(request.token_ids):
            problems.append(
                f"prompt of {len(request.token_ids)} tokens was asked, the runtime prefilled {info.prompt_tokens}"
            )
        made = info.runtime_new_tokens if info.runtime_new_tokens is not None else received
        if made != request.max_new_tokens or received != request.max_new_tokens:
            problems.append(
                f"{request.max_new_tokens} new tokens were asked, the runtime made {made} "
                f"and the harness received {received} event(s)"
            )
    return "; ".join(problems) or None


def kept_problem(info: GenerationInfo) -> list[str]:
    """Why a continued conversation turn's claim to have kept its history cannot be trusted."""
    if not info.kept_tokens and info.prefilled_tokens is None:
        return []  # no claim: by the runner contract it prefilled the whole history
    if info.prefilled_tokens is None or (info.kept_tokens or 0) + info.prefilled_tokens != info.prompt_tokens:
        return [
            f"the runner claims it kept {info.kept_tokens} of the conversation's {info.prompt_tokens} tokens, "
            f"but the {info.prefill_counted_by} counted {info.prefilled_tokens} prefilled"
        ]
    return []
