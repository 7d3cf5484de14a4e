"""`edgebench prepare`: export the model's artifacts for each runner."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from bench.cli.common import Cache, CatalogueModel, app, err, out, stop_on_sigterm
from bench.errors import BenchError


@app.command("prepare")
def prepare_cmd(
    model: CatalogueModel = None,
    runner: Optional[List[str]] = typer.Option(
        None, "--runner", "-r", help="Runner (repeatable); default: every installed one that needs it."
    ),
    quant: Optional[List[str]] = typer.Option(
        None, "--quant", "-q", help="Quantization (repeatable); default: each runner's default."
    ),
    cache: Cache = None,
    force: bool = typer.Option(False, "--force", help="Export again even when the cache has the artifact."),
    context: Optional[int] = typer.Option(
        None,
        "--context",
        help="KV-cache capacity in tokens to export for, where the export fixes it (ExecuTorch, LiteRT; "
        "default 2048); part of the artifact's cache key. Default: the runners whose export fixes it.",
    ),
) -> None:
    """Convert the model into each runner's artifact with that runtime's own exporter; cached."""
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
    from rich.text import Text

    from bench.artifacts import prepare
    from bench.artifacts.cache import cache_root
    from bench.data import models
    from bench.views.table import listing, terminal

    stop_on_sigterm()  # a stopped job still removes its unfinished export
    target = models.get_model(model or models.default_model_id())
    if context is not None and context < 64:
        raise BenchError(f"--context {context} is too small", "e.g. --context 4352", exit_code=2)
    work = prepare.select(tuple(runner or ()), tuple(quant or ()), with_context=context is not None)
    root = cache_root(cache)
    rows, failures = [], []
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        TextColumn("{task.fields[line]}"),
        console=err,
        transient=True,
    ) as progress:
        for name, exporter, q in work:
            row, failure = _prepare_one(progress, target, name, exporter, q, root, force, bool(runner), context)
            rows.append(row)
            failures += [failure] if failure else []
    out.print(terminal(listing(("runner", "quant", "status", "export s", "MB", "artifact"), rows)))
    for failure in failures:
        err.print(Text(failure, style="red"))
    if failures:
        raise typer.Exit(1)


def _prepare_one(
    progress, model, name: str, exporter, quant: str, root: Path, force: bool, by_name: bool, context: Optional[int]
) -> tuple[list[str], Optional[str]]:
    """One export, with its live line: its table row, and its failure to report. A runner
    asked for by name stops the command instead, with the exporter's own words."""
    from bench.artifacts import prepare
    from bench.artifacts.families import Unsupported

    task = progress.add_task(f"{name} {quant}", line="")
    try:
        done = prepare.prepare_artifact(
            model,
            name,
            exporter,
            quant,
            root,
            force=force,
            context=context,
            on_log=lambda line: progress.update(task, line=line[:60]),
            # a live line on a terminal; in a log, a line per stage and a heartbeat
            progress=(lambda p: progress.update(task, description=p.line())) if err.is_terminal else None,
        )
    except Unsupported as exc:  # a declared limit, not a failure, unless asked for by name
        if by_name:
            raise
        return [name, quant, "not supported", "–", "–", exc.message], None
    except BenchError as exc:
        if by_name:
            raise
        return [name, quant, "FAILED", "–", "–", exc.message.splitlines()[0]], f"{name} {quant}: {exc.message}"
    finally:
        progress.remove_task(task)
    m = done.manifest
    return [
        name,
        quant,
        "exported" if done.built else "cached (nothing to do)",
        f"{m['export_seconds']:.1f}",
        f"{m['bytes'] / 2**20:.1f}",
        str(done.path),
    ], None
