"""`edgebench selfcheck`: how faithful is the harness clock, on every runtime that times itself?

Runs the selfcheck suite's fixed-length probes on each runner through the normal worker
path and compares, from the same generations, the harness figures with the runtime's own
(the `runtime_*` keys a runner puts in `native`, each runner naming its own in
`runtime_figures`):
  prefill  harness prefill tok/s vs the runtime's   (TTFT also holds templating and set-up)
  decode   harness decode tok/s  vs the runtime's   (target: ratio >= 0.97)
  TTFT     harness TTFT ms       vs the runtime's, where it reports one
A runtime that declares none times nothing itself and is listed as such. For llama.cpp, `llama-bench` built
from the same vendored source (scripts/build-llama-bench.sh) is compared too when present.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

from bench.errors import BenchError
from bench.records import is_measured, read_records
from bench.run import harness
from bench.run import setup as run_setup
from bench.run.execute import execute
from runners import load_class, registrations
from runners.base import TokenEvent

DECODE_RATIO_TARGET = 0.97
# harness figure -> (the runtime's own key in `native`, as a runner's `runtime_figures` name it; label)
FIGURES = {
    "prefill_tok_s": ("runtime_prefill_tok_s", "prefill tok/s"),
    "decode_tok_s": ("runtime_decode_tok_s", "decode tok/s"),
    "ttft_ms": ("runtime_ttft_ms", "TTFT ms"),
}


@dataclass(frozen=True)
class Row:
    runner: str
    probe: str
    figure: str
    harness: float
    runtime: float

    @property
    def ratio(self) -> float:
        return self.harness / self.runtime


def harness_cost_ns(tokens: int = 200_000) -> float:
    """ns the harness spends per token on a stream that costs nothing to produce."""
    events = [TokenEvent(i, "") for i in range(tokens)]
    start = time.perf_counter_ns()
    harness.collect(iter(events))
    return (time.perf_counter_ns() - start) / tokens


def fidelity_rows(records: list[dict]) -> tuple[list[Row], list[str]]:
    """Median harness vs runtime figures per runner, probe and figure (those the runner
    declares in `runtime_figures`); and the runners whose runtime times nothing itself."""
    regs = registrations()
    measured = [r for r in records if is_measured(r) and r["kind"] == "fixed"]
    rows, silent = [], []
    for runner in dict.fromkeys(r["runner"] for r in measured):
        declared = load_class(regs[runner].target).runtime_figures
        if not declared:
            silent.append(runner)
            continue
        mine = [r for r in measured if r["runner"] == runner]
        for probe in dict.fromkeys(r["prompt_id"] for r in mine):
            probes = [r for r in mine if r["prompt_id"] == probe]
            for figure, (key, label) in FIGURES.items():
                pairs = [
                    (r[figure], r["native"][key])
                    for r in probes
                    if r[figure] is not None and (r.get("native") or {}).get(key)
                ]
                if key in declared and pairs:
                    rows.append(
                        Row(
                            runner,
                            probe,
                            label,
                            statistics.median(h for h, _ in pairs),
                            statistics.median(n for _, n in pairs),
                        )
                    )
    return rows, silent


def measure_runners(runners: tuple[str, ...], threads: int, console: Console) -> list[dict]:
    with tempfile.TemporaryDirectory() as tmp:
        setup = run_setup.setup_run(
            run_setup.RunOptions(
                runners=runners, suite="selfcheck", profile="selfcheck", threads=threads, out=Path(tmp)
            )
        )
        for note in setup.left_out:
            console.print(f"[yellow]skipped {note}[/]")
        console.print(
            f"selfcheck: {', '.join(p.name for p in setup.plans)} on {setup.model.id}, {threads} threads, "
            f"{setup.profile.repetitions} repetitions per probe"
        )
        execute(setup)
        return read_records([setup.results_path])


def run_selfcheck(runners: tuple[str, ...], threads: int, console: Console, llama_bench: str | None) -> bool:
    rows, silent = fidelity_rows(measure_runners(runners, threads, console))
    if not rows and not silent:
        raise BenchError("selfcheck: no probe finished on any runner", "see `edgebench run --suite selfcheck`")
    table = Table(
        "runner",
        "probe",
        "figure",
        "harness",
        "runtime's own",
        "ratio",
        title="harness vs runtime",
        title_justify="left",
    )
    for row in rows:
        table.add_row(
            row.runner, row.probe, row.figure, f"{row.harness:,.1f}", f"{row.runtime:,.1f}", f"{row.ratio:.3f}"
        )
    console.print(table)
    for runner in silent:
        console.print(f"{runner}: the runtime times nothing itself; only the harness clock measures it")
    decode = [r for r in rows if r.figure == "decode tok/s"]
    ok = all(r.ratio >= DECODE_RATIO_TARGET for r in decode)
    if llama_bench != "off" and (not runners or "llama.cpp" in runners):
        ok &= _against_llama_bench(threads, console, llama_bench)
    console.print(f"harness cost per token (empty stream): {harness_cost_ns() / 1000:.2f} µs")
    console.print(f"target: decode ratio >= {DECODE_RATIO_TARGET}: " + ("[green]met[/]" if ok else "[red]not met[/]"))
    return ok


def _against_llama_bench(threads: int, console: Console, binary: str | None) -> bool:
    """edgebench's llama.cpp vs llama-bench on the same GGUF, interleaved."""
    from bench.data import models
    from bench.run import llama_bench

    found = llama_bench.find(binary)
    if found is None:
        console.print(
            "llama-bench: not built here (bash scripts/build-llama-bench.sh builds it from the same "
            "vendored llama.cpp); skipped"
        )
        return True
    model = models.get_model(models.default_model_id())
    rows = llama_bench.interleaved_rows(model.source_path(), threads, found)
    table = Table(
        "test",
        "edgebench tok/s",
        "llama-bench tok/s",
        "ratio",
        title_justify="left",
        title="llama.cpp vs llama-bench (same GGUF, threads and settings; interleaved rounds)",
    )
    for row in rows:
        table.add_row(
            row["test"], f"{row['edgebench_tok_s']:,.1f}", f"{row['llama_bench_tok_s']:,.1f}", f"{row['ratio']:.3f}"
        )
    console.print(table)
    console.print(f"llama-bench: {found}")
    return all(row["ratio"] >= DECODE_RATIO_TARGET for row in rows if row["test"].startswith("tg"))
