"""Quality's work in its child process (bench.workers.child): one runner, one artifact.
Only this process imports the runtime.

The task `score` gets the loaded runner, then (once the parent knows the context the
runtime really has, which decides the scoring windows) a Work message {"reference": folder,
"prompts": [{"id", "messages"}], "greedy_tokens", "tokenizer"}. The logits never leave this
process: it scores them against the reference file and sends per-position figures (NLL, KL,
top-1 match) back as Scored, then each prompt's greedy generation as Generated.
"""

from __future__ import annotations

import functools
import time
from pathlib import Path

import numpy as np

from bench.quality import metrics as quality
from bench.workers.child import Channel
from bench.workers.protocol import Generated, Scored, Step, Work
from runners.base import GenerationRequest, NoLogits, TokenEvent


def score_text(runner, reference: dict) -> tuple[quality.PositionFigures, float]:
    """The runtime's figures at every position the reference scored, window by window, and
    the seconds its score() calls took (the comparison's own arithmetic excluded)."""
    token_ids = reference["token_ids"].tolist()
    parts, offset, seconds = [], 0, 0.0
    for start, end, first in reference["windows"].tolist():
        window = quality.Window(start, end, first)
        t0 = time.perf_counter()
        logits = np.asarray(runner.score(token_ids[start:end]))
        seconds += time.perf_counter() - t0
        if logits.ndim != 2 or logits.shape[0] != end - start:
            raise ValueError(f"score() returned logits of shape {logits.shape} for {end - start} tokens")
        n = end - first
        ref = quality.Compact(*(reference[f][offset : offset + n] for f in ("topk_ids", "topk_logp", "rest_logp")))
        parts.append(quality.position_figures(logits[window.rows], np.asarray(token_ids[first:end]), ref))
        offset += n
    return quality.PositionFigures(
        *(np.concatenate([getattr(p, f) for p in parts]) for f in ("nll", "kld", "top1"))
    ), seconds


def greedy_tokens(runner, messages: list[dict], n: int, tokenizer_path: str) -> dict:
    """The runner's own greedy generation of n tokens at most. A runtime that streams text
    chunks (GenerationInfo.chunked) is compared by its text re-tokenized with the reference
    tokenizer."""
    events = [e for e in runner.generate(GenerationRequest(n, messages=tuple(messages))) if isinstance(e, TokenEvent)]
    info = runner.generation_info()
    text = "".join(e.text for e in events)
    if info.chunked:
        tokens = _reference_tokenizer(tokenizer_path).encode(text, add_special_tokens=False).ids[:n]
    else:
        tokens = [e.token_id for e in events]
    return {
        "tokens": tokens,
        "stopped_at_end_of_turn": info.stop_reason == "eos",
        "text": text,
        "compared_by": "retokenized text" if info.chunked else "token ids",
    }


@functools.cache
def _reference_tokenizer(checkpoint: str):
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(Path(checkpoint) / "tokenizer.json"))


def score(runner, _orders: dict, channel: Channel) -> None:
    work = channel.receive()
    if not isinstance(work, Work):  # the parent closed our stdin without work: nothing to do
        return
    job = work.payload
    with np.load(Path(job["reference"]) / "reference.npz") as data:
        reference = dict(data)
    channel.send(Step("scoring"))
    try:
        figures, seconds = score_text(runner, reference)
        channel.send(Scored(seconds, figures.nll.tolist(), figures.kld.tolist(), figures.top1.astype(int).tolist()))
    except NoLogits as exc:
        channel.send(Scored(None, no_logits=str(exc)))
    for prompt in job["prompts"]:
        channel.send(Step(f"greedy generation of {prompt['id']}"))
        t0 = time.perf_counter()
        found = greedy_tokens(runner, prompt["messages"], job["greedy_tokens"], job["tokenizer"])
        channel.send(Generated(prompt["id"], time.perf_counter() - t0, **found))
