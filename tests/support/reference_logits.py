"""The transformers checkpoint's own logits for a token sequence: what every runner's
teacher-forced `score` is checked against."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def transformers_logits(checkpoint: Path, token_ids: list[int]) -> np.ndarray:
    """float32 [len(token_ids), vocab]: row i is the checkpoint's distribution for token i + 1."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(checkpoint, dtype=torch.float32)
    with torch.no_grad():
        return model(torch.tensor([token_ids])).logits[0].float().numpy()


def log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


# A ~60-token sequence every runner scores in the scoring tests.
PROSE = (
    "The pump at the north well stopped twice this morning, so the technician replaced the pressure switch "
    "and checked the wiring again. By noon the tank was full, and the irrigation ran on schedule through the "
    "afternoon while the crew mended the fence along the eastern field before the rain came."
)
# An fp32 artifact vs transformers, max |delta log p| over every position and vocabulary entry:
# float rounding only (observed 1.9e-6 on the tiny model and up to 8.4e-5 on the default one,
# in every runtime that exposes logits).
FP32_LOGPROB_GAP = 1e-3


def logprob_gap(scored: np.ndarray, reference: np.ndarray) -> float:
    """Largest |delta log p| over every position and vocabulary entry."""
    return float(abs(log_softmax(scored) - log_softmax(reference)).max())


def scored_against_transformers(runner, checkpoint: Path) -> tuple[np.ndarray, np.ndarray]:
    """The runner's teacher-forced logits of PROSE, and transformers' own for the same ids."""
    ids = runner.tokenize(PROSE)
    assert 55 <= len(ids) <= 70
    return runner.score(ids), transformers_logits(checkpoint, ids)


def assert_scores_like_transformers(runner, checkpoint: Path) -> None:
    """An fp32 artifact's logits at every position are transformers' own, up to float rounding."""
    scored, reference = scored_against_transformers(runner, checkpoint)
    assert scored.dtype.name == "float32" and scored.shape == reference.shape == (len(reference), 49152)
    assert logprob_gap(scored, reference) < FP32_LOGPROB_GAP
    assert (scored.argmax(-1) == reference.argmax(-1)).all()  # top-1 agreement 100%


def assert_scoring_and_generation_leave_each_other_nothing(runner, generated_ids) -> None:
    """Scoring twice gives identical arrays, and a generation before and after scoring gives
    the same tokens: `generated_ids(request)` runs one generation on `runner`, its ids."""
    from runners.base import GenerationRequest

    request = GenerationRequest(16, text="Then", ignore_eos=True)  # a continuation: any context left changes it
    before = generated_ids(request)
    ids = runner.tokenize(PROSE)
    scored = runner.score(ids)
    assert generated_ids(request) == before
    assert np.array_equal(runner.score(ids), scored)  # and the generation left nothing for scoring


def transformers_greedy(checkpoint, n, messages=None, text=None):
    """Prompt ids and greedy ids of the checkpoint under transformers: the reference."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    model = AutoModelForCausalLM.from_pretrained(checkpoint, dtype=torch.float32)
    if messages is not None:
        ids = tokenizer.apply_chat_template(
            list(messages), add_generation_prompt=True, return_tensors="pt", return_dict=True
        )["input_ids"]
    else:
        ids = tokenizer(text, return_tensors="pt")["input_ids"]
    out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=n, do_sample=False)
    return ids[0].tolist(), out[0, ids.shape[1] :].tolist()
