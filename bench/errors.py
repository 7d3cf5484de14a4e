"""The one user-facing error type: printed once as "Error: …" plus a hint, exit code 1."""

from __future__ import annotations

import difflib
from typing import Iterable


class BenchError(Exception):
    def __init__(self, message: str, hint: str = "", exit_code: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.exit_code = exit_code


def unknown_name(kind: str, name: str, valid: Iterable[str], hint: str = "") -> BenchError:
    """An unknown name, with a did-you-mean and the list of valid ones."""
    valid = sorted(valid)
    close = difflib.get_close_matches(name, valid, n=1)
    guess = f" Did you mean '{close[0]}'?" if close else ""
    listing = ", ".join(valid) if valid else "none"
    return BenchError(f"unknown {kind} '{name}'.{guess}", hint or f"valid {kind}s: {listing}")
