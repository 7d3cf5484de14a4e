"""Quality figures against the fp32 reference (numpy only): scoring windows, per-position
perplexity terms, KL divergence and top-1 agreement, and greedy agreement.

A runtime's logits are compared with the reference's compact form: per scored position the
reference's top-K token ids and log-probs, the log-prob of the rest of the vocabulary, and the
log-prob of the actual next token (bench.quality.reference writes it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

END_OF_TURN = -1  # stands for "stopped at end of turn" in a greedy sequence


@dataclass(frozen=True)
class Window:
    """Tokens [start, end) fed from an empty cache; the targets (tokens predicted)
    first_target..end-1 are scored in it. Row r of its logits predicts token start + r + 1."""

    start: int
    end: int
    first_target: int

    @property
    def rows(self) -> slice:
        """The logits rows that predict this window's scored targets."""
        return slice(self.first_target - 1 - self.start, self.end - 1 - self.start)


def windows(n_tokens: int, n_ctx: int) -> list[Window]:
    """How a text of n_tokens is scored with at most n_ctx tokens in the cache.

    A text that fits is one window scoring every target (tokens 1..n-1). A longer one is
    scored in windows of n_ctx tokens with a stride of n_ctx/2, each scoring only the
    targets of its second half (the first window scores all of its own): every target is
    scored exactly once, and past the first window each has at least n_ctx/2 tokens of
    context. (llama.cpp's perplexity tool also scores the second half of n_ctx chunks, but
    of non-overlapping ones, so the first half of each chunk and the tail go unscored.)
    """
    if n_tokens < 2:
        raise ValueError("a text needs at least two tokens to score")
    if n_tokens <= n_ctx:
        return [Window(0, n_tokens, 1)]
    if n_ctx < 4:
        raise ValueError(f"a context of {n_ctx} tokens is too short to score in windows")
    stride = n_ctx // 2
    found = [Window(0, n_ctx, 1)]
    while found[-1].end < n_tokens:
        start = found[-1].start + stride
        found.append(Window(start, min(start + n_ctx, n_tokens), found[-1].end))
    return found


def log_softmax(logits: np.ndarray) -> np.ndarray:
    logits = logits.astype(np.float64)
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def _logsumexp(x: np.ndarray) -> np.ndarray:
    top = x.max(axis=-1, keepdims=True)
    top = np.where(np.isfinite(top), top, 0.0)
    with np.errstate(divide="ignore"):
        return (top + np.log(np.exp(x - top).sum(axis=-1, keepdims=True)))[..., 0]


@dataclass(frozen=True)
class Compact:
    """A distribution per position, as the reference keeps it: top-K ids and log-probs, and
    the log-prob of the rest of the vocabulary (the "rest" bucket)."""

    topk_ids: np.ndarray  # int [T, K], most probable first
    topk_logp: np.ndarray  # float [T, K]
    rest_logp: np.ndarray  # float [T]


def compact(logp: np.ndarray, k: int) -> Compact:
    """The top-k of each row of full log-probs [T, vocab], and the rest's log mass."""
    part = np.argpartition(-logp, k - 1, axis=-1)[:, :k]
    order = np.argsort(-np.take_along_axis(logp, part, axis=-1), axis=-1, kind="stable")
    ids = np.take_along_axis(part, order, axis=-1)
    return Compact(ids, np.take_along_axis(logp, ids, axis=-1), rest_log_mass(logp, ids))


def reference_rows(logits: np.ndarray, targets: np.ndarray, k: int) -> tuple[Compact, np.ndarray]:
    """The reference's compact rows and the log-prob of each actual next token, from its
    logits [T, vocab], a block of rows at a time (float64 log-probs of a whole text would
    take hundreds of MB)."""
    parts = [(compact(logp, k), _target_logp(logp, targets[rows])) for rows, logp in _blocks(logits)]
    c = Compact(*(np.concatenate([getattr(p, f) for p, _ in parts]) for f in ("topk_ids", "topk_logp", "rest_logp")))
    return c, np.concatenate([t for _, t in parts])


