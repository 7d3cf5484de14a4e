"""Bytes a decoded token reads from memory: the rule every runner applies to its own file.

Decoding one token multiplies the activations by every weight tensor once, except the
input embedding table, of which it reads a single row (the token's). When the output
head is tied to the embedding (one tensor stored once), the head reads the whole table,
so it counts in full, once. Files beside the model (tokenizer, a second copy of the same
weights in another format) are never counted: each runner passes the tensors of the one
file its runtime loads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Collection, Iterable


@dataclass(frozen=True)
class Tensor:
    name: str
    nbytes: int  # as stored in the loaded file (quantized blocks and scales included)


def streamed_bytes(tensors: Iterable[Tensor], embedding: Collection[str], vocab_rows: int | None, tied: bool) -> int:
    """Per-token weight bytes: every tensor once (each name once: a tensor shared by two
    uses is stored, and read, once), the embedding as one row unless the head is tied to it.
    `embedding` names the tensors the table is stored in (a quantized table keeps its scales
    and biases apart, each with a row per token): together they count as one row."""
    unique = {t.name: t.nbytes for t in tensors}
    total = sum(unique.values())
    if embedding and not tied:
        missing = set(embedding) - set(unique)
        if missing:
            raise KeyError(f"no tensor named {sorted(missing)}")
        if not vocab_rows:
            raise ValueError("the embedding's row count is needed to count one row")
        table = sum(unique[name] for name in set(embedding))
        total -= table - table // vocab_rows
    return total
