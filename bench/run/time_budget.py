"""The time budget: no prompt holds one runtime for longer than the profile's `prompt_budget`.

A prompt's budget covers its warm-ups and measured repetitions together. Before each
generation the worker asks; the answer comes from the runtime's OWN figures on earlier
generations of the same run (same runner, same artifact): a generation's time is estimated
as prompt tokens ÷ its prefill rate + max new tokens ÷ its decode rate, with the fastest rate
seen of each, so a generation is ruled out only when even the runtime's best pace overruns.

- A prompt whose warm-ups and one repetition would overrun the budget is skipped whole.
- Otherwise its warm-ups and first repetition run, and each further repetition runs while
  the time its generations have taken (the harness's own end-to-end figures) plus the
  estimate of one more stays within the budget; the rest are cut.

Before the first measured generation there is no estimate, and nothing is skipped. A
skipped or cut generation gets a `skipped` record that says why (`skip_reason`,
`estimated_s`: that generation's estimate).
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
    seconds: float  # one generation at this runtime's fastest rates
    pace: str  # the figures it came from


@dataclass(frozen=True)
class Skip:
    reason: str  # for the record's skip_reason
    estimated_s: float  # the generation's own estimate


def prompt_tokens(payload: dict) -> tuple[int, bool]:
    """The job's prompt tokens, and whether the count is exact (fixed-length prompts)."""
    if payload["kind"] == "fixed":
        return payload["prompt_tokens"], True
    text = " ".join(part for part in (payload.get("system"), payload.get("user"), payload.get("text")) if part)
    return max(1, round(len(text) / CHARS_PER_TOKEN)), False


class PromptBudget:
    """The budget of one runner plan: learns that runtime's rates, and each prompt's time
    spent, as its records arrive; says which generations to skip."""

    def __init__(self, limit_s: float, warmups: int, repetitions: int) -> None:
        self.limit_s, self.warmups, self.repetitions = limit_s, warmups, repetitions
        self.prefill_tok_s: float | None = None
        self.decode_tok_s: float | None = None
        self.spent_s: dict[str, float] = {}  # prompt -> seconds its generations took
        self.ruled_out: dict[str, Skip] = {}  # prompt -> why it is skipped whole

    def learn(self, record: dict) -> None:
        """Keep the fastest prefill and decode rates of this runtime's successful generations,
        and add the generation's time to its prompt's."""
        if record["status"] != "ok":
            return
        prompt = record["prompt_id"]
        self.spent_s[prompt] = self.spent_s.get(prompt, 0.0) + (record.get("e2e_ms") or 0.0) / 1e3
        for name in ("prefill_tok_s", "decode_tok_s"):
            seen = record.get(name)
            if seen and seen > (getattr(self, name) or 0.0):
                setattr(self, name, seen)

    def estimate(self, payload: dict) -> Estimate | None:
        """One generation at this runtime's best measured pace (None: no rates yet)."""
        if not (self.prefill_tok_s and self.decode_tok_s):
            return None
        tokens, exact = prompt_tokens(payload)
        counted = f"{tokens}" if exact else f"~{tokens} (text length / {CHARS_PER_TOKEN:g})"
        pace = (
            f"{counted} prompt tokens at {self.prefill_tok_s:.1f} tok/s prefill + {payload['max_new_tokens']} new "
            f"tokens at {self.decode_tok_s:.1f} tok/s decode (this runtime's fastest rates so far in this run)"
        )
        return Estimate(tokens / self.prefill_tok_s + payload["max_new_tokens"] / self.decode_tok_s, pace)

    def skip(self, prompt_id: str, warmup: bool, repeat: int, payload: dict) -> Skip | None:
        """Why this generation is skipped, or None when it runs."""
        if prompt_id in self.ruled_out:
            return self.ruled_out[prompt_id]
        one = self.estimate(payload)
        if one is None:
            return None
        if prompt_id not in self.spent_s:  # nothing of it ran yet: can its warm-ups and one repetition fit?
            whole = (self.warmups + 1) * one.seconds
            if whole <= self.limit_s:
                return None
            self.ruled_out[prompt_id] = Skip(
                f"estimated {whole:.0f} s for {self._admission()} > budget {self.limit_s:g} s per prompt: "
                f"{one.seconds:.0f} s each, {one.pace}",
                round(one.seconds, 1),
            )
            return self.ruled_out[prompt_id]
        if warmup or repeat == 0:  # an admitted prompt always gets its warm-ups and one repetition
            return None
        spent = self.spent_s[prompt_id]
        if spent + one.seconds <= self.limit_s:
            return None
        return Skip(
            f"repetition {repeat + 1} of {self.repetitions} cut: the prompt's generations took {spent:.0f} s of its "
            f"{self.limit_s:g} s budget and one more is estimated at {one.seconds:.0f} s: {one.pace}",
            round(one.seconds, 1),
        )

    def _admission(self) -> str:
        warmups = f"{self.warmups} warm-up{'s' if self.warmups != 1 else ''} and " if self.warmups else ""
        return warmups + "one repetition"
