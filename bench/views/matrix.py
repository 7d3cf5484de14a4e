"""The tiered device matrix: results of many devices and runs -> tier -> device ->
runtime x quantization, each cell with its decode probe's speed, roofline and MBU, and
workload verdicts.

Only comparable results are merged into a cell: same suite (by hash), same artifact (by
hash) and the same prompt set (the prompts each run measured, and whether it was a suite
or a sustained run: a quick run and a default run are different variants). When a cell
holds results of different variants, each is its own row, marked with the reason, never
averaged with the others.

No figure pools unlike prompts. Decode speed, roofline and MBU come from ONE prompt: the
cell's fixed-length throughput probe with the shortest prompt (pp128-tg64 in both the
quick and the default suite), never suite and sustained records together; each workload is judged on its own
prompts, each prompt on its own (bench.analysis.verdicts). MBU is given per bandwidth source
(measured on the device, or a device profile's datasheet figure), never one median of both.

Quality records (mode "quality": scores against the fp32 reference) time nothing: they
never enter a cell's counts, prompt set or figures. Each row shows the quality record of
its own (device, runner, model, quantization, artifact); a cell with a quality record and
no timing gets a row of its own with quality alone.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from bench.analysis import resultset, stats, verdicts
from bench.analysis.stats import Quality
from bench.analysis.verdicts import Verdict
from bench.data import workloads as workload_data
from bench.data.suite import PROBE_CATEGORY
from bench.records import FAILED
from bench.views import conversations, depth
from bench.views.table import runner_label

COLUMNS = (
    "run_id",
    "device_fingerprint",
    "device_profile",
    "device_cpu_model",
    "device_board",
    "device_ram_gb",
    "device_cores_logical",
    "device_class",
    "tier",
    "bandwidth_gbs",
    "bandwidth_source",
    "runner",
    "accelerator",
    "synthetic",
    "clock",
    "model_id",
    "quantization",
    "artifact_sha256",
    "suite_id",
    "suite_sha256",
    "prompt_id",
    "category",
    "depth",
    "warmup",
    "repeat",
    "prompt_tokens",
    "status",
    "mode",
    "turn",
    "history_tokens",
    "history_reused",
    "prefill_counted_by",
    "ttft_ms",
    "decode_tok_s",
    "e2e_ms",
    "prefill_tok_s",
    "itl_p50_ms",
    "itl_p99_ms",
    "decode_roofline_tok_s",
    "mbu",
    "error",
    # a depth sweep's figures (bench.views.depth)
    "fill_tok_s",
    "kv_bytes",
    "peak_rss_mb",
    "skip_reason",
    *stats.QUALITY_FIGURES,
)
CELL = ["tier", "device", "runner", "model_id", "quantization"]
QUALITY_KEY = CELL + ["artifact_sha256"]  # a quality record belongs to the rows of its own artifact
VARIANT = ["suite_sha256", "artifact_sha256", "prompt_set"]
BANDWIDTH_KINDS = ("measured", "datasheet")
# Row figure -> the probe column whose median it is ("@kind": only records of that bandwidth source).
FIGURES = {
    "decode_tok_s": "decode_tok_s",
    "roofline_measured_tok_s": "decode_roofline_tok_s@measured",
    "mbu_measured": "mbu@measured",
    "roofline_datasheet_tok_s": "decode_roofline_tok_s@datasheet",
    "mbu_datasheet": "mbu@datasheet",
}


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
    prompt_set: str
    synthetic: bool
    n: int
    failed: int
    decode_probe: str | None  # the prompt the decode figures come from
    decode_tok_s: float | None
    roofline_measured_tok_s: float | None
    mbu_measured: float | None
    roofline_datasheet_tok_s: float | None
    mbu_datasheet: float | None
    verdicts: list[Verdict] = field(default_factory=list)
    not_comparable: str = ""  # why this row stands apart from others of its cell
    quality: Quality | None = None  # the quality record of this cell and artifact, if any
    runtime_clock: bool = False  # its figures are the runtime's own timing (clock "runtime"), not the harness's

    @property
    def runner_label(self) -> str:
        return runner_label(self.runner, self.synthetic) + (" (runtime clock)" if self.runtime_clock else "")

    def roofline_tok_s(self) -> float | None:
        """The roofline to draw: from measured bandwidth where known, else the datasheet's."""
        return (
            self.roofline_measured_tok_s if self.roofline_measured_tok_s is not None else self.roofline_datasheet_tok_s
        )


