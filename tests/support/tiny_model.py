"""A tiny random llama checkpoint with the default model's real tokenizer, built once per
test session: every exporter accepts it in seconds. Its text is noise; it tests plumbing."""

from __future__ import annotations

import shutil
from pathlib import Path

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "special_tokens_map.json")
# A checkpoint folder's name is its model id, and so names its folder in the test cache.
TINY_FOLDER = "tiny-llama0"
SHARP_FOLDER = "tiny-llama-sharp"
# How much sharpened() scales the projection weights.
SHARPEN = 10.0


def build_tiny_checkpoint(out: Path, tokenizer_from: Path) -> Path:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=49152,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=1,
        tie_word_embeddings=True,
        rope_theta=1e5,
        max_position_embeddings=2048,
        bos_token_id=1,
        eos_token_id=2,
    )
    LlamaForCausalLM(config).to(torch.float32).save_pretrained(out)
    for name in TOKENIZER_FILES:
        if (tokenizer_from / name).exists():
            shutil.copy(tokenizer_from / name, out / name)
    return out


def sharpened(tiny: Path, out: Path) -> Path:
    """The tiny llama with its projection weights scaled up. At the default init every
    prompt gives the same token; scaled, attention and the MLP shape the logits, so a
    wrong q/k layout or a lost KV cache changes the greedy tokens."""
    from safetensors.torch import load_file, save_file

    shutil.copytree(tiny, out, ignore=shutil.ignore_patterns("*.safetensors"))
    tensors = load_file(tiny / "model.safetensors")
    save_file(
        {k: v * SHARPEN if k.endswith("proj.weight") else v for k, v in tensors.items()},
        out / "model.safetensors",
        metadata={"format": "pt"},
    )
    return out
