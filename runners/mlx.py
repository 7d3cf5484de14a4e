"""MLX through mlx-lm: a converted model folder on Apple silicon (GPU) or the Linux CPU.

Generation is mlx-lm's own `stream_generate` with a greedy sampler, mlx_lm.generate's
default settings (`MlxRunner.defaults`) and a fresh KV cache per request; each
GenerationResponse carries one token, so each becomes one TokenEvent. Chat prompts use the
tokenizer's chat template and stop at its end-of-turn ids; fixed-length requests empty those
ids for the duration, so exactly N tokens come out. mlx-lm's own figures (prompt_tps,
generation_tps, peak memory) are kept as native stats.

mlx-lm dispatches the forward pass of token n+1 before it hands out token n, so when a
generation stops one step is still computing. `generation_info` (called after the harness
has stopped its clock) waits for it, so it never runs into the next prompt's TTFT.

On Linux, OpenBLAS is preloaded before mlx is imported when it is installed
(runners.mlx_blas); the record says which BLAS served the run.
"""

from __future__ import annotations

import importlib.metadata
import json
import struct
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Sequence

from runners.base import (
    ArtifactError,
    Exporter,
    GenerationInfo,
    GenerationRequest,
    LoadInfo,
    Probe,
    Runner,
    RunnerOptions,
    TokenEvent,
    check_room,
)
from runners.kept_history import shared_prefix
from runners.mlx_blas import global_sgemm_library, use_openblas
from runners.mlx_export import CONVERT_OPTIONS
from runners.weights import Tensor, streamed_bytes

if TYPE_CHECKING:  # annotations only: the runtime's arrays, imported lazily where used
    import numpy

DTYPE_NAMES = {"float32": "fp32", "float16": "fp16", "bfloat16": "bf16"}


def source_rope_theta(config: dict) -> float | None:
    """The RoPE base a transformers config.json gives: top-level `rope_theta`
    (transformers 4) or `rope_parameters.rope_theta` (transformers 5)."""
    theta = config.get("rope_theta", (config.get("rope_parameters") or {}).get("rope_theta"))
    return None if theta is None else float(theta)


