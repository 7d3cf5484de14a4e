"""`edgebench quality`: each runner's output quality against the fp32 reference."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from bench.cli.common import Artifacts, Threads, app, err, out, say_left_out, stop_on_sigterm


@app.command()
def quality(
    runner: Optional[List[str]] = typer.Option(
        None, "--runner", "-r", help="Runner to score (repeatable); default: every available one."
    ),
    model: Optional[str] = typer.Option(
        None, "--model", "-m", help="Model id from `edgebench models`, or a checkpoint folder."
    ),
    quant: Optional[List[str]] = typer.Option(
        None, "--quant", "-q", help="RUNNER=QUANT (repeatable); default: every quantization prepared in the cache."
    ),
    artifact: Artifacts = None,
    cache: Optional[Path] = typer.Option(
        None,
        "--cache",
        help="Artifact cache (the reference is cached there too); "
        "default $EDGEBENCH_CACHE_DIR or ~/.cache/edgebench/artifacts.",
    ),
    out_dir: Path = typer.Option(Path("results"), "--out", help="Folder for the JSONL results."),
    threads: Threads = None,
) -> None:
    """Each runner and quantization against the fp32 reference: perplexity, KL divergence, top-1 and greedy
    agreement."""
    from bench.quality.run import run_quality, setup_quality
    from bench.records import is_failed
    from bench.run.setup import RunOptions
    from bench.views import report
    from bench.views.table import terminal

    stop_on_sigterm()
    setup = setup_quality(
        RunOptions(
            runners=tuple(runner or ()),
            model=model,
            artifacts=tuple(artifact or ()),
            threads=threads,
            out=out_dir,
            quants=tuple(quant or ()),
            cache=cache,
        )
    )
    err.print(
        f"quality [bold]{setup.run_id}[/]: {setup.model.id}, "
        f"{', '.join(f'{p.name} {p.artifact.quantization or chr(8211)}' for p in setup.plans)}"
    )
    say_left_out(setup)
    records = run_quality(setup, cache, say=err.print)
    out.print(terminal(report.quality_terminal(records), f"edgebench quality {setup.run_id}"))
    out.print(f"results: {setup.results_path}")
    if any(map(is_failed, records)):
        raise typer.Exit(1)
