"""Child-process entry of `edgebench quality`: one runner, one artifact. Only this process
imports the runtime.

`python -m bench.quality.worker FD`: reads two JSON lines on stdin, the load plan
({"runner_target", "artifact", "options"}) and, once it has said "loaded" (with the context
the runtime really has, which decides the scoring windows), the work ({"reference": folder,
"prompts": [{"id", "messages"}], "greedy_tokens", "tokenizer"}). Writes one JSON message per
line to FD, as bench.run.worker does. The logits never leave this process: it scores them against
the reference file and sends per-position figures (NLL, KL, top-1 match) back.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import sys
import time
import traceback
from pathlib import Path

import numpy as np

from bench.quality import metrics as quality
from bench.run.worker import Channel
from runners import load_class
from runners.base import ArtifactError, GenerationRequest, NoLogits, RunnerOptions, TokenEvent


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


def load(plan: dict, channel: Channel):
    runner = load_class(plan["runner_target"])()
    t0 = time.perf_counter_ns()
    try:
        info = runner.load(Path(plan["artifact"]), RunnerOptions(**plan["options"]))
    except ArtifactError as exc:
        channel.send("load_failed", error=str(exc))
        return None
    except Exception as exc:  # a runtime's own failure: reported, the command goes on
        channel.send("load_failed", error=f"{type(exc).__name__}: {exc}", trace=traceback.format_exc(limit=5))
        return None
    channel.send("loaded", load_ms=(time.perf_counter_ns() - t0) / 1e6, info=dataclasses.asdict(info))
    return runner


def work(runner, job: dict, channel: Channel) -> None:
    with np.load(Path(job["reference"]) / "reference.npz") as data:
        reference = dict(data)
    channel.send("scoring")
    try:
        figures, seconds = score_text(runner, reference)
        channel.send(
            "scored",
            seconds=seconds,
            nll=figures.nll.tolist(),
            kld=figures.kld.tolist(),
            top1=figures.top1.astype(int).tolist(),
        )
    except NoLogits as exc:
        channel.send("scored", seconds=None, no_logits=str(exc))
    for prompt in job["prompts"]:
        channel.send("generating", prompt=prompt["id"])
        t0 = time.perf_counter()
        found = greedy_tokens(runner, prompt["messages"], job["greedy_tokens"], job["tokenizer"])
        channel.send("generated", prompt=prompt["id"], seconds=time.perf_counter() - t0, **found)


def main() -> None:
    channel = Channel(int(sys.argv[1]))
    runner = load(_read_line(), channel)
    if runner is None:
        return
    job = _read_line()
    try:
        work(runner, job, channel)
    except Exception as exc:
        channel.send("failed", error=f"{type(exc).__name__}: {exc}")
        return
    channel.send("finished")
    runner.close()


def _read_line() -> dict:
    return json.loads(sys.stdin.readline())


if __name__ == "__main__":
    main()
