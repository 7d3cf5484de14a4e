"""The folder listing of bench/ is the architecture: each layer imports only from the layers
before it (README, Layout), so a reader can take the layers in order."""

from __future__ import annotations

import ast

from tests.support.helpers import ROOT

# README's order; a module at the top of bench/ is shared by every layer.
LAYERS = ["data", "device", "workers", "artifacts", "run", "quality", "analysis", "views", "cli"]
SHARED = {"errors", "records", "provenance", "paths", "selection"}


def _layer(module: str) -> int | None:
    """The layer index of a bench module ("bench.run.setup" -> 3), None for a shared one."""
    parts = module.split(".")
    if parts[0] != "bench" or len(parts) < 2 or parts[1] in SHARED | {"__init__"}:
        return None
    return LAYERS.index(parts[1])


def _imports(path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found |= {f"{node.module}.{alias.name}" if node.module == "bench" else node.module for alias in node.names}
    return {name for name in found if name.startswith("bench.")}


def test_every_layer_imports_only_from_the_layers_before_it():
    upward = []
    for path in sorted((ROOT / "bench").rglob("*.py")):
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        own = _layer(module)
        for name in _imports(path):
            layer = _layer(name)
            if own is not None and layer is not None and layer > own:
                upward.append(f"{module} imports {name}")
    assert upward == []


def test_the_shared_modules_import_no_layer():
    for name in SHARED:
        assert {n for n in _imports(ROOT / "bench" / f"{name}.py") if _layer(n) is not None} == set(), name


def test_runners_import_nothing_of_the_core():
    """runners/ sit below bench/: the core loads them by name (runners.load_class) and talks to
    them through runners.base, so a runner never reaches up into a layer of the core."""
    reaching = [
        f"{path.relative_to(ROOT)} imports {name}"
        for path in sorted((ROOT / "runners").rglob("*.py"))
        for name in _imports(path)
    ]
    assert reaching == []
