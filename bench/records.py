"""The result record: one JSONL line per measured generation, with schema_version.

Writes are one line at a time, flushed and fsynced, so an interrupted run loses at most
the generation in flight. Readers skip a truncated last line (power loss) with a warning
and refuse records written by a newer edgebench.
"""

from __future__ import annotations

import json
import os
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterable, Iterator

from bench.errors import BenchError

SCHEMA_VERSION = 8

# Every record carries these keys (None where a figure does not apply), in this order.
FIELDS = (
    "schema_version",
    "run_id",
    "started_at",
    "measured_at",
    "tool_version",
    "git_commit",
    "device_cpu_model",
    "device_cores_physical",
    "device_cores_logical",
    "device_ram_gb",
    "device_os",
    "device_arch",
    "device_python",
    "device_fingerprint",
    "device_max_freq_mhz",
    "device_board",
    "device_gpu",
    "device_npu",
    "device_profile",
    "device_class",
    "tier",
    "bandwidth_gbs",
    "bandwidth_source",
    "bandwidth_threads",
    # the device's state when the measurement started (None where the OS does not say)
    "load_avg_1m_start",
    "temp_c_start",
    "cpu_freq_mhz_start",
    "cpu_freq_max_mhz",
    "foreign_cpu_percent_start",
    "runner",
    "synthetic",
    "runtime_version",
    "backend",
    "runner_settings",
    "model_id",
    "artifact_path",
    "artifact_sha256",
    "artifact_bytes",
    "quantization",
    # what the runtime really applied (None where it has no such setting; the reason is in
    # runner_settings["not_applied"]), beside what the run asked for
    "threads",
    "context_tokens",
    "threads_requested",
    "context_tokens_requested",
    # bytes read per decoded token: the loaded file's weights, and KV cache per context token
    "weights_bytes",
    "kv_bytes_per_token",
    "suite_id",
    "suite_sha256",
    "profile_name",
    "profile_sha256",
    # "suite", "sustained" or "quality"; elapsed_s: this generation's start within the sustained loop
    "mode",
    "elapsed_s",
    "prompt_id",
    # a depth sweep's record: the tokens of history in the cache before its request (None: a
    # request on an empty cache), and how fast that history went in (not part of the request)
    "depth",
    "fill_ms",
    "fill_tok_s",
    "category",
    "kind",
    "warmup",
    "repeat",
    # a conversation's turn (1-based; None outside conversations)
    "turn",
    "max_new_tokens",
    # the tokens prefilled for the request; for a conversation turn, those the runtime prefilled of it
    "prompt_tokens",
    # a conversation turn: the tokens of its whole history (earlier turns, replies as generated,
    # this message, through the chat template), whether the runtime kept the earlier turns'
    # state (None on turn 1), and who counted prompt_tokens ("runtime" or "runner": fed it)
    "history_tokens",
    "history_reused",
    "prefill_counted_by",
    "new_tokens",
    "stop_reason",
    "load_ms",
    "setup_ms",
    "ttft_ms",
    "prefill_tok_s",
    "decode_tok_s",
    # itl_basis: "token" (one event per token) or "chunk" (the runtime streams text chunks)
    "itl_basis",
    # "runtime": the figures are the runtime's own timing of itself (its phone binary's
    # statistics: bench.run.device_binary), not the harness's per-token clock (None)
    "clock",
    "itl_p50_ms",
    "itl_p90_ms",
    "itl_p99_ms",
    "e2e_ms",
    "decode_roofline_tok_s",
    "mbu",
    # the KV cache's bytes when the generation ended (history + prompt + new tokens)
    "kv_bytes",
    "peak_rss_mb",
    "cpu_percent",
    # the worker's threads that each ran at least a tenth of its busiest one's CPU time during
    # the generation (the scheduler's own counts): how many threads the runtime really kept busy
    "busy_threads",
    # energy per generated token above the idle draw measured just before the generation
    # (bench.device.energy): the counter it came from, or why there is no figure
    "energy_j_per_token",
    "energy_j",
    "idle_power_w",
    "energy_source",
    "energy_refused",
    # a phone's state before the runner (bench.device.phone_hygiene): its screen as dumpsys
    # says (ON, OFF, DOZE), whether it was on a charger, its CPUs' busy share over the second before
    "screen_state",
    "charging",
    "cpu_busy_percent_before",
    # where the model ran: the accelerator asked for (cpu/gpu/npu/auto) and the one the runtime
    # reports it used, with its evidence (devices, offloaded layers, providers) in `placement`
    "accelerator_requested",
    "accelerator",
    "placement",
    "accelerator_memory_mb",
    # set when the run was driven from another machine over SSH (ssh://user@host:port)
    "remote_target",
    # mode "quality": the figures against the fp32 reference (details in quality_detail)
    "tokens_scored",
    "perplexity",
    "reference_perplexity",
    "kld_mean",
    "kld_p99",
    "top1_agreement",
    "greedy_agreement",
    "greedy_first_divergence",
    "quality_detail",
    # status "skipped": why, and how long the generation was estimated to take
    "skip_reason",
    "estimated_s",
    "token_times_ns",
    "output_token_ids",
    "output_text",
    "native",
    "status",
    "error",
)
# MIGRATIONS[n] upgrades a schema-n record to n + 1; readers apply them in turn, so every
# old file reads as the current schema. Keep a fixture file of every old version in tests/.
V2_FIELDS = (
    "device_max_freq_mhz",
    "device_board",
    "device_gpu",
    "device_npu",
    "device_profile",
    "device_class",
    "tier",
    "bandwidth_gbs",
    "bandwidth_source",
    "temp_c_start",
    "cpu_freq_mhz_start",
    "cpu_freq_max_mhz",
    "foreign_cpu_percent_start",
    "mode",
    "elapsed_s",
    "decode_roofline_tok_s",
    "mbu",
)


