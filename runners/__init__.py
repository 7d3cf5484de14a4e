"""Runner registry: names map to "module:Class" strings, imported only when used.

Runners living in other packages register through the `edgebench.runners` entry-point
group (name = "module:Class"); they are listed and loaded exactly like built-in ones.
"""

from __future__ import annotations

import importlib
import importlib.metadata
from dataclasses import dataclass

BUILTIN = {
    "llama.cpp": "runners.llamacpp:LlamaCppRunner",
    "executorch": "runners.executorch:ExecuTorchRunner",
    "litert": "runners.litert:LiteRTRunner",
    "litert-lm": "runners.litert_lm:LiteRTLMRunner",
    "onnxruntime": "runners.onnxruntime:OnnxRuntimeRunner",
    "mlx": "runners.mlx:MlxRunner",
    "fake": "runners.fake:FakeRunner",
}
# Runners never picked by default: the fake one produces scripted, not measured, figures.
HIDDEN = frozenset({"fake"})
ENTRY_POINT_GROUP = "edgebench.runners"


@dataclass(frozen=True)
class Registration:
    name: str
    target: str  # "module:Class"
    origin: str  # "builtin" or the distribution that registered it

    @property
    def hidden(self) -> bool:
        return self.name in HIDDEN


def registrations() -> dict[str, Registration]:
    """Every registered runner, built-in first; a plugin cannot shadow a built-in."""
    found = {name: Registration(name, target, "builtin") for name, target in BUILTIN.items()}
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if ep.name not in found:
            origin = ep.dist.name if ep.dist else "entry point"
            found[ep.name] = Registration(ep.name, ep.value, origin)
    return found


def load_class(target: str) -> type:
    """Import "module:Class" and return the class."""
    module_name, _, attr = target.partition(":")
    return getattr(importlib.import_module(module_name), attr)
