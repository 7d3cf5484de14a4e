"""The tiered device matrix: results of many devices and runs -> tier -> device ->
runtime x quantization, each cell with decode speed, TTFT, MBU and workload verdicts.

Only comparable results are merged into a cell: same suite (by hash) and same artifact
(by hash). When a cell holds results of different suites or artifacts, each variant is
its own row, marked with the reason, never averaged with the others.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from bench import resultset, targets, verdicts
from bench.verdicts import Verdict

COLUMNS = ("run_id", "device_fingerprint", "device_profile", "device_cpu_model", "device_board", "device_ram_gb",
           "device_cores_logical", "device_class", "tier", "bandwidth_gbs", "runner", "synthetic", "model_id",
           "quantization", "artifact_sha256", "suite_id", "suite_sha256", "prompt_id", "category", "warmup",
           "repeat", "status", "mode", "ttft_ms", "decode_tok_s", "e2e_ms", "prefill_tok_s", "itl_p50_ms",
           "itl_p99_ms", "decode_roofline_tok_s", "mbu")
CELL = ["tier", "device", "runner", "model_id", "quantization"]
# Row figure -> the record column whose median it is.
FIGURES = {"decode_tok_s": "decode_tok_s", "ttft_ms": "ttft_ms", "roofline_tok_s": "decode_roofline_tok_s", "mbu": "mbu"}
VARIANT = ["suite_sha256", "artifact_sha256"]


@dataclass
class Row:
    tier: str
    device: str
    device_label: str
    runner: str
    model: str
    quantization: str
    suite: str
    artifact_sha256: str
    synthetic: bool
    n: int
    failed: int
    decode_tok_s: float | None
    ttft_ms: float | None
    roofline_tok_s: float | None
    mbu: float | None
    verdicts: list[Verdict] = field(default_factory=list)
    not_comparable: str = ""  # why this row stands apart from others of its cell


@dataclass
class Matrix:
    rows: list[Row]
    tiers: list[str]
    workloads: list[str]
    devices: dict[str, str]  # device key -> how its tier was decided
    files: int
    records: int


def load(targets_: list[str]) -> tuple[pd.DataFrame, int]:
    paths = resultset.expand(targets_)
    return resultset.load(paths, COLUMNS), len(paths)


def _given(value) -> bool:
    return resultset.known(value) not in (None, "")


def _label(first: pd.Series) -> str:
    if _given(first["device_profile"]):
        return str(first["device_profile"])
    name = next((first[k] for k in ("device_board", "device_cpu_model") if _given(first[k])), "unknown device")
    return f"{name} [{str(first['device_fingerprint'])[:8]}]"


DEVICE_FACTS = ["device_profile", "device_board", "device_cpu_model", "device_fingerprint", "tier", "bandwidth_gbs",
                "device_ram_gb", "device_cores_logical", "device_class"]


def _devices(df: pd.DataFrame) -> pd.DataFrame:
    """Add the `device` column (the device profile, else the fingerprint); return each
    device's facts, each the first one its records state."""
    profile = df["device_profile"].astype(object)
    device = profile.where(profile.notna(), df["device_fingerprint"].astype(object)).fillna("unknown")
    df["device"] = device.astype("category")
    return resultset.groups(df[DEVICE_FACTS], df["device"]).first()


def label_devices(df: pd.DataFrame) -> dict[str, str]:
    """Add the `device` column; return each device's display label."""
    return {key: _label(facts) for key, facts in _devices(df).iterrows()}


def _place_devices(df: pd.DataFrame, tiers: tuple[targets.Tier, ...]) -> tuple[pd.Series, dict[str, str], dict[str, str]]:
    """Each device's tier: the one its records name, else assigned here from its facts."""
    labels, tier_of, why = {}, {}, {}
    for key, facts in _devices(df).iterrows():
        labels[key] = _label(facts)
        facts = facts.map(resultset.known)
        if facts["tier"] is not None:
            tier_of[key], why[key] = str(facts["tier"]), "tier recorded by the run"
            continue
        tier, lines = targets.assign_tier(
            tiers, ram_gb=facts["device_ram_gb"], cores=facts["device_cores_logical"],
            bandwidth_gbs=facts["bandwidth_gbs"], device_class=facts["device_class"] or None)
        tier_of[key], why[key] = (tier.id if tier else "untiered"), lines[-1] if lines else ""
    return df["device"].map(tier_of), why, labels


def _number(value) -> float | None:
    return resultset.known(float(value))


