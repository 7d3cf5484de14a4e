"""MLX through mlx-lm: a converted model folder on Apple silicon (GPU) or the Linux CPU.

Generation is mlx-lm's own `stream_generate` with a greedy sampler and a fresh KV cache
per request; each GenerationResponse carries one token, so each becomes one TokenEvent.
Chat prompts use the tokenizer's chat template and stop at its end-of-turn ids;
fixed-length requests empty those ids for the duration, so exactly N tokens come out.
mlx-lm's own figures (prompt_tps, generation_tps, peak memory) are kept as native stats.
On Linux, OpenBLAS is preloaded before mlx is imported when it is installed
(runners.mlx_blas); the record says which BLAS served the run.
"""
from __future__ import annotations

import importlib.metadata
import json
import sys
from pathlib import Path
from typing import Iterator

from runners.base import (ArtifactError, Exporter, GenerationInfo, GenerationRequest, LoadInfo, Probe, Runner,
                          RunnerOptions, TokenEvent)
from runners.mlx_blas import global_sgemm_library, use_openblas

DTYPE_NAMES = {"float32": "fp32", "float16": "fp16", "bfloat16": "bf16"}


def source_rope_theta(config: dict) -> float | None:
    """The RoPE base a transformers config.json gives: top-level `rope_theta`
    (transformers 4) or `rope_parameters.rope_theta` (transformers 5)."""
    theta = config.get("rope_theta", (config.get("rope_parameters") or {}).get("rope_theta"))
    return None if theta is None else float(theta)


class MlxRunner(Runner):
    name = "mlx"
    artifact_kind = "mlx folder"
    package = "mlx_lm"
    distribution = "mlx-lm"
    extra = "mlx"
    exporter = Exporter(tool="mlx_lm.convert", distribution="mlx-lm", target="runners.mlx_export:export",
                        quantizations=("fp32", "4bit"), default_quantization="4bit", extra="prepare-mlx")

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
        import mlx_lm
        from mlx.utils import tree_flatten
        from mlx_lm import stream_generate
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
        self.mx, self.stream_generate = mx, stream_generate
        self.sampler = make_sampler(temp=0.0)
        self.context_tokens = options.context_tokens
        self._info = GenerationInfo(0, "length")
        quant = config.get("quantization")
        dtype = str(tree_flatten(self.model.parameters())[0][1].dtype).removeprefix("mlx.core.")
        quantization = f"{quant['bits']}bit-g{quant['group_size']}" if quant else DTYPE_NAMES.get(dtype, dtype)
        settings = {"mlx_version": mx.__version__, "device": mx.default_device().type.name,
                    "threads": "MLX has no thread-count setting; --threads sets the BLAS threads only",
                    "eos_token_ids": sorted(self.tokenizer.eos_token_ids), "rope_theta": theta,
                    "rope_theta_given_at_load": bool(model_config), **blas}
        if sys.platform == "linux":
            settings["cblas_sgemm_from"] = global_sgemm_library() or "the bundled BLAS"
        return LoadInfo(mlx_lm.__version__, settings["device"], quantization, settings)

    def tokenize(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False)

    def _prompt_ids(self, request: GenerationRequest) -> list[int]:
        if request.token_ids is not None:
            return list(request.token_ids)
        if request.text is not None:
            return self.tokenizer.encode(request.text)
        if not self.tokenizer.has_chat_template:
            raise ArtifactError("this model has no chat template; use completion or fixed prompts")
        return list(self.tokenizer.apply_chat_template(list(request.messages), add_generation_prompt=True))

    def generate(self, request: GenerationRequest) -> Iterator[TokenEvent]:
        prompt = self._prompt_ids(request)
        if len(prompt) + request.max_new_tokens > self.context_tokens:
            raise ValueError(f"prompt of {len(prompt)} tokens + {request.max_new_tokens} new exceeds the "
                             f"context of {self.context_tokens}")
        tokenizer = self.tokenizer
        end_of_turn = tokenizer.eos_token_ids
        if request.ignore_eos:
            tokenizer.eos_token_ids = set()
        self.mx.reset_peak_memory()
        stop, last = "length", None
        try:
            for last in self.stream_generate(self.model, tokenizer, prompt, max_tokens=request.max_new_tokens,
                                             sampler=self.sampler):
                if last.finish_reason == "stop":
                    # The end-of-turn token: not yielded. Text the detokenizer still held
                    # back (at most a lone space or an unfinished UTF-8 byte) ends with it.
                    stop = "eos"
                    break
                yield TokenEvent(last.token, last.text)
        finally:
            tokenizer.eos_token_ids = end_of_turn
        self._info = GenerationInfo(len(prompt), stop, {
            "prompt_tokens": last.prompt_tokens, "prompt_tps": last.prompt_tps,
            "generation_tokens": last.generation_tokens, "generation_tps": last.generation_tps,
            "peak_memory_gb": last.peak_memory,
        } if last else {})

    def generation_info(self) -> GenerationInfo:
        return self._info

    def close(self) -> None:
        del self.model
        self.mx.clear_cache()


def _installed(*distributions: str) -> bool:
    for name in distributions:
        try:
            importlib.metadata.version(name)
            return True
        except importlib.metadata.PackageNotFoundError:
            continue
    return False
