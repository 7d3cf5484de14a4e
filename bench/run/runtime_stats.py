"""The statistics a runtime's own command-line tool prints, parsed: the runtime's clock.

ExecuTorch's `llama_main` ends a generation with one `PyTorchObserver {json}` line
(extension/llm/runner/stats.h: millisecond stamps of load, inference start, prompt eval end,
first token and inference end, and the token counts). LiteRT-LM's `litert_lm_main
--benchmark` prints its engine's BenchmarkInfo (time to first token, then each prefill and
decode turn: "Processed N tokens in D duration", "Speed: S tokens/sec"). These figures are
the runtime's own timing of itself, not the harness's per-token stamps, so the records made
from them say so (`clock: "runtime"`), keep the tool's own rates (each tool's definition,
which the matrix does not mix with the harness's) and have no per-token times or ITL.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

OBSERVER = re.compile(r"PyTorchObserver (\{.*\})")
LITERT_TTFT = re.compile(r"Time to first token: ([\d.]+) s")
LITERT_TURN = re.compile(
    r"(Prefill|Decode) Turn (\d+): Processed (\d+) tokens in ([\d.]+)(ms|us|s) duration\.\s+"
    r"\w+ Speed: ([\d.]+) tokens/sec"
)
LITERT_INIT = re.compile(r"- Init Total: ([\d.]+) ms")
SECONDS = {"s": 1.0, "ms": 1e-3, "us": 1e-6}


class StatsMissing(ValueError):
    """The tool's output holds no statistics of the kind asked for."""


@dataclass(frozen=True)
class RuntimeStats:
    """One generation as the runtime timed it (None where the tool does not say)."""

    prompt_tokens: int
    new_tokens: int
    ttft_ms: float | None
    prefill_tok_s: float | None
    decode_tok_s: float | None
    e2e_ms: float | None
    load_ms: float | None
    raw: dict  # what the tool printed, as parsed: kept in the record's `native`

    def record_fields(self) -> dict:
        return {
            "prompt_tokens": self.prompt_tokens,
            "new_tokens": self.new_tokens,
            "ttft_ms": self.ttft_ms,
            "prefill_tok_s": self.prefill_tok_s,
            "decode_tok_s": self.decode_tok_s,
            "e2e_ms": self.e2e_ms,
            "load_ms": self.load_ms,
            "native": self.raw,
        }


def executorch(text: str) -> RuntimeStats:
    """llama_main's last PyTorchObserver line, in the rates llama_main's own report gives:
    prompt tokens over the prompt evaluation, generated tokens over the time after it."""
    found = OBSERVER.findall(text)
    if not found:
        raise StatsMissing("no PyTorchObserver line in llama_main's output")
    stats = json.loads(found[-1])
    unit_ms = 1000 / stats.get("SCALING_FACTOR_UNITS_PER_SECOND", 1000)
    start, first, end = (stats[k] * unit_ms for k in ("inference_start_ms", "first_token_ms", "inference_end_ms"))
    prompt, new = stats["prompt_tokens"], stats["generated_tokens"]
    evaluated = stats["prompt_eval_end_ms"] * unit_ms
    prefill_ms, decode_ms = evaluated - start, end - evaluated
    load_ms = (stats["model_load_end_ms"] - stats["model_load_start_ms"]) * unit_ms
    return RuntimeStats(
        prompt,
        new,
        first - start,
        prompt / prefill_ms * 1000 if prefill_ms > 0 else None,
        new / decode_ms * 1000 if decode_ms > 0 else None,
        end - start,
        load_ms or None,  # 0 when the runner was loaded before the stats began (the docs' examples)
        stats,
    )


def litert_lm(text: str) -> RuntimeStats:
    """litert_lm_main --benchmark's BenchmarkInfo: its last prefill and decode turns, at the
    speeds it reports (tokens over each turn's duration)."""
    turns = {kind: [] for kind in ("Prefill", "Decode")}
    for kind, number, tokens, duration, unit, speed in LITERT_TURN.findall(text):
        turns[kind].append({"turn": int(number), "tokens": int(tokens), "s": float(duration) * SECONDS[unit],
                            "tok_s": float(speed)})  # fmt: skip
    ttft = LITERT_TTFT.search(text)
    if not turns["Prefill"] or not turns["Decode"]:
        raise StatsMissing("no prefill and decode turns in litert_lm_main's benchmark output")
    prefill, decode = turns["Prefill"][-1], turns["Decode"][-1]
    init = LITERT_INIT.search(text)
    return RuntimeStats(
        prefill["tokens"],
        decode["tokens"],
        float(ttft.group(1)) * 1000 if ttft else None,
        prefill["tok_s"],
        decode["tok_s"],
        (prefill["s"] + decode["s"]) * 1000,
        float(init.group(1)) if init else None,
        {"time_to_first_token_s": float(ttft.group(1)) if ttft else None, "prefill_turns": turns["Prefill"],
         "decode_turns": turns["Decode"], "init_total_ms": float(init.group(1)) if init else None},
    )  # fmt: skip


PARSERS = {"executorch": executorch, "litert-lm": litert_lm}
