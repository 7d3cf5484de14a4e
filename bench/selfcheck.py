"""`edgebench selfcheck`: how faithful is the harness clock?

Runs llama.cpp on the default model through the normal worker path and compares, from
the same generations, the harness figures with llama.cpp's own perf counters:
  decode ratio   harness decode_tok_s / llama.cpp eval rate          (target >= 0.97)
  TTFT gap       harness TTFT - llama.cpp prompt-eval time           (target <= 3% or 2 ms)
  per-token cost harness inter-token time - llama.cpp eval time per token (the adapter)
and the harness's own cost per token, timed on a stream that does no work.
"""
from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from bench import benchmark, harness
from bench.records import read_records
from runners.base import TokenEvent

DECODE_RATIO_TARGET = 0.97
TTFT_TARGET_PCT, TTFT_TARGET_MS = 3.0, 2.0


def harness_cost_ns(tokens: int = 200_000) -> float:
    """ns the harness spends per token on a stream that costs nothing to produce."""
    events = [TokenEvent(i, "") for i in range(tokens)]
    start = time.perf_counter_ns()
    harness.collect(iter(events))
    return (time.perf_counter_ns() - start) / tokens


def run_selfcheck(threads: int, console: Console) -> bool:
    with tempfile.TemporaryDirectory() as tmp:
        setup = benchmark.prepare_run(benchmark.RunOptions(
            runners=("llama.cpp",), suite="selfcheck", profile="selfcheck", threads=threads, out=Path(tmp)))
        console.print(f"selfcheck: llama.cpp, {setup.model.id}, {threads} threads, "
                      f"{setup.profile.repetitions} repetitions per probe")
        benchmark.execute(setup)
        records = [r for r in read_records([setup.results_path])
                   if r["status"] == "ok" and not r["warmup"] and r["kind"] == "fixed"]
    if not records:
        console.print("[red]selfcheck: no successful generation to compare[/]")
        return False
    table = Table("probe", "harness decode tok/s", "llama.cpp eval tok/s", "ratio", "harness TTFT ms",
                  "llama.cpp prompt eval ms", "gap ms", "gap %", "adapter µs/token")
    ok = True
    for prompt_id in dict.fromkeys(r["prompt_id"] for r in records):
        rows = [r for r in records if r["prompt_id"] == prompt_id]
        decode = statistics.median(r["decode_tok_s"] for r in rows)
        native_decode = statistics.median(r["native"]["eval_tok_s"] for r in rows)
        ttft = statistics.median(r["ttft_ms"] for r in rows)
        native_ttft = statistics.median(r["native"]["t_p_eval_ms"] for r in rows)
        # Mean harness gap between tokens minus llama.cpp's own eval time per token.
        adapter_us = statistics.median(
            1000 * ((r["token_times_ns"][-1] - r["token_times_ns"][0]) / 1e6 / (r["new_tokens"] - 1)
                    - r["native"]["t_eval_ms"] / r["native"]["n_eval"]) for r in rows)
        ratio, gap = decode / native_decode, ttft - native_ttft
        gap_pct = 100 * gap / native_ttft
        ok &= ratio >= DECODE_RATIO_TARGET and (gap_pct <= TTFT_TARGET_PCT or gap <= TTFT_TARGET_MS)
        table.add_row(prompt_id, f"{decode:.1f}", f"{native_decode:.1f}", f"{ratio:.3f}", f"{ttft:.1f}",
                      f"{native_ttft:.1f}", f"{gap:.2f}", f"{gap_pct:.2f}", f"{adapter_us:.0f}")
    console.print(table)
    console.print(f"harness cost per token (empty stream): {harness_cost_ns() / 1000:.2f} µs")
    console.print(f"targets: ratio >= {DECODE_RATIO_TARGET}, TTFT gap <= {TTFT_TARGET_PCT:g}% or "
                  f"{TTFT_TARGET_MS:g} ms: " + ("[green]met[/]" if ok else "[red]not met[/]"))
    return ok
