"""ONNX Runtime through onnxruntime-genai: the model builder's int4/fp32 builds on the CPU.

The artifact is the builder's folder (genai_config.json beside model.onnx). The thread
count goes into the decoder's session options through a config overlay. Greedy search;
the prompt is handed over with `append_tokens`, which runs the prefill, so it happens
inside the harness clock. Fixed-length mode sets min_length = max_length = prompt + N,
which keeps end-of-sequence out until N tokens are made. onnxruntime-genai measures
nothing itself; its own sequence length is kept as a cross-check.
"""
from __future__ import annotations

import importlib.metadata
import json
from pathlib import Path
from typing import Iterator

from runners.base import (ArtifactError, Exporter, GenerationInfo, GenerationRequest, LoadInfo, Runner,
                          RunnerOptions, TokenEvent)

CONFIG = "genai_config.json"
MANIFEST = "manifest.json"  # written by `edgebench prepare` beside the artifact's files


class OnnxRuntimeRunner(Runner):
    name = "onnxruntime"
    artifact_kind = "onnxruntime-genai folder"
    package = "onnxruntime_genai"
    distribution = "onnxruntime-genai"
    extra = "onnxruntime"
    exporter = Exporter(tool="onnxruntime-genai model builder", distribution="onnxruntime-genai",
                        target="runners.onnxruntime_export:export", quantizations=("int4", "fp32"),
                        default_quantization="int4", extra="prepare-onnx")

    @classmethod
    def check_artifact(cls, path: Path) -> None:
        if not (path / CONFIG).is_file():
            raise ArtifactError(f"{path} is not an onnxruntime-genai model folder (no {CONFIG})")

    def load(self, artifact: Path, options: RunnerOptions) -> LoadInfo:
        import onnxruntime_genai as og

        self.check_artifact(artifact)
        session_options = {"intra_op_num_threads": options.threads}
        try:
            config = og.Config(str(artifact))
            config.overlay(json.dumps({"model": {"decoder": {"session_options": session_options}}}))
            self.model = og.Model(config)
        except Exception as exc:  # onnxruntime-genai raises plain RuntimeErrors
            raise ArtifactError(f"onnxruntime-genai could not load {artifact}: {exc}") from None
        self.og = og
        self.tokenizer = og.Tokenizer(self.model)
        self.eos_ids = frozenset(int(t) for t in self.tokenizer.eos_token_ids)
        self.context_tokens = options.context_tokens
        self._info = GenerationInfo(0, "length")
        genai = json.loads((artifact / CONFIG).read_text())
        decoder = genai["model"]["decoder"]
        settings = {
            "execution_provider": self.model.device_type.lower(),
            "session_options": {**decoder.get("session_options", {}), **session_options},
            "model_type": self.model.type,
            "model_context_length": genai["model"].get("context_length"),
            "past_present_share_buffer": genai.get("search", {}).get("past_present_share_buffer"),
            "onnxruntime_version": _version("onnxruntime"),
        }
        return LoadInfo(_version(self.distribution), self.model.device_type.lower(), _quantization(artifact), settings)

    def tokenize(self, text: str) -> list[int]:
        return [int(t) for t in self.tokenizer.encode(text)]

    def _prompt_ids(self, request: GenerationRequest) -> list[int]:
        if request.token_ids is not None:
            return list(request.token_ids)
        if request.text is not None:
            return self.tokenize(request.text)
        prompt = self.tokenizer.apply_chat_template(json.dumps(list(request.messages)), add_generation_prompt=True)
        return self.tokenize(prompt)

    def generate(self, request: GenerationRequest) -> Iterator[TokenEvent]:
        og = self.og
        prompt = self._prompt_ids(request)
        total = len(prompt) + request.max_new_tokens
        if total > self.context_tokens:
            raise ValueError(f"prompt of {len(prompt)} tokens + {request.max_new_tokens} new exceeds the "
                             f"context of {self.context_tokens}")
        params = og.GeneratorParams(self.model)
        params.set_search_options(do_sample=False, max_length=total,
                                  min_length=total if request.ignore_eos else 0)
        generator = og.Generator(self.model, params)  # a fresh one: no cache from an earlier prompt
        stream = self.tokenizer.create_stream()
        stop = "length"
        generator.append_tokens(prompt)  # runs the prefill
        produced = 0
        while produced < request.max_new_tokens and not generator.is_done():
            generator.generate_next_token()
            token = int(generator.get_next_tokens()[0])
            if not request.ignore_eos and token in self.eos_ids:
                stop = "eos"
                break
            produced += 1
            yield TokenEvent(token, stream.decode(token))
        self._info = GenerationInfo(len(prompt), stop, {"sequence_length": generator.token_count()})

    def generation_info(self) -> GenerationInfo:
        return self._info

    def close(self) -> None:
        del self.tokenizer, self.model


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _quantization(artifact: Path) -> str | None:
    """The quantization `prepare` recorded; None for a folder built some other way."""
    try:
        return json.loads((artifact / MANIFEST).read_text()).get("quantization")
    except (OSError, ValueError):
        return None
