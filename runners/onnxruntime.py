"""ONNX Runtime through onnxruntime-genai: the model builder's int4/fp32 builds on the CPU.

The artifact is the builder's folder (genai_config.json beside model.onnx). As the
onnxruntime-genai examples do, the runner loads og.Config from the folder and overlays its
settings: the thread count into the decoder's session options, the search options
(`defaults`). onnxruntime-genai exposes no session options once loaded, so the thread pool
ONNX Runtime really built is read from its own session trace (logged at INFO while the
model loads). Greedy search; a fresh Generator per prompt (marked SETUP_DONE), then the
runners' shared greedy loop (runners.decode_loop): `append_tokens`, which runs the prefill
inside the harness clock, and one `generate_next_token` per token.
Fixed-length mode sets min_length = max_length = prompt + N, which keeps end-of-sequence
out until N tokens are made. A conversation keeps one Generator for all its turns, as the
library's chat example does: sized to the context (min_length too, for fixed-length replies),
rewound to where its sequence and the next turn's prompt part, and the rest appended. onnxruntime-genai measures nothing itself: no runtime_*
figures; its own sequence length is kept as a cross-check.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator, Sequence

from runners.base import (
    SETUP_DONE,
    ArtifactError,
    Exporter,
    GenerationInfo,
    GenerationRequest,
    LoadInfo,
    Runner,
    RunnerOptions,
    SetupDone,
    TokenEvent,
    check_room,
)
from runners.decode_loop import greedy_decode
from runners.kept_history import shared_prefix
from runners.onnxruntime_export import QUANTIZATIONS
from runners.weights import Tensor, streamed_bytes

if TYPE_CHECKING:  # annotations only: the runtime's arrays, imported lazily where used
    import numpy

CONFIG = "genai_config.json"
# ONNX Runtime's INFO line listing a session's options, as it traces them at creation.
POOL_SIZE = re.compile(r"intra_op_param:OrtThreadPoolParams \{ thread_pool_size: (\d+)")
INFO = 1  # ORT's log severity that traces the session options
# Nodes that look a token's row up in a table: the input embedding.
GATHERS = ("Gather", "GatherBlockQuantized")


class OnnxRuntimeRunner(Runner):
    name = "onnxruntime"
    artifact_kind = "onnxruntime-genai folder"
    scoring = "batch"
    package = "onnxruntime_genai"
    distribution = "onnxruntime-genai"
    extra = "onnxruntime"
    exporter = Exporter(
        tool="onnxruntime-genai model builder",
        distribution="onnxruntime-genai",
        target="runners.onnxruntime_export:export",
        quantizations=tuple(QUANTIZATIONS),
        default_quantization="int4",
        extra="prepare-onnx",
        typical_seconds={"int4": 10, "fp32": 10},
        legacy_key=(
            "runners.onnxruntime_export:export",
            "4efb3d2265be66dd62976899a34d79930bfec3744a800f25e0616579b755e666",
        ),
    )
    # What the builder writes into genai_config.json for its CPU (GroupQueryAttention)
    # models and the examples run with: one KV buffer of max_length, past and present shared.
    # Accelerator auto: the examples' default (follow_config), the providers genai_config.json names
    # (none for the builder's `-e cpu` models: the CPU).
    defaults = {"past_present_share_buffer": True, "accelerator": "auto"}

    @classmethod
    def accelerators(cls) -> dict[str, str]:
        import onnxruntime

        seen = {"cpu": "CPUExecutionProvider"}
        for kind, providers in PROVIDERS.items():
            if found := [p for p in providers if p in onnxruntime.get_available_providers()]:
                seen[kind] = ", ".join(found)
        return seen

    @classmethod
    def check_artifact(cls, path: Path) -> None:
        if not (path / CONFIG).is_file():
            raise ArtifactError(f"{path} is not an onnxruntime-genai model folder (no {CONFIG})")

    def load(self, artifact: Path, options: RunnerOptions) -> LoadInfo:
        import onnxruntime_genai as og

        self.check_artifact(artifact)
        genai = json.loads((artifact / CONFIG).read_text())
        search = {"past_present_share_buffer": self.settings(options)["past_present_share_buffer"]}
        trace = self._create(og, artifact, options, search)
        self.og = og
        self.generator = None  # a conversation's, kept between its turns, or the one `fill` left history on
        self.tokenizer = og.Tokenizer(self.model)
        self.eos_ids = frozenset(int(t) for t in self.tokenizer.eos_token_ids)
        model_context = genai["model"].get("context_length") or options.context_tokens
        self.context_tokens = min(options.context_tokens, model_context)
        # A sliding-window model's KV buffer must hold its window (GenAI refuses a smaller one),
        # whatever the request or the run's context needs; the model's own context bounds it.
        window = (genai["model"]["decoder"].get("sliding_window") or {}).get("window_size") or 0
        self.least_buffer = min(window, model_context)
        return self._load_info(artifact, options, genai, search, trace)

    def _create(self, og, artifact: Path, options: RunnerOptions, search: dict) -> str:
        """Load the model as the examples do: og.Config from the folder, the run's threads, search
        options and provider overlaid. Returns ONNX Runtime's own trace of the session it built."""
        provider = _provider(self.settings(options)["accelerator"])
        try:
            config = og.Config(str(artifact))
            config.overlay(
                json.dumps(
                    {
                        "model": {
                            "decoder": {
                                "session_options": {"intra_op_num_threads": options.threads, "log_severity_level": INFO}
                            }
                        },
                        "search": search,
                    }
                )
            )
            _use_provider(config, provider)
            self.model, trace = _with_native_stderr(lambda: og.Model(config))
        except Exception as exc:  # onnxruntime-genai raises plain RuntimeErrors
            raise ArtifactError(f"onnxruntime-genai could not load {artifact}: {exc}") from None
        return trace

    def _load_info(self, artifact: Path, options: RunnerOptions, genai: dict, search: dict, trace: str) -> LoadInfo:
        """What the loaded model runs with: the thread pool from the session's trace, the rest
        from onnxruntime-genai and the graph."""
        threads = _pool_size(trace)
        not_applied = {}
        if threads != options.threads:
            not_applied["threads"] = (
                f"ONNX Runtime built an intra-op pool of {threads} thread(s)"
                if threads
                else "ONNX Runtime's session trace did not state its intra-op pool size"
            )
        if self.context_tokens != options.context_tokens:
            not_applied["context_tokens"] = f"the model's context_length is {genai['model'].get('context_length')}"
        graph = _graph(artifact / genai["model"]["decoder"]["filename"])
        settings = {
            "execution_provider": self.model.device_type.lower(),
            "intra_op_num_threads": threads,
            **search,
            "kv_buffer": "allocated per request: prompt + max_new_tokens (max_length), at least the sliding window",
            "model_type": self.model.type,
            "model_context_length": genai["model"].get("context_length"),
            "onnxruntime_version": _version("onnxruntime"),
        }
        return LoadInfo(
            _version(self.distribution),
            self.model.device_type.lower(),
            None,  # the folder does not say; the record takes prepare's, from its manifest
            settings,
            threads=threads,
            context_tokens=self.context_tokens,
            not_applied=not_applied,
            weights_bytes=_weights_bytes(graph, genai["model"]["vocab_size"]),
            kv_bytes_per_token=(per_token := _kv_bytes_per_token(graph, genai["model"]["decoder"])),
            kv_window=_kv_window(genai["model"]["decoder"], per_token),
            **_placement(self.model.device_type, trace),
        )

    def tokenize(self, text: str) -> list[int]:
        return [int(t) for t in self.tokenizer.encode(text)]

    def _text_ids(self, text: str) -> list[int]:
        return self.tokenize(text)

    def _chat_ids(self, messages: list[dict[str, str]]) -> list[int]:
        return self.tokenize(self.tokenizer.apply_chat_template(json.dumps(messages), add_generation_prompt=True))

    def _detokenize(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(ids)

    def _generator(self, total: int, fixed_length: bool):
        """A fresh Generator (no cache from an earlier prompt) whose sequence may reach `total`;
        its KV buffer (max_length) holds at least the model's sliding window, as GenAI requires.
        Fixed-length: end tokens are kept out up to `total`."""
        params = self.og.GeneratorParams(self.model)
        capacity = max(total, self.least_buffer)
        params.set_search_options(do_sample=False, max_length=capacity, min_length=total if fixed_length else 0)
        return self.og.Generator(self.model, params)

    def fill(self, token_ids: Sequence[int], room: int) -> int:
        """History on one Generator, as an app keeps a chat: appended to a fresh one sized for
        it and the next (fixed-length) request, which appends its prompt to the same one."""
        check_room(len(token_ids), room, self.context_tokens, "the run's context_tokens, held to the model's")
        self.generator = self._generator(len(token_ids) + room, fixed_length=True)
        if token_ids:
            self.generator.append_tokens(list(token_ids))
        return self.generator.token_count()

    def generate(self, request: GenerationRequest) -> Iterator[TokenEvent | SetupDone]:
        prompt = self._fitting_prompt_ids(request, self.context_tokens)
        if request.history is not None:  # the Generator `fill` made and left the history on
            if self.generator is None:
                raise ValueError("a request with history needs a fill first")
            generator, self.generator, kept = self.generator, None, 0
        elif (kept := self._kept(request, prompt)) is None:  # a fresh Generator: no cache from an earlier prompt
            # a conversation's is kept for its next turn, so sized for the whole context (as
            # onnxruntime-genai's chat example keeps one)
            total = self.context_tokens if request.turn else len(prompt) + request.max_new_tokens
            generator = self._generator(total, request.ignore_eos)
            self.generator = generator if request.turn else None
            kept = 0
            yield SETUP_DONE
        else:
            generator = self.generator

        def step(*_) -> int:  # the Generator keeps the tokens and positions itself
            generator.generate_next_token()
            return int(generator.get_next_tokens()[0])

        counts = {}

        def prefill(ids: list[int]) -> int:
            counts["before"] = generator.token_count()
            generator.append_tokens(ids[kept:])  # runs the prefill
            counts["after"] = generator.token_count()
            return step()

        decoded = yield from greedy_decode(request, prompt, prefill, step, self.eos_ids, self._detokenize)
        sequence = generator.token_count()
        # The runtime's sequence holds the history, the prompt and the tokens made; an end of
        # turn it picked is not appended to it (seen on the builder's int4 and fp32 models).
        self._finished(
            GenerationInfo(
                len(prompt),
                decoded.stop,
                {"sequence_length": sequence},
                runtime_new_tokens=sequence - counts["after"],
                kept_tokens=kept,
                prefilled_tokens=counts["after"] - counts["before"],  # by the Generator's own token count
                prefill_counted_by="runtime",
                runtime_context=sequence,
            )
        )

    def _kept(self, request: GenerationRequest, prompt: list[int]) -> int | None:
        """How many leading prompt tokens the conversation's Generator keeps (rewound to where its
        sequence and the prompt part); None when the request needs a fresh Generator."""
        if not request.continues or self.generator is None:
            return None
        kept = min(shared_prefix(self.generator.get_sequence(0).tolist(), prompt), len(prompt) - 1)
        if kept < self.generator.token_count():
            self.generator.rewind_to(kept)
        return kept

    def score(self, token_ids: Sequence[int]) -> "numpy.ndarray":
        """Teacher-forced logits: a fresh Generator holding exactly the sequence, one
        append_tokens (a single run of the decoder over every position, as a prefill), and
        the decoder's own `logits` output of that run, which has a row per position appended
        (get_logits would give the last one only)."""
        import numpy as np

        generator = self._generator(len(token_ids), fixed_length=False)
        generator.append_tokens(list(token_ids))
        logits = generator.get_output("logits")[0]
        if len(logits) != len(token_ids):
            raise RuntimeError(f"onnxruntime-genai returned logits for {len(logits)} of {len(token_ids)} positions")
        return logits.astype(np.float32, copy=False)

    def close(self) -> None:
        self.generator = None  # before the model it runs on
        del self.tokenizer, self.model


def _with_native_stderr(create: Callable):
    """Run `create` with the process's stderr (fd 2, where ONNX Runtime logs) captured.
    Returns its result and the text; warnings and errors in it are passed on to stderr."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            result = create()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        captured.seek(0)
        text = captured.read().decode(errors="replace")
    sys.stderr.write("".join(line for line in text.splitlines(keepends=True) if " [I:" not in line))
    return result, text


# ONNX Runtime's execution providers by accelerator, each with the name onnxruntime-genai's
# Config.append_provider takes (its examples' -e choices), in order of preference.
PROVIDERS = {
    "gpu": {
        "CUDAExecutionProvider": "cuda",
        "NvTensorRTRTXExecutionProvider": "NvTensorRtRtx",
        "DmlExecutionProvider": "dml",
        "WebGpuExecutionProvider": "webgpu",
    },
    "npu": {"QNNExecutionProvider": "qnn"},
}
# onnxruntime-genai's Model.device_type -> the accelerator it runs on
DEVICE_KINDS = {"CPU": "cpu", "CUDA": "gpu", "NvTensorRtRtx": "gpu", "DML": "gpu", "WebGPU": "gpu", "QNN": "npu"}


def _provider(accelerator: str) -> str | None:
    """The provider the model is given, as the examples do: None keeps genai_config.json's own
    (auto), "cpu" clears them, else the first provider of that kind ONNX Runtime has here."""
    if accelerator in ("auto", "cpu"):
        return None if accelerator == "auto" else "cpu"
    import onnxruntime

    available = onnxruntime.get_available_providers()
    found = [name for provider, name in PROVIDERS.get(accelerator, {}).items() if provider in available]
    if not found:
        raise ValueError(f"ONNX Runtime has no {accelerator} execution provider here; it has: {', '.join(available)}")
    return found[0]


def _use_provider(config, provider: str | None) -> None:
    if provider is not None:
        config.clear_providers()  # no provider: the CPU
        if provider != "cpu":
            config.append_provider(provider)


def _placement(device_type: str, trace: str) -> dict:
    """Where ONNX Runtime runs the model: onnxruntime-genai's device for it, and the session's own
    trace of the execution providers it added."""
    lines = [line.split("] ", 1)[-1] for line in trace.splitlines() if "execution provider" in line.lower()]
    return {
        "accelerator": DEVICE_KINDS.get(device_type),
        "placement": {"device_type": device_type, "session_trace": lines},
    }


def _pool_size(trace: str) -> int | None:
    """The intra-op thread pool size ONNX Runtime traced for the decoder's session."""
    found = POOL_SIZE.findall(trace)
    return int(found[-1]) if found else None


def _graph(model_file: Path):
    import onnx

    return onnx.load(str(model_file), load_external_data=False).graph


def _nbytes(tensor) -> int:
    """An initializer's bytes as stored: external data's length, else its inline data."""
    import numpy as np
    from onnx.helper import tensor_dtype_to_np_dtype

    external = {e.key: e.value for e in tensor.external_data}
    if "length" in external:
        return int(external["length"])
    if tensor.raw_data:
        return len(tensor.raw_data)
    return int(np.prod(tensor.dims, dtype=np.int64)) * tensor_dtype_to_np_dtype(tensor.data_type).itemsize


def _embedding_tables(graph) -> tuple[set[str], bool]:
    """The initializers the input embedding looks a token up in (through reshapes and
    transposes), and whether any of them also feeds another node (the tied output head)."""
    producers = {out: node for node in graph.node for out in node.output}
    initializers = {t.name for t in graph.initializer}
    gather = next(n for n in graph.node if n.op_type in GATHERS and "input_ids" in n.input)
    chain, tables, pending = [gather], set(), [i for i in gather.input if i and i != "input_ids"]
    while pending:
        name = pending.pop()
        if name in initializers:
            tables.add(name)
        elif name in producers:
            chain.append(producers[name])
            pending += [i for i in producers[name].input if i]
    tied = any(name in tables for node in graph.node if all(node is not c for c in chain) for name in node.input)
    return tables, tied


def _weights_bytes(graph, vocab_size: int) -> int:
    """Bytes a decoded token reads: every initializer of model.onnx (+ external data) once,
    the input embedding's tables as one row each unless the output head shares them."""
    tables, tied = _embedding_tables(graph)
    return streamed_bytes([Tensor(t.name, _nbytes(t)) for t in graph.initializer], tables, vocab_size, tied)


def _kv_bytes_per_token(graph, decoder: dict) -> int:
    """KV-cache bytes per context token: over the graph's past_key_values inputs, their
    element size times their heads times head size (a symbolic head dim: genai's head_size)."""
    from onnx.helper import tensor_dtype_to_np_dtype

    total = 0
    for value in graph.input:
        if not value.name.startswith("past_key_values."):
            continue
        kind = value.type.tensor_type
        _, heads, _, head_size = kind.shape.dim  # batch, kv heads, past sequence, head size
        heads_count = heads.dim_value or decoder["num_key_value_heads"]
        total += (
            tensor_dtype_to_np_dtype(kind.elem_type).itemsize
            * heads_count
            * (head_size.dim_value or decoder["head_size"])
        )
    return total


def _kv_window(decoder: dict, kv_per_token: int) -> list[int] | None:
    """[window, bytes per token] of the sliding-window layers genai_config.json lists (the
    builder's layers are alike, so each holds an equal share of the KV bytes per token)."""
    sliding = decoder.get("sliding_window")
    if not sliding or not sliding.get("layers"):
        return None
    return [sliding["window_size"], kv_per_token * len(sliding["layers"]) // decoder["num_hidden_layers"]]


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"
