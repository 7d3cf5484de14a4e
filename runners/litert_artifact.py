"""The artifact both LiteRT runners load: one folder from one litert-torch conversion.

    model.tflite         prefill_<T> and decode signatures, KV cache as inputs/outputs (`litert`)
    model.litertlm       the same model bundled for LiteRT-LM, tokenizer and template inside (`litert-lm`)
    tokenizer.json       the checkpoint's tokenizer
    chat_template.jinja  the template the bundle carries, for the raw runner to render
    litert.json          quantization, prefill lengths, cache length, start/stop/end token ids

Cheap to import: no runtime library is loaded here. It reads, from either model file, what
one decoded token streams from memory (the decode signature's weights and KV cache) with a
minimal flatbuffer reader: `litert-lm-api` ships no flatbuffer library, and the two runners
must count the same way.
"""

from __future__ import annotations

import importlib.metadata
import json
import mmap
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from runners.base import ArtifactError, Exporter, LoadInfo, RunnerOptions
from runners.litert_export import CACHE_LENGTH, QUANTIZATIONS
from runners.weights import Tensor, streamed_bytes

TFLITE, BUNDLE, TOKENIZER, TEMPLATE, METADATA = (
    "model.tflite",
    "model.litertlm",
    "tokenizer.json",
    "chat_template.jinja",
    "litert.json",
)

# One conversion serves both runners: they share this exporter and its cached artifact.
EXPORTER = Exporter(
    tool="litert-torch",
    distribution="litert-torch",
    target="runners.litert_export:export",
    quantizations=tuple(QUANTIZATIONS),
    default_quantization="int8",
    extra="prepare-litert",
    artifact_group="litert",
    typical_seconds={"int8": 170, "fp32": 220},
    context=CACHE_LENGTH,
    legacy_key=("runners.litert_export:export", "0c372683d6a67a2257d3bebdd68b28f142f5bd5ad8ec97a84a320b34c7e2b391"),
)


@dataclass(frozen=True)
class Metadata:
    quantization: str | None
    prefill_lengths: tuple[int, ...]
    start_token_ids: tuple[int, ...]  # LiteRT-LM prepends these to every sequence
    stop_token_ids: frozenset[int]  # end of turn in chat mode
    end_token_ids: tuple[int, ...]  # suppressed in fixed-length mode


class SharedArtifact:
    """Mixed into both LiteRT runners: the artifact kind, its one exporter, the check, and what
    they report at load."""

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

    def _shared_load_info(
        self, options: RunnerOptions, graph: DecodeGraph, settings: dict, thread_option: str, **placement
    ) -> LoadInfo:
        """What both runners report at load. Neither runtime reads a setting back: the context is
        the KV cache fixed at export, the threads were passed (`thread_option`) and cannot be read,
        and the bytes a token reads come from the decode graph of the model file it loads."""
        return LoadInfo(
            importlib.metadata.version(self.distribution),
            "cpu",
            self.meta.quantization,
            settings,
            threads=None,
            context_tokens=graph.cache_length,
            not_applied=not_applied(options, graph.cache_length, thread_option),
            weights_bytes=graph.weights_bytes,
            kv_bytes_per_token=graph.kv_bytes_per_token,
            **placement,
        )