class MlxRunner(Runner):
    name = "mlx"
    artifact_kind = "mlx folder"
    scoring = "batch"
    package = "mlx_lm"
    distribution = "mlx-lm"
    extra = "mlx"
    exporter = Exporter(
        tool="mlx_lm.convert",
        distribution="mlx-lm",
        target="runners.mlx_export:export",
        quantizations=tuple(CONVERT_OPTIONS),
        default_quantization="4bit",
        extra="prepare-mlx",
        typical_seconds={"4bit": 6, "fp32": 7},
        legacy_key=("runners.mlx_export:export", "6f20c8bdef9154af20cc4f19bb4e43eeb74d8c53361152beadbaf163eb59ee72"),
    )
    # mlx_lm.generate's own defaults (its DEFAULT_PREFILL_STEP_SIZE, --kv-bits None, --kv-group-size,
    # DEFAULT_QUANTIZED_KV_START); mlx_lm.benchmark uses the same through stream_generate.
    # kv_bits 0: no KV quantization.
    # Accelerator auto: MLX's own default device, the GPU where MLX has one (Metal, CUDA), else the CPU.
    defaults = {
        "prefill_step_size": 2048,
        "kv_bits": 0,
        "kv_group_size": 64,
        "quantized_kv_start": 5000,
        "accelerator": "auto",
    }
    # The KV cache quantizes through mx.quantize: its affine mode's bits and group sizes (0: none).
    choices = {"kv_bits": (0, 2, 3, 4, 5, 6, 8), "kv_group_size": (32, 64, 128)}
    runtime_figures = ("runtime_prefill_tok_s", "runtime_decode_tok_s")  # mlx-lm's prompt and generation rates

    @classmethod
    def accelerators(cls) -> dict[str, str]:
        import mlx.core as mx

        return {
            kind: f"MLX {mx.__version__} {kind} device" for kind in ("cpu", "gpu") if mx.is_available(getattr(mx, kind))
        }

    @classmethod
    def probe(cls) -> Probe:
        found = super().probe()
        if found.available and sys.platform == "linux" and not _installed("mlx-cpu", "mlx-cuda"):
            return Probe(False, found.runtime_version, "mlx has no Linux backend here: pip install 'mlx[cpu]'")
        return found

    @classmethod
    def check_artifact(cls, path: Path) -> None:
        if not path.is_dir():
            raise ArtifactError(f"{path} is not a folder; MLX takes a converted model folder (edgebench prepare)")
        if not (path / "config.json").is_file() or not any(path.glob("*.safetensors")):
            raise ArtifactError(f"{path} has no config.json and *.safetensors: not an MLX model folder")

    def load(self, artifact: Path, options: RunnerOptions) -> LoadInfo:
        blas = use_openblas(options.threads)  # before mlx is imported: it binds its BLAS then
        # Imported here, not at module level: listing runners must not load runtimes.
        import mlx.core as mx

        use_device(mx, self.settings(options)["accelerator"])  # before mlx-lm makes its stream on the default device
        import mlx_lm
        from mlx_lm import stream_generate
        from mlx_lm.generate import generation_stream
        from mlx_lm.models.cache import make_prompt_cache, trim_prompt_cache
        from mlx_lm.sample_utils import make_sampler

        config = json.loads((artifact / "config.json").read_text())
        # An artifact converted without edgebench may keep the RoPE base only where
        # mlx-lm does not look (see runners.mlx_export): hand it over explicitly.
        theta = source_rope_theta(config)
        model_config = {"rope_theta": theta} if theta is not None and "rope_theta" not in config else {}
        try:
            self.model, self.tokenizer = mlx_lm.load(str(artifact), model_config=model_config)
        except (ValueError, FileNotFoundError, KeyError) as exc:
            raise ArtifactError(f"mlx-lm could not load {artifact}: {exc}") from None
        self.mx, self.stream_generate, self.make_prompt_cache = mx, stream_generate, make_prompt_cache
        # cache: the prompt cache a conversation keeps between its turns, or `fill` left history in
        self.trim_prompt_cache, self.cache = trim_prompt_cache, None
        self.generation_stream = generation_stream
        self.sampler = make_sampler(temp=0.0)
        self.context_tokens = options.context_tokens
        self.generate_settings = generate_settings(self.settings(options))
        return self._load_info(artifact, options, config, blas, rope_given=bool(model_config))

    def _load_info(
        self, artifact: Path, options: RunnerOptions, config: dict, blas: dict, rope_given: bool
    ) -> LoadInfo:
        """What the loaded model runs with, as MLX and mlx-lm report it."""
        import mlx_lm
        from mlx.utils import tree_flatten

        mx, stream = self.mx, self.generation_stream
        quant = config.get("quantization")
        dtype = str(tree_flatten(self.model.parameters())[0][1].dtype).removeprefix("mlx.core.")
        quantization = f"{quant['bits']}bit-g{quant['group_size']}" if quant else DTYPE_NAMES.get(dtype, dtype)
        settings = {
            "mlx_version": mx.__version__,
            "device": mx.default_device().type.name,
            **self.settings(options),
            "kv_cache": KV_CACHE_NOTE,
            "eos_token_ids": sorted(self.tokenizer.eos_token_ids),
            "rope_theta": source_rope_theta(config),
            "rope_theta_given_at_load": rope_given,
            **blas,
            "accelerator": stream.device.type.name,
        }
        if sys.platform == "linux":
            settings["cblas_sgemm_from"] = global_sgemm_library() or "the bundled BLAS"
        return LoadInfo(
            mlx_lm.__version__,
            settings["device"],
            quantization,
            settings,
            threads=None,
            context_tokens=options.context_tokens,
            not_applied={"threads": threads_note(blas)},
            weights_bytes=weights_bytes(artifact, config),
            **self._kv_per_token(),
            **placement(mx, stream),
        )

    def _kv_per_token(self) -> dict:
        """KV-cache bytes per context token, read from the cache mlx-lm builds for this model
        after one real forward pass (its arrays' own dtype and layout), and the share of its
        sliding-window layers (mlx-lm's RotatingKVCache, which keeps max_size tokens)."""
        cache = self.make_prompt_cache(self.model)
        self.model(self.mx.array([[self.tokenizer.bos_token_id or 0]]), cache=cache)
        self.mx.eval([c.state for c in cache])
        rotating = [c for c in cache if getattr(c, "max_size", None)]
        window = [rotating[0].max_size, sum(cache_nbytes(c) for c in rotating) // cache[0].offset] if rotating else None
        return {"kv_bytes_per_token": sum(cache_nbytes(c) for c in cache) // cache[0].offset, "kv_window": window}

    def tokenize(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False)

    def _text_ids(self, text: str) -> list[int]:
        return self.tokenizer.encode(text)

    def _chat_ids(self, messages: list[dict[str, str]]) -> list[int] | None:
        if not self.tokenizer.has_chat_template:
            return None
        return list(self.tokenizer.apply_chat_template(messages, add_generation_prompt=True))

    def fill(self, token_ids: Sequence[int], room: int) -> int:
        """History in a prompt cache of mlx-lm's own (make_prompt_cache), fed through the model
        in chunks of prefill_step_size as its generate_step prefills; the next request's
        stream_generate continues on that cache."""
        check_room(len(token_ids), room, self.context_tokens, "the run's context_tokens")
        mx, step = self.mx, self.generate_settings["prefill_step_size"]
        self.cache = self.make_prompt_cache(self.model)
        with mx.stream(self.generation_stream):
            for start in range(0, len(token_ids), step):
                self.model(mx.array(list(token_ids[start : start + step]))[None], cache=self.cache)
                mx.eval([c.state for c in self.cache])
        return self.cache[0].offset

    def generate(self, request: GenerationRequest) -> Iterator[TokenEvent]:
        prompt = self._fitting_prompt_ids(request, self.context_tokens)
        cache, kept = self._prompt_cache(request, prompt)
        before = cache[0].offset if cache else 0  # what mlx-lm's own cache holds before this request
        tokenizer = self.tokenizer
        end_of_turn = tokenizer.eos_token_ids
        if request.ignore_eos:
            tokenizer.eos_token_ids = set()
        self.mx.reset_peak_memory()
        stop, last, ids = "length", None, []
        try:
            for last in self.stream_generate(
                self.model,
                tokenizer,
                prompt[kept:],
                max_tokens=request.max_new_tokens,
                sampler=self.sampler,
                prompt_cache=cache,
                **self.generate_settings,
            ):
                if last.finish_reason == "stop":
                    # The end-of-turn token: not yielded. Text the detokenizer still held
                    # back (at most a lone space or an unfinished UTF-8 byte) ends with it.
                    stop = "eos"
                    break
                ids.append(last.token)
                yield TokenEvent(last.token, last.text)
        finally:
            tokenizer.eos_token_ids = end_of_turn
        turn = {}
        if cache:
            # The cache holds the prompt and every token generated (mlx-lm steps each one it
            # hands out): what it grew by, less those, is what mlx-lm prefilled.
            self.held = (prompt + ids)[: cache[0].offset]
            fed = last.generation_tokens if last else 0
            turn = {"prefilled_tokens": cache[0].offset - before - fed, "prefill_counted_by": "runtime"}
        self._finished(
            GenerationInfo(
                len(prompt),
                stop,
                native_figures(last) if last else {},
                runtime_new_tokens=runtime_new_tokens(last, stop),
                kept_tokens=kept,
                **turn,
                # mlx-lm's own count: generate_step runs the last token made through the model too
                runtime_context=cache[0].offset if cache else None,
            )
        )

    def _prompt_cache(self, request: GenerationRequest, prompt: list[int]) -> tuple[list | None, int]:
        """The prompt cache (mlx-lm's) the request goes on and the prompt tokens it keeps: the
        one `fill` left history in (handed over once); a conversation's, kept between its turns
        and trimmed to where it and the prompt part; else (None, 0): stream_generate makes a
        fresh cache, as mlx_lm.generate does."""
        if request.history is not None:
            if self.cache is None:
                raise ValueError("a request with history needs a fill first")
            cache, self.cache = self.cache, None
            return cache, 0
        if not request.turn:
            self.cache = None
            return None, 0
        if not request.continues or self.cache is None:
            self.cache, self.held = self.make_prompt_cache(self.model), []
            return self.cache, 0
        kept = min(shared_prefix(self.held, prompt), len(prompt) - 1)
        self.trim_prompt_cache(self.cache, self.cache[0].offset - kept)
        return self.cache, kept

    def score(self, token_ids: Sequence[int]) -> "numpy.ndarray":
        """Teacher-forced logits as mlx_lm.perplexity gets them: one forward pass of the model
        over the whole sequence with no KV cache (a causal mask), cast to float32. No cache is
        made, so nothing is left for a later generation."""
        import numpy as np

        logits = self.model(self.mx.array([list(token_ids)]))[0].astype(self.mx.float32)
        return np.array(logits)

    def generation_info(self) -> GenerationInfo:
        # Outside the harness clock: wait for the step mlx-lm dispatched ahead of the last
        # token, so it cannot run into the next prompt's TTFT.
        self.mx.synchronize(self.generation_stream)
        return super().generation_info()

    def close(self) -> None:
        del self.model
        self.mx.clear_cache()


KV_CACHE_NOTE = (
    "mlx-lm's KVCache: no capacity allocated up front, it grows in steps of 256 tokens; "
    "context_tokens is the limit edgebench enforces (prompt + new tokens)"
)


def generate_settings(settings: dict) -> dict:
    """The runner's settings as stream_generate's keyword arguments (kv_bits 0: None, no KV
    quantization, as mlx_lm.generate without --kv-bits)."""
    kwargs = {key: value for key, value in settings.items() if key != "accelerator"}  # applied at load, not per call
    return {**kwargs, "kv_bits": settings["kv_bits"] or None}


def use_device(mx, accelerator: str) -> None:
    """Make the asked device MLX's default; auto leaves MLX's own choice."""
    if accelerator == "auto":
        return
    if accelerator not in ("cpu", "gpu"):
        raise ValueError(f"--accelerator mlx={accelerator}: MLX runs on cpu or gpu")
    if not mx.is_available(device := getattr(mx, accelerator)):
        raise ValueError(
            f"MLX {mx.__version__} has no {accelerator} backend here (pip install 'mlx[cuda]' on Linux, "
            "Metal on Apple silicon)"
        )
    mx.set_default_device(device)


def placement(mx, stream) -> dict:
    """Where MLX runs the model: the device of the stream mlx-lm generates on, read back, and on
    a GPU the peak memory MLX's allocator reports (unified memory on Apple silicon)."""
    used = stream.device.type.name
    return {
        "accelerator": used,
        "placement": {"generation_stream": str(stream), "default_device": str(mx.default_device())},
        "accelerator_memory_mb": round(mx.get_peak_memory() / 2**20, 1) if used == "gpu" else None,
    }


def threads_note(blas: dict) -> str:
    """Why LoadInfo.threads is None, and what --threads does instead."""
    if blas.get("blas") == "OpenBLAS":
        return (
            f"MLX has no thread-count setting; --threads set OpenBLAS's threads ({blas['blas_threads']}), "
            "which serve unquantized (fp32) matrix products only"
        )
    return f"MLX has no thread-count setting: --threads changes nothing here (BLAS: {blas['blas']})"


def native_figures(last) -> dict:
    """mlx-lm's own figures from its last GenerationResponse, raw and in the common keys."""
    return {
        "prompt_tokens": last.prompt_tokens,
        "prompt_tps": last.prompt_tps,
        "generation_tokens": last.generation_tokens,
        "generation_tps": last.generation_tps,
        "peak_memory_gb": last.peak_memory,
        "runtime_prefill_tok_s": last.prompt_tps,
        "runtime_decode_tok_s": last.generation_tps,
    }


def runtime_new_tokens(last, stop: str) -> int:
    """mlx-lm's count of generated tokens, less the end-of-turn token it counts and the
    runner does not yield."""
    if last is None:
        return 0
    return last.generation_tokens - (1 if stop == "eos" else 0)


def cache_nbytes(cache) -> int:
    """Bytes the cache holds for the tokens it has seen (mlx-lm allocates ahead in steps)."""
    keys, values = cache.state[:2]
    return (keys.nbytes // keys.shape[-2] + values.nbytes // values.shape[-2]) * cache.offset


def safetensors_tensors(path: Path) -> list[tuple[str, list[int], int]]:
    """(name, shape, bytes as stored) of every tensor in a safetensors file, from its header."""
    with path.open("rb") as f:
        header = json.loads(f.read(struct.unpack("<Q", f.read(8))[0]))
    return [
        (name, t["shape"], t["data_offsets"][1] - t["data_offsets"][0])
        for name, t in header.items()
        if name != "__metadata__"
    ]


def weights_bytes(artifact: Path, config: dict) -> int:
    """Bytes a decoded token streams, from the files mlx-lm loads (model*.safetensors). A
    quantized tensor is its weight, scales and biases; the embedding counts as one row unless
    the head is tied to it (no lm_head in the file; mlx-lm drops one when the config ties)."""
    stored = [t for f in sorted(artifact.glob("model*.safetensors")) for t in safetensors_tensors(f)]
    tied = config.get("tie_word_embeddings", True)  # mlx-lm's (and transformers') default
    if tied:
        stored = [t for t in stored if not t[0].startswith("lm_head.")]
    embedding = next(name.removesuffix(".weight") for name, _, _ in stored if name.endswith("embed_tokens.weight"))
    rows = next(shape[0] for name, shape, _ in stored if name == f"{embedding}.weight")
    parts = [name for name, _, _ in stored if name.startswith(f"{embedding}.")]  # weight, and scales/biases
    return streamed_bytes([Tensor(name, nbytes) for name, _, nbytes in stored], parts, rows, tied)


def _installed(*distributions: str) -> bool:
    for name in distributions:
        try:
            importlib.metadata.version(name)
            return True
        except importlib.metadata.PackageNotFoundError:
            continue
    return False
