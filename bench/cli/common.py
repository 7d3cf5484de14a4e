"""What every command shares: the app, its two consoles, the options several commands take,
and how a command prints JSON and warnings and stops on SIGTERM."""

from __future__ import annotations

import json
import shutil
import signal
import sys
from pathlib import Path
from typing import Annotated, List, Optional

import typer
from rich.console import Console

from bench.errors import BenchError

# Plain (click) help: typer's rich help imports a Markdown parser, which alone doubles --help's time.
app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    rich_markup_mode=None,
    help="Benchmark on-device LLM runtimes on one prompt suite, measured one way.",
)


# Off a terminal (CI logs, pipes) tables get 160 columns instead of rich's 80.
out = Console(width=shutil.get_terminal_size((160, 24)).columns)


err = Console(stderr=True, soft_wrap=True)


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def stop_on_sigterm() -> None:
    """SIGTERM (a CI timeout, a stopped job) stops a command as Ctrl-C does."""
    signal.signal(signal.SIGTERM, _interrupt)


# Options several commands share, each defined once: the same name, default and help everywhere.
Runners = Annotated[
    Optional[List[str]],
    typer.Option("--runner", "-r", help="Runner to use (repeatable); default: every available one."),
]


ModelId = Annotated[Optional[str], typer.Option("--model", "-m", help="Model id from `edgebench models`.")]


CatalogueModel = Annotated[
    Optional[str], typer.Option("--model", "-m", help="Model id; default: the catalogue's default.")
]


Artifacts = Annotated[
    Optional[List[str]], typer.Option("--artifact", help="RUNNER=PATH: your own artifact for a runner (repeatable).")
]


def at_least_one_thread(threads: Optional[int]) -> Optional[int]:
    """--threads, checked where it is parsed for every command that takes it."""
    if threads is not None and threads < 1:
        raise BenchError(f"--threads must be at least 1, got {threads}", "e.g. --threads 4", exit_code=2)
    return threads


Threads = Annotated[
    Optional[int],
    typer.Option(
        "--threads", "-t", help="CPU threads per runtime; default: physical cores.", callback=at_least_one_thread
    ),
]


Cache = Annotated[
    Optional[Path],
    typer.Option("--cache", help="Artifact cache; default $EDGEBENCH_CACHE_DIR or ~/.cache/edgebench/artifacts."),
]


Settings = Annotated[
    Optional[List[str]],
    typer.Option(
        "--setting",
        help="RUNNER:KEY=VALUE: override a runtime's default setting (repeatable), e.g. llama.cpp:flash_attn=off.",
    ),
]


Accelerators = Annotated[
    Optional[List[str]],
    typer.Option(
        "--accelerator",
        help="RUNNER=cpu|gpu|npu|auto: where a runtime runs (repeatable); default auto, what its own "
        "tools pick. Shorthand for --setting RUNNER:accelerator=KIND.",
    ),
]


AllowFallback = Annotated[
    bool,
    typer.Option(
        "--allow-fallback",
        help="Keep results of a runtime that ran elsewhere than --accelerator asked (otherwise they are errors).",
    ),
]


JsonSummary = Annotated[bool, typer.Option("--json", help="Print a machine-readable summary on stdout.")]


CooldownWait = Annotated[Optional[str], typer.Option("--cooldown", help="Wait this long between runners, e.g. 60s.")]


CooldownUntilTemp = Annotated[
    Optional[float],
    typer.Option(
        "--cooldown-until-temp",
        help="Between runners, also wait until the device is at most this many °C (up to --cooldown-limit).",
    ),
]


CooldownLimit = Annotated[str, typer.Option("--cooldown-limit", help="Longest wait for --cooldown-until-temp.")]


Targets = Annotated[
    Optional[List[str]],
    typer.Option(
        "--target",
        help="ssh://[user@]host[:port]: run there over SSH, records streamed back here; adb://[SERIAL]: "
        "run llama.cpp (and runtimes given --device-binary) on that Android phone (adb://: the one attached) "
        "(repeatable: one target after another).",
    ),
]


RemoteEdgebench = Annotated[
    Optional[str],
    typer.Option("--remote-edgebench", help="The edgebench command on the targets; default: edgebench on their PATH."),
]


# A host driving this run over SSH: each record also on stdout (bench.run.remote).
StreamRecords = Annotated[bool, typer.Option("--stream-records", hidden=True)]


def print_json(summary: dict) -> None:
    json.dump(summary, sys.stdout, indent=2)
    sys.stdout.write("\n")


def print_warnings(notes: list[str]) -> None:
    from rich.text import Text

    for note in notes:
        out.print(Text("warning: ", style="yellow") + Text(note))


def say_left_out(setup) -> None:
    from rich.text import Text

    for note in setup.left_out:
        err.print(Text(f"skipped {note}", style="yellow"))


def runner_names(setup) -> str:
    return ", ".join(p.name for p in setup.plans)