def _v1_to_v2(record: dict) -> dict:
    """Schema 2 added device placement, thermal state at start, sustained mode and the
    roofline; a schema-1 record was a suite run whose state nobody read."""
    return {**{name: None for name in V2_FIELDS}, **record, "mode": record.get("mode") or "suite"}


V3_FIELDS = (
    "bandwidth_threads",
    "threads_requested",
    "context_tokens_requested",
    "weights_bytes",
    "kv_bytes_per_token",
    "setup_ms",
    "itl_basis",
)


def _v2_to_v3(record: dict) -> dict:
    """Schema 3 added the bytes read per token, the bandwidth's thread count, the settings
    really applied and the set-up time. A schema-2 roofline and MBU were computed from
    the artifact folder's size (every file, duplicates included): they are dropped, not
    carried into tables beside correct ones; `threads` there was the request."""
    return {
        **{name: None for name in V3_FIELDS},
        **record,
        "decode_roofline_tok_s": None,
        "mbu": None,
        "threads_requested": record.get("threads"),
    }


V4_FIELDS = (
    "accelerator_requested",
    "accelerator",
    "placement",
    "accelerator_memory_mb",
    "remote_target",
    "tokens_scored",
    "perplexity",
    "reference_perplexity",
    "kld_mean",
    "kld_p99",
    "top1_agreement",
    "greedy_agreement",
    "greedy_first_divergence",
    "quality_detail",
    "skip_reason",
    "estimated_s",
)


def _v3_to_v4(record: dict) -> dict:
    """Schema 4 added placement (accelerator asked and used), remote targets, quality
    records and skipped generations; every schema-3 run was local and on the CPU."""
    return {**{name: None for name in V4_FIELDS}, **record, "accelerator": "cpu"}


def _v4_to_v5(record: dict) -> dict:
    """Schema 5 added busy_threads: unknown before."""
    return {**record, "busy_threads": None}


V6_FIELDS = FIELDS[FIELDS.index("energy_j_per_token") : FIELDS.index("cpu_busy_percent_before") + 1] + ("clock",)


def _v5_to_v6(record: dict) -> dict:
    """Schema 6 added energy per token, a phone's screen, charger and idleness before each
    runner, and which clock the figures came from: not read before, all the harness's."""
    return {**{name: None for name in V6_FIELDS}, **record}


V7_FIELDS = ("turn", "history_tokens", "history_reused", "prefill_counted_by")


def _v6_to_v7(record: dict) -> dict:
    """Schema 7 added conversation turns: none before."""
    return {**{name: None for name in V7_FIELDS}, **record}


def _v7_to_v8(record: dict) -> dict:
    """Schema 8 added depth sweeps (every earlier request ran on an empty cache) and the KV
    cache's bytes at the end of a generation (not recorded before)."""
    return {**record, "depth": None, "fill_ms": None, "fill_tok_s": None, "kv_bytes": None}


MIGRATIONS: dict[int, Callable[[dict], dict]] = {
    1: _v1_to_v2,
    2: _v2_to_v3,
    3: _v3_to_v4,
    4: _v4_to_v5,
    5: _v5_to_v6,
    6: _v6_to_v7,
    7: _v7_to_v8,
}

