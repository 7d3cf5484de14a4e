"""`prepare` for MLX: mlx-lm's own converter on the shared checkpoint (no torch needed).

transformers 5 writes the RoPE base under `rope_parameters`; mlx-lm 0.32 reads only a
top-level `rope_theta` and otherwise silently uses 10000, which gives fluent but wrong
text. The export copies the base to the top level, then reads back the base mlx-lm's
model class actually gets from the converted config, and fails if it differs.
"""
from __future__ import annotations

import json
from pathlib import Path

from runners.mlx import source_rope_theta

# 4-bit with group size 32: re-quantizing the Q4_1 source at group 64 breaks the answers.
CONVERT_OPTIONS = {
    "fp32": {"dtype": "float32"},
    "4bit": {"quantize": True, "q_bits": 4, "q_group_size": 32},
}


class RopeBaseMismatch(RuntimeError):
    """The converted model would run with another RoPE base than the source's."""


def export(checkpoint: Path, out: Path, quantization: str) -> dict:
    from mlx_lm.convert import convert

    options = CONVERT_OPTIONS[quantization]
    source_theta = source_rope_theta(json.loads((checkpoint / "config.json").read_text()))
    if source_theta is None:
        raise RopeBaseMismatch(f"{checkpoint}/config.json gives no rope_theta: cannot check the converted RoPE base")
    out.rmdir()  # mlx-lm's convert creates the folder itself and refuses an existing one
    convert(str(checkpoint), str(out), **options)
    pin_rope_theta(out / "config.json", source_theta)
    check_rope_base(out, source_theta)
    print(f"[edgebench] RoPE base {source_theta} at the top level of config.json, checked", flush=True)
    return {"artifact": ".", **options, "rope_theta": source_theta}


def pin_rope_theta(config_path: Path, theta: float) -> None:
    config = json.loads(config_path.read_text())
    config["rope_theta"] = theta
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
            f"converted model in {model_dir} with {used}. Its text would be wrong; not caching it.")
