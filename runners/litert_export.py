"""Conversion for the LiteRT runners: the shared checkpoint -> one folder (layout in
runners/litert_artifact.py) holding both the .tflite the `litert` runner drives and the
.litertlm bundle `litert-lm` loads, converted once by litert-torch.

Beside the models it writes what the raw runtime needs: tokenizer.json, the chat template
the bundle carries, and litert.json (the start and stop tokens the bundle gives LiteRT-LM,
so the raw runner builds the same token sequence).
"""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path
from typing import Callable

from runners.end_tokens import end_of_generation_ids
from runners.export_stages import announce_calls

# The quantizations (runners.litert_artifact's Exporter reads them here), each -> litert-torch's recipe.
QUANTIZATIONS = {"fp32": "none", "int8": "dynamic_wi8_afp32"}
# Families (config.json model_type, see bench.data.models.FAMILIES): litert-torch's export_hf
# converts the transformers model itself. tests/real/test_families.py proves every one
# (with --families-slow: LiteRT exports take tens of seconds each).
FAMILY_SUPPORT = {
    **dict.fromkeys(("llama", "qwen2", "qwen3", "gemma2", "gemma3_text"), tuple(QUANTIZATIONS)),
    "phi3": "litert-torch 0.10's export_hf fails to lower Phi-3's LongRoPE (rotary_emb.long_inv_freq: "
    '"Cannot access data pointer of Tensor")',
}
# Prefill signatures: short chat prompts, the fixed 128/512-token probes, and a long
# document (~1,100 tokens, prefilled as 1024 + 128). Longer prompts are chunked.
PREFILL_LENGTHS = (32, 128, 512, 1024)
# The KV cache: the default suite's longest prompt plus its answer, and the default
# profile's context of 2,048 tokens.
CACHE_LENGTH = 2048

_CONTENT = re.compile(r"""\b(\w+(?:\[\d+\])?)(?:\[(['"])content\2\]|\.content\b)""")


def part_aware_template(template: str, bos_token: str | None) -> str:
    """The checkpoint's chat template, rewritten so LiteRT-LM can render it.

    LiteRT-LM hands each message's content over as a list of parts ({"type": "text",
    "text": ...}), and it renders `bos_token` as "" and prepends the start token id itself.
    So content is joined from its parts when it is not a string, and a template whose
    output begins with the BOS text starts with `{{ bos_token }}` instead: with ordinary
    jinja (bos_token = its text) the output is exactly the original template's.
    """
    body = _CONTENT.sub(
        lambda m: (
            f"({m[1]}['content'] if {m[1]}['content'] is string else {m[1]}['content'] | map(attribute='text') | join)"
        ),
        template,
    )
    if not bos_token:
        return body
    n = len(bos_token)
    return (
        "{%- set rendered -%}" + body + "{%- endset -%}{{ bos_token }}"
        f"{{{{ rendered[{n}:] if rendered[:{n}] == {bos_token!r} else rendered }}}}"
    )


def _alias_tensorflow_schema() -> None:
    """litert-torch imports tensorflow.lite.python.schema_py_generated though tensorflow is
    not a dependency; ai-edge-litert ships the same generated module."""
    import importlib.machinery
    import importlib.util
    import types

    if importlib.util.find_spec("tensorflow") is not None:
        return
    from ai_edge_litert import schema_py_generated

    names = ["tensorflow", "tensorflow.lite", "tensorflow.lite.python"]
    for name in names:
        stub = types.ModuleType(name)
        stub.__spec__ = importlib.machinery.ModuleSpec(name, None, is_package=True)
        stub.__path__ = []
        sys.modules[name] = stub
    for parent, child in zip(names, names[1:]):
        setattr(sys.modules[parent], child.rsplit(".", 1)[1], sys.modules[child])
    sys.modules["tensorflow.lite.python"].schema_py_generated = schema_py_generated
    sys.modules["tensorflow.lite.python.schema_py_generated"] = schema_py_generated


