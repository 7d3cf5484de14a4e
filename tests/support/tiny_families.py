"""Tiny random checkpoints of the model families on-device teams ship, one per transformers
`model_type` in bench.data.models.FAMILIES, each with its family's real structural options at
small dims (two layers, vocabulary 49152 with the default model's tokenizer).

A tokenizer is the family's kind where llama.cpp's converter needs it (TOKENIZERS): Gemma 2
ships a SentencePiece model, which its converter requires, so the tiny Gemma 2 gets one trained
here in milliseconds on the shipped evaluation text (its vocabulary sized to it); Phi-4-mini
ships a BPE tokenizer declared as GPT2Tokenizer, which the converter reads as BPE.

The weights are drawn wider than transformers' default init (INIT_STD): at the default
every prompt gives the same greedy token, so a wrong RoPE, a lost KV cache or a missing
norm would go unseen; at this width attention and the MLP shape the logits. Sliding windows
and context lengths are the families' real ones (a runtime must size its KV cache for what the
model's attention needs: a 16-token window once hid ONNX Runtime's sizing it to the request),
so the test prompts stay inside them. Gemma multiplies its embeddings by
sqrt(hidden) and normalizes each layer's output before adding it: at one width for all its
weights the embedding would drown every layer and the text repeat one token, so its table is
drawn narrower and its final norm wider (_balance_gemma). QK-norm weights are drawn away from
their identity (_unbalance_qk_norms).
"""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

from tests.support.tiny_model import TOKENIZER_FILES

EVAL_TEXT = Path(__file__).resolve().parents[2] / "profiles" / "quality" / "eval.txt"
SPM_VOCAB = 1000  # a BPE SentencePiece model this size trains on EVAL_TEXT in ~30 ms

VOCAB = 49152
INIT_STD = 0.2
# The real checkpoints' sliding windows and context lengths: Gemma 2 (2B/9B) and Gemma 3 1B.
GEMMA2_WINDOW, GEMMA2_CONTEXT = 4096, 8192
GEMMA3_WINDOW, GEMMA3_CONTEXT = 512, 32768
COMMON = dict(
    vocab_size=VOCAB,
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    max_position_embeddings=2048,
    bos_token_id=1,
    eos_token_id=2,
    pad_token_id=2,
    initializer_range=INIT_STD,
)


def _llama():  # Llama 3.2: GQA 4:1 (here 4 q heads on 1 kv head), tied, llama3 RoPE scaling
    from transformers import LlamaConfig, LlamaForCausalLM

    rope = {
        "rope_type": "llama3",
        "rope_theta": 500000.0,
        "factor": 32.0,
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
        "original_max_position_embeddings": 8192,
    }
    return LlamaForCausalLM, LlamaConfig(
        **{**COMMON, "max_position_embeddings": 131072},
        num_attention_heads=4,
        num_key_value_heads=1,
        tie_word_embeddings=True,
        rope_parameters=rope,
    )


def _qwen2():  # Qwen2.5: q/k/v biases, GQA 2:1, tied (0.5B-3B), theta 1e6
    from transformers import Qwen2Config, Qwen2ForCausalLM

    return Qwen2ForCausalLM, Qwen2Config(
        **COMMON,
        num_attention_heads=4,
        num_key_value_heads=2,
        tie_word_embeddings=True,
        rope_parameters={"rope_type": "default", "rope_theta": 1e6},
    )


def _qwen3():  # Qwen3: QK-norm, no biases, head_dim wider than hidden/heads, GQA 2:1, tied
    from transformers import Qwen3Config, Qwen3ForCausalLM

    return Qwen3ForCausalLM, Qwen3Config(
        **COMMON,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=32,
        tie_word_embeddings=True,
        rope_parameters={"rope_type": "default", "rope_theta": 1e6},
    )


def _gemma2():  # Gemma 2: embeddings scaled by sqrt(hidden), soft-capped attention and logits,
    # alternating sliding/global layers, pre+post norms, GeGLU, tied
    from transformers import Gemma2Config, Gemma2ForCausalLM

    return Gemma2ForCausalLM, Gemma2Config(
        **{**COMMON, "vocab_size": SPM_VOCAB, "max_position_embeddings": GEMMA2_CONTEXT},
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        sliding_window=GEMMA2_WINDOW,
        attn_logit_softcapping=50.0,
        final_logit_softcapping=30.0,
        query_pre_attn_scalar=16,
        tie_word_embeddings=True,
    )


def _gemma3_text():  # Gemma 3 (1B): QK-norm, 5 local : 1 global layers (six layers here: llama.cpp
    # fixes that pattern for Gemma 3), local RoPE base 1e4 vs global 1e6, scaled embeddings, tied
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    return Gemma3ForCausalLM, Gemma3TextConfig(
        **{**COMMON, "num_hidden_layers": 6, "max_position_embeddings": GEMMA3_CONTEXT},
        num_attention_heads=4,
        num_key_value_heads=1,
        head_dim=16,
        sliding_window=GEMMA3_WINDOW,
        layer_types=["sliding_attention"] * 5 + ["full_attention"],
        query_pre_attn_scalar=16,
        tie_word_embeddings=True,
    )


