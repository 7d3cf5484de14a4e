"""Prompt suites: the common workload every runner runs. Loaded from TOML, validated,
and hashed so every record says exactly which suite produced it."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

from bench.data import files as datafiles
from bench.errors import BenchError

KINDS = ("chat", "completion", "fixed", "conversation", "depth")
PROBE_CATEGORY = "throughput"  # the suites' fixed-length llama-bench style probes


@dataclass(frozen=True)
class Prompt:
    """One prompt. `chat`: the model's chat template, stops at end of turn. `completion`:
    raw text continued, stops at end of text. `fixed`: a prompt of exactly
    `prompt_tokens` tokens cut from the text of prompt `fill_from`, then exactly
    `max_new_tokens` tokens (end-of-sequence ignored), as llama-bench's pp/tg tests.
    `conversation`: a multi-turn chat, one user message per entry of `turns`, each reply
    exactly `max_new_tokens` tokens (end of turn ignored, so turns compare); the suite holds
    one prompt per turn, `ID/turnN`, with its `turn` (1-based) and `user` that turn's message.
    `depth`: a fixed prompt on top of `depth` tokens of history (also cut from `fill_from`'s
    text) the runtime holds in its cache, as llama-bench's `-d`. A suite file gives a depth
    prompt its `depths`; loading makes one prompt of each, "ID@dDEPTH", so every view keeps
    each depth its own cell."""

    id: str
    category: str
    kind: str
    max_new_tokens: int
    user: str | None = None
    system: str | None = None
    text: str | None = None
    prompt_tokens: int | None = None
    fill_from: str | None = None
    depths: tuple[int, ...] = ()
    depth: int | None = None  # set by loading, one per entry of `depths`
    tags: tuple[str, ...] = ()
    description: str = ""
    turns: tuple[str, ...] = ()
    turn: int | None = None  # set by edgebench on a conversation's per-turn prompts, never in a file


@dataclass(frozen=True)
class SuiteFile:
    id: str
    description: str
    prompt: tuple[Prompt, ...]
    version: int = 1


@dataclass(frozen=True)
class Suite:
    id: str
    description: str
    sha256: str
    path: Path
    prompts: tuple[Prompt, ...]

    def by_id(self, prompt_id: str) -> Prompt:
        return next(p for p in self.prompts if p.id == prompt_id)

    def decode_probe(self, selected: Callable[[tuple[str, ...]], bool]) -> str | None:
        """The matrix's decode probe among the prompts a profile selects: the throughput
        prompt with the fewest prompt tokens (its decode, roofline and MBU cell)."""
        probes = [p for p in self.prompts if p.category == PROBE_CATEGORY and selected(p.tags)]
        return min(probes, key=lambda p: p.prompt_tokens or 0).id if probes else None

    def fill_text(self, prompt: Prompt) -> str:
        source = self.by_id(prompt.fill_from)
        return source.user or source.text or ""


def load_suite(name_or_path: str) -> Suite:
    path = datafiles.resolve("suites", name_or_path)
    table, sha = datafiles.read_toml(path)
    data = datafiles.build(SuiteFile, table, str(path))
    _validate(data, str(path))
    return Suite(data.id, data.description, sha, path, tuple(p for each in data.prompt for p in expanded(each)))


def expanded(prompt: Prompt) -> tuple[Prompt, ...]:
    """A conversation as one prompt per turn, a depth prompt as one per depth in rising order
    (each its own cell in every view); others as they are."""
    if prompt.kind == "conversation":
        return tuple(
            replace(prompt, id=turn_id(prompt.id, n), turn=n, user=user) for n, user in enumerate(prompt.turns, 1)
        )
    if prompt.kind == "depth":
        return tuple(replace(prompt, id=depth_prompt_id(prompt.id, d), depths=(d,), depth=d) for d in prompt.depths)
    return (prompt,)


def turn_id(conversation: str, turn: int) -> str:
    return f"{conversation}/turn{turn}"


def depth_prompt_id(prompt_id: str, depth: int) -> str:
    return f"{prompt_id}@d{depth}"


def _validate(data: SuiteFile, where: str) -> None:
    if not data.prompt:
        raise BenchError(f"{where}: the suite has no [[prompt]] entries", "add at least one prompt")
    ids = [p.id for p in data.prompt]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise BenchError(f"{where}: duplicate prompt id(s) {', '.join(duplicates)}", "give every prompt its own id")
    for p in data.prompt:
        at = f"{where}: prompt '{p.id}'"
        if p.kind not in KINDS:
            raise BenchError(f"{at}: kind '{p.kind}' is not one of {', '.join(KINDS)}", "fix the kind")
        if p.max_new_tokens < 1:
            raise BenchError(f"{at}: max_new_tokens must be at least 1", "fix max_new_tokens")
        needs = {
            "chat": ("user",),
            "completion": ("text",),
            "fixed": ("prompt_tokens", "fill_from"),
            "conversation": ("turns",),
            "depth": ("prompt_tokens", "fill_from", "depths"),
        }[p.kind]
        for key in needs:
            if getattr(p, key) in (None, "", ()):
                raise BenchError(f"{at}: a {p.kind} prompt needs '{key}'", f"add {key} to the prompt")
        if p.turn is not None:
            raise BenchError(f"{at}: 'turn' is set by edgebench", "give a conversation's messages in 'turns'")
        if p.kind == "conversation" and (p.user or any(not t.strip() for t in p.turns)):
            raise BenchError(f"{at}: a conversation's user messages are its 'turns', none empty", "fix turns")
        if p.depth is not None:
            raise BenchError(f"{at}: 'depth' is set by edgebench", "give the depths as depths = [0, 512, ...]")
        if p.kind == "depth" and (any(d < 0 for d in p.depths) or list(p.depths) != sorted(set(p.depths))):
            raise BenchError(f"{at}: depths must be distinct, 0 or more, in rising order", "fix depths")
        if p.kind in ("fixed", "depth"):
            if p.prompt_tokens < 1:
                raise BenchError(f"{at}: prompt_tokens must be at least 1", "fix prompt_tokens")
            if p.fill_from not in ids or p.fill_from == p.id:
                raise BenchError(f"{at}: fill_from '{p.fill_from}' names no other prompt", "name a prompt with text")
