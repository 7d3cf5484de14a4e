"""Durations with units, as users type them: "90s", "10m", "1.5h" (a bare number is seconds)."""

from __future__ import annotations

import re

from bench.errors import BenchError

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0}
_PATTERN = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")


def parse_duration(text: str, what: str = "duration", exit_code: int = 2) -> float:
    """Seconds in `text`; a bad unit, zero or a negative value is a BenchError naming `what`."""
    match = _PATTERN.match(str(text))
    example = "e.g. 90s, 10m or 1h"
    if not match:
        raise BenchError(f"{what} '{text}' is not a duration", example, exit_code=exit_code)
    number, unit = float(match.group(1)), match.group(2).lower() or "s"
    if unit not in _UNITS:
        raise BenchError(
            f"{what} '{text}' has unknown unit '{match.group(2)}'", f"use s, m or h ({example})", exit_code=exit_code
        )
    if number <= 0:
        raise BenchError(f"{what} must be positive, got '{text}'", example, exit_code=exit_code)
    return number * _UNITS[unit]


def format_duration(seconds: float) -> str:
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{seconds / 3600:g}h"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{seconds / 60:g}m"
    return f"{seconds:g}s"
