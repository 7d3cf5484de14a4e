"""The artifact both LiteRT runners load: one folder from one litert-torch conversion.

    model.tflite         prefill_<T> and decode signatures, KV cache as inputs/outputs (`litert`)
    model.litertlm       the same model bundled for LiteRT-LM, tokenizer and template inside (`litert-lm`)
    tokenizer.json       the checkpoint's tokenizer
    chat_template.jinja  the template the bundle carries, for the raw runner to render
    litert.json          quantization, prefill lengths, cache length, start/stop/end token ids

Cheap to import: no runtime library is loaded here.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from runners.base import ArtifactError, Exporter

TFLITE, BUNDLE, TOKENIZER, TEMPLATE, METADATA = ("model.tflite", "model.litertlm", "tokenizer.json",
                                                  "chat_template.jinja", "litert.json")

# One conversion serves both runners: they share this exporter and its cached artifact.
EXPORTER = Exporter(tool="litert-torch", distribution="litert-torch", target="runners.litert_export:export",
                    quantizations=("int8", "fp32"), default_quantization="int8", extra="prepare-litert",
                    artifact_group="litert")


@dataclass(frozen=True)
class Metadata:
    quantization: str | None
    prefill_lengths: tuple[int, ...]
    cache_length: int
    start_token_ids: tuple[int, ...]  # LiteRT-LM prepends these to every sequence
    stop_token_ids: frozenset[int]  # end of turn in chat mode
    end_token_ids: tuple[int, ...]  # suppressed in fixed-length mode


class SharedArtifact:
    """Mixed into both LiteRT runners: the artifact kind, its one exporter, and the check."""

    artifact_kind = "litert"
    exporter = EXPORTER
    model_file: ClassVar[str]  # the file of the folder this runner loads

    @classmethod
    def check_artifact(cls, path: Path) -> None:
        """A folder with litert.json and the model file this runner loads."""
        if not path.is_dir():
            raise ArtifactError(f"{path} is not a LiteRT artifact folder (made by `edgebench prepare`)")
        for name in (METADATA, cls.model_file):
            if not (path / name).is_file():
                raise ArtifactError(f"{path} has no {name}: not a LiteRT artifact folder made by `edgebench prepare`")


def read_metadata(path: Path) -> Metadata:
    try:
        raw = json.loads((path / METADATA).read_text())
        return Metadata(raw.get("quantization"), tuple(raw["prefill_lengths"]), raw["cache_length"],
                        tuple(raw["start_token_ids"]), frozenset(raw["stop_token_ids"]), tuple(raw["end_token_ids"]))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ArtifactError(f"{path / METADATA} is unreadable: {exc}") from None


def weight_cache_dir() -> Path:
    """Where both runners keep XNNPACK's packed weights, as apps do: one packed copy shared
    by every signature (without it each signature packs its own: RSS x2-3) and a fast warm
    load. LiteRT-LM would otherwise write its cache beside the model, into the artifact."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    path = base / "edgebench" / "xnnpack"
    path.mkdir(parents=True, exist_ok=True)
    return path


def weight_cache_file(model_file: Path) -> Path:
    """The raw runner's weight cache of one model file (LiteRT-LM names its own)."""
    stat = model_file.stat()
    return weight_cache_dir() / f"{model_file.parent.name}-{stat.st_size}-{stat.st_mtime_ns}.xnnpack_cache"
