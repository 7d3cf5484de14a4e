"""The time budget: no prompt holds one runtime for longer than the profile's `prompt_budget`.

A prompt's budget covers its warm-ups and measured repetitions together. Before each
generation the worker asks; the answer comes from the runtime's OWN figures on earlier
generations of the same run (same runner, same artifact): a generation's time is estimated
as prompt tokens ÷ its prefill rate + max new tokens ÷ its decode rate, with the fastest rate
seen of each, so a generation is ruled out only when even the runtime's best pace overruns.

- A prompt whose warm-ups and one repetition would overrun the budget is skipped whole,
  but for the matrix's decode probe (bench.data.suite.decode_probe): its warm-ups are
  skipped and one repetition runs, so a slow device still has its decode cell.
- Otherwise its warm-ups and first repetition run, and each further repetition runs while
  the time its generations have taken (the harness's own end-to-end figures) plus the
  estimate of one more stays within the budget; the rest are cut.
- A conversation is one prompt here: its turns share one budget, a run of it (a warm-up or a
  repetition: every turn) is estimated as its turns, and only whole runs are skipped or cut.

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
    estimated_s: float | None  # the generation's own estimate (None: skipped for another reason)


def prompt_tokens(payload: dict) -> tuple[int, bool]:
    """The job's prompt tokens, and whether the count is exact (fixed-length prompts)."""
    if payload["kind"] == "fixed":
        return payload["prompt_tokens"], True
    text = " ".join(part for part in (payload.get("system"), payload.get("user"), payload.get("text")) if part)
    return max(1, round(len(text) / CHARS_PER_TOKEN)), False


class Pace:
    """A runtime's fastest prefill and decode rates in this run, from its successful
    generations' own figures."""

    def __init__(self) -> None:
        self.prefill_tok_s: float | None = None
        self.decode_tok_s: float | None = None

    def learn(self, record: dict) -> None:
        if record["status"] != "ok":
            return
        for name in ("prefill_tok_s", "decode_tok_s"):
            seen = record.get(name)
            if seen and seen > (getattr(self, name) or 0.0):
                setattr(self, name, seen)

    @property
    def known(self) -> bool:
        return bool(self.prefill_tok_s and self.decode_tok_s)

    def seconds(self, prompt_tokens: float, new_tokens: float) -> float:
        return prompt_tokens / self.prefill_tok_s + new_tokens / self.decode_tok_s

    def rates(self) -> str:
        return f"{self.prefill_tok_s:.1f} tok/s prefill, {self.decode_tok_s:.1f} tok/s decode"


def budget_unit(prompt_id: str, payload: dict) -> str:
    """What one budget holds: a prompt, or a conversation (every turn of every run of it)."""
    return payload.get("conversation_id") or prompt_id


