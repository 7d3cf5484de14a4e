"""llama.cpp through llama-cpp-python: GGUF models on the CPU.

The decode loop is llama.cpp's own (batched prompt eval, then one eval per token) with a
native sampler chain: greedy, plus a -inf logit bias on every end-of-generation token in
fixed-length mode, as llama.cpp's ignore_eos does. The chat template is the one stored
in the GGUF. The perf-context counters are reset before each generation and kept as the
runtime's own figures.
"""
from __future__ import annotations

import codecs
from pathlib import Path
from typing import Iterator

from runners.base import (ArtifactError, GenerationInfo, GenerationRequest, LoadInfo, Runner, RunnerOptions,
                          TokenEvent)

GGUF_MAGIC = b"GGUF"
# GGUF general.file_type values (llama_ftype) of the common quantizations.
FILE_TYPES = {0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1", 10: "Q2_K",
              11: "Q3_K_S", 12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M", 16: "Q5_K_S",
              17: "Q5_K_M", 18: "Q6_K", 32: "BF16"}


class LlamaCppRunner(Runner):
    name = "llama.cpp"
    artifact_kind = "gguf"
    package = "llama_cpp"
    distribution = "llama-cpp-python"
    extra = "llamacpp"

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
        from llama_cpp import Llama
        from llama_cpp._internals import LlamaSampler
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        try:
            self.llm = Llama(model_path=str(artifact), n_ctx=options.context_tokens, n_batch=512,
                             n_threads=options.threads, n_threads_batch=options.threads,
                             seed=options.seed, verbose=False)
        except ValueError as exc:  # llama-cpp-python's word for "could not load the model"
            raise ArtifactError(f"llama.cpp could not load {artifact}: {exc}") from None
        model = self.llm._model
        self.context_tokens = options.context_tokens
        self.lib, self.new_sampler = llama_cpp, LlamaSampler
        self.ctx = self.llm._ctx.ctx
        self.n_vocab = model.n_vocab()
        self.eog_ids = frozenset(t for t in range(self.n_vocab) if llama_cpp.llama_vocab_is_eog(model.vocab, t))
        meta = self.llm.metadata
        self.formatter = None
        if "tokenizer.chat_template" in meta:
            self.formatter = Jinja2ChatFormatter(
                meta["tokenizer.chat_template"], eos_token=model.token_get_text(model.token_eos()),
                bos_token=model.token_get_text(model.token_bos()))
        self._info = GenerationInfo(0, "length")
        file_type = meta.get("general.file_type")
        settings = {"n_threads": options.threads, "n_threads_batch": options.threads,
                    "n_ctx": options.context_tokens, "n_batch": 512,
                    "system_info": llama_cpp.llama_print_system_info().decode(errors="replace").strip()}
        return LoadInfo(llama_cpp.__version__, "cpu", FILE_TYPES.get(int(file_type)) if file_type else None, settings)

    def tokenize(self, text: str) -> list[int]:
        return self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=False)

    def _prompt_ids(self, request: GenerationRequest) -> list[int]:
        if request.token_ids is not None:
            return list(request.token_ids)
        if request.text is not None:
            return self.llm.tokenize(request.text.encode("utf-8"), add_bos=True, special=False)
        if self.formatter is None:
            raise ArtifactError("this GGUF has no chat template; use completion or fixed prompts")
        prompt = self.formatter(messages=list(request.messages)).prompt
        return self.llm.tokenize(prompt.encode("utf-8"), add_bos=True, special=True)

    def generate(self, request: GenerationRequest) -> Iterator[TokenEvent]:
        llm = self.llm
        prompt = self._prompt_ids(request)
        # llama.cpp may round its context up; the Python side holds exactly what was asked.
        context = min(llm.n_ctx(), self.context_tokens)
        if len(prompt) + request.max_new_tokens > context:
            raise ValueError(f"prompt of {len(prompt)} tokens + {request.max_new_tokens} new exceeds the "
                             f"context of {context}")
        sampler = self.new_sampler()
        if request.ignore_eos:
            sampler.add_logit_bias(self.n_vocab, {t: float("-inf") for t in self.eog_ids})
        sampler.add_greedy()
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        llm.reset()  # forget the previous prompt: a cached prefix would fake the TTFT
        self.lib.llama_perf_context_reset(self.ctx)
        stop = "length"
        try:
            llm.eval(prompt)
            for produced in range(request.max_new_tokens):
                token = sampler.sample(llm._ctx, -1)
                if not request.ignore_eos and token in self.eog_ids:
                    stop = "eos"
                    break
                yield TokenEvent(token, decoder.decode(llm.detokenize([token])))
                if produced + 1 < request.max_new_tokens:
                    llm.eval([token])
        finally:
            sampler.close()
        perf = self.lib.llama_perf_context(self.ctx)
        self._info = GenerationInfo(len(prompt), stop, {
            "t_p_eval_ms": perf.t_p_eval_ms, "n_p_eval": perf.n_p_eval,
            "t_eval_ms": perf.t_eval_ms, "n_eval": perf.n_eval,
            "prompt_eval_tok_s": 1000 * perf.n_p_eval / perf.t_p_eval_ms if perf.t_p_eval_ms else None,
            "eval_tok_s": 1000 * perf.n_eval / perf.t_eval_ms if perf.t_eval_ms else None,
        })

    def generation_info(self) -> GenerationInfo:
        return self._info

    def close(self) -> None:
        self.llm.close()