@dataclass
class Matrix:
    rows: list[Row]
    tiers: list[str]
    workloads: list[str]
    devices: dict[str, str]  # device key -> how its tier was decided
    files: int
    records: int
    turns: list = field(default_factory=list)  # conversation turns per device (bench.views.conversations.Turn)
    depth: pd.DataFrame = field(default_factory=pd.DataFrame)  # the depth sweeps, per device (bench.views.depth)

    def turns_on(self, device: str) -> list:
        """The conversation turns measured on one device."""
        return [t for t in self.turns if t.where == (device,)]


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


DEVICE_FACTS = [
    "device_profile",
    "device_board",
    "device_cpu_model",
    "device_fingerprint",
    "tier",
    "bandwidth_gbs",
    "device_ram_gb",
    "device_cores_logical",
    "device_class",
]


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


def _place_devices(
    df: pd.DataFrame, tiers: tuple[workload_data.Tier, ...]
) -> tuple[pd.Series, dict[str, str], dict[str, str]]:
    """Each device's tier: the one its records name, else assigned here from its facts."""
    labels, tier_of, why = {}, {}, {}
    for key, facts in _devices(df).iterrows():
        labels[key] = _label(facts)
        facts = facts.map(resultset.known)
        if facts["tier"] is not None:
            tier_of[key], why[key] = str(facts["tier"]), "tier recorded by the run"
            continue
        tier, lines = workload_data.assign_tier(
            tiers,
            ram_gb=facts["device_ram_gb"],
            cores=facts["device_cores_logical"],
            bandwidth_gbs=facts["bandwidth_gbs"],
            device_class=facts["device_class"] or None,
        )
        tier_of[key], why[key] = (tier.id if tier else "untiered"), lines[-1] if lines else ""
    return df["device"].map(tier_of), why, labels


def _number(value) -> float | None:
    return None if value is None else resultset.known(float(value))


def _variant_reason(variant: tuple, variants: list[tuple], suite_ids: dict) -> str:
    suite, artifact, prompt_set = variant
    if len(variants) < 2:
        return ""
    why = []
    if len({v[0] for v in variants}) > 1:
        why.append(f"suite {suite_ids.get(suite, '?')} ({str(suite)[:8]}) differs")
    if len({v[1] for v in variants}) > 1:
        why.append(f"artifact {str(artifact)[:8]} differs")
    if len({v[2] for v in variants}) > 1:
        why.append(f"prompt set ({prompt_set}) differs")
    return "; ".join(why)


def _prompt_set_label(modes: set, prompts: set) -> str:
    """A run's prompt set: suite or sustained, and the prompts it measured (a short hash
    of them when there are many)."""
    kind = "sustained" if "sustained" in modes else "suite"
    names = sorted(map(str, prompts))
    digest = hashlib.sha256("\n".join(names).encode()).hexdigest()[:8]
    return f"{kind}: " + (", ".join(names) if len(names) <= 3 else f"{len(names)} prompts #{digest}")


def _codes(column: pd.Series) -> tuple[np.ndarray, list]:
    """A column as categorical codes (-1: missing) and its categories."""
    values = column.astype("category")
    return values.cat.codes.to_numpy(), list(values.cat.categories)


