"""Per-prompt summaries of measured generations, stability warnings with advice, and the
quality figures of `mode: "quality"` records.

Only comparable records are summarized together: same device, runner, quantization,
artifact (by hash), suite (by hash) and prompt (GROUP). Failures and every warning are
counted per GROUP too. Warm-ups and failed generations never count in the figures.
Quality records (scores against the fp32 reference) carry no timing: every timing view
leaves them out (`timed`), and they are read as `Quality`, one per cell.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from bench.analysis.resultset import known
from bench.records import FAILED, OK

GROUP = [
    "device_fingerprint",
    "runner",
    "model_id",
    "quantization",
    "artifact_sha256",
    "suite_sha256",
    "prompt_id",
    "category",
]
METRICS = ["ttft_ms", "prefill_tok_s", "decode_tok_s", "itl_p50_ms", "itl_p99_ms", "e2e_ms"]
HIGH_VARIATION_PCT = 10.0
SLOW_FIRST_RATIO = 1.5


QUALITY_MODE = "quality"
QUALITY_FIGURES = (
    "tokens_scored",
    "perplexity",
    "reference_perplexity",
    "kld_mean",
    "kld_p99",
    "top1_agreement",
    "greedy_agreement",
    "greedy_first_divergence",
    "estimated_s",  # a skipped quality record's estimate (bench.run.time_budget.quality_skip)
)


def is_quality(modes: pd.Series) -> np.ndarray:
    """Which rows are quality records (a frame's `mode` column, categorical or not)."""
    return modes.isin([QUALITY_MODE]).to_numpy()


def timed(records: list[dict]) -> list[dict]:
    """The records that measured a generation's timing: every one but the quality records."""
    return [r for r in records if r.get("mode") != QUALITY_MODE]


def frame(records: list[dict]) -> pd.DataFrame:
    """The timing records as a frame (quality records have no timing and are left out)."""
    records = timed(records)
    columns = (
        GROUP
        + METRICS
        + ["status", "warmup", "repeat", "prompt_tokens", "new_tokens", "peak_rss_mb", "load_ms", "synthetic"]
        + ["estimated_s", "skip_reason"]
    )
    return pd.DataFrame.from_records(records, columns=columns)


def is_repetition(df: pd.DataFrame) -> pd.Series:
    """Which rows are measured repetitions (not warm-ups), failed ones included."""
    return df["warmup"] == False  # noqa: E712 (pandas mask)


def measured(df: pd.DataFrame, columns: list[str] | None = None) -> pd.DataFrame:
    """The successful repetitions, the rows every figure comes from (of `columns` only,
    when given). One record at a time: bench.records.is_measured."""
    mask = (df["status"] == OK) & is_repetition(df)
    return df[mask] if columns is None else df.loc[mask, columns]


def summarize(df: pd.DataFrame) -> pd.DataFrame:
    """One row per comparable group: medians, spread (coefficient of variation, %), counts."""
    ok = measured(df)
    if ok.empty:
        return pd.DataFrame()
    grouped = ok.groupby(GROUP, dropna=False, sort=False)
    out = grouped[METRICS + ["prompt_tokens", "new_tokens", "load_ms"]].median()
    out["peak_rss_mb"] = grouped["peak_rss_mb"].max()
    out["n"] = grouped.size()
    for metric in ("ttft_ms", "decode_tok_s"):
        mean = grouped[metric].mean()
        out[f"{metric}_cv_pct"] = (100 * grouped[metric].std(ddof=0) / mean).where(mean > 0)
    out["synthetic"] = grouped["synthetic"].any()
    failures = df[df["status"].isin(FAILED)].groupby(GROUP, dropna=False, sort=False).size().rename("failed")
    out = out.join(failures, how="left").reset_index()
    out["failed"] = out["failed"].fillna(0).astype(int)
    return out


def cell_label(row) -> str:
    """A summary row's (or group key's) runner, quantization and prompt, as warnings name them."""
    return f"{row.runner} {row.quantization} / {row.prompt_id}"


def warnings(df: pd.DataFrame, summary: pd.DataFrame, budget_skips: bool = True) -> list[str]:
    """Advice about figures that should not be trusted as they stand; `budget_skips`: also a
    note per cell the time budget left generations out of (a run's summary says that itself)."""
    notes: list[str] = []
    varying: dict[str, list[str]] = {}  # runner and quantization -> "prompt metric N%"
    for row in summary.itertuples():
        for metric in ("ttft_ms", "decode_tok_s"):
            cv = getattr(row, f"{metric}_cv_pct")
            if pd.notna(cv) and cv > HIGH_VARIATION_PCT and row.n > 1:
                varying.setdefault(f"{row.runner} {row.quantization}", []).append(f"{row.prompt_id} {metric} {cv:.0f}%")
    for runtime, found in varying.items():  # one line per runtime, not one per prompt and metric
        notes.append(
            f"{runtime}: {len(found)} figure(s) vary over {HIGH_VARIATION_PCT:g}% between repetitions "
            f"({', '.join(found)}); quiet the machine, lower --threads, or use --profile full for more repetitions"
        )
    ok = measured(df)
    for _, group in ok.groupby(GROUP, dropna=False, sort=False):
        group = group.sort_values("repeat")
        if len(group) >= 3:
            first, rest = group["e2e_ms"].iloc[0], group["e2e_ms"].iloc[1:].median()
            if rest > 0 and first > SLOW_FIRST_RATIO * rest:
                notes.append(
                    f"{cell_label(group.iloc[0])}: the first repetition took {first / rest:.1f}x the others; "
                    "raise `warmups` in the run profile"
                )
    for _, group in df[df["status"].isin(FAILED)].groupby(GROUP, dropna=False, sort=False):
        statuses = ", ".join(f"{n} {s}" for s, n in group["status"].value_counts().items())
        notes.append(f"{cell_label(group.iloc[0])}: {statuses} generation(s); see the `error` field of those records")
    if not budget_skips:
        return notes
    for _, group in df[df["status"] == "skipped"].groupby(GROUP, dropna=False, sort=False):
        if group["estimated_s"].isna().all():  # not the budget's: the runner could not run it (a full cache)
            notes.append(
                f"{cell_label(group.iloc[0])}: {len(group)} generation(s) skipped: {group['skip_reason'].iloc[0]}"
            )
            continue
        notes.append(
            f"{cell_label(group.iloc[0])}: {len(group)} generation(s) skipped by the run profile's prompt_budget "
            "(see `skip_reason`); run with --no-budget to measure them"
        )
    return notes


@dataclass(frozen=True)
class Quality:
    """One quality record's figures against the fp32 reference. Agreements are shares (0-1);
    KLD, perplexity and top-1 are None where the runtime exposes no logits."""

    status: str
    error: str | None = None
    tokens_scored: float | None = None
    perplexity: float | None = None
    reference_perplexity: float | None = None
    kld_mean: float | None = None
    kld_p99: float | None = None
    top1_agreement: float | None = None
    greedy_agreement: float | None = None
    greedy_first_divergence: float | None = None
    estimated_s: float | None = None  # of a skipped record

    @property
    def perplexity_increase(self) -> float | None:
        """Perplexity relative to the reference's, minus one (0.10: 10% higher)."""
        if self.perplexity is None or not self.reference_perplexity:
            return None
        return self.perplexity / self.reference_perplexity - 1

    def figure(self, name: str) -> float | None:
        return getattr(self, name) if self.status == "ok" else None

    def label(self) -> str:
        """The figure a table cell shows: KLD and top-1, or greedy agreement where the
        runtime has no logits, or what went wrong."""
        if self.status != "ok":
            return f"quality {self.status}"
        if self.kld_mean is not None:
            top1 = "" if self.top1_agreement is None else f" · top-1 {100 * self.top1_agreement:.1f}%"
            return f"KLD {self.kld_mean:.3g}{top1}"
        if self.greedy_agreement is not None:
            return f"no logits: greedy {100 * self.greedy_agreement:.0f}%"
        return "–"


def quality_of(row: dict) -> Quality:
    """A quality record (or a frame row of its columns) as Quality; NaN reads as missing."""
    figures = {name: known(row.get(name)) for name in QUALITY_FIGURES}
    return Quality(
        str(row["status"]), known(row.get("error")), **{k: None if v is None else float(v) for k, v in figures.items()}
    )


def latest_quality(rows: pd.DataFrame, keys: list[str]) -> dict[tuple, Quality]:
    """Per key: the last successful quality record of the rows (quality records only), else
    the last failed one, which says why there is no figure. Scoring is deterministic, so a
    second record of one cell repeats the first rather than adding a sample."""
    ordered = rows.assign(_failed=rows["status"].astype(object) != "ok").iloc[::-1]
    chosen = ordered.sort_values("_failed", kind="stable").drop_duplicates(keys)
    return {tuple(r[k] for k in keys): quality_of(r) for r in chosen.to_dict("records")}
