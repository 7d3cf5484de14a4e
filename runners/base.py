"""The runner contract: what every runtime adapter must do, and must not do.

A runner drives one runtime on one artifact. It never owns a clock: the harness
(bench.harness) timestamps every TokenEvent the runner yields. A runner module may
import its runtime at module level; `probe` must not, so listing runners stays cheap.
"""
from __future__ import annotations

import importlib.metadata
import importlib.util
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterator


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
    threads: int
    context_tokens: int
    seed: int = 0


@dataclass(frozen=True)
class LoadInfo:
    """What the runner learned while loading: recorded in every record of the run."""

    runtime_version: str
    backend: str
    quantization: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class GenerationRequest:
    """Exactly one of `messages` (chat: the model's own template, stop at end of turn),
    `text` (raw completion, no template) or `token_ids` (a prompt given as tokens).

    With `ignore_eos` the runner produces exactly `max_new_tokens` tokens: the mode every
    throughput comparison across runtimes uses.
    """

    max_new_tokens: int
    messages: tuple[dict[str, str], ...] | None = None
    text: str | None = None
    token_ids: tuple[int, ...] | None = None
    ignore_eos: bool = False

    def __post_init__(self) -> None:
        given = [x is not None for x in (self.messages, self.text, self.token_ids)]
        if sum(given) != 1:
            raise ValueError("give exactly one of messages, text, token_ids")


@dataclass(frozen=True)
class GenerationInfo:
    """What the runner knows about the generation it just finished."""

    prompt_tokens: int
    stop_reason: str  # "eos" | "length"
    native: dict[str, Any] = field(default_factory=dict)  # the runtime's own figures


@dataclass(frozen=True)
class Exporter:
    """How `edgebench prepare` turns the shared checkpoint into this runner's artifact.

    `target` names a function "module:function" with the signature
    `export(checkpoint: Path, out: Path, quantization: str) -> dict`: it writes the artifact
    into the empty folder `out` and returns the options it used plus the key "artifact":
    the artifact's path relative to `out` ("." for the folder itself). It runs in its own
    process (the exporters import torch and friends), with the hub offline.
    """

    tool: str  # the exporter's name, recorded in the manifest
    distribution: str  # the package whose version keys the cache
    target: str
    quantizations: tuple[str, ...]
    default_quantization: str
    extra: str  # the edgebench[...] extra that installs the exporter


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
    # Only the fake runner sets this: a clock it scripts, which the harness then reads.
    scripted_clock: ClassVar[Callable[[], int] | None] = None

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
    def generate(self, request: GenerationRequest) -> Iterator[TokenEvent]:
        """Greedy generation. Must be a generator: no work happens before the first
        `next()`, so the harness clock covers templating, tokenization and prefill.
        Yields one event per generated token; an end-of-turn token ends the
        generation and is not yielded. Must not reuse a previous prompt's cache."""

    @abstractmethod
    def generation_info(self) -> GenerationInfo:
        """Prompt token count, stop reason and the runtime's own figures for the
        generation `generate` just finished."""

    def close(self) -> None:
        """Free the model. Called once; the worker process exits afterwards anyway."""


class ArtifactError(Exception):
    """The artifact exists but is not a model this runtime can load."""
