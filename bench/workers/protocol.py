"""What a parent and its child process say to each other: one typed message per event, each
sent as one line of JSON ({"event": name, ...fields}) by `encode` and read back by `decode`.

The parent writes Orders first (on the child's stdin), then whatever the child's task asks
for (Answer, Work). The child writes the rest (on the file descriptor it was given, never
its stdout, which a runtime's native code may print to).
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass, field
from typing import Any

# Parent -> child.


@dataclass(frozen=True)
class Orders:
    """What the child runs: `task` ("module:function") on `work`; with `load` ({"runner_target",
    "artifact", "options"}) the child first loads that runner and says Loaded or LoadFailed."""

    task: str
    work: dict = field(default_factory=dict)
    load: dict | None = None
    exit_with_parent: bool = False  # a child whose parent is killed outright stops too


@dataclass(frozen=True)
class Answer:
    """The reply to Ready: run the generation, or skip it (the run's time budget rules it out)."""

    go: bool


@dataclass(frozen=True)
class Work:
    """More work for a task after the runner loaded (quality: what its context decided)."""

    payload: dict


# Child -> parent.


@dataclass(frozen=True)
class Loaded:
    load_ms: float
    info: dict  # runners.base.LoadInfo as a dict: what the runtime applied


@dataclass(frozen=True)
class LoadFailed:
    error: str
    trace: str | None = None  # the runtime's own failure: where it came from


@dataclass(frozen=True)
class Step:
    """What the child is doing now (an export's stage, quality's scoring); a failure names it."""

    name: str


@dataclass(frozen=True)
class Ready:
    """Asks the parent before a generation (answered with Answer)."""

    job: int


@dataclass(frozen=True)
class Start:
    """A generation begins: its timeout runs from now."""

    job: int


@dataclass(frozen=True)
class Done:
    """A generation's figures on the harness clock (bench.run.harness.Measurement as a dict)."""

    job: int
    measurement: dict
    stop_reason: str | None
    native: dict | None
    elapsed_s: float | None  # its start within a sustained loop
    itl_basis: str


@dataclass(frozen=True)
class Failed:
    """A generation (`job`) or the task itself (job None) raised."""

    error: str
    job: int | None = None


@dataclass(frozen=True)
class Skipped:
    """A generation (`job`) the runner could not run as asked, and why: not a failure (its
    history does not fit the cache fixed at export, where a depth sweep stops)."""

    job: int
    reason: str


@dataclass(frozen=True)
class Scored:
    """Quality: per-position figures against the reference, or why the runtime has no logits."""

    seconds: float | None
    nll: list | None = None
    kld: list | None = None
    top1: list | None = None
    no_logits: str | None = None


@dataclass(frozen=True)
class Generated:
    """Quality: one chat prompt's greedy generation."""

    prompt: str
    seconds: float
    tokens: list
    stopped_at_end_of_turn: bool
    text: str
    compared_by: str


@dataclass(frozen=True)
class Finished:
    """The task is done (`result`: what it returns, an export's description of its artifact)."""

    result: Any = None


Message = (
    Orders
    | Answer
    | Work
    | Loaded
    | LoadFailed
    | Step
    | Ready
    | Start
    | Done
    | Failed
    | Skipped
    | Scored
    | Generated
    | Finished
)


def _event(cls: type) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", cls.__name__).lower()  # LoadFailed -> load_failed


_BY_EVENT = {_event(cls): cls for cls in Message.__args__}


def encode(message: Message) -> bytes:
    """One line of JSON, newline included."""
    return json.dumps({"event": _event(type(message)), **dataclasses.asdict(message)}).encode() + b"\n"


def decode(line: bytes | str) -> Message:
    fields = json.loads(line)
    return _BY_EVENT[fields.pop("event")](**fields)
