"""The one greedy decode loop of the runners that drive their runtime a step at a time
(llama.cpp, ExecuTorch, LiteRT, ONNX Runtime GenAI), and its incremental detokenizer.

A runner hands the loop its runtime's prefill (the prompt's ids in, the first token out) and
one decode step (a token and its position in, the next token out), both greedy and, for a
fixed-length request, with the end tokens already kept out its own way (a logit mask, a
logit bias, min_length); the ids that end a chat turn; and its tokenizer's decode. The loop
yields one TokenEvent per token for the harness to stamp, never runs a step for a token it
will not yield, and returns what happened for the runner's GenerationInfo.

Runtimes whose own generation loop their own tools use (mlx-lm's stream_generate, LiteRT-LM's
Conversation) keep that loop and its detokenizer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Collection, Generator, Sequence

from runners.base import GenerationRequest, TokenEvent

REPLACEMENT = "\ufffd"  # what a decode gives for a character whose UTF-8 bytes have not all come


@dataclass(frozen=True)
class Decoded:
    """How a greedy decode ended."""

    new_tokens: int  # tokens yielded
    stop: str  # "eos" | "length"
    steps: int  # decode steps run (the prefill gave the first token)
    ids: tuple[int, ...] = ()  # the tokens yielded: the first `steps` went through a decode step

    @property
    def fed(self) -> tuple[int, ...]:
        """The generated tokens the runtime's cache now holds (each decode step fed one)."""
        return self.ids[: self.steps]


class TextStream:
    """Each token's text, decoded incrementally as transformers' TextStreamer and tokenizers'
    DecodeStream do: the tokenizer decodes a short window (the ids of the piece shown last,
    then those not shown yet) and the text past the shown piece is the new text, so no token
    costs a decode of the whole output. A piece that ends inside a character (a multi-byte
    UTF-8 character split across tokens) is held back until its last byte comes; the pieces
    joined are the whole output decoded at once, less such a character left unfinished at
    the end."""

    def __init__(self, decode: Callable[[Sequence[int]], str]):
        self._decode = decode
        self._window: list[int] = []
        self._shown = ""  # the window's text as far as it has been given out
        self._settled = 0  # how many of the window's ids that text covers

    def step(self, token: int) -> str:
        """The text `token` adds ("" while it only starts a character, or adds nothing)."""
        self._window.append(token)
        text = self._decode(self._window)
        if len(text) <= len(self._shown) or text.endswith(REPLACEMENT):
            return ""
        piece = text[len(self._shown) :]
        # Keep the ids just shown as context for the next ones (a decoder may treat the first
        # id of what it decodes apart, e.g. drop its leading space): their text is decoded alone.
        del self._window[: self._settled]
        self._settled = len(self._window)
        self._shown = self._decode(self._window)
        return piece


def greedy_decode(
    request: GenerationRequest,
    prompt: list[int],
    prefill: Callable[[list[int]], int],
    step: Callable[[int, int], int],
    end_ids: Collection[int],
    decode: Callable[[Sequence[int]], str],
) -> Generator[TokenEvent, None, Decoded]:
    """Prefill `prompt`, then one `step(token, position)` per further token, up to
    `request.max_new_tokens`; positions count from the request's history (0 without). A chat
    or completion request ends at the first of `end_ids`
    (not yielded); a fixed-length one (ignore_eos) never checks them: its runner keeps them out.
    Use as `decoded = yield from greedy_decode(...)`."""
    stops = frozenset() if request.ignore_eos else frozenset(end_ids)
    text = TextStream(decode)
    token = prefill(prompt)
    last, start = request.max_new_tokens - 1, (request.history or 0) + len(prompt)
    ids: list[int] = []
    for produced in range(request.max_new_tokens):
        if token in stops:
            return Decoded(produced, "eos", produced, tuple(ids))
        ids.append(token)
        yield TokenEvent(token, text.step(token))
        if produced < last:
            token = step(token, start + produced)
    return Decoded(request.max_new_tokens, "length", max(last, 0), tuple(ids))