def _bundle_tokens(metadata_pb: Path, tokenizer) -> dict:
    """The start token and single-token stops the bundle's metadata gives LiteRT-LM."""
    from litert_lm_builder.runtime.proto import llm_metadata_pb2

    meta = llm_metadata_pb2.LlmMetadata.FromString(metadata_pb.read_bytes())

    def ids(union) -> list[int]:
        if union.token_ids.ids:
            return list(union.token_ids.ids)
        return tokenizer.encode(union.token_str, add_special_tokens=False).ids if union.token_str else []

    start = ids(meta.start_token)
    # Multi-token stops (punctuation + end of turn) end with a single stop anyway.
    stops = sorted({seq[0] for seq in map(ids, meta.stop_tokens) if len(seq) == 1})
    # Banned in fixed-length mode, as llama.cpp bans them.
    ends = sorted(set(stops) | set(end_of_generation_ids(tokenizer)))
    return {"start_token_ids": start, "stop_token_ids": stops, "end_token_ids": ends}


# litert-torch's steps (functions its export calls) -> stage: export_lib's, then the bundler's.
EXPORT_STEPS = {
    "load_model": "loading",
    "export_text_prefill_decode_model": "export and lowering",
    "quantize_model": "quantization",
}
BUNDLE_STEPS = {"package_model": "writing"}


def export(
    checkpoint: Path,
    out: Path,
    quantization: str,
    stage: Callable[[str], None] = lambda name: None,
    context: int = CACHE_LENGTH,
) -> dict:
    """Convert `checkpoint` with litert-torch into `out`: model.tflite, model.litertlm,
    tokenizer.json, chat_template.jinja and litert.json, with a KV cache of `context` tokens."""
    # The folder's layout; imported here, as runners.litert_artifact imports this module's QUANTIZATIONS.
    from tokenizers import Tokenizer

    from runners.litert_artifact import BUNDLE, METADATA, TEMPLATE, TFLITE, TOKENIZER

    recipe = QUANTIZATIONS[quantization]
    work = out / "work"
    _convert(checkpoint, work, out / TEMPLATE, recipe, stage, context)
    tflite = work / ("model_quantized.tflite" if recipe != "none" else "model.tflite")
    tflite.rename(out / TFLITE)
    (work / BUNDLE).rename(out / BUNDLE)
    shutil.copy(checkpoint / TOKENIZER, out / TOKENIZER)
    tokens = _bundle_tokens(work / "llm_metadata.pb", Tokenizer.from_file(str(out / TOKENIZER)))
    shutil.rmtree(work)
    options = {
        "quantization_recipe": recipe,
        "prefill_lengths": list(PREFILL_LENGTHS),
        "cache_length": context,
        **tokens,
    }
    (out / METADATA).write_text(
        json.dumps({"quantization": quantization, "tflite": TFLITE, "bundle": BUNDLE, **options}, indent=2)
    )
    return {**options, "artifact": "."}


def _convert(
    checkpoint: Path, work: Path, template: Path, recipe: str, stage: Callable[[str], None], context: int
) -> None:
    """litert-torch's export_hf into the new folder `work`, its temporary files kept (the bundle's
    metadata is read from them). The chat template it bundles, made part-aware, is written to
    `template` (beside, not inside, the work folder the converter fills)."""
    _alias_tensorflow_schema()
    from litert_torch.generative.export_hf.core import export_lib, litert_lm_builder
    from litert_torch.generative.export_hf.export import export as litert_export
    from transformers import AutoTokenizer

    # litert-torch adds "<punctuation><end of turn>" stop strings for SentencePiece
    # vocabularies; with them LiteRT-LM holds back every punctuation token until the next
    # one, merging two tokens into one streamed chunk. A single-token end of turn needs none.
    litert_lm_builder._STOP_TOKEN_PREFIXES = ()
    hf_tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    work.mkdir()
    override = None
    if hf_tokenizer.chat_template:
        template.write_text(part_aware_template(hf_tokenizer.chat_template, hf_tokenizer.bos_token))
        override = str(template)
    with announce_calls(export_lib, EXPORT_STEPS, stage), announce_calls(litert_lm_builder, BUNDLE_STEPS, stage):
        litert_export(
            model=str(checkpoint),
            output_dir=str(work),
            prefill_lengths=list(PREFILL_LENGTHS),
            cache_length=context,
            quantization_recipe=recipe,
            bundle_litert_lm=True,
            keep_temporary_files=True,
            jinja_chat_template_override=override,
        )
