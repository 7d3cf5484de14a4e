"""llama.cpp through llama-cpp-python: GGUF models on the CPU.

Generation is the runners' shared greedy loop (runners.decode_loop) over llama.cpp's own
batched prompt eval, one eval per token and a native sampler chain: greedy, plus a -inf
logit bias on every end-of-generation token in fixed-length mode, as llama.cpp's ignore_eos
does. The chat template is the one stored
in the GGUF. The perf-context counters are reset before each generation and kept as the
runtime's own figures (`runtime_prefill_tok_s`, `runtime_decode_tok_s`, `runtime_ttft_ms`,
beside the raw counters).

Settings are llama-bench's defaults on this platform (flash attention auto, n_batch 2048,
n_ubatch 512, f16 K/V cache, memory-mapped weights), and what the context really got is read
back: threads, context and batch sizes from the C API, flash attention's resolution and the
K/V cache types from llama.cpp's own log of the context it built (the API exposes neither).
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import re
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Sequence

from runners import base
from runners.base import ArtifactError, GenerationInfo, GenerationRequest, LoadInfo, Runner, RunnerOptions, TokenEvent
from runners.decode_loop import greedy_decode
from runners.kept_history import KeptHistory
from runners.weights import Tensor, streamed_bytes

if TYPE_CHECKING:  # annotations only: the runtime's arrays, imported lazily where used
    import numpy

GGUF_MAGIC = b"GGUF"
# GGUF general.file_type values (llama_ftype) of the common quantizations.
FILE_TYPES = {
    0: "F32",
    1: "F16",
    2: "Q4_0",
    3: "Q4_1",
    7: "Q8_0",
    8: "Q5_0",
    9: "Q5_1",
    10: "Q2_K",
    11: "Q3_K_S",
    12: "Q3_K_M",
    13: "Q3_K_L",
    14: "Q4_K_S",
    15: "Q4_K_M",
    16: "Q5_K_S",
    17: "Q5_K_M",
    18: "Q6_K",
    32: "BF16",
}
EMBEDDING, OUTPUT_HEAD = "token_embd.weight", "output.weight"
FLASH_ATTN = ("auto", "on", "off")
# The K/V cache types llama.cpp's own tools take (common/arg.cpp kv_cache_types).
KV_CACHE_TYPES = ("f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "iq4_nl", "q5_0", "q5_1")
# llama.cpp's log of the context it built: how flash attention `auto` resolved, and the
# K/V cache it allocated (cells, and each type).
LOAD_MODE_LOG = re.compile(r"load_mode = ([\w+]+)")
FLASH_ATTN_LOG = re.compile(r"Flash Attention (enabled|not supported)")
KV_CACHE_LOG = re.compile(r"llama_kv_cache: size = .*?\(\s*(\d+) cells.*K \((\w+)\).*V \((\w+)\)")


class LlamaCppRunner(Runner):
    name = "llama.cpp"
    artifact_kind = "gguf"
    scoring = "batch"
    package = "llama_cpp"
    distribution = "llama-cpp-python"
    extra = "llamacpp"
    # llama-bench's cmd_params_defaults in the vendored llama.cpp (llama-cli's are the same):
    # flash attention auto, logical/physical batch 2048/512, f16 K/V cache, weights mmapped
    # (load mode auto = mmap on the CPU). Named after llama-cpp-python's Llama() parameters.
    # Accelerator auto: llama-bench's -ngl 99, every layer offloaded to a GPU device where
    # llama.cpp has one (none in a CPU build: the layers stay on the CPU).
    defaults = {
        "flash_attn": "auto",
        "n_batch": 2048,
        "n_ubatch": 512,
        "type_k": "f16",
        "type_v": "f16",
        "use_mmap": True,
        "accelerator": "auto",
    }
    choices = {"flash_attn": FLASH_ATTN, "type_k": KV_CACHE_TYPES, "type_v": KV_CACHE_TYPES}
    runtime_figures = ("runtime_prefill_tok_s", "runtime_decode_tok_s", "runtime_ttft_ms")

    @classmethod
    def accelerators(cls) -> dict[str, str]:
        import llama_cpp

        seen: dict[str, str] = {}
        for name, (kind, description) in backend_devices(llama_cpp).items():
            seen[kind] = "; ".join(filter(None, (seen.get(kind), f"{name} ({description})")))
        return seen

    @classmethod
    def check_artifact(cls, path: Path) -> None:
        if path.is_dir():
            raise ArtifactError(f"{path} is a folder, not a GGUF file")
        with path.open("rb") as f:
            if f.read(4) != GGUF_MAGIC:
                raise ArtifactError(f"{path} is not a GGUF file (no GGUF magic bytes)")

    def load(self, artifact: Path, options: RunnerOptions) -> LoadInfo:
        # Imported here, not at module level: listing runners must not load runtimes.
        import llama_cpp
        from llama_cpp._internals import LlamaSampler

        settings = self.settings(options)
        flash_attn = settings["flash_attn"]
        log = self._create(llama_cpp, artifact, options, settings, flash_attn)
        model = self.llm._model
        self.context_tokens = options.context_tokens
        self.lib, self.new_sampler = llama_cpp, LlamaSampler
        self.ctx = self.llm._ctx.ctx
        self.n_vocab = model.n_vocab()
        self.eog_ids = frozenset(t for t in range(self.n_vocab) if llama_cpp.llama_vocab_is_eog(model.vocab, t))
        self.formatter = _chat_formatter(self.llm)
        self.kept = KeptHistory()
        applied = self._applied(log, flash_attn)
        asked = {
            "n_threads": options.threads,
            "n_threads_batch": options.threads,
            "n_ctx": options.context_tokens,
            **settings,
        }
        file_type = self.llm.metadata.get("general.file_type")
        return LoadInfo(
            llama_cpp.__version__,
            "cpu",
            FILE_TYPES.get(int(file_type)) if file_type else None,
            {**applied, "system_info": llama_cpp.llama_print_system_info().decode(errors="replace").strip()},
            threads=applied["n_threads"],
            context_tokens=applied["n_ctx"],
            not_applied=_not_applied(asked, applied),
            weights_bytes=weights_bytes(gguf_tensors(llama_cpp, artifact), self.n_vocab),
            kv_bytes_per_token=self._kv_bytes_per_token(applied),
            **_placement(log, backend_devices(llama_cpp), settings["accelerator"]),
        )

    def _create(self, lib, artifact: Path, options: RunnerOptions, settings: dict, flash_attn: str) -> str:
        """Load the model and create its context with the run's settings; llama.cpp's log of it."""
        type_k, type_v = _ggml_type(lib, settings, "type_k"), _ggml_type(lib, settings, "type_v")
        with _llama_log(lib) as log_lines, _flash_attn_type(lib, flash_attn):
            try:
                self.llm = lib.Llama(
                    model_path=str(artifact),
                    n_ctx=options.context_tokens,
                    n_batch=settings["n_batch"],
                    n_ubatch=settings["n_ubatch"],
                    type_k=type_k,
                    type_v=type_v,
                    use_mmap=settings["use_mmap"],
                    n_threads=options.threads,
                    n_threads_batch=options.threads,
                    seed=options.seed,
                    verbose=False,
                    # on the CPU, llama.cpp must not offload host operations (big prompt batches) either
                    n_gpu_layers=_gpu_layers(settings["accelerator"]),
                    op_offload=settings["accelerator"] != "cpu",
                )
            except ValueError as exc:  # llama-cpp-python's word for "could not load the model"
                raise ArtifactError(f"llama.cpp could not load {artifact}: {exc}") from None
        return "".join(log_lines)

    def _applied(self, log: str, flash_attn: str) -> dict:
        """What the context really got: the C API's read-back, and llama.cpp's own log for
        what the API does not expose (flash attention's resolution, the K/V cache types)."""
        lib, ctx = self.lib, self.ctx
        kv = KV_CACHE_LOG.search(log)
        load_mode = LOAD_MODE_LOG.search(log)
        return {
            "n_threads": lib.llama_n_threads(ctx),
            "n_threads_batch": lib.llama_n_threads_batch(ctx),
            "n_ctx": lib.llama_n_ctx(ctx),
            "n_batch": lib.llama_n_batch(ctx),
            "n_ubatch": lib.llama_n_ubatch(ctx),
            "flash_attn": _flash_attn_resolved(log, flash_attn),
            "type_k": kv.group(2) if kv else None,
            "type_v": kv.group(3) if kv else None,
            "kv_cells": int(kv.group(1)) if kv else None,
            "use_mmap": load_mode.group(1).startswith("mmap") if load_mode else None,
        }

    def _kv_bytes_per_token(self, applied: dict) -> int | None:
        """K and V bytes one context token takes in every layer, in the cache types the
        context really allocated: n_layer x (row(type_k, n_embd_k_gqa) + row(type_v, n_embd_v_gqa))."""
        if applied["type_k"] is None or applied["type_v"] is None:
            return None
        lib, model, meta = self.lib, self.llm._model.model, self.llm.metadata
        arch = meta["general.architecture"]
        n_head, n_head_kv = lib.llama_model_n_head(model), lib.llama_model_n_head_kv(model)
        head_k = int(meta.get(f"{arch}.attention.key_length", lib.llama_model_n_embd(model) // n_head))
        head_v = int(meta.get(f"{arch}.attention.value_length", head_k))
        ggml = _ggml_base(lib)
        row_k = ggml.ggml_row_size(getattr(lib, f"GGML_TYPE_{applied['type_k'].upper()}"), head_k * n_head_kv)
        row_v = ggml.ggml_row_size(getattr(lib, f"GGML_TYPE_{applied['type_v'].upper()}"), head_v * n_head_kv)
        return lib.llama_model_n_layer(model) * (row_k + row_v)

    def tokenize(self, text: str) -> list[int]:
        return self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=False)

    def _text_ids(self, text: str) -> list[int]:
        return self.llm.tokenize(text.encode("utf-8"), add_bos=True, special=False)

    def _chat_ids(self, messages: list[dict[str, str]]) -> list[int] | None:
        if self.formatter is None:
            return None
        prompt = self.formatter(messages=messages).prompt
        return self.llm.tokenize(prompt.encode("utf-8"), add_bos=True, special=True)

    @functools.cached_property
    def _pieces(self) -> dict[int, bytes]:
        """Each token's piece, asked of llama.cpp once: a ctypes call costs microseconds."""
        return {}

    def _detokenize(self, ids: Sequence[int]) -> str:
        """llama.cpp's text of `ids`: their pieces joined, as its own detokenize joins them."""
        pieces = self._pieces
        for token in ids:
            if token not in pieces:
                pieces[token] = self.llm.detokenize([token])
        return b"".join([pieces[token] for token in ids]).decode("utf-8", errors="replace")

    def fill(self, token_ids: Sequence[int], room: int) -> int:
        """History in llama.cpp's KV cache, as an app keeps a conversation: the memory cleared,
        then the ids evaluated in batches of n_batch from position 0."""
        llm = self.llm
        base.check_room(len(token_ids), room, min(llm.n_ctx(), self.context_tokens), "the run's context_tokens")
        llm.reset()
        llm._ctx.kv_cache_clear()
        if token_ids:
            llm.eval(list(token_ids))
            # llama.cpp adds queued tokens to its perf counters at the next synchronize: here, so
            # the history is the fill's and not counted in the next request's prompt eval.
            self.lib.llama_synchronize(self.ctx)
        return self._kv_tokens()

    def _kv_tokens(self) -> int:
        """The tokens in llama.cpp's KV memory (sequence 0), by its own count."""
        return self.lib.llama_memory_seq_pos_max(self.lib.llama_get_memory(self.ctx), 0) + 1

    def generate(self, request: GenerationRequest) -> Iterator[TokenEvent]:
        llm = self.llm
        # llama.cpp may round its context up; the Python side holds exactly what was asked.
        prompt = self._fitting_prompt_ids(request, min(llm.n_ctx(), self.context_tokens))
        sampler = self.new_sampler()
        if request.ignore_eos:
            sampler.add_logit_bias(self.n_vocab, {t: float("-inf") for t in self.eog_ids})
        sampler.add_greedy()
        # A conversation's next turn keeps the KV cells of the prefix its cache still holds (as
        # llama.cpp's server does); a request after a depth fill goes on at the history's end; any
        # other request starts empty: a cached prefix would fake the TTFT.
        kept = self.kept.keep(request, prompt) if not (llm._is_recurrent or llm._is_hybrid) else 0
        if request.history is None:
            llm.reset()
            llm.n_tokens = kept  # eval drops every KV cell from here on before it appends
        self.lib.llama_perf_context_reset(self.ctx)

        def next_token(ids: list[int]) -> int:
            llm.eval(ids)
            return sampler.sample(llm._ctx, -1)

        try:
            decoded = yield from greedy_decode(
                request,
                prompt,
                lambda ids: next_token(ids[kept:]),
                lambda token, _: next_token([token]),
                self.eog_ids,
                self._detokenize,
            )
        finally:
            sampler.close()
        self.kept.held(prompt, decoded.fed)
        perf = self.lib.llama_perf_context(self.ctx)
        self._finished(
            GenerationInfo(
                len(prompt),
                decoded.stop,
                perf_figures(perf),
                kept_tokens=kept,
                prefilled_tokens=perf.n_p_eval,  # llama.cpp's own count of prompt tokens it evaluated
                prefill_counted_by="runtime",
                # The KV memory holds every token but the last one made (sampled, never evaluated).
                runtime_context=self._kv_tokens() + (decoded.stop == "length"),
            )
        )

    def score(self, token_ids: Sequence[int]) -> "numpy.ndarray":
        """Teacher-forced logits as llama.cpp's perplexity tool gets them: the KV memory
        cleared, the tokens decoded in batches of n_batch with logits asked for every
        position, each batch's rows read from llama_get_logits. The memory is cleared again
        afterwards, so the next generation starts empty whatever happens here."""
        import numpy as np

        llm, batch = self.llm, self.llm._batch
        logits = np.empty((len(token_ids), self.n_vocab), dtype=np.float32)
        self.kept = KeptHistory()  # the cache is cleared: no conversation goes on from it
        llm.reset()
        llm._ctx.kv_cache_clear()
        try:
            for start in range(0, len(token_ids), llm.n_batch):
                chunk = list(token_ids[start : start + llm.n_batch])
                batch.set_batch(chunk, n_past=start, logits_all=True)
                llm._ctx.decode(batch)
                logits[start : start + len(chunk)] = np.ctypeslib.as_array(
                    self.lib.llama_get_logits(self.ctx), shape=(len(chunk), self.n_vocab)
                )
        finally:
            llm._ctx.kv_cache_clear()
        return logits

    def close(self) -> None:
        self.llm.close()


def perf_figures(perf) -> dict:
    """llama.cpp's perf-context counters of the last generation, raw and in the common keys."""
    return {
        "t_p_eval_ms": perf.t_p_eval_ms,
        "n_p_eval": perf.n_p_eval,
        "t_eval_ms": perf.t_eval_ms,
        "n_eval": perf.n_eval,
        "runtime_prefill_tok_s": 1000 * perf.n_p_eval / perf.t_p_eval_ms if perf.t_p_eval_ms else None,
        "runtime_decode_tok_s": 1000 * perf.n_eval / perf.t_eval_ms if perf.t_eval_ms else None,
        # llama.cpp's time to the first token's logits: its prompt eval (sampling excluded)
        "runtime_ttft_ms": perf.t_p_eval_ms,
    }


def _chat_formatter(llm):
    """The GGUF's own chat template, as llama-cpp-python renders it; None when it has none."""
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    model, meta = llm._model, llm.metadata
    if "tokenizer.chat_template" not in meta:
        return None
    return Jinja2ChatFormatter(
        meta["tokenizer.chat_template"],
        eos_token=model.token_get_text(model.token_eos()),
        bos_token=model.token_get_text(model.token_bos()),
    )


def weights_bytes(tensors: list[Tensor], n_vocab: int) -> int:
    """Bytes a decoded token streams (runners.weights): the embedding table as one row,
    unless the GGUF has no output head, whose absence means the head reads the embedding."""
    tied = OUTPUT_HEAD not in {t.name for t in tensors}
    return streamed_bytes(tensors, [EMBEDDING], n_vocab, tied=tied)


def gguf_tensors(lib, path: Path) -> list[Tensor]:
    """Every tensor of the GGUF with its stored bytes, read by llama.cpp's own GGUF reader
    (its ggml-base library) from the header alone: no tensor data is loaded."""
    ggml = _ggml_base(lib)
    gguf = ggml.gguf_init_from_file(str(path).encode(), _GgufInitParams(True, None))
    if not gguf:
        raise ArtifactError(f"llama.cpp could not read the GGUF header of {path}")
    try:
        return [
            Tensor(ggml.gguf_get_tensor_name(gguf, i).decode(), ggml.gguf_get_tensor_size(gguf, i))
            for i in range(ggml.gguf_get_n_tensors(gguf))
        ]
    finally:
        ggml.gguf_free(gguf)


# ggml_backend_dev_type: CPU, GPU, integrated GPU, and ACCEL (BLAS, AMX: work beside the CPU backend)
DEVICE_KINDS = {0: "cpu", 1: "gpu", 2: "gpu", 3: "cpu"}
LAYER_LOG = re.compile(r"layer +\d+ assigned to device ([^,\s]+)")
BUFFER_LOG = re.compile(r"(\S+) +(model|KV|compute|output) buffer size = +([\d.]+) MiB")


def backend_devices(lib) -> dict[str, tuple[str, str]]:
    """llama.cpp's backend devices, from ggml's device registry (what `llama-bench
    --list-devices` reads): name -> (kind: cpu/gpu, description)."""
    from llama_cpp._ctypes_extensions import load_shared_library

    registry, base = load_shared_library("ggml", Path(lib.__file__).parent / "lib"), _ggml_base(lib)
    registry.ggml_backend_dev_count.restype = ctypes.c_size_t
    registry.ggml_backend_dev_get.argtypes, registry.ggml_backend_dev_get.restype = [ctypes.c_size_t], ctypes.c_void_p
    for read in (base.ggml_backend_dev_name, base.ggml_backend_dev_description):
        read.argtypes, read.restype = [ctypes.c_void_p], ctypes.c_char_p
    base.ggml_backend_dev_type.argtypes, base.ggml_backend_dev_type.restype = [ctypes.c_void_p], ctypes.c_int
    devices = [registry.ggml_backend_dev_get(i) for i in range(registry.ggml_backend_dev_count())]
    return {
        base.ggml_backend_dev_name(d).decode(): (
            DEVICE_KINDS.get(base.ggml_backend_dev_type(d), "other"),
            base.ggml_backend_dev_description(d).decode(),
        )
        for d in devices
    }


def _gpu_layers(accelerator: str) -> int:
    """n_gpu_layers for an accelerator: none on the CPU, else all (-1), as llama-bench's -ngl 99."""
    if accelerator not in ("auto", "cpu", "gpu"):
        raise ValueError(f"--accelerator llama.cpp={accelerator}: llama.cpp offloads to a gpu only (auto, cpu, gpu)")
    return 0 if accelerator == "cpu" else -1


def _placement(log: str, devices: dict[str, tuple[str, str]], asked: str) -> dict:
    """Where llama.cpp put the model, from its own log of the load: the device each layer was
    assigned to, and the buffers it allocated on each; gpu if any layer went to a GPU device."""
    layers: dict[str, int] = {}
    for device in LAYER_LOG.findall(log):
        layers[device] = layers.get(device, 0) + 1
    buffers = {f"{name} {what}": float(mib) for name, what, mib in BUFFER_LOG.findall(log)}
    # A GPU's own memory; CPU_* buffers and pinned host buffers (CUDA_Host, ...) are RAM.
    on_device = [mib for key, mib in buffers.items() if not key.startswith("CPU") and "_Host " not in key]
    on_gpu = any(devices.get(d, ("cpu",))[0] == "gpu" for d in layers)
    return {
        "accelerator": ("gpu" if on_gpu else "cpu") if layers else None,
        "placement": {
            "n_gpu_layers": _gpu_layers(asked),
            "layers_by_device": layers,
            "buffers_mib": buffers,
            "devices": {name: f"{kind}: {description}" for name, (kind, description) in devices.items()},
        },
        "accelerator_memory_mb": round(sum(on_device), 2) if on_device else None,
    }  # MiB, as peak_rss_mb


class _GgufInitParams(ctypes.Structure):
    _fields_ = [("no_alloc", ctypes.c_bool), ("ctx", ctypes.c_void_p)]


@functools.cache
def _ggml_base(lib):
    """llama.cpp's ggml-base library as llama-cpp-python ships it, with the few GGUF and
    type-size functions this runner reads declared."""
    from llama_cpp._ctypes_extensions import load_shared_library

    ggml = load_shared_library("ggml-base", Path(lib.__file__).parent / "lib")
    ggml.gguf_init_from_file.argtypes, ggml.gguf_init_from_file.restype = (
        [ctypes.c_char_p, _GgufInitParams],
        ctypes.c_void_p,
    )
    ggml.gguf_free.argtypes, ggml.gguf_free.restype = [ctypes.c_void_p], None
    ggml.gguf_get_n_tensors.argtypes, ggml.gguf_get_n_tensors.restype = [ctypes.c_void_p], ctypes.c_int64
    ggml.gguf_get_tensor_name.argtypes, ggml.gguf_get_tensor_name.restype = (
        [ctypes.c_void_p, ctypes.c_int64],
        ctypes.c_char_p,
    )
    ggml.gguf_get_tensor_size.argtypes, ggml.gguf_get_tensor_size.restype = (
        [ctypes.c_void_p, ctypes.c_int64],
        ctypes.c_size_t,
    )
    ggml.ggml_row_size.argtypes, ggml.ggml_row_size.restype = [ctypes.c_int, ctypes.c_int64], ctypes.c_size_t
    return ggml


def _flash_attn_resolved(log: str, asked: str) -> str | None:
    """`on`/`off` apply as asked (llama.cpp logs no resolution); `auto` is resolved once, when
    the context is created, and logged; None if that line is missing."""
    if asked != "auto":
        return asked
    resolved = FLASH_ATTN_LOG.search(log)
    return None if resolved is None else "on" if resolved.group(1) == "enabled" else "off"


def _ggml_type(lib, settings: dict, key: str) -> int:
    """The ggml type id of a K/V cache type named as llama-bench names it (f16, q8_0, ...)."""
    value = settings[key]
    type_id = getattr(lib, f"GGML_TYPE_{value.upper()}", None)
    if type_id is None:
        raise ValueError(f"--setting llama.cpp:{key}={value}: not a ggml type (f16, bf16, f32, q8_0, q4_0, ...)")
    return type_id


def _not_applied(asked: dict, applied: dict) -> dict[str, str]:
    """Why each setting the context got differs from the request (or was not reported)."""
    reasons = {}
    for key, value in asked.items():
        got = applied.get(key)
        if got == value or (key == "flash_attn" and value == "auto" and got is not None):
            continue
        if got is None:
            reasons[key] = "llama.cpp did not report it"
        elif key == "n_ctx":
            reasons[key] = (
                f"llama.cpp pads the context to a multiple of 256 ({got} allocated); "
                f"generations are still held to the {value} asked"
            )
        elif key == "n_batch":
            reasons[key] = f"asked {value}; llama.cpp holds a batch to the context, {got}"
        else:
            reasons[key] = f"asked {value}, llama.cpp applied {got}"
    return reasons


@contextlib.contextmanager
def _llama_log(lib) -> Iterator[list[str]]:
    """Collect llama.cpp's log while a model and context are created; llama-cpp-python's
    own handler still sees every line, so what it prints is unchanged."""
    from llama_cpp import _logger

    lines: list[str] = []

    @lib.llama_log_callback
    def collect(level, text, user_data):
        lines.append(text.decode(errors="replace"))
        _logger.llama_log_callback(level, text, user_data)

    lib.llama_log_set(collect, ctypes.c_void_p(0))
    try:
        yield lines
    finally:
        lib.llama_log_set(_logger.llama_log_callback, ctypes.c_void_p(0))


@contextlib.contextmanager
def _flash_attn_type(lib, flash_attn: str) -> Iterator[None]:
    """Create the context with llama.cpp's flash_attn_type: llama-cpp-python 0.3.36's Llama()
    takes flash attention as a bool and cannot ask for `auto`, llama.cpp's own default."""
    from llama_cpp import llama_cpp as api

    value = {
        "auto": lib.LLAMA_FLASH_ATTN_TYPE_AUTO,
        "on": lib.LLAMA_FLASH_ATTN_TYPE_ENABLED,
        "off": lib.LLAMA_FLASH_ATTN_TYPE_DISABLED,
    }[flash_attn]
    create = api.llama_init_from_model

    def init_from_model(model, params):
        params.flash_attn_type = value
        return create(model, params)

    api.llama_init_from_model = init_from_model
    try:
        yield
    finally:
        api.llama_init_from_model = create
