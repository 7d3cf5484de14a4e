"""The runner contract: what every runtime adapter must do, and must not do.

A runner drives one runtime on one artifact. It never owns a clock: the harness
(bench.run.harness) timestamps every TokenEvent the runner yields. A runner module may
import its runtime at module level; `probe` must not, so listing runners stays cheap.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Iterator, Sequence

if TYPE_CHECKING:  # annotations only: the runtime's arrays, imported lazily where used
    import numpy


@dataclass(frozen=True)
class TokenEvent:
    """One generated token. Runners yield exactly one per token, never one per chunk."""

    token_id: int
    text: str


@dataclass(frozen=True)
class Probe:
    """Whether a runtime can run here, without loading it."""

    available: bool
    runtime_version: str | None
    reason: str = ""


@dataclass(frozen=True)
class RunnerOptions:
    """What a run asks of the runner. `settings` is the runner's `defaults` with the
    user's `--setting RUNNER:KEY=VALUE` overrides applied (checked by the parent)."""

    threads: int
    context_tokens: int
    seed: int = 0
    settings: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class LoadInfo:
    """What the runner learned while loading: recorded in every record of the run.

    Every figure here is what the runtime really uses, read back from it where it allows,
    never the request echoed: `threads` and `context_tokens` are None when the runtime has
    no such setting or fixed it elsewhere (at export), with the reason in `not_applied`.
    """

    runtime_version: str
    backend: str
    quantization: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    threads: int | None = None  # threads decode really runs on
    context_tokens: int | None = None  # KV-cache capacity really allocated, in tokens
    not_applied: dict[str, str] = field(default_factory=dict)  # setting -> why it is not what was asked
    # Bytes read from memory per decoded token: the weights of the file the runtime loads
    # (runners.weights.streamed_bytes), and the KV cache's bytes per context token in the
    # runtime's own KV dtype and layout. The roofline and MBU use these two.
    weights_bytes: int | None = None
    kv_bytes_per_token: int | None = None
    # [tokens, bytes per token]: the share of kv_bytes_per_token in sliding-window layers, which
    # hold at most that many tokens (None: every layer attends to the whole context).
    kv_window: list[int] | None = None
    # Where the model really runs, as the runtime reports it (never the request echoed):
    # "cpu", "gpu" or "npu"; `placement` holds the runtime's own evidence (devices and the
    # layers on each, execution providers, the accelerator a model compiled for), and
    # `accelerator_memory_mb` the GPU/unified memory it reports using (None where it says nothing).
    accelerator: str | None = None
    placement: dict[str, Any] = field(default_factory=dict)
    accelerator_memory_mb: float | None = None


# What `--accelerator RUNNER=...` may ask for; `auto` is what the runtime's own tools pick here.
ACCELERATORS = ("auto", "cpu", "gpu", "npu")


@dataclass(frozen=True)
class GenerationRequest:
    """Exactly one of `messages` (chat: the model's own template, stop at end of turn),
    `text` (raw completion, no template) or `token_ids` (a prompt given as tokens).

    With `ignore_eos` the runner produces exactly `max_new_tokens` tokens: the mode every
    throughput comparison across runtimes uses.

    `turn` makes the request a turn of a conversation (1-based; None: not one). Turn 1 starts
    a conversation from an empty cache; later turns `continue` it: `messages` is the previous
    request's messages, its reply as generated and a new user message, and the runner keeps
    what its runtime still holds of the previous turn where it can, as a chat app keeps its
    session (`GenerationInfo.kept_tokens` says how much). A runtime that sizes its state per
    request sizes a turn's for the whole context, as the later turns need it. Outside a
    continued conversation nothing of an earlier request is reused.

    `history` None: a fresh request on an empty cache. A number: the request continues after
    that many tokens of history that `Runner.fill` just put in the runtime's cache (a depth
    sweep): its prompt goes in at that position, and nothing is reset.
    """

    max_new_tokens: int
    messages: tuple[dict[str, str], ...] | None = None
    text: str | None = None
    token_ids: tuple[int, ...] | None = None
    ignore_eos: bool = False
    turn: int | None = None
    history: int | None = None

    @property
    def continues(self) -> bool:
        """A conversation's turn 2 onwards: the previous request's state may be kept."""
        return (self.turn or 1) > 1

    def __post_init__(self) -> None:
        given = [x is not None for x in (self.messages, self.text, self.token_ids)]
        if sum(given) != 1:
            raise ValueError("give exactly one of messages, text, token_ids")


