"""`prepare` for ExecuTorch: the shared transformers checkpoint -> a .pte for XNNPACK.

Two steps, both inside the export process (bench.artifacts.export_worker):
1. The transformers llama checkpoint becomes ExecuTorch's Meta-format one (model.pth +
   params.json): keys renamed, and q/k rows permuted from transformers' rotate-half RoPE
   layout back to Meta's interleaved pairs.
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
# makes, or why it makes none. tests/test_families.py proves each supported one.
_META_ONLY = (
    "edgebench converts only llama-layout checkpoints to ExecuTorch's Meta format; export_llm's "
    "qwen2_5, qwen3 and phi_4_mini types need ExecuTorch's own HF-to-Meta weight converters, not wired here"
)
FAMILY_SUPPORT = {
    "llama": tuple(QUANTIZATIONS),
    **dict.fromkeys(("qwen2", "qwen3", "phi3"), _META_ONLY),
    **dict.fromkeys(
        ("gemma2", "gemma3_text"),
        "ExecuTorch's export_llm has no Gemma model type (its Gemma 2 and "
        "Gemma 3 are separate examples, outside export_llm)",
    ),
}

# transformers key (per layer where "{}" appears) -> Meta key.
_META_KEYS = {
    "model.embed_tokens.weight": "tok_embeddings.weight",
    "model.norm.weight": "norm.weight",
    "lm_head.weight": "output.weight",
    "model.layers.{}.self_attn.q_proj.weight": "layers.{}.attention.wq.weight",
    "model.layers.{}.self_attn.k_proj.weight": "layers.{}.attention.wk.weight",
    "model.layers.{}.self_attn.v_proj.weight": "layers.{}.attention.wv.weight",
    "model.layers.{}.self_attn.o_proj.weight": "layers.{}.attention.wo.weight",
    "model.layers.{}.input_layernorm.weight": "layers.{}.attention_norm.weight",
    "model.layers.{}.post_attention_layernorm.weight": "layers.{}.ffn_norm.weight",
    "model.layers.{}.mlp.gate_proj.weight": "layers.{}.feed_forward.w1.weight",
    "model.layers.{}.mlp.down_proj.weight": "layers.{}.feed_forward.w2.weight",
    "model.layers.{}.mlp.up_proj.weight": "layers.{}.feed_forward.w3.weight",
}


def _log(message: str) -> None:
    print(f"[executorch] {message}", flush=True)


def _ids(value) -> list[int]:
    if value is None:
        return []
    return [int(v) for v in value] if isinstance(value, list) else [int(value)]


def meta_params(config: dict) -> dict:
    """ExecuTorch's params.json from a transformers llama config.json."""
    if config.get("model_type") != "llama":
        raise ValueError(f"only llama checkpoints convert to ExecuTorch here, not {config.get('model_type')!r}")
    rope = config.get("rope_parameters") or config.get("rope_scaling") or {}
    rope_theta = config.get("rope_theta", rope.get("rope_theta"))  # transformers 5 nests it
    return {
        **_meta_rope_scaling(rope),
        "dim": config["hidden_size"],
        "hidden_dim": config["intermediate_size"],
        "n_heads": config["num_attention_heads"],
        "n_kv_heads": config.get("num_key_value_heads", config["num_attention_heads"]),
        "head_dim": config.get("head_dim", config["hidden_size"] // config["num_attention_heads"]),
        "n_layers": config["num_hidden_layers"],
        "norm_eps": config["rms_norm_eps"],
        "rope_theta": rope_theta,
        "vocab_size": config["vocab_size"],
        "use_hf_rope": False,
    }


def _meta_rope_scaling(rope: dict) -> dict:
    """params.json's RoPE scaling. ExecuTorch's llama3 scaling fixes low_freq_factor 1 and an
    original context of 8192, and (for the model type used here) a factor of 32: Llama 3.2's."""
    kind = rope.get("rope_type", rope.get("type", "default"))
    if kind == "default":
        return {"use_scaled_rope": False}
    llama32 = {"factor": 32.0, "low_freq_factor": 1.0, "original_max_position_embeddings": 8192}
    if kind != "llama3" or any(float(rope.get(k, -1)) != v for k, v in llama32.items()):
        raise ValueError(
            f"RoPE scaling {rope} is not converted to ExecuTorch here; only the default RoPE and "
            f"Llama 3.2's llama3 scaling ({llama32}) are"
        )
    return {"use_scaled_rope": True, "rope_scale_factor": 32, "high_freq_factor": int(rope["high_freq_factor"])}


def _unpermute(weight, n_heads: int):
    """transformers' rotate-half q/k rows -> Meta's interleaved (real, imag) pairs."""
    rows, cols = weight.shape
    head_dim = rows // n_heads
    return weight.view(n_heads, 2, head_dim // 2, cols).transpose(1, 2).reshape(rows, cols)


def to_meta_state_dict(tensors: dict, params: dict) -> dict:
    """Rename transformers llama weights to Meta's and undo the q/k permutation."""
    out = {}
    for key, tensor in tensors.items():
        parts = key.split(".")
        layer = parts[2] if key.startswith("model.layers.") else None
        pattern = ".".join(p if i != 2 or layer is None else "{}" for i, p in enumerate(parts))
        if pattern not in _META_KEYS:
            if "rotary_emb" in key:
                continue
            raise ValueError(f"unexpected weight {key} in a llama checkpoint")
        meta_key = _META_KEYS[pattern].format(layer)
        if meta_key.endswith("attention.wq.weight"):
            tensor = _unpermute(tensor, params["n_heads"])
        elif meta_key.endswith("attention.wk.weight"):
            tensor = _unpermute(tensor, params["n_kv_heads"])
        out[meta_key] = tensor.contiguous()
    out.setdefault("output.weight", out["tok_embeddings.weight"])  # tied embeddings
    return out


def convert_checkpoint(checkpoint: Path, folder: Path) -> tuple[Path, Path]:
    """Write model.pth + params.json (Meta format) for `checkpoint` into `folder`."""
    import torch
    from safetensors.torch import load_file

    params = meta_params(json.loads((checkpoint / "config.json").read_text()))
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
    with tempfile.TemporaryDirectory(prefix="edgebench-meta-") as meta:
        started = time.monotonic()
        stage("checkpoint")
        _log(f"converting {checkpoint} to the Meta checkpoint format")
        pth, params_json = convert_checkpoint(checkpoint, Path(meta))
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


def export(checkpoint: Path, out: Path, quantization: str, stage: Callable[[str], None] = lambda name: None) -> dict:
    """The prepare entry point (see runners.base.Exporter)."""
    return export_pte(checkpoint, out, quantization, stage=stage)
