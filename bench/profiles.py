"""Run profiles: how many warm-ups and repetitions, which prompts, which limits."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bench import datafiles
from bench.errors import BenchError


@dataclass(frozen=True)
class RunProfile:
    name: str
    description: str
    warmups: int
    repetitions: int
    tags: tuple[str, ...] = ()  # only prompts carrying one of these tags; empty: all
    context_tokens: int = 2048
    generation_timeout_s: float = 300.0
    load_timeout_s: float = 600.0
    sha256: str = ""
    path: Path | None = None

    def selects(self, prompt_tags: tuple[str, ...]) -> bool:
        return not self.tags or bool(set(self.tags) & set(prompt_tags))


@dataclass(frozen=True)
class _ProfileFile:
    name: str
    description: str
    warmups: int
    repetitions: int
    tags: tuple[str, ...] = ()
    context_tokens: int = 2048
    generation_timeout_s: float = 300.0
    load_timeout_s: float = 600.0


def load_profile(name_or_path: str) -> RunProfile:
    path = datafiles.resolve("runs", name_or_path)
    table, sha = datafiles.read_toml(path)
    data = datafiles.build(_ProfileFile, table, str(path))
    where = str(path)
    if data.warmups < 0:
        raise BenchError(f"{where}: warmups must be 0 or more", "fix warmups")
    if data.repetitions < 1:
        raise BenchError(f"{where}: repetitions must be at least 1", "fix repetitions")
    if data.context_tokens < 64:
        raise BenchError(f"{where}: context_tokens must be at least 64", "fix context_tokens")
    if data.generation_timeout_s <= 0 or data.load_timeout_s <= 0:
        raise BenchError(f"{where}: timeouts must be positive", "fix the *_timeout_s values")
    return RunProfile(**vars(data), sha256=sha, path=path)
