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
