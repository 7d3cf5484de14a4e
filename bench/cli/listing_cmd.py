"""`edgebench runners`, `suites`, `profiles`, `models` and `validate`: what is installed and
shipped, and whether a suite or profile file is valid."""

from __future__ import annotations

from pathlib import Path
from typing import List

import typer

from bench.cli.common import app, out
from bench.errors import BenchError


@app.command()
def runners(all_: bool = typer.Option(False, "--all", help="Also list the fake runner used by tests.")) -> None:
    """Every registered runner: available or not, version, artifact kind, what to install."""
    from bench.views.table import listing, terminal
    from runners import load_class, registrations

    rows = []
    for reg in registrations().values():
        if reg.hidden and not all_:
            continue
        cls = load_class(reg.target)
        probe = cls.probe()
        rows.append(
            (
                reg.name + (" (FAKE: tests only)" if reg.hidden else ""),
                "yes" if probe.available else "no",
                probe.runtime_version,
                cls.artifact_kind,
                "" if probe.available else probe.reason,
                reg.origin,
            )
        )
    out.print(terminal(listing(("runner", "available", "version", "artifact", "install", "from"), rows)))


@app.command()
def suites() -> None:
    """The packaged prompt suites."""
    from bench.data import files as datafiles
    from bench.data.suite import load_suite
    from bench.views.table import listing, terminal

    rows = [
        (s.id, str(len(s.prompts)), ", ".join(dict.fromkeys(p.category for p in s.prompts)), s.description)
        for s in map(load_suite, datafiles.packaged_names("suites"))
    ]
    out.print(terminal(listing(("suite", "prompts", "categories", "description"), rows)))


@app.command()
def profiles() -> None:
    """The packaged run profiles."""
    from bench.data import files as datafiles
    from bench.data.run_profiles import load_profile
    from bench.views.table import listing, terminal

    rows = [
        (p.name, str(p.warmups), str(p.repetitions), ", ".join(p.tags) or "all", p.description)
        for p in map(load_profile, datafiles.packaged_names("runs"))
    ]
    out.print(terminal(listing(("profile", "warm-ups", "repetitions", "prompt tags", "description"), rows)))


@app.command()
def validate(
    paths: List[Path] = typer.Argument(
        ..., help="Suite, run profile, catalogue, workloads, tiers or device profile .toml files."
    ),
) -> None:
    """Check data files without running anything."""
    from bench.data.validate import validate_file

    for path in paths:
        out.print(f"{path}: ok ({validate_file(path)})")


@app.command("models")
def models_cmd(
    support: bool = typer.Option(
        False,
        "--support",
        help="Which model families each runner takes, per quantization, "
        "or why not (what tests/real/test_families.py proves).",
    ),
) -> None:
    """The model catalogue and where each model's source artifact is."""
    from bench.data import models
    from bench.views.table import listing, terminal

    if support:
        _print_family_support()
        return
    rows = []
    for m in models.catalogue().values():
        try:
            where = str(m.source_path())
        except BenchError as exc:
            where = f"not installed: {exc.hint}"
        rows.append(
            (
                m.id + (" (default)" if m.default else ""),
                m.name,
                f"{m.parameters_m:g}",
                f"{m.source.format} in {m.source.package}",
                m.source.quantization,
                where,
            )
        )
    out.print(terminal(listing(("model", "name", "params (M)", "source", "quant", "where"), rows)))
    out.print(_listed_table(models.listed_models().values()))


# The context the listed models' KV cache is shown at: the default profile's.
KV_SHOWN_AT_TOKENS = 2048


def _listed_table(listed):
    """Real models listed for their sizes only: what their KV cache holds at the default context."""
    from bench.views.table import listing, terminal

    headings = ("listed model", "name", "family", "params (M)", "layers", "KV heads x dim", "sliding window")
    rows = [
        (
            m.id,
            m.name,
            m.family,
            f"{m.parameters_m:g}",
            str(m.kv.layers),
            f"{m.kv.kv_heads} x {m.kv.head_dim}",
            f"{m.kv.sliding_window} on {m.kv.sliding_layers} layers" if m.kv.sliding_window else None,
            f"{m.kv.kv_bytes(KV_SHOWN_AT_TOKENS) / 2**20:,.1f}",
        )
        for m in listed
    ]
    return terminal(
        listing((*headings, f"KV MB at {KV_SHOWN_AT_TOKENS} tokens (f16)"), rows),
        "Listed for their sizes only: nothing shipped or downloaded; point --model at your own copy",
    )


def _print_family_support() -> None:
    """Family x runner: the quantizations it takes, or a numbered reason it takes none."""
    from bench.artifacts.families import support_cells
    from bench.data import models
    from bench.views.table import listing, terminal

    cells = {family: support_cells(family) for family in models.FAMILIES}
    runners = list(next(iter(cells.values())))
    reasons: list[str] = []
    rows = []
    for family, row in cells.items():
        shown = []
        for cell in row.values():
            if isinstance(cell, str):
                reasons.append(cell) if cell not in reasons else None
                cell = f"no ({reasons.index(cell) + 1})"
            else:
                cell = ", ".join(cell)
            shown.append(cell)
        rows.append((models.family_name(family), *shown))
    out.print(terminal(listing(("family (model_type)", *runners), rows)))
    for number, reason in enumerate(reasons, 1):
        out.print(f"({number}) {reason}", highlight=False)
