"""The ONNX Runtime artifact: onnxruntime-genai's model builder, run on the shared
checkpoint (`python -m onnxruntime_genai.models.builder -i CKPT -o OUT -p Q -e cpu`, through
its Python entry). The output folder holds model.onnx, its external weights,
genai_config.json and the tokenizer files: the folder is the artifact.

Runs inside an export process (bench.artifacts.export_worker): the builder imports torch.
"""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path
from typing import Iterator

EXECUTION_PROVIDER = "cpu"
# The quantizations (the builder's precision) and the builder's extra options for each. int4:
# weight-only MatMulNBits, the builder's CPU defaults written out so the manifest says what was
# used (block size 32; accuracy level 4 = int8 activations in the matmul).
QUANTIZATIONS = {"fp32": {}, "int4": {"block_size": "32", "accuracy_level": "4"}}
# Families (config.json model_type, see bench.data.models.FAMILIES): the builder has a model class
# for each architecture. tests/real/test_families.py proves every supported one.
FAMILY_SUPPORT = {
    # phi3: see rope_type_also_as_type
    **dict.fromkeys(("llama", "qwen2", "qwen3", "gemma2", "phi3"), tuple(QUANTIZATIONS)),
    "gemma3_text": "onnxruntime-genai 0.18's builder reads one rope_parameters['rope_type']; transformers 5 gives "
    "Gemma 3 one per layer type (the builder fails with KeyError 'rope_type')",
}


def export(checkpoint: Path, out: Path, quantization: str) -> dict:
    from onnxruntime_genai.models.builder import create_model, parse_extra_options

    extra = QUANTIZATIONS[quantization]
    # The builder's scratch folder (hub downloads, temporary external data): never kept.
    with tempfile.TemporaryDirectory(prefix="ort-builder-") as cache, rope_type_also_as_type():
        options = parse_extra_options(
            None,
            str(checkpoint),
            str(out),
            quantization,
            EXECUTION_PROVIDER,
            cache,
            [f"{k}={v}" for k, v in extra.items()],
        )
        create_model(None, str(checkpoint), str(out), quantization, EXECUTION_PROVIDER, cache, **options)
    return {
        "artifact": ".",
        "precision": quantization,
        "execution_provider": EXECUTION_PROVIDER,
        "extra_options": extra,
    }


@contextlib.contextmanager
def rope_type_also_as_type() -> Iterator[None]:
    """The builder's LongRoPE path (Phi-3.5, Phi-4-mini) reads transformers 4's
    rope_parameters["type"]; transformers 5 names it "rope_type" only. While inside, the
    configs transformers loads carry both names, with the same value."""
    from transformers import AutoConfig

    original = AutoConfig.__dict__["from_pretrained"]  # the classmethod itself, put back as it was
    load = AutoConfig.from_pretrained

    def with_both_names(*args, **kwargs):
        config = load(*args, **kwargs)
        rope = getattr(config, "rope_parameters", None)
        if isinstance(rope, dict) and "rope_type" in rope:
            rope.setdefault("type", rope["rope_type"])
        return config

    AutoConfig.from_pretrained = with_both_names
    try:
        yield
    finally:
        AutoConfig.from_pretrained = original
