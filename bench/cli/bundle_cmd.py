"""`edgebench bundle` and `unbundle`: artifacts carried to another device; `remote-info` for a
host driving this one over SSH."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import List, Optional

import typer

from bench.cli.common import Cache, CatalogueModel, app, out


@app.command("bundle")
def bundle_cmd(
    out_path: Path = typer.Option(..., "--out", "-o", help="The bundle file to write (a tar)."),
    model: CatalogueModel = None,
    runner: Optional[List[str]] = typer.Option(
        None, "--runner", "-r", help="Runner (repeatable); default: every available one whose artifact is ready."
    ),
    quant: Optional[List[str]] = typer.Option(
        None,
        "--quant",
        "-q",
        help="RUNNER=QUANT: a prepared quantization (repeatable); default: each runner's default.",
    ),
    artifact: Optional[List[str]] = typer.Option(
        None, "--artifact", help="RUNNER=PATH: your own artifact (repeatable)."
    ),
    cache: Cache = None,
) -> None:
    """Pack prepared artifacts, each with its manifest (files, sizes, sha256), into one file for another machine."""
    from bench.artifacts import bundle
    from bench.artifacts.cache import cache_root
    from bench.run import remote
    from bench.run.setup import RunOptions

    options = RunOptions(
        runners=tuple(runner or ()),
        model=model,
        quants=tuple(quant or ()),
        artifacts=tuple(artifact or ()),
        cache=cache,
    )
    found, plans = remote.host_plans(options)
    units = [bundle.unit_for(p.name, p.artifact, found.id, cache_root(cache)) for p in plans]
    written = bundle.write_file(units, out_path)
    for unit in units:
        out.print(
            f"{unit.runner} {unit.manifest.get('quantization') or ''}: {unit.rel} "
            f"({bundle.human_bytes(unit.manifest['bytes'])})",
            highlight=False,
        )
    out.print(f"wrote {out_path} ({bundle.human_bytes(written)} of artifacts)", highlight=False)


@app.command("unbundle")
def unbundle_cmd(
    path: str = typer.Argument(..., help="A bundle from `edgebench bundle`, or - for stdin."),
    cache: Cache = None,
) -> None:
    """Install a bundle's artifacts into the cache, each file checked against its manifest's sha256."""
    from bench.artifacts import bundle

    if path == "-":
        installed = bundle.install(sys.stdin.buffer, cache, "stdin")
    else:
        installed = bundle.install_file(Path(path), cache)
    for entry in installed.units:
        out.print(f"{entry['runner']}: --artifact {entry['runner']}={entry['path']}", highlight=False)
    folders = len({entry["folder"] for entry in installed.units})
    out.print(f"installed {installed.copied} artifacts, {folders - installed.copied} already there")


@app.command("remote-info", hidden=True)
def remote_info(cache: Optional[Path] = typer.Option(None, "--cache")) -> None:
    """For a host driving this machine over SSH: version, cache units, free space, runners (JSON)."""
    from bench.run import remote

    sys.stdout.write(json.dumps(remote.describe_here(cache)) + "\n")
