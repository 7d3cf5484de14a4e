"""The time budget: a generation that would take far too long on this runtime is skipped.

The estimate comes from the runtime's OWN figures on earlier generations of the same run
(same runner, same artifact): prompt tokens ÷ its prefill rate + max new tokens ÷ its
decode rate. The fastest rate seen of each is used, so a generation is skipped only when
even the runtime's best pace would overrun the budget. Before the first measured
generation there is no estimate, and nothing is skipped.
"""

from __future__ import annotations

from dataclasses import dataclass

# A chat or completion prompt's tokens are unknown before the runtime templates and
# tokenizes it. SmolLM2's tokenizer makes 4.0-5.3 characters per token of the default
# suite's prompts, 5.2 of the 1,000-token summary (5,219 characters, 1,002 tokens); the
# chat template adds a few tokens more.
CHARS_PER_TOKEN = 5.0


@dataclass(frozen=True)
class Estimate:
    seconds: float
    reason: str  # the figures it came from, for the record's skip_reason


def prompt_tokens(payload: dict) -> tuple[int, bool]:
    """The job's prompt tokens, and whether the count is exact (fixed-length prompts)."""
    if payload["kind"] == "fixed":
        return payload["prompt_tokens"], True
    text = " ".join(part for part in (payload.get("system"), payload.get("user"), payload.get("text")) if part)
    return max(1, round(len(text) / CHARS_PER_TOKEN)), False


class GenerationBudget:
    """The budget of one runner plan, learning that runtime's rates as its records arrive."""

    def __init__(self, limit_s: float) -> None:
        self.limit_s = limit_s
        self.prefill_tok_s: float | None = None
        self.decode_tok_s: float | None = None

    def learn(self, record: dict) -> None:
        """Keep the fastest prefill and decode rates of this runtime's successful generations."""
        if record["status"] != "ok":
            return
        for name in ("prefill_tok_s", "decode_tok_s"):
            seen = record.get(name)
            if seen and seen > (getattr(self, name) or 0.0):
                setattr(self, name, seen)

    def estimate(self, payload: dict) -> Estimate | None:
        """How long the job would take at this runtime's best measured pace (None: no rates yet)."""
        if not (self.prefill_tok_s and self.decode_tok_s):
            return None
        tokens, exact = prompt_tokens(payload)
        prefill_s = tokens / self.prefill_tok_s
        decode_s = payload["max_new_tokens"] / self.decode_tok_s
        counted = f"{tokens}" if exact else f"~{tokens} (text length / {CHARS_PER_TOKEN:g})"
        reason = (
            f"estimated {prefill_s + decode_s:.0f} s > budget {self.limit_s:g} s: {counted} prompt tokens at "
            f"{self.prefill_tok_s:.1f} tok/s prefill + {payload['max_new_tokens']} new tokens at "
            f"{self.decode_tok_s:.1f} tok/s decode (this runtime's fastest rates so far in this run)"
        )
        return Estimate(prefill_s + decode_s, reason)

    def over(self, payload: dict) -> Estimate | None:
        """The estimate when the job would overrun the budget, else None."""
        found = self.estimate(payload)
        return found if found and found.seconds > self.limit_s else None
