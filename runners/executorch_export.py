"""`prepare` for ExecuTorch: the shared transformers checkpoint -> a .pte for XNNPACK.

Two steps, both inside the export process (bench.artifacts.export_worker):
1. The transformers checkpoint becomes ExecuTorch's Meta-format one (model.pth +
   params.json): keys renamed (Phi-3's fused qkv and gate_up split), and params.json says
   what the family adds to the llama layout (q/k/v biases, QK-norm, partial rotary,
   LongRoPE). Llama keeps Meta's RoPE: its q/k rows are permuted from transformers'
   rotate-half layout back to Meta's interleaved pairs. The other families use export_llm's
   HF RoPE, so their rows stay as they are.
2. ExecuTorch's own LLM exporter (export_llm's `export_llama`) lowers it to a .pte with a
   KV cache, the custom SDPA op and the XNNPACK delegate; 8da4w quantizes linear weights
   to 4 bits in groups of 32 with 8-bit dynamic activations, and the embedding to 4 bits.

The artifact is a folder: model.pte plus the tokenizer files and chat template, which the
runner applies itself. Bos/eos ids are baked into the .pte as its metadata methods.
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import json
import math
import shutil
import tempfile
import time
import types
from pathlib import Path
from typing import Callable, Iterator

from runners.end_tokens import end_of_generation_ids
from runners.export_stages import announce_calls

PTE_NAME = "model.pte"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "special_tokens_map.json")
# The KV cache holds the default profile's whole context (its longest chat prompt is about
# 1,100 tokens + 128 new); one forward call takes up to MAX_SEQ_LENGTH - 1 tokens, so
# longer prompts are prefilled in chunks by the runner.
MAX_CONTEXT_LENGTH = 2048
MAX_SEQ_LENGTH = 1024
GROUP_SIZE = 32  # 128 does not divide SmolLM2's 576-wide rows
# The quantizations and export_llm's quantization options for each (fp32: none). 8da4w: linear
# weights 4-bit in groups with 8-bit dynamic activations, the embedding 4-bit.
QUANTIZATIONS = {
    "fp32": {},
    "8da4w": {"qmode": "8da4w", "group_size": GROUP_SIZE, "embedding_quantize": f"4,{GROUP_SIZE}"},
}
# Families (config.json model_type, see bench.data.models.FAMILIES): the quantizations this export
# makes, or why it makes none. tests/real/test_families.py proves each supported one.
FAMILY_SUPPORT = {
    **dict.fromkeys(("llama", "qwen2", "qwen3", "phi3"), tuple(QUANTIZATIONS)),
    **dict.fromkeys(
        ("gemma2", "gemma3_text"),
        "ExecuTorch's export_llm has no Gemma model type (its Gemma 2 and "
        "Gemma 3 are separate examples, outside export_llm)",
    ),
}
# What each family's params.json adds to the llama layout (fields of export_llm's ModelArgs,
# examples/models/llama/model_args.py); every family runs ExecuTorch's llama definition.
_FAMILY_PARAMS = {
    "llama": {"use_hf_rope": False},
    "qwen2": {"use_hf_rope": True, "attention_qkv_bias": True},
    "qwen3": {"use_hf_rope": True, "use_qk_norm": True, "qk_norm_before_rope": True},
    "phi3": {"use_hf_rope": True},
}

# transformers key (per layer where "{}" appears) -> Meta key.
_META_KEYS = {
    "model.embed_tokens.weight": "tok_embeddings.weight",
    "model.norm.weight": "norm.weight",
    "lm_head.weight": "output.weight",
    "model.layers.{}.self_attn.q_proj.weight": "layers.{}.attention.wq.weight",
    "model.layers.{}.self_attn.k_proj.weight": "layers.{}.attention.wk.weight",
    "model.layers.{}.self_attn.v_proj.weight": "layers.{}.attention.wv.weight",
    "model.layers.{}.self_attn.q_proj.bias": "layers.{}.attention.wq.bias",
    "model.layers.{}.self_attn.k_proj.bias": "layers.{}.attention.wk.bias",
    "model.layers.{}.self_attn.v_proj.bias": "layers.{}.attention.wv.bias",
    "model.layers.{}.self_attn.q_norm.weight": "layers.{}.attention.q_norm_fn.weight",
    "model.layers.{}.self_attn.k_norm.weight": "layers.{}.attention.k_norm_fn.weight",
    "model.layers.{}.self_attn.o_proj.weight": "layers.{}.attention.wo.weight",
    "model.layers.{}.input_layernorm.weight": "layers.{}.attention_norm.weight",
    "model.layers.{}.post_attention_layernorm.weight": "layers.{}.ffn_norm.weight",
    "model.layers.{}.mlp.gate_proj.weight": "layers.{}.feed_forward.w1.weight",
    "model.layers.{}.mlp.down_proj.weight": "layers.{}.feed_forward.w2.weight",
    "model.layers.{}.mlp.up_proj.weight": "layers.{}.feed_forward.w3.weight",
}
# Phi-3's fused projections -> the parts they stack, in order (row counts from params).
_FUSED = {
    "self_attn.qkv_proj.weight": ("self_attn.q_proj.weight", "self_attn.k_proj.weight", "self_attn.v_proj.weight"),
    "mlp.gate_up_proj.weight": ("mlp.gate_proj.weight", "mlp.up_proj.weight"),
}


def _log(message: str) -> None:
    print(f"[executorch] {message}", flush=True)


def _ids(value) -> list[int]:
    if value is None:
        return []
    return [int(v) for v in value] if isinstance(value, list) else [int(value)]


def meta_params(config: dict) -> dict:
    """ExecuTorch's params.json from a transformers config.json."""
    family = config.get("model_type")
    if family not in _FAMILY_PARAMS:
        raise ValueError(f"only {', '.join(_FAMILY_PARAMS)} checkpoints convert to ExecuTorch here, not {family!r}")
    if config.get("use_sliding_window"):
        raise ValueError("sliding-window attention (use_sliding_window) is not converted to ExecuTorch here")
    rope = config.get("rope_parameters") or config.get("rope_scaling") or {}
    rope_theta = config.get("rope_theta", rope.get("rope_theta"))  # transformers 5 nests it
    family_params = _FAMILY_PARAMS[family]
    return {
        **family_params,
        **_meta_rope_scaling(rope, config, hf_rope=family_params["use_hf_rope"]),
        # a checkpoint's q/k/v biases are loaded only where params.json declares them
        "attention_qkv_bias": bool(family_params.get("attention_qkv_bias") or config.get("attention_bias")),
        "dim": config["hidden_size"],
        "hidden_dim": config["intermediate_size"],
        "n_heads": config["num_attention_heads"],
        "n_kv_heads": config.get("num_key_value_heads", config["num_attention_heads"]),
        "head_dim": config.get("head_dim", config["hidden_size"] // config["num_attention_heads"]),
        "n_layers": config["num_hidden_layers"],
        "norm_eps": config["rms_norm_eps"],
        "rope_theta": rope_theta,
        "vocab_size": config["vocab_size"],
        "partial_rotary_factor": config.get("partial_rotary_factor", rope.get("partial_rotary_factor", 1.0)),
    }


def _meta_rope_scaling(rope: dict, config: dict, hf_rope: bool) -> dict:
    """params.json's RoPE scaling: Llama 3.2's llama3 scaling on Meta's RoPE, LongRoPE on HF's."""
    kind = rope.get("rope_type", rope.get("type", "default"))
    if kind == "default":
        return {"use_scaled_rope": False}
    if kind == "longrope" and hf_rope:
        return _meta_longrope(rope, config)
    # ExecuTorch's llama3 scaling fixes low_freq_factor 1 and an original context of 8192, and
    # (for the model type used here) a factor of 32: Llama 3.2's.
    llama32 = {"factor": 32.0, "low_freq_factor": 1.0, "original_max_position_embeddings": 8192}
    if kind != "llama3" or hf_rope or any(float(rope.get(k, -1)) != v for k, v in llama32.items()):
        raise ValueError(
            f"RoPE scaling {rope.get('rope_type', rope.get('type'))!r} of a {config.get('model_type')} checkpoint "
            f"is not converted to ExecuTorch here; the default RoPE, Llama 3.2's llama3 scaling ({llama32}) and "
            "Phi-3's LongRoPE are"
        )
    return {"use_scaled_rope": True, "rope_scale_factor": 32, "high_freq_factor": int(rope["high_freq_factor"])}


def _meta_longrope(rope: dict, config: dict) -> dict:
    """LongRoPE as export_llm's HF RoPE takes it, with transformers' attention factor."""
    original = int(rope.get("original_max_position_embeddings", config.get("original_max_position_embeddings")))
    factor = float(rope.get("factor", config["max_position_embeddings"] / original))
    attention = rope.get("attention_factor")
    if attention is None:
        attention = 1.0 if factor <= 1.0 else math.sqrt(1 + math.log(factor) / math.log(original))
    return {
        "use_scaled_rope": False,
        "rope_scaling_short_factor": list(rope["short_factor"]),
        "rope_scaling_long_factor": list(rope["long_factor"]),
        "original_max_position_embeddings": original,
        "rope_scaling_attention_factor": float(attention),
    }


def context_limit(params: dict, wanted: int) -> int:
    """The KV cache length the .pte can hold for `params`. ExecuTorch picks LongRoPE's factor
    set once per program (the long one when its cache is longer than the original context);
    transformers switches to the long factors only past it: the cache stops there."""
    return min(wanted, params.get("original_max_position_embeddings") or wanted)


def _unpermute(weight, n_heads: int):
    """transformers' rotate-half q/k rows (a weight or a bias) -> Meta's interleaved (real, imag) pairs."""
    rows = weight.shape[0]
    head_dim = rows // n_heads
    return weight.reshape(n_heads, 2, head_dim // 2, -1).transpose(1, 2).reshape(weight.shape)


def _split_fused(tensors: dict, params: dict) -> dict:
    """Phi-3's qkv_proj and gate_up_proj as the separate q/k/v and gate/up weights they stack."""
    q_rows = params["n_heads"] * params["head_dim"]
    kv_rows = params["n_kv_heads"] * params["head_dim"]
    hidden = params["hidden_dim"]
    rows = {"q_proj": q_rows, "k_proj": kv_rows, "v_proj": kv_rows, "gate_proj": hidden, "up_proj": hidden}
    out = {}
    for key, tensor in tensors.items():
        fused = next((name for name in _FUSED if key.endswith(name)), None)
        if fused is None:
            out[key] = tensor
            continue
        parts = _FUSED[fused]
        sizes = [rows[part.split(".")[-2]] for part in parts]
        if sum(sizes) != tensor.shape[0]:
            raise ValueError(f"{key} has {tensor.shape[0]} rows, not the {sum(sizes)} its config gives")
        for part, piece in zip(parts, tensor.split(sizes)):
            out[key.removesuffix(fused) + part] = piece
    return out


def to_meta_state_dict(tensors: dict, params: dict) -> dict:
    """Rename transformers weights to Meta's; on Meta's RoPE, undo the q/k permutation."""
    out = {}
    for key, tensor in _split_fused(tensors, params).items():
        parts = key.split(".")
        layer = parts[2] if key.startswith("model.layers.") else None
        pattern = ".".join(p if i != 2 or layer is None else "{}" for i, p in enumerate(parts))
        if pattern not in _META_KEYS:
            if "rotary_emb" in key:
                continue
            raise ValueError(f"unexpected weight {key} in the checkpoint")
        meta_key = _META_KEYS[pattern].format(layer)
        if not params["use_hf_rope"] and ".attention.wq." in meta_key:
            tensor = _unpermute(tensor, params["n_heads"])
        elif not params["use_hf_rope"] and ".attention.wk." in meta_key:
            tensor = _unpermute(tensor, params["n_kv_heads"])
        out[meta_key] = tensor.contiguous()
    out.setdefault("output.weight", out["tok_embeddings.weight"])  # tied embeddings
    return out


def convert_checkpoint(checkpoint: Path, params: dict, folder: Path) -> tuple[Path, Path]:
    """Write model.pth + params.json (Meta format) for `checkpoint` into `folder`."""
    import torch
    from safetensors.torch import load_file

    tensors = {}
    for shard in sorted(checkpoint.glob("*.safetensors")):
        tensors.update(load_file(shard))
    pth, params_json = folder / "model.pth", folder / "params.json"
    torch.save(to_meta_state_dict(tensors, params), pth)
    params_json.write_text(json.dumps(params))
    return pth, params_json


def special_ids(checkpoint: Path) -> tuple[int, list[int]]:
    """The bos id and every end-of-generation id the checkpoint declares."""
    config = json.loads((checkpoint / "config.json").read_text())
    generation = checkpoint / "generation_config.json"
    gen = json.loads(generation.read_text()) if generation.exists() else {}
    eos = _ids(gen.get("eos_token_id")) + _ids(config.get("eos_token_id"))
    if (checkpoint / "tokenizer.json").exists():
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_file(str(checkpoint / "tokenizer.json"))
        eos += end_of_generation_ids(tokenizer)
    bos = gen.get("bos_token_id", config.get("bos_token_id"))
    if bos is None or not eos:
        raise ValueError("the checkpoint declares no bos or eos token id")
    return int(bos), sorted(set(eos))


def llm_config(
    pth: Path,
    params_json: Path,
    pte: Path,
    quantization: str,
    bos: int,
    eos: list[int],
    max_seq_length: int,
    max_context_length: int,
):
    """The export_llm configuration: XNNPACK, KV cache, custom SDPA, fp32 weights or 8da4w."""
    from executorch.extension.llm.export.config.llm_config import LlmConfig, ModelType

    if quantization not in QUANTIZATIONS:
        raise ValueError(f"unknown quantization {quantization!r}; choose one of {', '.join(QUANTIZATIONS)}")
    config = LlmConfig()
    config.base.model_class = ModelType.smollm2  # ExecuTorch's llama definition
    config.base.checkpoint, config.base.params = str(pth), str(params_json)
    config.base.metadata = json.dumps({"get_bos_id": bos, "get_eos_ids": eos})
    config.model.use_kv_cache = True
    config.model.use_sdpa_with_kv_cache = True
    config.export.max_seq_length, config.export.max_context_length = max_seq_length, max_context_length
    config.export.output_name = str(pte)  # a name ending in .pte is used as the path
    config.backend.xnnpack.enabled = True
    config.backend.xnnpack.extended_ops = True
    for option, value in QUANTIZATIONS[quantization].items():
        setattr(config.quantization, option, value)
    return config


@contextlib.contextmanager
def shared_node_provenance() -> Iterator[None]:
    """A faster export, byte for byte the same .pte.

    torch.fx notes on each node a pass creates where it came from (NodeSource), and each
    note deep-copies its source's whole history, which grows with every pass: profiled on
    export_llama, that copying is ~15 % of the export. A note is never changed once made, so
    a shallow copy of the history list holds the same information. Done only on the torch
    whose code this was checked against (the exact line below); any other runs unchanged.
    """
    import torch.fx.traceback as fx_traceback

    if 'copy.deepcopy(node.meta["from_node"])' not in inspect.getsource(fx_traceback.NodeSource.__init__):
        yield
        return
    fx_traceback.copy = types.SimpleNamespace(deepcopy=list, copy=copy.copy)  # its only two uses of `copy`
    try:
        yield
    finally:
        fx_traceback.copy = copy


def export_steps(quantization: str) -> dict[str, str]:
    """export_llama's steps (LLMEdgeManager methods, in the order it calls them) -> stage."""
    return {
        "source_transform": "quantization" if quantization != "fp32" else "source transforms",
        "export": "export",
        "to_edge_transform_and_lower": "lowering",
        "to_executorch": "emitting",
        "save_to_pte": "writing",
    }


def export_pte(
    checkpoint: Path,
    out: Path,
    quantization: str,
    max_seq_length: int = MAX_SEQ_LENGTH,
    max_context_length: int = MAX_CONTEXT_LENGTH,
    stage: Callable[[str], None] = lambda name: None,
) -> dict:
    import logging

    from executorch.examples.models.llama.export_llama_lib import export_llama
    from executorch.extension.llm.export.builder import LLMEdgeManager

    logging.basicConfig(level=logging.INFO, format="%(message)s", force=True)
    bos, eos = special_ids(checkpoint)
    params = meta_params(json.loads((checkpoint / "config.json").read_text()))
    max_context_length = context_limit(params, max_context_length)
    max_seq_length = min(max_seq_length, max_context_length)
    with tempfile.TemporaryDirectory(prefix="edgebench-meta-") as meta:
        started = time.monotonic()
        stage("checkpoint")
        _log(f"converting {checkpoint} to the Meta checkpoint format")
        pth, params_json = convert_checkpoint(checkpoint, params, Path(meta))
        _log(f"exporting {quantization} with XNNPACK (this takes minutes on a real model)")
        stage("loading")
        with shared_node_provenance(), announce_calls(LLMEdgeManager, export_steps(quantization), stage):
            export_llama(
                llm_config(pth, params_json, out / PTE_NAME, quantization, bos, eos, max_seq_length, max_context_length)
            )
        _log(f"exported in {time.monotonic() - started:.0f} s")
    if not (out / PTE_NAME).is_file():
        raise RuntimeError(f"export_llama wrote no {PTE_NAME}")
    for name in TOKENIZER_FILES:
        if (checkpoint / name).exists():
            shutil.copy(checkpoint / name, out / name)
    options = {
        "backend": "xnnpack",
        "use_kv_cache": True,
        "use_sdpa_with_kv_cache": True,
        "max_seq_length": max_seq_length,
        "max_context_length": max_context_length,
        "bos_id": bos,
        "eos_ids": eos,
        "dtype": "fp32",
        **QUANTIZATIONS[quantization],
    }
    return {"artifact": ".", **options}


def export(
    checkpoint: Path,
    out: Path,
    quantization: str,
    stage: Callable[[str], None] = lambda name: None,
    context: int = MAX_CONTEXT_LENGTH,
) -> dict:
    """The prepare entry point (see runners.base.Exporter): a KV cache of `context` tokens."""
    return export_pte(checkpoint, out, quantization, max_context_length=context, stage=stage)
