"""Where edgebench keeps what it makes: one cache home for every cache."""

from __future__ import annotations

import os
from pathlib import Path


def cache_home() -> Path:
    """$XDG_CACHE_HOME/edgebench, or ~/.cache/edgebench when it is unset or empty (the XDG rule)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "edgebench"