def _variant_reason(variant: tuple, variants: list[tuple], suite_ids: dict) -> str:
    suite, artifact = variant
    if len(variants) < 2:
        return ""
    why = []
    if len({v[0] for v in variants}) > 1:
        why.append(f"suite {suite_ids.get(suite, '?')} ({str(suite)[:8]}) differs")
    if len({v[1] for v in variants}) > 1:
        why.append(f"artifact {str(artifact)[:8]} differs")
    return "; ".join(why)


def build(df: pd.DataFrame, files: int = 0, workloads: tuple[targets.Workload, ...] | None = None,
          tiers: tuple[targets.Tier, ...] | None = None) -> Matrix:
    """The matrix: every statistic of every cell variant computed in one grouping, so a
    million records of hundreds of cells build in about a second."""
    workloads = workloads or targets.load_workloads()
    tiers = tiers or targets.load_tiers()
    df = df.copy()
    resultset.fill(df, ("runner", "model_id", "quantization", "suite_sha256", "artifact_sha256"))
    df["tier"], device_why, labels = _place_devices(df, tiers)
    keys = CELL + VARIANT
    used = list(dict.fromkeys([*keys, *verdicts.READ, "synthetic", *FIGURES.values()]))
    ok = df.loc[(df["status"] == "ok") & (df["warmup"] == False), used]  # noqa: E712 (pandas mask)
    grouping = resultset.groups(ok, keys)
    group, cells = grouping.ngroup().to_numpy(), list(grouping.size().index)  # cells[number] = key
    failed = resultset.groups(df[df["status"] != "ok"], keys).size()
    failed = dict(zip(failed.index, failed.to_numpy()))
    suites = df[["suite_sha256", "suite_id"]].drop_duplicates()
    suite_ids = dict(zip(suites["suite_sha256"], suites["suite_id"]))
    figures = resultset.numbers(ok[list(FIGURES.values())]).groupby(group)
    medians, sizes = figures.median(), figures.size()
    synthetic = ok["synthetic"].isin([True]).groupby(group).any()
    judged = [verdicts.judge_groups(ok, group, w) for w in workloads]
    variants: dict[tuple, list[tuple]] = {}
    for key in cells:
        variants.setdefault(key[:len(CELL)], []).append(key[len(CELL):])
    rows: list[Row] = []
    for number, median, n, synth in zip(sizes.index, medians.to_numpy(), sizes.to_numpy(), synthetic.to_numpy()):
        key = cells[number]
        cell, variant = key[:len(CELL)], key[len(CELL):]
        figure = dict(zip(FIGURES, map(_number, median)))
        rows.append(Row(
            tier=cell[0], device=cell[1], device_label=labels.get(cell[1], cell[1]), runner=cell[2],
            model=cell[3], quantization=cell[4], suite=suite_ids.get(variant[0]) or "–", artifact_sha256=variant[1],
            synthetic=bool(synth), n=int(n), failed=int(failed.get(key, 0)), **figure,
            verdicts=[j.get(number, verdicts.unmeasured(w)) for j, w in zip(judged, workloads)],
            not_comparable=_variant_reason(variant, variants[cell], suite_ids)))
    tier_order = {t.id: i for i, t in enumerate(tiers)}
    rows.sort(key=lambda r: (tier_order.get(r.tier, len(tier_order)), r.device_label, r.runner, r.model, r.quantization))
    seen_tiers = list(dict.fromkeys(r.tier for r in rows))
    return Matrix(rows, seen_tiers, [w.id for w in workloads], device_why, files, len(df))


def table(matrix: Matrix) -> pd.DataFrame:
    """The flat table (CSV): one row per cell variant, one column per workload verdict."""
    records = []
    for r in matrix.rows:
        item = {"tier": r.tier, "device": r.device_label, "runner": r.runner + (" (FAKE)" if r.synthetic else ""),
                "model": r.model, "quant": r.quantization, "suite": r.suite, "artifact": r.artifact_sha256[:12],
                "n": r.n, "failed": r.failed, "decode_tok_s": r.decode_tok_s, "ttft_ms": r.ttft_ms,
                "roofline_tok_s": r.roofline_tok_s, "mbu_pct": None if r.mbu is None else 100 * r.mbu}
        item |= {w: v.verdict for w, v in zip(matrix.workloads, r.verdicts)}
        item["not_comparable"] = r.not_comparable
        records.append(item)
    return pd.DataFrame.from_records(records)
