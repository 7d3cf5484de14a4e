"""The ONNX Runtime artifact: onnxruntime-genai's model builder, run on the shared
checkpoint (`python -m onnxruntime_genai.models.builder -i CKPT -o OUT -p Q -e cpu`, through
its Python entry). The output folder holds model.onnx, its external weights,
genai_config.json and the tokenizer files: the folder is the artifact.

Runs inside an export process (bench.export_worker): the builder imports torch.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

EXECUTION_PROVIDER = "cpu"
# int4: weight-only MatMulNBits, the builder's CPU defaults written out so the manifest
# says what was used (block size 32; accuracy level 4 = int8 activations in the matmul).
INT4_OPTIONS = {"block_size": "32", "accuracy_level": "4"}


def export(checkpoint: Path, out: Path, quantization: str) -> dict:
    from onnxruntime_genai.models.builder import create_model, parse_extra_options

    extra = INT4_OPTIONS if quantization == "int4" else {}
    # The builder's scratch folder (hub downloads, temporary external data): never kept.
    with tempfile.TemporaryDirectory(prefix="ort-builder-") as cache:
        options = parse_extra_options(None, str(checkpoint), str(out), quantization, EXECUTION_PROVIDER, cache,
                                      [f"{k}={v}" for k, v in extra.items()])
        create_model(None, str(checkpoint), str(out), quantization, EXECUTION_PROVIDER, cache, **options)
    return {"artifact": ".", "precision": quantization, "execution_provider": EXECUTION_PROVIDER,
            "extra_options": extra}