class PromptBudget:
    """The budget of one runner plan: learns that runtime's rates, and each prompt's time
    spent, as its records arrive; says which generations to skip."""

    def __init__(self, limit_s: float, warmups: int, repetitions: int, probe: str | None = None) -> None:
        self.limit_s, self.warmups, self.repetitions = limit_s, warmups, repetitions
        self.probe = probe  # the matrix's decode probe: never skipped whole
        self.pace = Pace()
        self.spent_s: dict[str, float] = {}  # prompt -> seconds its generations took
        self.ruled_out: dict[str, Skip] = {}  # prompt -> why it is skipped whole

    def learn(self, record: dict, unit: str | None = None) -> None:
        """Keep the fastest prefill and decode rates of this runtime's successful generations,
        and add the generation's time to its prompt's (`unit`: its conversation's)."""
        if record["status"] != "ok":
            return
        prompt = unit or record["prompt_id"]
        self.spent_s[prompt] = self.spent_s.get(prompt, 0.0) + (record.get("e2e_ms") or 0.0) / 1e3
        self.pace.learn(record)

    def estimate(self, payload: dict) -> Estimate | None:
        """One generation at this runtime's best measured pace (None: no rates yet)."""
        if not self.pace.known:
            return None
        tokens, exact = prompt_tokens(payload)
        counted = f"{tokens}" if exact else f"~{tokens} (text length / {CHARS_PER_TOKEN:g})"
        pace = (
            f"{counted} prompt tokens at {self.pace.prefill_tok_s:.1f} tok/s prefill + {payload['max_new_tokens']} "
            f"new tokens at {self.pace.decode_tok_s:.1f} tok/s decode (this runtime's fastest rates so far in this run)"
        )
        return Estimate(self.pace.seconds(tokens, payload["max_new_tokens"]), pace)

    def skip(self, prompt_id: str, warmup: bool, repeat: int, payload: dict) -> Skip | None:
        """Why this generation is skipped, or None when it runs. A conversation is budgeted
        whole (`budget_unit`): its turn 1 is estimated as all its turns and decides for them."""
        if (payload.get("turn") or 1) > 1:
            return None  # its conversation's turn 1 ran: the rest of that run goes with it
        prompt_id = budget_unit(prompt_id, payload)
        if prompt_id in self.ruled_out:
            return self.ruled_out[prompt_id]
        one = self.estimate(payload)
        if one is None:
            return None
        if payload.get("turns"):
            turns = len(payload["turns"])
            one = Estimate(one.seconds * turns, f"{turns} turns, each ~{one.seconds:.0f} s: {one.pace}")
        if prompt_id not in self.spent_s:  # nothing of it ran yet: can its warm-ups and one repetition fit?
            whole = (self.warmups + 1) * one.seconds
            if whole <= self.limit_s:
                return None
            if prompt_id == self.probe:  # the runtime's only decode, roofline and MBU figures: one repetition runs
                return (
                    None
                    if not warmup
                    else Skip(
                        f"warm-up skipped: estimated {whole:.0f} s for {self._admission()} > budget {self.limit_s:g} s "
                        f"per prompt, and the decode probe keeps one measured repetition: {one.seconds:.0f} s each, "
                        f"{one.pace}",
                        round(one.seconds, 1),
                    )
                )
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


@dataclass(frozen=True)
class QualityWork:
    """What scoring one runner's quality asks of it (bench.quality): a load, the evaluation
    text teacher-forced, and greedy tokens on each chat prompt."""

    load_s: float
    text_tokens: int
    scoring: str | None  # "batch": one forward pass (prefill pace); "step": a decode step per token; None: no logits
    prompt_tokens: tuple[int, ...]  # of each greedy prompt
    new_tokens: int  # greedy tokens per prompt


# How a runner's `scoring` feeds the evaluation text: the Pace rate it goes at, in words.
SCORING = {
    "batch": ("prefill_tok_s", "in one pass at prefill pace"),
    "step": ("decode_tok_s", "a decode step per token"),
}


def quality_skip(pace: Pace, limit_s: float, work: QualityWork) -> Skip | None:
    """Why a runner's quality scoring is skipped (its estimate at the runtime's fastest rates
    in this run overruns `limit_s`), or None when it runs; nothing is skipped without rates."""
    if not pace.known:
        return None
    rate, how = SCORING.get(work.scoring, (None, None))
    scoring = work.text_tokens / getattr(pace, rate) if rate else 0.0
    greedy = sum(pace.seconds(tokens, work.new_tokens) for tokens in work.prompt_tokens)
    seconds = work.load_s + scoring + greedy
    if seconds <= limit_s:
        return None
    scored = f"scoring ~{work.text_tokens} tokens {how} {scoring:.0f} s + " if how else ""
    return Skip(
        f"quality estimated {seconds:.1f} s > quality budget {limit_s:g} s: load {work.load_s:.0f} s + {scored}"
        f"{len(work.prompt_tokens)} greedy prompts of {work.new_tokens} tokens {greedy:.0f} s, at {pace.rates()} "
        "(this runtime's fastest rates in this run)",
        round(seconds, 1),
    )
