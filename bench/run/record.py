"""Every record of a run is built here, whatever its mode (suite, sustained, quality) or its
status (measured, failed, skipped, a runner that never loaded), so each one carries the same
fields: the run's provenance and device, the device's state when it began, the runner and
artifact with the settings the runtime applied, the suite and profile, the roofline and
where the model ran (bench.records.make_record checks the names)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bench.data.run_profiles import RunProfile
from bench.data.suite import Suite
from bench.device import accelerators
from bench.device.roofline import kv_fields, roofline_fields
from bench.records import make_record, utc_now

if TYPE_CHECKING:
    from bench.run.supervisor import RunnerPlan

# The harness's figures (bench.run.harness.Measurement) that a record keeps under their own names.
MEASURED = (
    "prompt_tokens",
    "new_tokens",
    "setup_ms",
    "ttft_ms",
    "prefill_tok_s",
    "decode_tok_s",
    "itl_p50_ms",
    "itl_p90_ms",
    "itl_p99_ms",
    "e2e_ms",
    "token_times_ns",
    "output_text",
    "fill_ms",
    "fill_tok_s",
)
# What a conversation turn's generation adds (bench.run.worker.turn_figures).
TURN_FIGURES = ("history_tokens", "history_reused", "prefill_counted_by")
# A record's device state at its start, from a device sample (bench.device.monitor.DeviceMonitor).
START_STATE = {
    "temp_c_start": "temp_c",
    "cpu_freq_mhz_start": "freq_mhz",
    "cpu_freq_max_mhz": "freq_max_mhz",
    "foreign_cpu_percent_start": "foreign_cpu_percent",
}


def build_record(
    run_fields: dict,
    suite: Suite,
    profile: RunProfile,
    plan: RunnerPlan | None,
    loaded: dict,
    *,
    mode: str,
    status: str,
    start: dict | None = None,
    **values,
) -> dict:
    """One record of `plan`'s runner (None: a runner that never got a plan; `values` name it),
    `loaded` being what its runtime reported at load (empty before), `start` the device sample
    it began in. A generation that ran elsewhere than its accelerator asked becomes an error."""
    start = start or {}
    record = make_record(
        **run_fields,
        **(runner_fields(plan, loaded, profile.context_tokens) if plan else {}),
        **suite_fields(suite, profile),
        **{name: start.get(key) for name, key in START_STATE.items()},
        measured_at=utc_now(),
        mode=mode,
        status=status,
        **values,
    )
    record.update(roofline_fields(record, loaded.get("kv_window")))
    record.update(kv_fields(record, loaded.get("kv_window")))
    asked, fallback = (plan.settings.get("accelerator"), plan.allow_fallback) if plan else (None, False)
    record.update(accelerators.record_fields(asked, loaded, fallback, record["status"]))
    return record


def runner_fields(plan: RunnerPlan, loaded: dict, context_tokens: int) -> dict:
    """What a record says of its runner and artifact: the settings asked for, beside what the
    runtime reported it applied when it loaded (`loaded`; empty before a load)."""
    return dict(
        runner=plan.name,
        synthetic=plan.synthetic,
        runtime_version=loaded.get("runtime_version"),
        backend=loaded.get("backend"),
        runner_settings=runner_settings_record(loaded),
        artifact_path=str(plan.artifact.path),
        artifact_sha256=plan.artifact.sha256,
        artifact_bytes=plan.artifact.bytes,
        quantization=plan.artifact.quantization or loaded.get("quantization"),
        threads=loaded.get("threads"),
        context_tokens=loaded.get("context_tokens"),
        threads_requested=plan.threads,
        context_tokens_requested=context_tokens,
        weights_bytes=loaded.get("weights_bytes"),
        kv_bytes_per_token=loaded.get("kv_bytes_per_token"),
    )


def suite_fields(suite: Suite, profile: RunProfile) -> dict:
    """What a record says of the suite and run profile it was measured with."""
    return dict(suite_id=suite.id, suite_sha256=suite.sha256, profile_name=profile.name, profile_sha256=profile.sha256)


def runner_settings_record(loaded: dict) -> dict | None:
    """The runner's settings as the runtime applied them, with what it did not apply and why."""
    if not loaded:
        return None
    not_applied = loaded.get("not_applied") or {}
    return {**(loaded.get("settings") or {}), **({"not_applied": not_applied} if not_applied else {})}


def error_status(error: str) -> str:
    """A Python MemoryError inside the runtime is running out of memory, not a bug."""
    return "oom" if error.startswith("MemoryError") else "error"