STATUSES = ("ok", "error", "crashed", "timeout", "oom", "interrupted", "skipped")
OK = "ok"
# What counts as a failure (exit code 1, the summary's and matrix's failed counts, quality's
# verdict): every status but ok and skipped (over the time budget: reported, not a failure).
FAILED = tuple(s for s in STATUSES if s not in (OK, "skipped"))


def is_measured(record: dict) -> bool:
    """A successful repetition (not a warm-up): a record the figures come from. For a
    frame of records: bench.analysis.stats.measured."""
    return record["status"] == OK and not record["warmup"]


def is_failed(record: dict) -> bool:
    """A generation (or load, or quality scoring) that failed. For a frame: status.isin(FAILED)."""
    return record["status"] in FAILED


def make_record(**values) -> dict:
    """A complete record: every field present, unknown fields refused."""
    unknown = set(values) - set(FIELDS)
    if unknown:
        raise ValueError(f"unknown record fields: {sorted(unknown)}")
    record = {name: values.get(name) for name in FIELDS}
    record["schema_version"] = SCHEMA_VERSION
    if record["status"] not in STATUSES:
        raise ValueError(f"bad status {record['status']!r}")
    return record


_warned: set[str] = set()


def warn_once(message: str) -> None:
    """The readers' default warning: on stderr, once per message in a process (a file read
    again by another view of the same run says nothing new)."""
    if message not in _warned:
        _warned.add(message)
        print(f"warning: {message}", file=sys.stderr)


def truncated_line_warning(path: Path, line: int) -> str:
    return f"{path}:{line}: skipped a truncated last line (interrupted write)"


class ResultsWriter:
    """Appends records to a JSONL file, each durable before the next is measured."""

    def __init__(self, path: Path, warn=warn_once) -> None:
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            _drop_truncated_tail(path, warn)
            self._file = path.open("a", encoding="utf-8")
        except OSError as exc:
            raise BenchError(
                f"cannot write results to {path.parent}: {exc.strerror}", "choose a writable folder with --out"
            ) from None
        self.count = 0

    def append(self, record: dict) -> None:
        # One write call per line keeps concurrent appenders from interleaving mid-line.
        self._file.write(json.dumps(record, ensure_ascii=False, allow_nan=False) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())
        self.count += 1

    def close(self) -> None:
        self._file.close()


def _drop_truncated_tail(path: Path, warn) -> None:
    """Cut a last line that was never finished (power loss), so appends start clean."""
    if not path.exists():
        return
    with path.open("rb+") as f:
        size = f.seek(0, 2)
        if size == 0:
            return
        f.seek(max(0, size - (1 << 20)))
        tail = f.read()
        if tail.endswith(b"\n"):
            return
        keep = size - len(tail) + tail.rfind(b"\n") + 1
        f.truncate(keep)
    warn(f"{path}: dropped an unfinished last line ({size - keep} bytes) left by an interrupted write")


def iter_records(path: Path, warn: Callable[[str], None] = warn_once) -> Iterator[dict]:
    """The records of one JSONL file, in order."""
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise BenchError(f"cannot read results file {path}: {exc.strerror}", "check the path") from None
    with handle:
        lines = handle.read().split(b"\n")
    last = len(lines) - 1
    for number, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        try:
            record = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            # No newline after it and the start of one of ours: the write was cut short.
            if number - 1 == last and raw.startswith(b'{"schema_version"'):
                warn(truncated_line_warning(path, number))
                continue
            raise BenchError(
                f"{path}:{number} is not a JSON record",
                "give edgebench results files (.jsonl written by `edgebench run`)",
            ) from None
        if not isinstance(record, dict) or "schema_version" not in record:
            raise BenchError(
                f"{path}:{number} is not an edgebench record (no schema_version)",
                "give edgebench results files (.jsonl written by `edgebench run`)",
            )
        version = record["schema_version"]
        if not isinstance(version, int) or version > SCHEMA_VERSION:
            raise BenchError(
                f"{path}:{number} has schema_version {version}, newer than this edgebench ({SCHEMA_VERSION})",
                "upgrade edgebench: pip install -U edgebench",
            )
        yield migrate(record)


def migrate(record: dict) -> dict:
    for version in range(record["schema_version"], SCHEMA_VERSION):
        record = MIGRATIONS[version](record)
        record["schema_version"] = version + 1
    return record


def read_records(paths: Iterable[Path], warn: Callable[[str], None] = warn_once) -> list[dict]:
    return [r for p in paths for r in iter_records(p, warn)]


def utc_now() -> str:
    """A record's timestamp: UTC, milliseconds, ISO 8601."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")
