"""LiteRT through ai-edge-litert: the converted .tflite driven by its own signatures on CPU,
the way an app drives LiteRT without LiteRT-LM.

The prompt is prefilled with the smallest prefill_<T> signature that fits (longer prompts
in chunks, padded to the signature's length), then `decode` runs once per token. The KV
cache buffers are bound as both input and output of every signature, so LiteRT updates
them in place: no copy of the cache per step. The prefill signatures return no logits, so
the last prompt token goes through `decode`, which yields the first token's logits.

The token sequence is the one LiteRT-LM builds from the same artifact: the bundle's start
token, then the rendered chat template (its `bos_token` rendered empty, as LiteRT-LM does)
or the raw text. Greedy: argmax of the logits in the runners' shared loop
(runners.decode_loop); fixed-length mode suppresses the end tokens.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Sequence

from runners import litert_artifact as layout
from runners.base import (
    GenerationInfo,
    GenerationRequest,
    LoadInfo,
    Runner,
    RunnerOptions,
    TokenEvent,
    check_room,
    scored_token_by_token,
)
from runners.chat_template import compile_chat_template
from runners.decode_loop import greedy_decode
from runners.kept_history import KeptHistory

if TYPE_CHECKING:  # annotations only: the runtime's arrays, imported lazily where used
    import numpy as np

MASKED = float("-inf")  # additive attention mask of a slot a row must not see


def webgpu_api() -> str | None:
    """The graphics API LiteRT's WebGPU accelerator (Dawn) opens here, if present: Metal on
    macOS, Direct3D 12 on Windows, else Vulkan when its loader library is installed."""
    if sys.platform in ("darwin", "win32"):
        return "Metal" if sys.platform == "darwin" else "Direct3D 12"
    return "Vulkan" if ctypes.util.find_library("vulkan") else None


def npu_dispatch(package: Path) -> str | None:
    """The vendor of the first NPU dispatch library ai_edge_litert ships that loads here (its
    vendor's SDK installed), as LiteRT's environment discovers them."""
    for library in sorted(package.glob("vendors/*/dispatch/libLiteRtDispatch_*.so")):
        try:
            ctypes.CDLL(str(library))
        except OSError:
            continue
        return library.parent.parent.name
    return None


def compile_failure(
    exc: Exception, accelerator: str, available: dict[str, str], what: str = "LiteRT could not compile the model"
) -> str:
    """One line for a model LiteRT could not compile for an accelerator: its own reason where
    the message holds one (not just a source location), and what it can use here."""
    last = str(exc).strip().splitlines()[-1].lstrip("└ ") if str(exc).strip() else ""
    why = "" if not last or last.startswith("ERROR: [") else f" ({last})"
    return (
        f"{what} for the {accelerator}{why}: no {accelerator} it can use here; "
        f"it can use: {', '.join(f'{kind} ({what})' for kind, what in available.items())}"
    )


def prefill_chunks(count: int, start: int, lengths: tuple[int, ...], cache: int) -> list[tuple[int, int]]:
    """(signature length, tokens in it) for prefilling `count` tokens from position `start`:
    the smallest signature that holds the rest, else the largest that fits in the cache.
    A signature's whole length is written to the cache, so it must end inside it."""
    chunks = []
    while count > 0:
        fitting = [t for t in lengths if start + t <= cache]
        if not fitting:
            raise ValueError(f"the prompt does not fit the KV cache of {cache} tokens")
        holding = [t for t in fitting if t >= count]
        length = min(holding) if holding else max(fitting)
        used = min(length, count)
        chunks.append((length, used))
        start, count = start + used, count - used
    return chunks


class LiteRTRunner(layout.SharedArtifact, Runner):
    name = "litert"
    package = "ai_edge_litert"
    distribution = "ai-edge-litert"
    extra = "litert"
    model_file = layout.TFLITE
    scoring = "step"
    # Accelerator auto: CompiledModel's own default, HardwareAccelerator.CPU (XNNPACK).
    defaults = {"accelerator": "auto"}

    @classmethod
    def accelerators(cls) -> dict[str, str]:
        import ai_edge_litert

        package = Path(ai_edge_litert.__file__).parent
        seen = {"cpu": "XNNPACK CpuAccelerator"}
        if (api := webgpu_api()) and any(package.glob("libLiteRt*GpuAccelerator.*")):
            seen["gpu"] = f"GPU WebGPU accelerator over {api}"
        if vendor := npu_dispatch(package):
            seen["npu"] = f"NpuAccelerator ({vendor} dispatch library)"
        return seen

    def load(self, artifact: Path, options: RunnerOptions) -> LoadInfo:
        from ai_edge_litert.compiled_model import CompiledModel
        from ai_edge_litert.cpu_options import CpuOptions
        from ai_edge_litert.hardware_accelerator import HardwareAccelerator
        from ai_edge_litert.options import Options
        from tokenizers import Tokenizer

        self.meta = layout.read_metadata(artifact)
        self.tokenizer = Tokenizer.from_file(str(artifact / layout.TOKENIZER))
        template_path = artifact / layout.TEMPLATE
        self.template = compile_chat_template(template_path.read_text()) if template_path.is_file() else None
        cpu = CpuOptions(
            num_threads=options.threads,
            xnnpack_weight_cache_path=str(layout.weight_cache_file(artifact / layout.TFLITE)),
        )
        asked = self.settings(options)["accelerator"]
        self.accelerator = "cpu" if asked == "auto" else asked
        hardware = HardwareAccelerator[self.accelerator.upper()]  # alone: an op it cannot run fails, never falls back
        try:
            self.model = CompiledModel.from_file(
                str(artifact / layout.TFLITE), options=Options(hardware, cpu_options=cpu)
            )
        except RuntimeError as exc:
            if self.accelerator == "cpu":
                raise
            raise RuntimeError(compile_failure(exc, self.accelerator, self.accelerators())) from None
        self._bind_buffers()
        self.kept = KeptHistory()  # what the cache holds of a conversation's last turn
        return self._load_info(artifact, options)

    def _bind_buffers(self) -> None:
        """The buffers every signature runs on: one per KV cache tensor, shared by every
        signature as input and output, and each signature's tokens, positions and mask."""
        import numpy as np

        signatures = self.model.get_signature_list()
        self.prefill_lengths = tuple(
            sorted(int(k.removeprefix("prefill_")) for k in signatures if k.startswith("prefill_"))
        )
        decode_inputs = signatures["decode"]["inputs"]
        self.cache_length = self.model.get_input_tensor_details("decode")["mask"]["shape"][-1]
        self.kv = {
            n: self.model.create_input_buffer_by_name("decode", n) for n in decode_inputs if n.startswith("kv_cache")
        }
        for name, buffer in self.kv.items():  # new buffers hold garbage: inf there turns masked slots into NaN
            shape = self.model.get_input_tensor_details("decode")[name]["shape"]
            buffer.write(np.zeros(shape, np.float32))
        self.io = {
            sig: {n: self.model.create_input_buffer_by_name(sig, n) for n in ("tokens", "input_pos", "mask")}
            for sig in ["decode", *(f"prefill_{t}" for t in self.prefill_lengths)]
        }
        self.logits = self.model.create_output_buffer_by_name("decode", "logits")
        self.vocab = self.model.get_output_tensor_details("decode")["logits"]["shape"][-1]

    def _load_info(self, artifact: Path, options: RunnerOptions) -> LoadInfo:
        # CompiledModel reports neither its threads nor anything else it was given.
        settings = {
            "prefill_lengths": list(self.prefill_lengths),
            "kv_cache": "bound in place",
            "xnnpack_weight_cache": True,
        }
        # The decode signature's weights and kv_cache_* tensors, read as LiteRT-LM's are.
        graph = layout.read_decode_graph(artifact / layout.TFLITE)
        return self._shared_load_info(options, graph, settings, "CpuOptions num_threads", **self._placement())

    def _placement(self) -> dict:
        """The accelerator the model was compiled for, and whether LiteRT reports every op on it
        (XNNPACK never takes every op: on the CPU the rest runs on LiteRT's own CPU kernels)."""
        fully = self.model.is_fully_accelerated()
        return {
            "accelerator": self.accelerator if self.accelerator == "cpu" or fully else "cpu",
            "placement": {"hardware_accelerator": self.accelerator.upper(), "fully_accelerated": fully},
        }

    def tokenize(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    # Every prompt begins with the bundle's start token, as LiteRT-LM begins every sequence.

    def _given_ids(self, token_ids: Sequence[int]) -> list[int]:
        start = list(self.meta.start_token_ids)  # it stands in for the first ids given: the length is kept
        return start + list(token_ids)[len(start) :]

    def _text_ids(self, text: str) -> list[int]:
        return list(self.meta.start_token_ids) + self.tokenize(text)

    def _chat_ids(self, messages: list[dict[str, str]]) -> list[int] | None:
        if self.template is None:
            return None
        text = self.template.render(messages=messages, bos_token="", add_generation_prompt=True)
        return list(self.meta.start_token_ids) + self.tokenizer.encode(text, add_special_tokens=False).ids

    def _run(self, signature: str, tokens: np.ndarray, positions: np.ndarray, with_logits: bool) -> None:
        import numpy as np

        io = self.io[signature]
        io["tokens"].write(tokens.astype(np.int32))
        io["input_pos"].write(positions.astype(np.int32))
        # Row i sees every cache slot up to its own position (additive mask: 0 or MASKED).
        io["mask"].write(
            np.where(np.arange(self.cache_length)[None, :] <= positions[:, None], 0.0, MASKED).astype(np.float32)
        )
        outputs = dict(self.kv, logits=self.logits) if with_logits else self.kv
        self.model.run_by_name(signature, {**io, **self.kv}, outputs)

    def _prefill(self, ids: list[int], start: int) -> None:
        """`ids` into the cache from position `start`."""
        import numpy as np

        done = 0
        for length, used in prefill_chunks(len(ids), start, self.prefill_lengths, self.cache_length):
            tokens = np.zeros(length, np.int32)
            tokens[:used] = ids[done : done + used]
            # Padding continues the positions: it lands in cache slots the decode overwrites.
            self._run(f"prefill_{length}", tokens[None, :], np.arange(start + done, start + done + length), False)
            done += used
        self.position = start + done

    def _decode(self, token: int, position: int) -> np.ndarray:
        import numpy as np

        self._run("decode", np.array([[token]]), np.array([position]), True)
        self.position = position + 1
        return self.logits.read(self.vocab, np.float32)

    def fill(self, token_ids: Sequence[int], room: int) -> int:
        """History in the position-indexed KV cache from position 0. The signatures keep no
        count of their own: `self.position` is where the runner's calls have written to."""
        check_room(len(token_ids), room, self.cache_length, "fixed at export: prepare with a larger --context")
        self.position = 0
        if token_ids:
            self._prefill(list(token_ids), 0)
        return self.position

    def _detokenize(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=False)

    def generate(self, request: GenerationRequest) -> Iterator[TokenEvent]:
        import numpy as np

        prompt = self._fitting_prompt_ids(request, self.cache_length)
        suppressed = list(self.meta.end_token_ids) if request.ignore_eos else []

        def step(token: int, position: int) -> int:
            logits = self._decode(token, position)
            logits[suppressed] = -np.inf
            return int(np.argmax(logits))

        # A conversation's next turn keeps the positions its cache still holds of the prompt.
        kept = self.kept.keep(request, prompt)

        def prefill(ids: list[int]) -> int:
            history = request.history or 0  # after a depth fill, the prompt goes in at its end
            self._prefill(ids[kept:-1], history + kept)  # no logits from prefill: the last prompt token is decoded
            return step(ids[-1], history + len(ids) - 1)

        decoded = yield from greedy_decode(request, prompt, prefill, step, self.meta.stop_token_ids, self._detokenize)
        self.kept.held(prompt, decoded.fed)
        self._finished(
            GenerationInfo(
                len(prompt),
                decoded.stop,
                kept_tokens=kept,
                prefilled_tokens=len(prompt) - kept,  # the runtime counts nothing: what the runner fed it
                prefill_counted_by="runner",
                # the positions the signatures were run at, and the last token made (never fed)
                runtime_context=self.position + (decoded.stop == "length"),
            )
        )

    def score(self, token_ids: Sequence[int]) -> np.ndarray:
        """Teacher-forced logits token by token through `decode`: the prefill signatures
        return no logits. The ids are fed as given (no start token swapped in, unlike a
        fixed prompt)."""
        self.kept = KeptHistory()  # scoring overwrites the cache from position 0
        return scored_token_by_token(token_ids, self.cache_length, self.vocab, self._decode)

    def close(self) -> None:
        self.model.close()