@dataclass(frozen=True)
class SetupDone:
    """Yielded at most once, before the first token, by a runner whose runtime builds
    per-request state (a Generator, a Conversation): the harness stamps it, and the time
    from t0 to it is the record's `setup_ms` (still inside TTFT, the user-visible figure)."""


SETUP_DONE = SetupDone()


@dataclass(frozen=True)
class GenerationInfo:
    """What the runner knows about the generation it just finished."""

    prompt_tokens: int
    stop_reason: str  # "eos" | "length"
    native: dict[str, Any] = field(default_factory=dict)  # the runtime's own figures
    # The runtime's own count of tokens generated, where it keeps one: the harness checks
    # it against the events received.
    runtime_new_tokens: int | None = None
    # True when events are text chunks as the runtime streamed them (not one per token):
    # the gaps between events are then chunk gaps, and the record says so.
    chunked: bool = False
    # A conversation turn (a request with `continues`, or the first turn): of the prompt's
    # `prompt_tokens`, how many the runner took from the runtime's kept state (its claim), and
    # how many were prefilled for this turn, counted by the runtime itself where it tells
    # (`prefill_counted_by` "runtime") else what the runner fed it ("runner"). The harness
    # refuses a turn whose two do not add up to the prompt: a runtime that prefilled the
    # whole history cannot be recorded as reusing it.
    kept_tokens: int | None = None
    prefilled_tokens: int | None = None
    prefill_counted_by: str | None = None
    # The tokens in the runtime's sequence when the generation ended (history + prompt + tokens
    # made), by the runtime's own count where it keeps one: the harness checks a request with
    # history against it, so a depth that was not really in the cache cannot pass.
    runtime_context: int | None = None


@dataclass(frozen=True)
class Exporter:
    """How `edgebench prepare` turns the shared checkpoint into this runner's artifact.

    `target` names a function "module:function" with the signature
    `export(checkpoint: Path, out: Path, quantization: str) -> dict` (and `context: int` where
    the export fixes the KV cache's capacity, `context` below): it writes the artifact
    into the empty folder `out` and returns the options it used plus the key "artifact":
    the artifact's path relative to `out` ("." for the folder itself). It runs in its own
    process (the exporters import torch and friends), with the hub offline. It may take a
    keyword `stage: Callable[[str], None]`, called with the name of each stage it enters
    (loading, export, lowering, …): `prepare` shows it as progress.
    """

    tool: str  # the exporter's name, recorded in the manifest
    distribution: str  # the package whose version keys the cache
    target: str
    quantizations: tuple[str, ...]
    default_quantization: str
    extra: str  # the edgebench[...] extra that installs the exporter
    # Runners sharing one exporter name a common group: its artifacts are cached (and found)
    # under that name, so one conversion serves them all. None: under the runner's name.
    artifact_group: str | None = None
    # What the export writes, as a number: bump it when a change to the exporter changes its
    # output. prepare's cache key uses it (with the tool, its version and the quantization), not
    # the exporter's source, so moving or reformatting an exporter keeps its cache.
    recipe: int = 1
    # Seconds a first export of each quantization takes on a 2-core x86 (AMD EPYC, 2.6 GHz) with
    # the default model (SmolLM2-135M): the estimate `prepare` shows until this machine has its
    # own, and what orders a run's runners (cheapest export first).
    typical_seconds: dict[str, float] = field(default_factory=dict, hash=False)
    # The KV-cache capacity in tokens the export fixes unless `prepare --context N` asks another
    # (its function then takes the keyword `context`); None: the runtime sizes its cache at load.
    context: int | None = None
    # Caches made before keys took recipes (edgebench up to 0.1.0) keyed on the exporter's
    # "module:function" and its source's sha256: this exporter's pair then, if it existed.
    # A folder under that old key is adopted as recipe 1's output (bench.artifacts.cache).
    legacy_key: tuple[str, str] | None = None


