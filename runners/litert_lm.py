"""LiteRT-LM through its Python API (litert-lm-api): the .litertlm bundle on CPU.

Every request is a fresh Conversation (no cache from an earlier prompt), greedy (top_k=1).
Chat requests use the bundle's own chat template; raw text and fixed prompts go through a
pass-through template, so LiteRT-LM adds only its start token, as it does to every
sequence. A fixed prompt is handed over as the text of its tokens after the first: the
start token takes the first one's place, so the prompt keeps its length. Fixed-length mode
suppresses the end tokens and caps the output at exactly max_new_tokens.

LiteRT-LM streams text, one chunk per decode step, not token ids: a chunk's id is recovered
by tokenizing it (-1 when the chunk is not exactly one token). Its own benchmark figures
(init, TTFT, prefill and decode rates and counts) are kept as the runtime's own.
"""
from __future__ import annotations

import importlib.metadata
from pathlib import Path
from typing import Iterator

from runners import litert_artifact as layout
from runners.base import GenerationInfo, GenerationRequest, LoadInfo, Runner, RunnerOptions, TokenEvent

# The whole message, as sent: no turn markers (LiteRT-LM renders bos_token as "").
PASS_THROUGH_TEMPLATE = ("{{ bos_token }}{% for message in messages %}{{ message['content'] if message['content'] "
                         "is string else message['content'] | map(attribute='text') | join }}{% endfor %}")


class LiteRTLMRunner(layout.SharedArtifact, Runner):
    name = "litert-lm"
    package = "litert_lm"
    distribution = "litert-lm-api"
    extra = "litert-lm"
    model_file = layout.BUNDLE

    def load(self, artifact: Path, options: RunnerOptions) -> LoadInfo:
        import litert_lm

        self.lm = litert_lm
        self.greedy = litert_lm.SamplerConfig(top_k=1)
        self.meta = layout.read_metadata(artifact)
        # fp32 activations: LiteRT-LM's default for a text decoder is fp16 where supported.
        self.engine = litert_lm.Engine(str(artifact / layout.BUNDLE),
                                       backend=litert_lm.Backend.CPU(thread_count=options.threads),
                                       max_num_tokens=self.meta.cache_length, cache_dir=str(layout.weight_cache_dir()),
                                       activation_data_type=litert_lm.ActivationDataType.FLOAT32,
                                       enable_benchmark=True)
        self._info = GenerationInfo(0, "length")
        settings = {"thread_count": options.threads, "max_num_tokens": self.meta.cache_length,
                    "activation_data_type": "FLOAT32", "sampler": "top_k=1", "xnnpack_weight_cache": True}
        return LoadInfo(importlib.metadata.version(self.distribution), "cpu", self.meta.quantization, settings)

    def tokenize(self, text: str) -> list[int]:
        return self.engine.tokenize(text)

    def _conversation(self, request: GenerationRequest) -> tuple[object, dict]:
        """A new conversation holding everything but the message to send, and that message."""
        if request.messages is not None:
            *history, last = request.messages
            return self.engine.create_conversation(messages=history, sampler_config=self.greedy), last
        if request.text is not None:
            text = request.text
        else:
            text = self.engine.detokenize(list(request.token_ids)[len(self.meta.start_token_ids):])
        conversation = self.engine.create_conversation(sampler_config=self.greedy, chat_template=PASS_THROUGH_TEMPLATE)
        return conversation, {"role": "user", "content": text}

    def generate(self, request: GenerationRequest) -> Iterator[TokenEvent]:
        conversation, message = self._conversation(request)
        suppress = self.lm.SuppressTokensConfig(self.meta.end_token_ids) if request.ignore_eos else None
        produced = 0
        try:
            for chunk in conversation.send_message_async(message, max_output_tokens=request.max_new_tokens,
                                                         suppress_tokens_config=suppress):
                text = str(chunk.contents)
                ids = self.engine.tokenize(text)
                produced += 1
                yield TokenEvent(ids[0] if len(ids) == 1 else -1, text)
            bench = conversation.get_benchmark_info()
        finally:
            conversation.close()
        native = {"init_s": bench.init_time_in_second, "ttft_s": bench.time_to_first_token_in_second,
                  "prefill_tokens": bench.last_prefill_token_count,
                  "prefill_tok_s": bench.last_prefill_tokens_per_second,
                  "decode_tokens": bench.last_decode_token_count, "decode_tok_s": bench.last_decode_tokens_per_second}
        stop = "length" if produced >= request.max_new_tokens else "eos"
        self._info = GenerationInfo(bench.last_prefill_token_count, stop, native)

    def generation_info(self) -> GenerationInfo:
        return self._info

    def close(self) -> None:
        self.engine.close()
