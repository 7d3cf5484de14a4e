"""`prepare` for MLX: mlx-lm's own converter on the shared checkpoint (no torch needed).

transformers 5 writes RoPE settings under `rope_parameters` (Gemma 3: one set per layer
type) and the local/global layer order as `layer_types`; mlx-lm 0.32 reads transformers 4's
top-level `rope_theta`, `rope_scaling`, `rope_local_base_freq` and `sliding_window_pattern`
and otherwise silently uses its defaults (RoPE base 10000, no scaling, Gemma 3's 5:1
pattern), which gives fluent but wrong text. The export writes those keys from the source's
own (mlx_keys), then reads back the base mlx-lm's model class actually gets from the
converted config, and fails if it differs.
"""

from __future__ import annotations

import json
from pathlib import Path

# 4-bit with group size 32: re-quantizing the Q4_1 source at group 64 breaks the answers.
CONVERT_OPTIONS = {
    "fp32": {"dtype": "float32"},
    "4bit": {"quantize": True, "q_bits": 4, "q_group_size": 32},
}
# Families (config.json model_type, see bench.data.models.FAMILIES): mlx-lm has a model class for
# each. tests/real/test_families.py proves every one.
FAMILY_SUPPORT = {
    **dict.fromkeys(("llama", "qwen2", "qwen3", "gemma3_text"), tuple(CONVERT_OPTIONS)),
    "phi3": "mlx-lm 0.32's SuScaledRoPE applies LongRoPE's long factors at every length; the model uses its "
    "short factors up to original_max_position_embeddings, so its tokens differ",
    "gemma2": "mlx-lm 0.32's gemma2 attends globally in every layer (no sliding window): past the window "
    "(4096 tokens in Gemma 2) its tokens differ from the model's",
}


class RopeBaseMismatch(RuntimeError):
    """The converted model would run with another RoPE base than the source's."""


def export(checkpoint: Path, out: Path, quantization: str) -> dict:
    from mlx_lm.convert import convert

    options = CONVERT_OPTIONS[quantization]
    keys = mlx_keys(json.loads((checkpoint / "config.json").read_text()))
    if keys.get("rope_theta") is None:
        raise RopeBaseMismatch(f"{checkpoint}/config.json gives no rope_theta: cannot check the converted RoPE base")
    out.rmdir()  # mlx-lm's convert creates the folder itself and refuses an existing one
    convert(str(checkpoint), str(out), **options)
    pin_keys(out / "config.json", keys)
    check_rope_base(out, keys["rope_theta"])
    print(f"[edgebench] {keys} at the top level of config.json; RoPE base checked", flush=True)
    return {"artifact": ".", **options, **keys}


def mlx_keys(config: dict) -> dict:
    """The transformers 4 keys mlx-lm reads, from a transformers 5 config.json's own."""
    rope = config.get("rope_parameters") or {}
    keys = {}
    if "full_attention" in rope:  # one set per layer type: global layers', local layers'
        keys["rope_local_base_freq"] = rope["sliding_attention"]["rope_theta"]
        rope = rope["full_attention"]
    keys["rope_theta"] = config.get("rope_theta", rope.get("rope_theta"))
    kind = rope.get("rope_type", rope.get("type", "default"))
    if kind != "default":
        keys["rope_scaling"] = {**{k: v for k, v in rope.items() if k != "rope_theta"}, "type": kind, "rope_type": kind}
    layer_types = config.get("layer_types") or []
    if "full_attention" in layer_types and "sliding_attention" in layer_types:
        keys["sliding_window_pattern"] = _layer_pattern(layer_types)
    return keys


def _layer_pattern(layer_types: list[str]) -> int:
    """mlx-lm's sliding_window_pattern N: every Nth layer global, the others local."""
    period = layer_types.index("full_attention") + 1
    if any((i % period == period - 1) != (kind == "full_attention") for i, kind in enumerate(layer_types)):
        raise ValueError(f"layer_types {layer_types} is not a repeating local/global pattern mlx-lm can express")
    return period


def pin_keys(config_path: Path, keys: dict) -> None:
    config = json.loads(config_path.read_text())
    config.update(keys)
    config_path.write_text(json.dumps(config, indent=4))


def check_rope_base(model_dir: Path, expected: float) -> None:
    """Raise RopeBaseMismatch unless mlx-lm builds the model in `model_dir` with RoPE base
    `expected` (read from the model arguments it constructs, weights not loaded)."""
    from mlx_lm.utils import load_model

    model, _ = load_model(model_dir, lazy=True)
    used = getattr(getattr(model, "args", None), "rope_theta", None)
    if used is None or float(used) != float(expected):
        raise RopeBaseMismatch(
            f"RoPE base mismatch: the source checkpoint uses rope_theta={expected}, but mlx-lm builds the "
            f"converted model in {model_dir} with {used}. Its text would be wrong; not caching it."
        )
