"""Results files made to look like runs on other devices, for tests of the merge and the
gate. Every record says what it is: run ids start with SIMULATED and runner_settings
carry {"simulated_device": true}. The records are complete (every field, raw token stamps
and text included) so readers meet what real files hold."""

from __future__ import annotations

import json
from pathlib import Path

from bench.data.suite import load_suite
from bench.device.roofline import roofline_fields
from bench.records import make_record

SUITE = load_suite("default")
PROFILES = {  # device profile -> (tier, cpu, RAM GB, cores, bandwidth GB/s)
    "pixel-8-pro": ("flagship", "Tensor G3", 11.2, 9, 68.3),
    "galaxy-a54": ("mid", "Exynos 1380", 5.6, 8, 34.1),
    "raspberry-pi-5": ("entry", "Cortex-A76", 7.9, 4, 17.1),
}


def records(
    device: str,
    runner: str = "llama.cpp",
    quant: str = "Q4_1",
    *,
    decode: float,
    ttft: float,
    spread: float = 0.05,
    repeats: int = 3,
    artifact_sha256: str = "a" * 64,
    suite_sha256: str | None = None,
    run: str = "1",
    mode: str | None = None,
    text: str = "Paris.",
    measured_bandwidth_gbs: float | None = None,
) -> list[dict]:
    """Records of every suite prompt: decode tok/s and TTFT around the given figures
    (repetition i is scaled by 1 + spread * (i - 1), so the spread is known exactly).
    Bandwidth: the device profile's datasheet figure, or `measured_bandwidth_gbs` as
    measured on the device."""
    tier, cpu, ram, cores, bandwidth = PROFILES[device]
    source = f"datasheet (device profile {device})"
    if measured_bandwidth_gbs is not None:
        bandwidth, source = measured_bandwidth_gbs, "measured (memory copy, best pass)"
    out = []
    for prompt in SUITE.prompts:
        for repeat in range(repeats + 1):
            warmup = repeat == 0
            scale = 1 + spread * (repeat - 2) if not warmup else 2.0
            d, t = decode / scale, ttft * scale
            new = prompt.max_new_tokens
            record = make_record(
                run_id=f"SIMULATED-{device}-{run}",
                started_at="2026-11-23T00:00:00Z",
                measured_at="2026-11-23T00:00:01Z",
                tool_version="0.1.0",
                device_cpu_model=cpu,
                device_cores_physical=cores,
                device_cores_logical=cores,
                device_ram_gb=ram,
                device_os="Android 14",
                device_arch="aarch64",
                device_python="3.11.7",
                device_fingerprint=f"sim-{device}",
                device_profile=device,
                tier=tier,
                bandwidth_gbs=bandwidth,
                bandwidth_source=source,
                bandwidth_threads=cores if measured_bandwidth_gbs else None,
                runner=runner,
                synthetic=False,
                runtime_version="0.3.36",
                runner_settings={"simulated_device": True},
                model_id="smollm2-135m",
                artifact_path="/sim/model.gguf",
                artifact_sha256=artifact_sha256,
                artifact_bytes=91_000_000,
                quantization=quant,
                threads=cores,
                context_tokens=2048,
                weights_bytes=80_000_000,
                kv_bytes_per_token=9_216,
                suite_id="default",
                suite_sha256=suite_sha256 or SUITE.sha256,
                profile_name="default",
                profile_sha256="p" * 64,
                prompt_id=prompt.id,
                category=prompt.category,
                kind=prompt.kind,
                turn=prompt.turn,
                warmup=warmup,
                repeat=repeat,
                max_new_tokens=new,
                prompt_tokens=40,
                new_tokens=new,
                stop_reason="length",
                load_ms=120.0,
                ttft_ms=t,
                prefill_tok_s=40 / t * 1000,
                decode_tok_s=d,
                itl_p50_ms=1000 / d,
                itl_p90_ms=1100 / d,
                itl_p99_ms=1200 / d,
                e2e_ms=t + new * 1000 / d,
                peak_rss_mb=300.0,
                cpu_percent=95.0,
                token_times_ns=[int(i * 1e9 / d) for i in range(new)],
                output_token_ids=list(range(new)),
                output_text=text,
                native={"status": "ok"},
                status="ok",
                error=None,
            )
            record.update(roofline_fields(record))
            if mode:
                record["mode"] = mode
            out.append(record)
    return out


def write(path: Path, *groups: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as f:
        for group in groups:
            for record in group:
                f.write(json.dumps(record, ensure_ascii=False) + "\n")
    return path
