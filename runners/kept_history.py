"""What a runner keeps of a conversation between its turns, for runtimes whose cache holds
positions 0..n-1 of the tokens fed (llama.cpp, ExecuTorch, LiteRT): the tokens it holds,
and how many of the next turn's prompt it can keep, as llama.cpp's server keeps the longest
common prefix of its cache and a new prompt. The next prompt is the whole conversation
re-rendered through the chat template, so a reply that re-tokenizes differently from the ids
generated keeps only the prefix up to the difference: the rest is prefilled again, and
counted as prefilled."""

from __future__ import annotations

from typing import Sequence

from runners.base import GenerationRequest


def shared_prefix(held: Sequence[int], prompt: Sequence[int]) -> int:
    """How many leading tokens the two sequences share."""
    n = 0
    for a, b in zip(held, prompt):
        if a != b:
            break
        n += 1
    return n


class KeptHistory:
    """The tokens at positions 0..n-1 of the runtime's cache after the last request."""

    def __init__(self) -> None:
        self.tokens: list[int] = []

    def keep(self, request: GenerationRequest, prompt: Sequence[int]) -> int:
        """How many leading tokens of `prompt` the cache still holds for this request: none
        unless it continues the previous one, and never the whole prompt (its last token is
        fed again, for the logits of the first new token). Forgets them until `held`."""
        kept = min(shared_prefix(self.tokens, prompt), len(prompt) - 1) if request.continues else 0
        self.tokens = []  # a generation that fails leaves nothing the next turn may trust
        return kept

    def held(self, prompt: Sequence[int], generated: Sequence[int]) -> None:
        """After a generation: the prompt and the generated tokens the runtime fed."""
        self.tokens = [*prompt, *generated]
