"""The `edgebench` command: parse, validate, call the core, print. Nothing else.

One module per command (or family of commands), each registering on the shared app; only
typer, rich's Console and BenchError are imported up front, and each command imports its own
modules (pandas, numpy, the report and prepare code) when it runs, so --help answers at once.
"""

from __future__ import annotations

import importlib
import sys

from bench.cli.common import app, err
from bench.errors import BenchError

# Each module registers its commands on `app` when imported; --help lists them in this order.
COMMAND_MODULES = (
    "run_cmd",
    "prepare_cmd",
    "sustained_cmd",
    "quality_cmd",
    "views_cmd",
    "device_cmd",
    "listing_cmd",
    "bundle_cmd",
)
for _module in COMMAND_MODULES:
    importlib.import_module(f"bench.cli.{_module}")


def main() -> None:
    try:
        app()  # standalone: typer reports usage mistakes itself, with exit code 2
    except BenchError as exc:
        err.print(f"[red]Error:[/] {exc.message}", highlight=False)
        if exc.hint:
            err.print(f"  hint: {exc.hint}", highlight=False)
        sys.exit(exc.exit_code)
