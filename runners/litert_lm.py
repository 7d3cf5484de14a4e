"""LiteRT-LM through its Python API (litert-lm-api): the .litertlm bundle on CPU.

Every request is a fresh Conversation (no cache from an earlier prompt), greedy (top_k=1);
its creation is per-request set-up, marked with SETUP_DONE. A conversation's later turns send
their new message to the Conversation its first turn made, which keeps its own session. Chat requests use the bundle's
own chat template; raw text and fixed prompts go through a pass-through template, so
LiteRT-LM adds only its start token, as it does to every sequence. A fixed prompt is handed
over as the text of its tokens after the first: the start token takes the first one's
place, so the prompt keeps its length when the text tokenizes back to the same ids (the
harness turns a generation whose prefill count differs into an error). Fixed-length mode
suppresses the end tokens and caps the output at exactly max_new_tokens.

LiteRT-LM streams text through a callback queue, one chunk per decode step, not token ids:
a chunk's id is recovered by tokenizing it (-1 when the chunk is not exactly one token). The
token counts are the runtime's own (its benchmark info), and a generation whose chunks are
not one decode step each says so (`chunked`). The engine runs with LiteRT-LM's own defaults
(`defaults`; its CLI and benchmark leave the activation type unset, which the runtime logs
as "default activation type for Text decoder is fp16").
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Iterator, Sequence

from runners import litert_artifact as layout
from runners.base import (
    SETUP_DONE,
    GenerationInfo,
    GenerationRequest,
    LoadInfo,
    Runner,
    RunnerOptions,
    SetupDone,
    TokenEvent,
    check_room,
)
from runners.litert import compile_failure, webgpu_api

# The whole message, as sent: no turn markers (LiteRT-LM renders bos_token as "").
PASS_THROUGH_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}{{ message['content'] if message['content'] "
    "is string else message['content'] | map(attribute='text') | join }}{% endfor %}"
)
ACTIVATION_TYPES = ("FLOAT32", "FLOAT16", "INT16", "INT8")


class LiteRTLMRunner(layout.SharedArtifact, Runner):
    name = "litert-lm"
    package = "litert_lm"
    distribution = "litert-lm-api"
    extra = "litert-lm"
    model_file = layout.BUNDLE
    # What `litert-lm benchmark` uses on CPU when no flag is given: the activation type the
    # engine picks for a text decoder when none is set.
    # Accelerator auto: its CLI's default backend, the CPU.
    defaults = {"activation_data_type": "FLOAT16", "accelerator": "auto"}
    choices = {"activation_data_type": ACTIVATION_TYPES}
    runtime_figures = ("runtime_prefill_tok_s", "runtime_decode_tok_s", "runtime_ttft_ms")

    @classmethod
    def accelerators(cls) -> dict[str, str]:
        import litert_lm

        seen = {"cpu": "Backend.CPU (XNNPACK)"}
        if api := webgpu_api():
            seen["gpu"] = f"Backend.GPU (its WebGPU accelerator over {api})"
        try:
            litert_lm.Backend.NPU()  # refuses platforms without an NPU dispatch path
            seen["npu"] = "Backend.NPU"
        except RuntimeError:
            pass
        return seen

    def load(self, artifact: Path, options: RunnerOptions) -> LoadInfo:
        import litert_lm

        activation = self.settings(options)["activation_data_type"]
        self.lm = litert_lm
        self.greedy = litert_lm.SamplerConfig(top_k=1)
        # the Conversation a conversation's turn or a depth fill left state in, and its tokens
        self.kept_conversation, self.kept_tokens = None, 0
        self.meta = layout.read_metadata(artifact)
        graph = layout.read_decode_graph(artifact / layout.BUNDLE)
        asked = self.settings(options)["accelerator"]
        accelerator = "cpu" if asked == "auto" else asked
        backend = self._create_engine(artifact, options, graph.cache_length, activation, accelerator)
        # LiteRT-LM reads no setting back: these are what the engine was given.
        settings = {
            "activation_data_type": activation,
            "max_num_tokens": graph.cache_length,
            "sampler": "top_k=1",
            "xnnpack_weight_cache": True,
        }
        # LiteRT-LM reports no placement: the backend its engine was built on (it fails rather
        # than fall back, as its GPU backend does here without a GPU)
        placement = {"engine_backend": backend.get_name()}
        self.cache_length = graph.cache_length
        return self._shared_load_info(
            options, graph, settings, "Backend.CPU thread_count", accelerator=accelerator, placement=placement
        )

    def _create_engine(
        self, artifact: Path, options: RunnerOptions, max_tokens: int, activation: str, accelerator: str
    ):
        """The Engine on the backend of `accelerator` (on the CPU, with the run's threads); the backend."""
        litert_lm = self.lm
        try:
            backend = (
                litert_lm.Backend.CPU(thread_count=options.threads)
                if accelerator == "cpu"
                else getattr(litert_lm.Backend, accelerator.upper())()
            )
            self.engine = litert_lm.Engine(
                str(artifact / layout.BUNDLE),
                backend=backend,
                max_num_tokens=max_tokens,
                cache_dir=str(layout.weight_cache_dir()),
                activation_data_type=litert_lm.ActivationDataType[activation],
                enable_benchmark=True,
            )
        except RuntimeError as exc:
            if accelerator == "cpu":
                raise
            raise RuntimeError(
                compile_failure(exc, accelerator, self.accelerators(), "LiteRT-LM could not create its engine")
            ) from None
        return backend

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
            text = self.engine.detokenize(list(request.token_ids)[len(self.meta.start_token_ids) :])
        conversation = self.engine.create_conversation(sampler_config=self.greedy, chat_template=PASS_THROUGH_TEMPLATE)
        return conversation, {"role": "user", "content": text}

    def fill(self, token_ids: Sequence[int], room: int) -> int:
        """History in one Conversation, as a chat app keeps one: a first message of the
        history's ids after the start token but one, answered with a reply of one token
        (LiteRT-LM has no prefill-only turn in a Conversation), so the history is `token_ids`
        long by the Conversation's own token count. The next request's message goes to the
        same Conversation, its prefill on top of the history."""
        check_room(len(token_ids), room, self.cache_length, "fixed at export: prepare with a larger --context")
        if len(token_ids) == 1:
            raise ValueError("LiteRT-LM's history is a message and its reply: at least 2 tokens")
        self._drop_kept()
        conversation = self.engine.create_conversation(sampler_config=self.greedy, chat_template=PASS_THROUGH_TEMPLATE)
        if token_ids:
            text = self.engine.detokenize(list(token_ids)[len(self.meta.start_token_ids) : -1])
            suppress = self.lm.SuppressTokensConfig(self.meta.end_token_ids)
            conversation.send_message(
                {"role": "user", "content": text}, max_output_tokens=1, suppress_tokens_config=suppress
            )
        self.kept_conversation, self.kept_tokens = conversation, conversation.token_count
        return self.kept_tokens

    def _drop_kept(self) -> None:
        if self.kept_conversation is not None:
            self.kept_conversation.close()
        self.kept_conversation = None

    def _session(self, request: GenerationRequest) -> tuple[object, dict, int]:
        """The Conversation to send the request's message to, that message, and the tokens of a
        conversation's earlier turns its session holds (0 where nothing is kept)."""
        if request.history is not None:  # the Conversation `fill` made: its first message gets the start token
            if self.kept_conversation is None:
                raise ValueError("a request with history needs a fill first")
            ids = list(request.token_ids)[0 if request.history else len(self.meta.start_token_ids) :]
            return self.kept_conversation, {"role": "user", "content": self.engine.detokenize(ids)}, 0
        if request.continues and self.kept_conversation is not None:
            # the conversation's own session goes on: only the new message is sent
            return self.kept_conversation, request.messages[-1], self.kept_tokens
        self._drop_kept()  # a new Conversation: nothing of an earlier request
        return *self._conversation(request), 0

    def generate(self, request: GenerationRequest) -> Iterator[TokenEvent | SetupDone]:
        conversation, message, kept = self._session(request)
        self.kept_conversation = None  # until this request has ended well
        suppress = self.lm.SuppressTokensConfig(self.meta.end_token_ids) if request.ignore_eos else None
        chunk_ids: list[list[int]] = []
        try:
            if not kept and request.history is None:
                yield SETUP_DONE
            for chunk in conversation.send_message_async(
                message, max_output_tokens=request.max_new_tokens, suppress_tokens_config=suppress
            ):
                text = str(chunk.contents)
                chunk_ids.append(self.engine.tokenize(text))
                yield TokenEvent(chunk_ids[-1][0] if len(chunk_ids[-1]) == 1 else -1, text)
            bench, held = conversation.get_benchmark_info(), conversation.token_count
        except BaseException:
            conversation.close()  # a turn that failed leaves nothing to go on from
            raise
        info = self._generation_info(bench, request, chunk_ids, kept)
        if request.history:  # its time to first token is the Conversation's first turn's (the fill's), not this one's
            info.native["runtime_ttft_ms"] = None
        if request.turn:  # kept for the next turn, with the tokens its session now holds
            self.kept_conversation, self.kept_tokens = conversation, info.prompt_tokens + bench.last_decode_token_count
        else:
            conversation.close()
        self._finished(replace(info, runtime_context=held))

    @staticmethod
    def _generation_info(bench, request: GenerationRequest, chunk_ids: list[list[int]], kept: int) -> GenerationInfo:
        """The runtime's own counts and rates; chunked unless every chunk was one decode step
        holding one token. A continued conversation's prompt is what its session held before
        (`kept`, the earlier turns' own counts) and what the runtime prefilled for this turn."""
        decoded = bench.last_decode_token_count
        # Only an end of turn stops LiteRT-LM before the cap; it counts that token among the
        # decoded ones, but does not stream it.
        stopped_early = decoded < request.max_new_tokens
        new_tokens = decoded - 1 if stopped_early else decoded
        native = {
            "init_s": bench.init_time_in_second,
            "ttft_s": bench.time_to_first_token_in_second,
            "prefill_tokens": bench.last_prefill_token_count,
            "prefill_tok_s": bench.last_prefill_tokens_per_second,
            "decode_tokens": decoded,
            "decode_tok_s": bench.last_decode_tokens_per_second,
            "runtime_prefill_tok_s": bench.last_prefill_tokens_per_second,
            "runtime_decode_tok_s": bench.last_decode_tokens_per_second,
            "runtime_ttft_ms": bench.time_to_first_token_in_second * 1000,
        }
        one_token_each = len(chunk_ids) == new_tokens and all(len(ids) == 1 for ids in chunk_ids)
        return GenerationInfo(
            kept + bench.last_prefill_token_count,
            "eos" if stopped_early else "length",
            native,
            runtime_new_tokens=new_tokens,
            chunked=not one_token_each,
            kept_tokens=kept,
            prefilled_tokens=bench.last_prefill_token_count,
            prefill_counted_by="runtime",
        )

    def close(self) -> None:
        self._drop_kept()
        self.engine.close()
