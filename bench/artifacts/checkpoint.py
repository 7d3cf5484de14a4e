"""The shared intermediate of `prepare`: a transformers checkpoint made from the GGUF
source, offline. Every exporter starts from it, so every runtime converts the same
weights. Runs inside an export process (bench.artifacts.export_worker): imports torch lazily."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from runners.base import Exporter

EXPORTER = Exporter(
    tool="transformers from_pretrained(gguf_file)",
    distribution="transformers",
    target="bench.artifacts.checkpoint:from_gguf",
    quantizations=("fp32",),
    default_quantization="fp32",
    extra="prepare",
    typical_seconds={"fp32": 25},
    legacy_key=("bench.checkpoint:from_gguf", "9d231dc636bdc9bef9b4cd638be1044e7608546f61e129c77cbc4b5cbf9a28b2"),
)


def from_gguf(source: Path, out: Path, quantization: str, stage: Callable[[str], None] = lambda name: None) -> dict:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    stage("dequantization")  # transformers reads the GGUF and dequantizes it to fp32
    tokenizer = AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name)
    model = AutoModelForCausalLM.from_pretrained(source.parent, gguf_file=source.name, dtype=torch.float32)
    # A GGUF-loaded model refuses save_pretrained while it still looks quantized; its
    # weights are already dequantized to fp32 here.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    stage("writing")
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return {"artifact": ".", "dtype": "float32", "dequantized_from": source.name}
