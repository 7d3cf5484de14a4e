"""Run profiles: how many warm-ups and repetitions, which prompts, which limits."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bench.data import files as datafiles
from bench.data.durations import parse_duration
from bench.errors import BenchError


@dataclass(frozen=True)
class SustainedSettings:
    """`edgebench sustained`: repeat `prompt` (a fixed-length prompt) for duration_s,
    analysed in windows of window_s."""

    prompt: str
    duration_s: float
    window_s: float


@dataclass(frozen=True)
class _SustainedFile:
    prompt: str
    duration: str  # with a unit: "10m", "60s"
    window: str


@dataclass(frozen=True)
class RunProfile:
    name: str
    description: str
    warmups: int
    repetitions: int
    tags: tuple[str, ...] = ()  # only prompts carrying one of these tags; empty: all
    suite: str | None = None  # the suite `run` takes with this profile when --suite is not given
    context_tokens: int = 2048
    generation_timeout_s: float = 300.0
    load_timeout_s: float = 600.0
    # The most time one prompt (warm-ups and repetitions) may take on one runtime (None: no limit).
    prompt_budget_s: float | None = None
    # Score each runner's quality (bench.quality) right after its suite, in the same run.
    quality: bool = False
    # The most time one runner's quality scoring may take (None: no limit); estimated like a prompt's.
    quality_budget_s: float | None = None
    sustained: SustainedSettings | None = None
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
    suite: str | None = None
    context_tokens: int = 2048
    generation_timeout_s: float = 300.0
    load_timeout_s: float = 600.0
    prompt_budget: str | None = None  # with a unit: "90s"
    quality: bool = False
    quality_budget: str | None = None  # with a unit: "90s"
    sustained: _SustainedFile | None = None


def sustained_settings(prompt: str, duration: str, window: str, where: str, exit_code: int = 2) -> SustainedSettings:
    """Checked settings: positive durations with units, at least four windows in the run
    (the floor is the median of the last quarter, and a drop must hold for a window)."""
    duration_s = parse_duration(duration, f"{where}duration", exit_code)
    window_s = parse_duration(window, f"{where}window", exit_code)
    if duration_s < 4 * window_s:
        raise BenchError(
            f"{where}duration {duration} is shorter than four windows of {window}",
            "use a longer duration or a shorter window",
            exit_code=exit_code,
        )
    return SustainedSettings(prompt, duration_s, window_s)


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
    sustained = None
    if data.sustained:
        s = data.sustained
        sustained = sustained_settings(s.prompt, s.duration, s.window, f"{where}: sustained ", exit_code=1)
    fields = {k: v for k, v in vars(data).items() if k not in ("prompt_budget", "quality_budget")}
    return RunProfile(
        **(fields | {"sustained": sustained}),
        prompt_budget_s=_duration(data.prompt_budget, f"{where}: prompt_budget"),
        quality_budget_s=_duration(data.quality_budget, f"{where}: quality_budget"),
        sha256=sha,
        path=path,
    )


def _duration(value: str | None, where: str) -> float | None:
    return parse_duration(value, where, exit_code=1) if value is not None else None