def read_metadata(path: Path) -> Metadata:
    try:
        raw = json.loads((path / METADATA).read_text())
        return Metadata(
            raw.get("quantization"),
            tuple(raw["prefill_lengths"]),
            tuple(raw["start_token_ids"]),
            frozenset(raw["stop_token_ids"]),
            tuple(raw["end_token_ids"]),
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ArtifactError(f"{path / METADATA} is unreadable: {exc}") from None


def not_applied(options: RunnerOptions, cache_length: int, thread_option: str) -> dict[str, str]:
    """Why threads and context are not what was asked: neither runtime reports the threads
    it runs on, and the KV cache's capacity was fixed at export."""
    reasons = {
        "threads": f"{thread_option}={options.threads} was passed; the runtime cannot report the threads it runs on"
    }
    if options.context_tokens != cache_length:
        reasons["context_tokens"] = (
            f"the KV cache holds {cache_length} tokens, fixed at export; {options.context_tokens} was asked"
        )
    return reasons


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


class _Table:
    """A flatbuffer table read in place (fields by their index in the schema): just the
    kinds of field the TFLite schema and the .litertlm header use."""

    def __init__(self, data, pos: int) -> None:
        self.data, self.pos = data, pos
        self.vtable = pos - struct.unpack_from("<i", data, pos)[0]

    def _at(self, field: int) -> int | None:
        entry = 4 + 2 * field
        if entry >= struct.unpack_from("<H", self.data, self.vtable)[0]:
            return None
        offset = struct.unpack_from("<H", self.data, self.vtable + entry)[0]
        return self.pos + offset if offset else None

    def _follow(self, at: int) -> int:
        return at + struct.unpack_from("<I", self.data, at)[0]

    def _vector(self, field: int) -> tuple[int, int]:
        at = self._at(field)
        if at is None:
            return 0, 0
        start = self._follow(at)
        return start + 4, struct.unpack_from("<I", self.data, start)[0]

    def scalar(self, field: int, fmt: str) -> int:
        at = self._at(field)
        return struct.unpack_from("<" + fmt, self.data, at)[0] if at is not None else 0

    def scalars(self, field: int, fmt: str) -> tuple:
        start, n = self._vector(field)
        return struct.unpack_from(f"<{n}{fmt}", self.data, start) if n else ()

    def length(self, field: int) -> int:
        return self._vector(field)[1]

    def string(self, field: int) -> str:
        start, n = self._vector(field)
        return bytes(self.data[start : start + n]).decode()

    def table(self, field: int) -> _Table | None:
        at = self._at(field)
        return _Table(self.data, self._follow(at)) if at is not None else None

    def tables(self, field: int) -> list[_Table]:
        start, n = self._vector(field)
        return [_Table(self.data, self._follow(start + 4 * i)) for i in range(n)]


def _root(data, start: int) -> _Table:
    return _Table(data, start + struct.unpack_from("<I", data, start)[0])


# TFLite schema: field indices, and the byte size of the tensor types a KV cache may have.
MODEL_OPCODES, MODEL_SUBGRAPHS, MODEL_BUFFERS, MODEL_SIGNATURES = 1, 2, 4, 7
SUBGRAPH_TENSORS, SUBGRAPH_OPERATORS = 0, 3
TENSOR_SHAPE, TENSOR_TYPE, TENSOR_BUFFER, TENSOR_QUANTIZATION = 0, 1, 2, 4
EMBEDDING_LOOKUP, GATHER = 7, 36  # builtin operators; the table is input 1 and 0
ITEM_BYTES = {0: 4, 1: 2, 2: 4, 3: 1, 4: 8, 6: 1, 7: 2, 9: 1, 10: 8, 16: 2, 18: 2}
SECTION_TFLITE = 3  # .litertlm section type of a TFLite model


@dataclass(frozen=True)
class DecodeGraph:
    """What decoding one token reads, from the decode signature of the model file a runner
    loads: its constant tensors (one per buffer: the converter shares one buffer between
    signatures and between the embedding and a tied head), the table the embedding lookup
    reads, whether another operator (the head) reads that table too, and the KV cache."""

    weights: tuple[Tensor, ...]
    embedding: str | None
    vocab_rows: int | None
    tied: bool
    kv_bytes: int  # every kv_cache_* input of the decode signature
    cache_length: int  # the KV capacity fixed at export: the attention mask's length

    @property
    def weights_bytes(self) -> int:
        return streamed_bytes(self.weights, [self.embedding] if self.embedding else [], self.vocab_rows, self.tied)

    @property
    def kv_bytes_per_token(self) -> int:
        return self.kv_bytes // self.cache_length


def _buffer_bytes(buffer: _Table) -> int:
    """Stored bytes: inline data, or (in large files) `size` bytes at `offset`."""
    return buffer.length(0) or buffer.scalar(2, "Q")


def _decode_graph(model: _Table) -> DecodeGraph:
    signature = next((s for s in model.tables(MODEL_SIGNATURES) if s.string(2) == "decode"), None)
    if signature is None:
        raise ArtifactError("the model has no decode signature: not a litert-torch export")
    graph = model.tables(MODEL_SUBGRAPHS)[signature.scalar(4, "I")]
    tensors = graph.tables(SUBGRAPH_TENSORS)
    buffer_bytes = [_buffer_bytes(b) for b in model.tables(MODEL_BUFFERS)]
    weights = {}
    for tensor in tensors:
        index = tensor.scalar(TENSOR_BUFFER, "I")
        if buffer_bytes[index]:  # per-channel scales are read with the weights (4 bytes each)
            quantization = tensor.table(TENSOR_QUANTIZATION)
            scales = quantization.length(2) * 4 if quantization else 0
            weights.setdefault(f"buffer {index}", buffer_bytes[index] + scales)
    embedding, rows, tied = _embedding(model, graph, tensors, buffer_bytes)
    inputs = {m.string(0): tensors[m.scalar(1, "I")] for m in signature.tables(0)}
    kv = sum(
        _elements(t) * ITEM_BYTES[t.scalar(TENSOR_TYPE, "b")] for n, t in inputs.items() if n.startswith("kv_cache")
    )
    return DecodeGraph(
        tuple(Tensor(k, v) for k, v in weights.items()),
        embedding,
        rows,
        tied,
        kv,
        inputs["mask"].scalars(TENSOR_SHAPE, "i")[-1],
    )


def _embedding(
    model: _Table, graph: _Table, tensors: list[_Table], buffer_bytes: list[int]
) -> tuple[str | None, int | None, bool]:
    """The buffer the embedding lookup reads, its row count, and whether another operator
    (a head tied to it) reads the same buffer."""
    opcodes = [max(c.scalar(0, "b"), c.scalar(3, "i")) for c in model.tables(MODEL_OPCODES)]
    embedding, rows, readers = None, None, {}
    for op in graph.tables(SUBGRAPH_OPERATORS):
        code = opcodes[op.scalar(0, "I")]
        for position, t in enumerate(op.scalars(1, "i")):
            index = tensors[t].scalar(TENSOR_BUFFER, "I") if t >= 0 else 0
            if not buffer_bytes[index]:
                continue
            lookup = (code, position) in ((EMBEDDING_LOOKUP, 1), (GATHER, 0))
            readers.setdefault(f"buffer {index}", []).append(lookup)
            if lookup and embedding is None:
                embedding, rows = f"buffer {index}", tensors[t].scalars(TENSOR_SHAPE, "i")[0]
    return embedding, rows, embedding is not None and not all(readers[embedding])


def _elements(tensor: _Table) -> int:
    count = 1
    for dim in tensor.scalars(TENSOR_SHAPE, "i"):
        count *= dim
    return count


def _tflite_section(data) -> int:
    """Where the one TFLite model of a .litertlm bundle begins (its header: magic, version,
    header end at byte 24, a flatbuffer from byte 32 listing the sections)."""
    header = _root(data, 32)
    sections = [s for s in header.table(1).tables(0) if s.scalar(3, "B") == SECTION_TFLITE]
    if len(sections) != 1:
        raise ArtifactError(f"the bundle holds {len(sections)} TFLite models; edgebench's export holds one")
    return sections[0].scalar(1, "Q")


def read_decode_graph(model_file: Path) -> DecodeGraph:
    """The decode graph of a .tflite, or of the TFLite model inside a .litertlm bundle
    (its tokenizer and metadata sections are not weights)."""
    with model_file.open("rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
        start = _tflite_section(data) if data[:8] == b"LITERTLM" else 0
        try:
            return _decode_graph(_root(data, start))
        except (struct.error, IndexError, KeyError) as exc:
            raise ArtifactError(f"{model_file} is not a readable TFLite model: {exc!r}") from None
