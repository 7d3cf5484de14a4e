"""Targets as data: workloads (latency budgets), device tiers (rules), and device
profiles (known farm devices with public spec figures). Read from profiles/."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from bench.data import files as datafiles
from bench.errors import BenchError

DEVICE_CLASSES = ("phone", "tablet", "board", "laptop", "desktop", "server")


@dataclass(frozen=True)
class Workload:
    id: str
    description: str
    categories: tuple[str, ...]
    # Judged only on depth-sweep records at this many tokens of history (None: only on records
    # of requests on an empty cache, never a sweep's)
    depth: int | None = None
    ttft_ms_max: float | None = None
    decode_tok_s_min: float | None = None
    e2e_ms_max: float | None = None
    # quality against the fp32 reference, judged on the cell's quality record
    max_kld: float | None = None  # mean KL divergence, nats
    max_perplexity_increase: float | None = None  # relative to the reference's perplexity: 0.10 = 10% higher
    min_greedy_agreement: float | None = None  # share of greedy tokens equal to the reference's, 0-1
    # a conversation's turn (1-based): the timing budgets hold for that turn of a conversation,
    # judged on conversation records of that turn only
    turn: int | None = None

    def budgets(self) -> dict[str, float]:
        """The budgets this workload states, by field name."""
        return {
            name: value
            for name, value in vars(self).items()
            if name not in ("id", "description", "categories", "turn", "depth") and value is not None
        }


# Quality budgets' allowed ranges: (field, lowest, highest, what it is)
QUALITY_RANGES = (
    ("max_kld", 0.0, None, "a mean KL divergence in nats, e.g. 0.05"),
    ("max_perplexity_increase", 0.0, None, "a share of the reference's perplexity, e.g. 0.10 for 10%"),
    ("min_greedy_agreement", 0.0, 1.0, "a share between 0 and 1, e.g. 0.8"),
)


@dataclass(frozen=True)
class Tier:
    id: str
    description: str
    ram_gb_min: float | None = None
    bandwidth_gbs_min: float | None = None
    cores_min: int | None = None
    classes: tuple[str, ...] = ()  # empty: any class of device


@dataclass(frozen=True)
class DeviceProfile:
    id: str
    name: str
    sources: tuple[str, ...]  # where each figure comes from
    ram_gb: float
    cores: int
    device_class: str = ""
    soc: str = ""
    max_freq_mhz: float | None = None
    bandwidth_gbs: float | None = None
    gpu: str = ""
    npu: str = ""
    # A phone's own tier by its SoC's class (flagship, mid, entry), stated rather than ruled,
    # and the SoC names its getprop gives (ro.soc.model, ro.board.platform) to find it by.
    tier: str = ""
    soc_models: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Workloads:
    workload: tuple[Workload, ...]


@dataclass(frozen=True)
class _Tiers:
    tier: tuple[Tier, ...]


@dataclass(frozen=True)
class _DeviceFile:  # `class` is a Python keyword: renamed on reading
    id: str
    name: str
    sources: tuple[str, ...]
    ram_gb: float
    cores: int
    soc: str = ""
    max_freq_mhz: float | None = None
    bandwidth_gbs: float | None = None
    gpu: str = ""
    npu: str = ""
    tier: str = ""
    soc_models: tuple[str, ...] = ()


def _packaged(name: str) -> Path:
    return datafiles.packaged_dir(".") / name


def load_workloads(path: Path | None = None) -> tuple[Workload, ...]:
    path = path or _packaged("workloads.toml")
    table, _ = datafiles.read_toml(path)
    workloads = datafiles.build(_Workloads, table, str(path)).workload
    seen: dict[tuple[str, int | None], str] = {}
    for w in workloads:
        if not w.budgets():
            raise BenchError(
                f"{path}: workload '{w.id}' states no budget",
                "give ttft_ms_max, decode_tok_s_min, e2e_ms_max, max_kld, max_perplexity_increase "
                "or min_greedy_agreement",
            )
        _check_quality_ranges(path, w)
        if w.turn is not None and (w.turn < 1 or any(getattr(w, b[0]) is not None for b in QUALITY_RANGES)):
            raise BenchError(
                f"{path}: workload '{w.id}': turn = {w.turn} needs a turn from 1 and timing budgets only",
                "give turn = N (1 is the first turn) with ttft_ms_max, decode_tok_s_min or e2e_ms_max",
            )
        if w.depth is not None and w.depth < 0:
            raise BenchError(f"{path}: workload '{w.id}' has a negative depth", "give depth as 0 or more tokens")
        for category in w.categories:
            at = f"'{category}'" + (f" at depth {w.depth}" if w.depth is not None else "")
            if (category, w.depth) in seen:
                raise BenchError(
                    f"{path}: category {at} maps to both '{seen[category, w.depth]}' and '{w.id}'",
                    "map each category (at each depth) to one workload",
                )
            seen[category, w.depth] = w.id
    _unique(path, [w.id for w in workloads], "workload")
    return workloads


def load_tiers(path: Path | None = None) -> tuple[Tier, ...]:
    path = path or _packaged("tiers.toml")
    table, _ = datafiles.read_toml(path)
    tiers = datafiles.build(_Tiers, table, str(path)).tier
    _unique(path, [t.id for t in tiers], "tier")
    for t in tiers:
        for c in t.classes:
            _check_class(path, c)
    return tiers


def load_device_profile(name_or_path: str) -> DeviceProfile:
    path = datafiles.resolve("devices", name_or_path)
    table, _ = datafiles.read_toml(path)
    device_class = ""
    if isinstance(table, dict):
        table = dict(table)
        device_class = table.pop("class", "")
    data = datafiles.build(_DeviceFile, table, str(path))
    _check_class(path, device_class)
    if data.bandwidth_gbs is not None and data.bandwidth_gbs <= 0:
        raise BenchError(f"{path}: bandwidth_gbs must be positive", "give the memory bandwidth in GB/s")
    tiers = [t.id for t in load_tiers()]
    if data.tier and data.tier not in tiers:
        raise BenchError(f"{path}: tier '{data.tier}' is not a tier of tiers.toml", f"use one of {', '.join(tiers)}")
    return DeviceProfile(**vars(data), device_class=device_class)


def phone_profile_for_soc(soc: str | None) -> DeviceProfile | None:
    """The packaged phone profile whose SoC getprop names `soc` and that states a tier."""
    return next((p for p in device_profiles().values() if soc and soc in p.soc_models and p.tier), None)


@lru_cache(maxsize=None)
def device_profiles() -> dict[str, DeviceProfile]:
    return {n: load_device_profile(n) for n in datafiles.packaged_names("devices")}


def workload_for(category: str | None, workloads: tuple[Workload, ...]) -> Workload | None:
    return next((w for w in workloads if category in w.categories), None)


def check_suite_categories(categories: set[str], workloads: tuple[Workload, ...]) -> list[str]:
    """Categories of a suite that no workload covers."""
    return sorted(c for c in categories if workload_for(c, workloads) is None)


def assign_tier(
    tiers: tuple[Tier, ...],
    *,
    ram_gb: float | None,
    cores: int | None,
    bandwidth_gbs: float | None,
    device_class: str | None,
) -> tuple[Tier | None, list[str]]:
    """The first tier whose every rule holds, and why: one line per rule checked. A rule on
    a figure that is not known (no bandwidth measured) does not hold."""
    why: list[str] = []
    for tier in tiers:
        failed = []
        checks = [
            ("RAM", ram_gb, tier.ram_gb_min, "GB"),
            ("bandwidth", bandwidth_gbs, tier.bandwidth_gbs_min, "GB/s"),
            ("cores", cores, tier.cores_min, ""),
        ]
        for label, value, minimum, unit in checks:
            if minimum is not None and (value is None or value < minimum):
                shown = "unknown" if value is None else f"{value:g}"
                failed.append(f"{label} {shown} < {minimum:g} {unit}".rstrip())
        if tier.classes and device_class not in tier.classes:
            failed.append(f"class {device_class or 'unknown'} not in {', '.join(tier.classes)}")
        if not failed:
            held = [
                f"{label} {value:g} >= {minimum:g} {unit}".rstrip()
                for label, value, minimum, unit in checks
                if minimum is not None
            ]
            why.append(f"{tier.id}: " + ("; ".join(held) if held else "no rules (catch-all)"))
            return tier, why
        why.append(f"not {tier.id}: " + "; ".join(failed))
    return None, why


def _check_quality_ranges(path: Path, workload: Workload) -> None:
    for name, lowest, highest, what in QUALITY_RANGES:
        value = getattr(workload, name)
        if value is not None and (value < lowest or (highest is not None and value > highest)):
            raise BenchError(f"{path}: workload '{workload.id}': {name} = {value:g} is out of range", f"give {what}")


def _unique(path: Path, ids: list[str], what: str) -> None:
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise BenchError(f"{path}: {what} id(s) {', '.join(dupes)} appear twice", f"give each {what} its own id")


def _check_class(path: Path, device_class: str) -> None:
    if device_class and device_class not in DEVICE_CLASSES:
        raise BenchError(f"{path}: unknown device class '{device_class}'", f"use one of: {', '.join(DEVICE_CLASSES)}")