def _blocks(logits: np.ndarray, size: int = 128):
    for start in range(0, logits.shape[0], size):
        rows = slice(start, start + size)
        yield rows, log_softmax(logits[rows])


def _target_logp(logp: np.ndarray, targets: np.ndarray) -> np.ndarray:
    return np.take_along_axis(logp, targets[:, None], axis=-1)[:, 0]


def rest_log_mass(logp: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """log of the probability outside `ids`, per row, summed directly (not 1 - top-K, which
    cancels to noise when the top-K hold nearly everything)."""
    masked = logp.copy()
    np.put_along_axis(masked, ids, -np.inf, axis=-1)
    return _logsumexp(masked)


def kl_divergence(ref: Compact, logq: np.ndarray) -> np.ndarray:
    """Per position, KL(P_ref || Q) over K + 1 buckets: the reference's top-K tokens one by
    one, and everything else as one bucket, Q's mass there being its mass off those K.

    Merging tokens into one bucket never increases a KL divergence (the log-sum
    inequality), so this is a LOWER BOUND of the full-vocabulary KL; the gap is the
    divergence inside the rest bucket, which holds 1 - (top-K mass) of the reference.
    """
    q_top = np.take_along_axis(logq, ref.topk_ids, axis=-1)
    q_rest = rest_log_mass(logq, ref.topk_ids)
    p_top, p_rest = np.exp(ref.topk_logp), np.exp(ref.rest_logp)
    terms = (p_top * (ref.topk_logp - q_top)).sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        rest = np.where(p_rest > 0, p_rest * (ref.rest_logp - q_rest), 0.0)
    return np.maximum(terms + rest, 0.0)  # rounding can leave -1e-12 where P == Q


@dataclass(frozen=True)
class PositionFigures:
    """Per scored position: negative log-likelihood of the actual next token, KL from the
    reference (lower bound, see kl_divergence) and whether the argmax is the reference's."""

    nll: np.ndarray
    kld: np.ndarray
    top1: np.ndarray  # bool


def position_figures(logits: np.ndarray, targets: np.ndarray, ref: Compact) -> PositionFigures:
    """A runtime's logits rows [T, vocab] against the reference's compact rows [T]."""
    parts = []
    for rows, logq in _blocks(logits):
        part = Compact(ref.topk_ids[rows], ref.topk_logp[rows], ref.rest_logp[rows])
        parts.append(
            PositionFigures(
                -_target_logp(logq, targets[rows]),
                kl_divergence(part, logq),
                logq.argmax(axis=-1) == part.topk_ids[:, 0],
            )
        )
    return PositionFigures(*(np.concatenate([getattr(p, f) for p in parts]) for f in ("nll", "kld", "top1")))


def summary(figures: PositionFigures) -> dict:
    """The record's figures from per-position ones."""
    return {
        "tokens_scored": int(figures.nll.size),
        "perplexity": float(np.exp(figures.nll.mean())),
        "kld_mean": float(figures.kld.mean()),
        "kld_p99": float(np.percentile(figures.kld, 99)),
        "top1_agreement": float(figures.top1.mean()),
    }


def perplexity(target_logp: np.ndarray) -> float:
    return float(np.exp(-np.mean(target_logp)))


def greedy_sequence(tokens: Sequence[int], stopped_at_end_of_turn: bool) -> list[int]:
    """Generated tokens with the end of turn as a position of its own (END_OF_TURN)."""
    return list(tokens) + ([END_OF_TURN] if stopped_at_end_of_turn else [])


def greedy_agreement(reference: Sequence[int], output: Sequence[int], n: int) -> tuple[float, int | None]:
    """Share of the reference's first n positions (its tokens, then its end of turn if it
    stopped before n) that the output matches position by position, and the index of the
    first mismatch (None when all match). Both come from greedy_sequence: an output that
    stops early misses the positions it never produced, unless the reference stopped there."""
    expected = list(reference)[:n]
    if not expected:
        raise ValueError("the reference produced nothing to compare with")
    got = list(output)[: len(expected)]
    matches = [i < len(got) and got[i] == token for i, token in enumerate(expected)]
    first = next((i for i, ok in enumerate(matches) if not ok), None)
    return sum(matches) / len(expected), first
