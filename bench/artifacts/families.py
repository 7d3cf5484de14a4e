"""Which model families each runner's exporter converts, declared once per exporter
(FAMILY_SUPPORT in its module) and checked before any export runs."""

from __future__ import annotations

import importlib

from bench.data.models import family_name
from bench.errors import BenchError
from runners.base import Exporter


class Unsupported(BenchError):
    """A (family, runner, quantization) its exporter does not take: found before it runs."""


def family_support(exporter: Exporter) -> dict[str, tuple[str, ...] | str]:
    """The exporter's own declaration (FAMILY_SUPPORT in its module): per family, the
    quantizations it converts or why it converts none. Imports no runtime."""
    return getattr(importlib.import_module(exporter.target.partition(":")[0]), "FAMILY_SUPPORT", {})


def support_cells(family: str) -> dict[str, tuple[str, ...] | str]:
    """Per visible runner: the quantizations it takes `family` in (a tuple), or why it takes
    none (a str). A runner without an exporter reads a file of its own format as shipped,
    whatever the family: its cell says so."""
    from runners import load_class, registrations

    cells = {}
    for name, reg in registrations().items():
        cls = load_class(reg.target)
        if reg.hidden:
            continue
        if cls.exporter is None:
            cells[name] = (f"its {cls.artifact_kind} file (--artifact)",)
            continue
        cells[name] = family_support(cls.exporter).get(family, f"{family} is not declared for {cls.exporter.tool}")
    return cells


def check_family(runner_name: str, exporter: Exporter, family: str, quantization: str) -> None:
    """Raise Unsupported unless `runner_name`'s exporter declares `family` at `quantization`.
    An exporter that declares no family at all (a plugin's) is left to try: its own errors
    are reported like any failed export."""
    if not family_support(exporter):
        return
    cells = support_cells(family)
    declared = cells.get(runner_name, family_support(exporter).get(family))
    if isinstance(declared, tuple) and quantization in declared:
        return
    why = declared if isinstance(declared, str) else f"only {', '.join(declared)} is converted"
    takers = [
        f"{name} ({', '.join(cell)})" for name, cell in cells.items() if name != runner_name and isinstance(cell, tuple)
    ]
    raise Unsupported(
        f"{runner_name} cannot take {family_name(family)} at {quantization}: {why}",
        f"runners that take {family}: {', '.join(takers) or 'none'}",
        exit_code=2,
    )