def _prompt_sets(df: pd.DataFrame) -> pd.Categorical:
    """Each record's run's prompt set (the run's measured records, failed ones included)."""
    measured = stats.is_repetition(df).to_numpy()
    (runs, run_names), (modes, mode_names), (prompts, prompt_names) = (
        _codes(df[c]) for c in ("run_id", "mode", "prompt_id")
    )
    m, p = len(mode_names) + 1, len(prompt_names) + 1  # one integer per (run, mode, prompt): one fast unique
    combined = np.unique((((runs.astype(np.int64) + 1) * m + modes + 1) * p + prompts + 1)[measured])
    seen: dict[int, tuple[set, set]] = {}
    for run, mode, prompt in zip(combined // (m * p) - 1, combined // p % m - 1, combined % p - 1):
        run_modes, run_prompts = seen.setdefault(run, (set(), set()))
        run_modes.add(mode_names[mode] if mode >= 0 else None)
        run_prompts.add(prompt_names[prompt] if prompt >= 0 else "–")
    labels = [_prompt_set_label(*seen[i]) if i in seen else "–" for i in range(len(run_names))] + ["–"]
    label_codes, unique = pd.factorize(np.array(labels, dtype=object))
    return pd.Categorical.from_codes(label_codes[runs], unique)  # a run code of -1 picks the last label


def bandwidth_kind(source) -> str | None:
    """Where a record's bandwidth figure comes from: "measured" on the device, "datasheet"
    (a device profile's spec), or None when the record does not say."""
    text = str(resultset.known(source) or "")
    if text.startswith("measured"):
        return "measured"
    # as bench.device.tiering writes it; schema-2 records, with another wording, read with no MBU anyway
    return "datasheet" if text.startswith("datasheet") else None


def _probe_figures(ok: pd.DataFrame, group: np.ndarray) -> dict[int, dict]:
    """Per group: its decode probe (the throughput prompt with the fewest prompt tokens; its
    suite records, its sustained ones only in a group without suite records) and the medians
    of that prompt's figures (FIGURES), all groups at once."""
    probe = ok["category"].isin([PROBE_CATEGORY]).to_numpy()
    rows = ok.loc[probe]
    values = resultset.numbers(rows[["decode_tok_s", "decode_roofline_tok_s", "mbu", "prompt_tokens"]])
    kinds = rows["bandwidth_source"].map(bandwidth_kind).astype(object).to_numpy()
    frame = pd.DataFrame(
        {
            "group": group[probe],
            "probe": rows["prompt_id"].astype(object).to_numpy(),
            "sustained": rows["mode"].isin(["sustained"]).to_numpy(),
            "decode_tok_s": values["decode_tok_s"].to_numpy(),
            "prompt_tokens": values["prompt_tokens"].to_numpy(),
        }
    )
    for kind in BANDWIDTH_KINDS:
        for column in ("decode_roofline_tok_s", "mbu"):
            frame[f"{column}@{kind}"] = values[column].where(kinds == kind).to_numpy()
    medians = frame.groupby(["group", "sustained", "probe"], sort=False, dropna=False).median().reset_index()
    chosen = medians.sort_values(["sustained", "prompt_tokens", "probe"], na_position="last").drop_duplicates("group")
    return chosen.set_index("group").to_dict("index")


def build(df: pd.DataFrame, files: int = 0, workloads: tuple[workload_data.Workload, ...] | None = None) -> Matrix:
    """The matrix: every statistic of every cell variant computed in one grouping, so a
    million records of hundreds of cells build in about a second."""
    workloads = workloads or workload_data.load_workloads()
    tiers = workload_data.load_tiers()
    df = df.copy()
    resultset.fill(df, ("run_id", "runner", "model_id", "quantization", "suite_sha256", "artifact_sha256"))
    df["runner"] = resultset.runner_on_accelerator(df)
    df["tier"], device_why, labels = _place_devices(df, tiers)
    total = len(df)
    df, scored = split_quality(df)
    quality = stats.latest_quality(scored, QUALITY_KEY)
    df["prompt_set"] = _prompt_sets(df)
    rows = _variant_rows(df, labels, quality, workloads)
    timed = {(r.tier, r.device, r.runner, r.model, r.quantization, r.artifact_sha256) for r in rows}
    rows += _quality_only_rows(quality, timed, scored, labels, workloads)
    tier_order = {t.id: i for i, t in enumerate(tiers)}
    rows.sort(
        key=lambda r: (tier_order.get(r.tier, len(tier_order)), r.device_label, r.runner, r.model, r.quantization)
    )
    seen_tiers = list(dict.fromkeys(r.tier for r in rows))
    turns = conversations.turns_of(df, ("device",))
    sweep = depth.summary(df.assign(device=df["device"].astype(object).map(labels)))
    return Matrix(rows, seen_tiers, [w.id for w in workloads], device_why, files, total, turns, sweep)


def _variant_rows(
    df: pd.DataFrame,
    labels: dict[str, str],
    quality: dict[tuple, Quality],
    workloads: tuple[workload_data.Workload, ...],
) -> list[Row]:
    """A row per cell variant with successful measured records: counts, decode probe
    figures and verdicts, each of them for all variants at once."""
    keys = CELL + VARIANT
    used = list(
        dict.fromkeys(
            [
                *keys,
                *verdicts.READ,
                "synthetic",
                "clock",
                "decode_roofline_tok_s",
                "mbu",
                "prompt_tokens",
                "bandwidth_source",
            ]
        )
    )
    ok = stats.measured(df, used)
    grouping = resultset.groups(ok, keys)
    group, sizes = grouping.ngroup().to_numpy(), grouping.size()
    cells = list(sizes.index)  # cells[number] = key
    failed = resultset.groups(df[df["status"].isin(FAILED)], keys).size()
    failed = dict(zip(failed.index, failed.to_numpy()))
    suites = df[["suite_sha256", "suite_id"]].drop_duplicates()
    suite_ids = dict(zip(suites["suite_sha256"], suites["suite_id"]))
    probes = _probe_figures(ok, group)
    synthetic = ok["synthetic"].isin([True]).groupby(group).any().to_numpy()
    runtime_clock = ok["clock"].isin(["runtime"]).groupby(group).any().to_numpy()
    judged = [verdicts.judge_groups(ok, group, w) for w in workloads]
    variants: dict[tuple, list[tuple]] = {}
    for key in cells:
        variants.setdefault(key[: len(CELL)], []).append(key[len(CELL) :])
    rows: list[Row] = []
    for number, (key, n) in enumerate(zip(cells, sizes.to_numpy())):
        cell, variant = key[: len(CELL)], key[len(CELL) :]
        probe, scored = probes.get(number, {}), quality.get((*cell, variant[1]))
        rows.append(
            Row(
                tier=cell[0],
                device=cell[1],
                device_label=labels.get(cell[1], cell[1]),
                runner=cell[2],
                model=cell[3],
                quantization=cell[4],
                suite=suite_ids.get(variant[0]) or "–",
                artifact_sha256=variant[1],
                prompt_set=variant[2],
                synthetic=bool(synthetic[number]),
                runtime_clock=bool(runtime_clock[number]),
                n=int(n),
                failed=int(failed.get(key, 0)),
                decode_probe=probe.get("probe"),
                **{name: _number(probe.get(column)) for name, column in FIGURES.items()},
                verdicts=[
                    verdicts.with_quality(j.get(number, verdicts.unmeasured(w)), w, scored)
                    for j, w in zip(judged, workloads)
                ],
                not_comparable=_variant_reason(variant, variants[cell], suite_ids),
                quality=scored,
            )
        )
    return rows


def from_records(records: list[dict]) -> Matrix:
    """One run's records (one device, one results file) as a matrix."""
    frame = pd.DataFrame.from_records([{c: r.get(c) for c in COLUMNS} for r in records], columns=list(COLUMNS))
    return build(frame, 1)


def split_quality(df: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(the timing records, the quality records): quality records time nothing."""
    scored = stats.is_quality(df["mode"])
    if not scored.any():
        return df, df.iloc[:0]
    return df.loc[~scored].copy(), df.loc[scored]


def _quality_only_rows(
    quality: dict[tuple, Quality],
    timed: set[tuple],
    scored: pd.DataFrame,
    labels: dict[str, str],
    workloads: tuple[workload_data.Workload, ...],
) -> list[Row]:
    """A row for each quality record whose cell and artifact have no timing: quality alone."""
    synthetic = set(map(tuple, scored.loc[scored["synthetic"].isin([True]), QUALITY_KEY].to_numpy().tolist()))
    return [
        Row(
            tier=key[0],
            device=key[1],
            device_label=labels.get(key[1], key[1]),
            runner=key[2],
            model=key[3],
            quantization=key[4],
            suite="–",
            artifact_sha256=key[5],
            prompt_set="quality only",
            synthetic=key in synthetic,
            n=0,
            failed=0,
            decode_probe=None,
            **dict.fromkeys(FIGURES),
            verdicts=[verdicts.unmeasured(w) for w in workloads],
            quality=q,
        )
        for key, q in quality.items()
        if key not in timed
    ]


def bandwidth_kinds(matrix: Matrix) -> list[str]:
    """The bandwidth sources some row has an MBU of: each gets its own columns."""
    return [k for k in BANDWIDTH_KINDS if any(getattr(r, f"mbu_{k}") is not None for r in matrix.rows)]


def has_quality(matrix: Matrix) -> bool:
    """Whether any row has a quality record: only then do views show quality columns."""
    return any(r.quality is not None for r in matrix.rows)
