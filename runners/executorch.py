"""ExecuTorch on the CPU through XNNPACK: a .pte made by `edgebench prepare`.

The artifact is a folder holding model.pte (KV cache, custom SDPA, XNNPACK delegate) and
the model's tokenizer.json and chat template. The runner drives the program's `forward`
method itself through `executorch.runtime` (the Python LLM runner cannot ignore EOS, and
one code path for chat and fixed-length decodes keeps one clock): the prompt is prefilled
in as few calls as the program allows, then one call per token, greedy, in the runners'
shared loop (runners.decode_loop). Fixed-length decodes give end-of-generation tokens -inf
logits, as llama.cpp's ignore_eos does.
Tokenization and the chat template come from the artifact's files (`tokenizers`, jinja2),
not transformers.
The program's own metadata methods give bos/eos ids and the context size (its KV cache
is fixed at export). The bytes a token reads come from the .pte itself: its constant
segment and its named data (the XNNPACK weights), each stored tensor once.
The runtime times nothing here unless its event tracer (ETDump) is on, which slows decode
several-fold on small programs: so no runtime_* figures. The runner's own timings around the
method calls are kept as `adapter_forward_*` (argmax included), never as the runtime's.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Sequence

from runners.base import (
    ArtifactError,
    Exporter,
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
from runners.executorch_export import MAX_CONTEXT_LENGTH, QUANTIZATIONS
from runners.kept_history import KeptHistory
from runners.weights import Tensor, streamed_bytes

if TYPE_CHECKING:  # annotations only: the runtime's arrays, imported lazily where used
    import numpy

PTE_MAGIC = b"ET"  # bytes 4..5 of a .pte: its flatbuffer identifier starts "ET"


def _pte_of(path: Path) -> Path:
    """The .pte of an artifact given as its folder or as the .pte file itself."""
    if path.is_dir():
        found = sorted(path.glob("*.pte"))
        if len(found) != 1:
            raise ArtifactError(f"{path} should hold exactly one .pte file, it holds {len(found)}")
        return found[0]
    return path


def _chat_template(folder: Path):
    """The artifact's chat template, compiled as transformers compiles it (bos/eos tokens
    bound), or None when it has none."""
    config_path = folder / "tokenizer_config.json"
    config = json.loads(config_path.read_text()) if config_path.exists() else {}
    template_path = folder / "chat_template.jinja"
    source = template_path.read_text() if template_path.exists() else config.get("chat_template")
    if source is None:
        return None
    return compile_chat_template(source, bos_token=config.get("bos_token"), eos_token=config.get("eos_token"))


class ExecuTorchRunner(Runner):
    name = "executorch"
    artifact_kind = "executorch .pte + tokenizer.json folder"
    scoring = "step"
    package = "executorch"
    distribution = "executorch"
    extra = "executorch"
    exporter = Exporter(
        tool="executorch export_llm (XNNPACK)",
        distribution="executorch",
        target="runners.executorch_export:export",
        quantizations=tuple(QUANTIZATIONS),
        default_quantization="8da4w",
        extra="prepare-executorch",
        typical_seconds={"8da4w": 645, "fp32": 720},
        context=MAX_CONTEXT_LENGTH,
        legacy_key=(
            "runners.executorch_export:export",
            "360709dc6de2da0ce112a56c111f8210bceb87775f41205682d0c72a357f1b5d",
        ),
    )
    # The backend is chosen at export: edgebench prepares XNNPACK programs, which run on the CPU.
    defaults = {"accelerator": "auto"}

    @classmethod
    def accelerators(cls) -> dict[str, str]:
        return {
            "cpu": "XnnpackBackend (the backend edgebench prepare exports; a GPU or NPU needs a .pte exported "
            "for Vulkan, MPS, Core ML or QNN)"
        }

    @classmethod
    def check_artifact(cls, path: Path) -> None:
        pte = _pte_of(path)
        with pte.open("rb") as f:
            if f.read(8)[4:6] != PTE_MAGIC:
                raise ArtifactError(f"{pte} is not an ExecuTorch program (no ET identifier)")
        if not (pte.parent / "tokenizer.json").is_file():
            raise ArtifactError(f"{pte.parent} has no tokenizer.json beside the .pte")

    def load(self, artifact: Path, options: RunnerOptions) -> LoadInfo:
        from tokenizers import Tokenizer

        pte = _pte_of(artifact)
        load_ms = self._load_program(pte, options.threads)
        self.max_context = self._constant(pte, "get_max_context_len")[0]
        # The KV cache's size is fixed at export; a run may ask for less, never more.
        self.context_tokens = min(self.max_context, options.context_tokens)
        self.max_chunk = self._constant(pte, "get_max_seq_len")[0] - 1  # the exported token dim's upper bound
        self.eos_ids = frozenset(self._constant(pte, "get_eos_ids"))
        self.vocab_size = self._constant(pte, "get_vocab_size")[0]
        self.tokenizer = Tokenizer.from_file(str(pte.parent / "tokenizer.json"))
        self.template = _chat_template(pte.parent)
        self.kept = KeptHistory()  # what the cache holds of a conversation's last turn
        return self._load_info(pte, options, load_ms)

    def _load_program(self, pte: Path, threads: int) -> float:
        """Load the program and its `forward` method to run on `threads` threads; the
        milliseconds the load took."""
        # The program's llama ops live in these libraries: import them before loading.
        import executorch.extension.llm.custom_ops.custom_ops  # noqa: F401
        import executorch.kernels.quantized  # noqa: F401
        import torch
        from executorch.extension.pybindings import portable_lib
        from executorch.runtime import Runtime

        self.torch = torch
        portable_lib._unsafe_reset_threadpool(threads)
        # The runner's own tensor work (argmax over the vocabulary, the EOS mask) runs in torch,
        # whose OpenMP pool defaults to every core and spins between calls: hold it to --threads.
        torch.set_num_threads(threads)
        started = time.perf_counter()
        try:
            self.program = Runtime.get().load_program(pte)
            self.forward = self.program.load_method("forward")
        except RuntimeError as exc:
            raise ArtifactError(f"ExecuTorch could not load {pte}: {exc}") from None
        return (time.perf_counter() - started) * 1000

    def _constant(self, pte: Path, name: str) -> list:
        """What one of the program's metadata methods returns (export_llm writes them)."""
        if name not in self.program.method_names:
            raise ArtifactError(f"{pte} is not an LLM program exported with its metadata (no {name})")
        return self.program.load_method(name).execute([])

    def _load_info(self, pte: Path, options: RunnerOptions, load_ms: float) -> LoadInfo:
        """What the loaded program runs with: the threadpool ExecuTorch reports, the rest as the
        program states it."""
        from executorch.extension.pybindings import portable_lib
        from executorch.version import __version__

        threads = portable_lib._threadpool_get_thread_count()
        not_applied = {}
        if threads != options.threads:
            not_applied["threads"] = f"ExecuTorch's threadpool runs {threads} thread(s)"
        if self.max_context != options.context_tokens:
            not_applied["context_tokens"] = (
                f"fixed at export: the program's KV cache holds {self.max_context} "
                f"tokens (prompts are held to {self.context_tokens})"
            )
        plan = _forward_plan(pte)
        settings = {
            "threadpool_threads": threads,
            "program_max_context_len": self.max_context,
            "max_prefill_chunk": self.max_chunk,
            "eos_ids": sorted(self.eos_ids),
            "program_load_ms": round(load_ms, 3),
        }
        return LoadInfo(
            __version__,
            "xnnpack",
            None,  # the program does not say; the record takes prepare's, from its manifest
            settings,
            threads=threads,
            context_tokens=self.max_context,
            not_applied=not_applied,
            weights_bytes=_weights_bytes(plan, self.vocab_size),
            kv_bytes_per_token=_kv_bytes_per_token(plan, self.max_context),
            **_placement(plan),
        )

    def tokenize(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def _text_ids(self, text: str) -> list[int]:
        return self.tokenizer.encode(text).ids

    def _chat_ids(self, messages: list[dict[str, str]]) -> list[int] | None:
        if self.template is None:
            return None
        prompt = self.template.render(messages=messages, add_generation_prompt=True)
        return self.tokenizer.encode(prompt, add_special_tokens=False).ids

    def _step(self, tokens: list[int], position: int):
        """One forward call: the logits of the last token, after `tokens` at `position`. The
        program keeps no count of its own: `self.position` is where the calls have written to."""
        torch = self.torch
        logits = self.forward.execute(
            [torch.tensor([tokens], dtype=torch.long), torch.tensor([position], dtype=torch.long)]
        )[0]
        self.position = position + len(tokens)
        return logits

    def _prefill(self, ids: list[int], start: int):
        """`ids` into the cache from position `start`, in as few calls as the program takes;
        the last one's logits. Each call overwrites the cache from its position and attends
        only up to it, so nothing past `start` of an earlier sequence is seen."""
        for offset in range(0, len(ids), self.max_chunk):
            logits = self._step(ids[offset : offset + self.max_chunk], start + offset)
        return logits

    def fill(self, token_ids: Sequence[int], room: int) -> int:
        """History in the program's position-indexed KV cache, from position 0."""
        check_room(len(token_ids), room, self.context_tokens, "fixed at export: prepare with a larger --context")
        self.position = 0
        if token_ids:
            self._prefill(list(token_ids), 0)
        return self.position

    def _detokenize(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=False)

    def generate(self, request: GenerationRequest) -> Iterator[TokenEvent]:
        prompt = self._fitting_prompt_ids(request, self.context_tokens)
        torch = self.torch
        # Fixed length: end-of-generation tokens can never win, as llama.cpp's ignore_eos.
        banned = torch.tensor(sorted(self.eos_ids), dtype=torch.long) if request.ignore_eos else None
        clock = time.perf_counter_ns
        spent = {"prefill": 0, "decode": 0}  # ns in each phase's method calls, argmax included

        def pick(logits) -> int:
            if banned is not None and len(banned):
                logits[..., banned] = float("-inf")
            return int(logits.argmax(dim=-1))

        # A conversation's next turn keeps the positions its cache still holds of the prompt; a
        # request after a depth fill starts at the history's end; anything else at position 0.
        kept = self.kept.keep(request, prompt)

        def prefill(ids: list[int]) -> int:
            t = clock()
            token = pick(self._prefill(ids[kept:], (request.history or 0) + kept))
            spent["prefill"] = clock() - t
            return token

        def step(token: int, position: int) -> int:
            t = clock()
            token = pick(self._step([token], position))
            spent["decode"] += clock() - t
            return token

        decoded = yield from greedy_decode(request, prompt, prefill, step, self.eos_ids, self._detokenize)
        self.kept.held(prompt, decoded.fed)
        fed = len(prompt) - kept
        self._finished(
            GenerationInfo(
                len(prompt),
                decoded.stop,
                {
                    **_adapter_figures("prefill", -(-fed // self.max_chunk), fed, spent["prefill"]),
                    **_adapter_figures("decode", decoded.steps, decoded.steps, spent["decode"]),
                },
                kept_tokens=kept,
                prefilled_tokens=fed,  # the runtime counts nothing: what the runner fed it
                prefill_counted_by="runner",
                # the positions the program was run at, and the last token made (never fed)
                runtime_context=self.position + (decoded.stop == "length"),
            )
        )

    def score(self, token_ids: Sequence[int]) -> "numpy.ndarray":
        """Teacher-forced logits token by token: the program returns the last position's
        logits only (exported without full logits)."""
        self.kept = KeptHistory()  # scoring overwrites the cache from position 0
        # .numpy() copies each row out: the output buffer is reused by the next call.
        return scored_token_by_token(
            token_ids,
            self.max_context,
            self.vocab_size,
            lambda token, position: self._step([token], position)[0].numpy(),
        )

    def close(self) -> None:
        self.forward = self.program = None


def _adapter_figures(phase: str, calls: int, tokens: int, elapsed_ns: int) -> dict:
    """The runner's own clock around one phase's method calls (argmax included): never the
    runtime's timers, which ExecuTorch keeps only with its event tracer on."""
    return {
        f"adapter_forward_{phase}_ms": elapsed_ns / 1e6,
        f"adapter_forward_{phase}_calls": calls,
        f"adapter_forward_{phase}_tok_s": tokens / (elapsed_ns / 1e9) if elapsed_ns else None,
    }


# The accelerator each ExecuTorch backend delegates to (a program with none runs portable CPU kernels).
BACKEND_KINDS = {
    "XnnpackBackend": "cpu",
    "VulkanBackend": "gpu",
    "MPSBackend": "gpu",
    "CoreMLBackend": "npu",
    "QnnBackend": "npu",
    "NeuronBackend": "npu",
    "EnnBackend": "npu",
}


def _placement(plan) -> dict:
    """Where the program runs: the backends its `forward` delegates to, as the program states them
    (fixed at export); gpu or npu when a delegate targets one, else the CPU."""
    _, forward = plan
    delegates = sorted({d.id for d in forward.delegates})
    kinds = {BACKEND_KINDS.get(d, "cpu") for d in delegates}
    return {
        "accelerator": next((k for k in ("npu", "gpu") if k in kinds), "cpu"),
        "placement": {"delegates": delegates},
    }


def _forward_plan(pte: Path):
    """The .pte's `forward` execution plan and the program around it, as the runtime reads
    them: the flatbuffer only (segment contents are not read)."""
    from executorch.exir._serialize._program import _flatbuffer_to_program, _get_extended_header

    with pte.open("rb") as f:
        header = _get_extended_header(f.read(64))
        f.seek(0)
        program = _flatbuffer_to_program(f.read(header.program_size))
    return program, next(p for p in program.execution_plan if p.name == "forward")


def _tensors_of(plan, op_word: str, arg: int | None = None) -> list:
    """The tensors that operators whose name holds `op_word` take (argument `arg`, or all)."""
    _, forward = plan
    found = []
    for chain in forward.chains:
        for instruction in chain.instructions:
            op = getattr(instruction.instr_args, "op_index", None)
            if op is None or op_word not in forward.operators[op].name:
                continue
            args = instruction.instr_args.args
            found += [forward.values[i].val for i in (args if arg is None else args[arg : arg + 1])]
    return [t for t in found if hasattr(t, "sizes")]


def _weights_bytes(plan, vocab_size: int) -> int:
    """Bytes a decoded token reads: each constant-segment tensor and each named-data entry
    (the XNNPACK weights, deduplicated by key at export) once, the embedding op's tables as
    one row. The output head is XNNPACK's own copy, stored apart: never tied here."""
    program, _ = plan
    offsets = program.constant_segment.offsets
    end = program.segments[program.constant_segment.segment_index].size if offsets else 0
    constants = {i: stop - start for i, (start, stop) in enumerate(zip(offsets, [*offsets[1:], end]))}
    tables = {
        t.data_buffer_idx
        for t in _tensors_of(plan, "embedding")
        if t.data_buffer_idx and t.sizes and t.sizes[0] == vocab_size
    }
    tensors = [Tensor(f"constant {i}", n) for i, n in constants.items()]
    tensors += [Tensor(f"named {d.key}", program.segments[d.segment_index].size) for d in program.named_data or []]
    return streamed_bytes(tensors, [f"constant {i}" for i in tables], vocab_size, tied=False)


def _kv_bytes_per_token(plan, max_context: int) -> int:
    """KV bytes per context token: the caches `llama::update_cache` writes, in their dtype."""
    from executorch.exir.tensor import get_scalar_type

    caches = {id(t): t for t in _tensors_of(plan, "update_cache", arg=1)}.values()
    return sum(math.prod(c.sizes) * get_scalar_type(c.scalar_type).itemsize // max_context for c in caches)
