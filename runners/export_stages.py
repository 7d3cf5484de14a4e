"""Stage names for `prepare`'s progress, taken from an exporter library's own steps.

An exporter such as ExecuTorch's export_llama or litert-torch's export runs its steps
inside one call; `announce_calls` wraps the functions (or methods) that begin each step so
that entering one names its stage, then puts the originals back.
"""

from __future__ import annotations

import contextlib
import functools
from typing import Callable, Iterator


@contextlib.contextmanager
def announce_calls(owner: object, steps: dict[str, str], stage: Callable[[str], None]) -> Iterator[None]:
    """While inside, calling `owner.<name>` first calls `stage(steps[name])`."""
    originals = {name: getattr(owner, name) for name in steps}

    def announcing(name: str, step: Callable) -> Callable:
        @functools.wraps(step)
        def call(*args, **kwargs):
            stage(steps[name])
            return step(*args, **kwargs)

        return call

    for name, step in originals.items():
        setattr(owner, name, announcing(name, step))
    try:
        yield
    finally:
        for name, step in originals.items():
            setattr(owner, name, step)