class Runner(ABC):
    """Base class of every runtime adapter.

    Class attributes name the runtime: `name` (the registry key), `artifact_kind` (what
    `load` takes, e.g. "gguf"), `package` (the importable module probed) and `extra`
    (the `edgebench[...]` extra that installs it).
    """

    name: ClassVar[str]
    artifact_kind: ClassVar[str]
    package: ClassVar[str]
    distribution: ClassVar[str]
    extra: ClassVar[str]
    # How to make this runner's artifact from the shared checkpoint; None: it reads the
    # model's source (e.g. llama.cpp reads the GGUF) and needs no prepare step.
    exporter: ClassVar[Exporter | None] = None
    # A clock the runner supplies, which the harness then reads instead of its own: the fake
    # runner's script (its records are synthetic), or the phone's clock as the device runner
    # reports it (runners.device_llamacpp, which `--target adb://` plans use).
    scripted_clock: ClassVar[Callable[[], int] | None] = None
    # The settings this runtime's own benchmark/CLI uses by default on this platform
    # (e.g. llama-bench's flash attention and batch sizes): what `load` applies unless the
    # user overrides a key with `--setting RUNNER:KEY=VALUE`. The README lists them.
    defaults: ClassVar[dict[str, Any]] = {}
    # How `score` feeds a text, for the quality step's time estimate: "batch" (one forward
    # pass, at prefill pace), "step" (one decode step per token) or None (no logits).
    scoring: ClassVar[str | None] = None
    # The values a setting may take, for a setting that takes one of a few (the others are
    # checked against their default's type): `--setting` refuses any other before a worker
    # starts, so `load` gets only these.
    choices: ClassVar[dict[str, tuple[Any, ...]]] = {}
    # The `runtime_*` figures `generation_info().native` holds: the runtime's own timings of the
    # generation (named as in bench.run.selfcheck.FIGURES), which `selfcheck` sets beside the
    # harness's; none for a runtime that times nothing itself.
    runtime_figures: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def probe(cls) -> Probe:
        """Say whether the runtime is importable and its version. Must not import it
        (listing every runner has to stay fast) and must never load a model."""
        if importlib.util.find_spec(cls.package) is None:
            return Probe(False, None, f"pip install 'edgebench[{cls.extra}]'")
        try:
            version = importlib.metadata.version(cls.distribution)
        except importlib.metadata.PackageNotFoundError:
            version = "unknown"
        return Probe(True, version)

    @classmethod
    def export_cost(cls) -> float:
        """Seconds a first export of the default quantization typically takes: 0 for a runner
        that needs none, infinity where its exporter gives no figure. A run takes its runners
        cheapest first, so the first results come soonest."""
        if cls.exporter is None:
            return 0.0
        return cls.exporter.typical_seconds.get(cls.exporter.default_quantization, math.inf)

    @classmethod
    def accelerators(cls) -> dict[str, str]:
        """The accelerators ("cpu", "gpu", "npu") this build of the runtime can use on this
        machine, each with what the runtime calls it. It may import the runtime (the parent asks
        in a child process) but must never load a model."""
        return {"cpu": "the CPU"}

    def settings(self, options: RunnerOptions) -> dict[str, Any]:
        """The settings `load` applies: the defaults, with what the run overrides (a runner
        loaded directly, as tests do, gets its defaults)."""
        return {**self.defaults, **options.settings}

    @classmethod  # noqa: B027 (optional: a runner checks what it can)
    def check_artifact(cls, path: Path) -> None:
        """A cheap look, before any model loads, that `path` is this runner's kind of
        artifact; raise ArtifactError if not. Must not import the runtime."""

    @abstractmethod
    def load(self, artifact: Path, options: RunnerOptions) -> LoadInfo:
        """Load the artifact with the given options. Raise ArtifactError when the file is
        not a model this runtime can read."""

    @abstractmethod
    def tokenize(self, text: str) -> list[int]:
        """The runtime's own tokenization of raw text, without special tokens."""

    @abstractmethod
    def generate(self, request: GenerationRequest) -> Iterator[TokenEvent | SetupDone]:
        """Greedy generation. Must be a generator: no work happens before the first
        `next()`, so the harness clock covers templating, tokenization and prefill.
        Yields one event per generated token (optionally SETUP_DONE first); an end-of-turn
        token ends the generation and is not yielded. Must not reuse a previous prompt's
        cache unless the request `continues` it, and must leave no work of its own running
        when it returns. When it ends, it
        hands what it knows of the generation to `_finished`."""

    def fill(self, token_ids: Sequence[int], room: int) -> int:
        """Empty the runtime's cache, then put `token_ids` in it as history, the way an app
        keeps a conversation (the runtime's own state: KV cache, generator, session), sized for
        `room` more tokens (the next request's prompt and new tokens). The next `generate`,
        whose request has `history == len(token_ids)`, continues from there. Returns the
        tokens the runtime then holds, by its own count where it keeps one. Raises
        ContextFull when history and room do not fit the cache (fixed at export or load).
        Never timed as a request: the worker times it apart, as the fill's own rate."""
        raise NotImplementedError(f"{self.name} cannot keep history in its cache")

    def generation_info(self) -> GenerationInfo:
        """Prompt token count, stop reason and the runtime's own figures for the
        generation `generate` just finished (what it gave `_finished`). Called after the
        harness has stopped its clock: a runner whose runtime still has work in flight waits
        for it here."""
        info = getattr(self, "_last_generation", None)
        if info is None:
            raise RuntimeError(f"{type(self).__name__}.generate has finished no generation yet")
        return info

    def _finished(self, info: GenerationInfo) -> None:
        """Keep what `generate` knows of the generation it just ended, for `generation_info`."""
        self._last_generation = info

    def score(self, token_ids: Sequence[int]) -> "numpy.ndarray":
        """Teacher-forced scoring for `edgebench quality`: feed `token_ids` in order from an
        empty cache and return the runtime's logits after each one, float32
        [len(token_ids), vocab]: row i is the runtime's distribution for token i + 1.
        The caller keeps len(token_ids) within the loaded context. Raise NoLogits where
        the runtime exposes none."""
        raise NoLogits(f"{self.name} exposes no logits to score a text with")

    def close(self) -> None:  # noqa: B027 (optional: most runtimes free on exit)
        """Free the model. Called once; the worker process exits afterwards anyway."""

    # The prompt as token ids, for runners that hand their runtime ids: `_fitting_prompt_ids`
    # builds it through the three hooks below and checks it against the context.

    def _fitting_prompt_ids(self, request: GenerationRequest, context_tokens: int) -> list[int]:
        """The request's prompt ids (`_prompt_ids`), refused with a one-line ValueError when
        they are empty or leave no room for the tokens asked in `context_tokens`."""
        prompt = self._prompt_ids(request)
        if not prompt:
            raise ValueError("the prompt tokenizes to nothing")
        history = request.history or 0
        if history + len(prompt) + request.max_new_tokens > context_tokens:
            raise ValueError(
                f"{f'{history} tokens of history + ' if history else ''}prompt of {len(prompt)} tokens + "
                f"{request.max_new_tokens} new exceeds the context of {context_tokens}"
            )
        return prompt

    def _prompt_ids(self, request: GenerationRequest) -> list[int]:
        """Fixed ids through `_given_ids`, raw text through `_text_ids`, chat messages through
        `_chat_ids` (ArtifactError when the model has no chat template)."""
        if request.token_ids is not None:
            return self._given_ids(request.token_ids)
        if request.text is not None:
            return self._text_ids(request.text)
        ids = self._chat_ids(list(request.messages))
        if ids is None:
            raise ArtifactError("this model has no chat template; use completion or fixed prompts")
        return ids

    def _given_ids(self, token_ids: Sequence[int]) -> list[int]:
        """A prompt given as ids: as given."""
        return list(token_ids)

    def _text_ids(self, text: str) -> list[int]:
        """A raw completion prompt: no template, the special tokens the runtime's tokenizer adds."""
        raise NotImplementedError(f"{type(self).__name__} builds no prompt ids from text")

    def _chat_ids(self, messages: list[dict[str, str]]) -> list[int] | None:
        """Chat messages through the model's own template, ready for the assistant's turn;
        None when the model has no chat template."""
        raise NotImplementedError(f"{type(self).__name__} builds no prompt ids from chat messages")


