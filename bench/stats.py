"""Per-prompt summaries of measured generations, and stability warnings with advice.

Only comparable records are summarized together: same device, runner, quantization,
artifact (by hash), suite (by hash) and prompt (GROUP). Failures and every warning are
counted per GROUP too. Warm-ups and failed generations never count in the figures.
"""
from __future__ import annotations

import pandas as pd

GROUP = ["device_fingerprint", "runner", "model_id", "quantization", "artifact_sha256",
         "suite_sha256", "prompt_id", "category"]
METRICS = ["ttft_ms", "prefill_tok_s", "decode_tok_s", "itl_p50_ms", "itl_p99_ms", "e2e_ms"]
HIGH_VARIATION_PCT = 10.0
SLOW_FIRST_RATIO = 1.5


def frame(records: list[dict]) -> pd.DataFrame:
    columns = GROUP + METRICS + ["status", "warmup", "repeat", "prompt_tokens", "new_tokens",
                                 "peak_rss_mb", "load_ms", "threads", "synthetic", "runtime_version"]
    df = pd.DataFrame.from_records(records, columns=columns)
    return df


def measured(df: pd.DataFrame) -> pd.DataFrame:
    return df[(df["status"] == "ok") & (df["warmup"] == False)]  # noqa: E712 (pandas mask)


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
    failures = df[df["status"] != "ok"].groupby(GROUP, dropna=False, sort=False).size().rename("failed")
    out = out.join(failures, how="left").reset_index()
    out["failed"] = out["failed"].fillna(0).astype(int)
    return out


def cell_label(row) -> str:
    """A summary row's (or group key's) runner, quantization and prompt, as warnings name them."""
    return f"{row.runner} {row.quantization} / {row.prompt_id}"


def warnings(df: pd.DataFrame, summary: pd.DataFrame) -> list[str]:
    """Advice about figures that should not be trusted as they stand."""
    notes: list[str] = []
    for row in summary.itertuples():
        for metric in ("ttft_ms", "decode_tok_s"):
            cv = getattr(row, f"{metric}_cv_pct")
            if pd.notna(cv) and cv > HIGH_VARIATION_PCT and row.n > 1:
                notes.append(f"{cell_label(row)}: {metric} varies {cv:.0f}% between repetitions; "
                             "quiet the machine, lower --threads, or use --profile full for more repetitions")
    ok = measured(df)
    for _, group in ok.groupby(GROUP, dropna=False, sort=False):
        group = group.sort_values("repeat")
        if len(group) >= 3:
            first, rest = group["e2e_ms"].iloc[0], group["e2e_ms"].iloc[1:].median()
            if rest > 0 and first > SLOW_FIRST_RATIO * rest:
                notes.append(f"{cell_label(group.iloc[0])}: the first repetition took {first / rest:.1f}x the others; "
                             "raise `warmups` in the run profile")
    for _, group in df[df["status"] != "ok"].groupby(GROUP, dropna=False, sort=False):
        statuses = ", ".join(f"{n} {s}" for s, n in group["status"].value_counts().items())
        notes.append(f"{cell_label(group.iloc[0])}: {statuses} generation(s); see the `error` field of those records")
    return notes