def _phi3():  # Phi-4-mini: fused qkv and gate_up, partial rotary (0.75), GQA 3:1 (here 2:1), tied,
    # LongRoPE with separate short/long factors; head size 64 so the rotated half (24) is a
    # multiple of 8, as ONNX Runtime's attention kernel requires (Phi-4-mini's is 48)
    from transformers import Phi3Config, Phi3ForCausalLM

    rotary_half = int(64 * 0.75) // 2
    rope = {
        "rope_type": "longrope",
        "rope_theta": 10000.0,
        "short_factor": [1.0 + i / 10 for i in range(rotary_half)],
        "long_factor": [2.0 + i for i in range(rotary_half)],
        "original_max_position_embeddings": 1024,
    }
    return Phi3ForCausalLM, Phi3Config(
        **{**COMMON, "hidden_size": 128},
        num_attention_heads=2,
        num_key_value_heads=1,
        partial_rotary_factor=0.75,
        original_max_position_embeddings=1024,
        rope_parameters=rope,
        tie_word_embeddings=True,
    )


def _unbalance_qk_norms(model) -> None:
    """QK-norm weights drawn away from their identity: at it they commute with RoPE, and a norm
    applied after RoPE instead of before (or not at all) would go unseen."""
    import torch

    with torch.no_grad():
        for name, module in model.named_modules():
            if name.endswith(("q_norm", "k_norm")):
                module.weight += 0.5 * torch.randn_like(module.weight)


def _balance_gemma(model, hidden: int) -> None:
    """Layers as loud as the (scaled) embedding; logits as spread as the other families'."""
    import torch

    with torch.no_grad():
        model.model.embed_tokens.weight /= hidden**0.5
        model.model.norm.weight += hidden**0.5 - 1  # Gemma's norm scales by (1 + weight)


BUILDERS = {
    "llama": _llama,
    "qwen2": _qwen2,
    "qwen3": _qwen3,
    "gemma2": _gemma2,
    "gemma3_text": _gemma3_text,
    "phi3": _phi3,
}


def _default_tokenizer(out: Path, tokenizer_from: Path) -> None:
    for name in TOKENIZER_FILES:
        if (tokenizer_from / name).exists():
            shutil.copy(tokenizer_from / name, out / name)


def _gpt2_class_tokenizer(out: Path, tokenizer_from: Path) -> None:
    """The default model's BPE tokenizer declared as GPT2Tokenizer, as Phi-4-mini declares its own."""
    _default_tokenizer(out, tokenizer_from)
    config = json.loads((out / "tokenizer_config.json").read_text())
    (out / "tokenizer_config.json").write_text(json.dumps({**config, "tokenizer_class": "GPT2Tokenizer"}, indent=2))


def _sentencepiece_tokenizer(out: Path, tokenizer_from: Path) -> None:
    """A Gemma-style tokenizer: a BPE SentencePiece model with byte fallback (tokenizer.model,
    what llama.cpp's converter reads) trained on EVAL_TEXT, and transformers' tokenizer.json of
    it. The chat template stays the default model's, and so do the special tokens' places: its
    markers are the start and end tokens (ids 1 and 2), and raw text gets no start token."""
    import sentencepiece
    from transformers import AutoTokenizer, GemmaTokenizer

    model = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(EVAL_TEXT.read_text().splitlines()),
        model_writer=model,
        model_type="bpe",
        vocab_size=SPM_VOCAB,
        byte_fallback=True,
        character_coverage=1.0,
        add_dummy_prefix=False,
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        unk_piece="<unk>",
        bos_piece="<|im_start|>",
        eos_piece="<|im_end|>",
        minloglevel=2,
    )
    (out / "tokenizer.model").write_bytes(model.getvalue())
    tokenizer = GemmaTokenizer.from_pretrained(
        out,
        add_bos_token=False,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|im_end|>",
        mask_token=None,
    )
    tokenizer.chat_template = AutoTokenizer.from_pretrained(tokenizer_from).chat_template
    tokenizer.save_pretrained(out)
    config = json.loads((out / "tokenizer_config.json").read_text())
    del config["vocab_file"]  # this session's path: the checkpoint's content (and cache key) must not hold it
    (out / "tokenizer_config.json").write_text(json.dumps({**config, "add_bos_token": False}, indent=2))


TOKENIZERS = {"gemma2": _sentencepiece_tokenizer, "phi3": _gpt2_class_tokenizer}


def build_family_checkpoint(family: str, out: Path, tokenizer_from: Path) -> Path:
    """A random `family` checkpoint in `out`, with its tokenizer (the default model's unless
    TOKENIZERS gives the family its own kind)."""
    import torch

    model_class, config = BUILDERS[family]()
    torch.manual_seed(0)
    model = model_class(config).to(torch.float32)
    if family.startswith("gemma"):
        _balance_gemma(model, config.hidden_size)
    _unbalance_qk_norms(model)
    model.save_pretrained(out)
    TOKENIZERS.get(family, _default_tokenizer)(out, tokenizer_from)
    return out