def scored_token_by_token(
    token_ids: Sequence[int], context_tokens: int, vocab: int, logits_after: Callable[[int, int], Any]
) -> "numpy.ndarray":
    """`Runner.score` for a runtime whose program returns the last position's logits only:
    each token through its decode path at its position from 0 (`logits_after(token,
    position)`), one row per token. Position 0 onwards overwrites the cache, so nothing of
    an earlier generation is seen; a sequence longer than the exported cache is refused."""
    import numpy as np

    if not token_ids:
        raise ValueError("nothing to score: the token sequence is empty")
    if len(token_ids) > context_tokens:
        raise ValueError(
            f"cannot score {len(token_ids)} tokens at once: the KV cache holds {context_tokens} "
            "(fixed at export); score the text in windows of at most that"
        )
    rows = np.empty((len(token_ids), vocab), np.float32)
    for position, token in enumerate(token_ids):
        rows[position] = logits_after(token, position)
    return rows


def check_room(history: int, room: int, capacity: int, why: str) -> None:
    """`Runner.fill`'s check that history and the next request fit the cache; `why` says what
    fixed the capacity (e.g. "fixed at export: prepare --context N")."""
    if history + room > capacity:
        raise ContextFull(capacity, f"{history} tokens of history + {room} exceed the cache of {capacity} ({why})")


class ContextFull(Exception):
    """The history asked for does not fit the runtime's cache: a depth sweep stops there."""

    def __init__(self, capacity: int, message: str):
        super().__init__(message)
        self.capacity = capacity


class ArtifactError(Exception):
    """The artifact exists but is not a model this runtime can load."""


class NoLogits(Exception):
    """The runtime gives generated tokens only, never the distribution behind them."""
