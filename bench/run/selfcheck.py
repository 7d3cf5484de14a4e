"""`edgebench selfcheck`: how faithful is the harness clock, on every runtime that times itself?

Runs the selfcheck suite's fixed-length probes on each runner through the normal worker
path and compares, from the same generations, the harness figures with the runtime's own
(the `runtime_*` keys a runner puts in `native`, each runner naming its own in
`runtime_figures`):
  prefill  harness prefill tok/s vs the runtime's   (TTFT also holds templating and set-up)
  decode   harness decode tok/s  vs the runtime's   (target: ratio >= 0.97)
  TTFT     harness TTFT ms       vs the runtime's, where it reports one
A runtime that declares none times nothing itself and is listed as such. The probes include
one at depth (DEPTH tokens of history in the runtime's cache, a depth sweep's request). For
llama.cpp, `llama-bench` built from the same vendored source (scripts/build-llama-bench.sh)
is compared too when present, on an empty cache and at DEPTH (its `-d`).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from bench.errors import BenchError
from bench.records import is_measured, read_records
from bench.run import harness
from bench.run import setup as run_setup
from bench.run.execute import execute
from runners import load_class, registrations
from runners.base import TokenEvent

DECODE_RATIO_TARGET = 0.97
DEPTH = 1024  # the history under selfcheck's depth probe and llama-bench's -d comparison
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
    measured = [r for r in records if is_measured(r) and r["kind"] in ("fixed", "depth")]
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


@dataclass
class Selfcheck:
    """What a selfcheck found: harness against runtime per figure, the runtimes that time
    nothing, llama.cpp against llama-bench (interleaved rows, the binary, or why it was not
    run), the harness's own cost per token, and whether the decode ratios meet the target."""

    rows: list
    silent: list[str]
    llama_bench_rows: list[dict]
    llama_bench: str  # the binary compared with, or why none was
    harness_cost_us: float
    ok: bool


def run_selfcheck(runners: tuple[str, ...], threads: int, console: Console, llama_bench: str | None) -> Selfcheck:
    """Measure every runner's probes (progress on `console`) and compare them."""
    rows, silent = fidelity_rows(measure_runners(runners, threads, console))
    if not rows and not silent:
        raise BenchError("selfcheck: no probe finished on any runner", "see `edgebench run --suite selfcheck`")
    ok = all(r.ratio >= DECODE_RATIO_TARGET for r in rows if r.figure == "decode tok/s")
    bench_rows, binary = [], "off"
    if llama_bench != "off" and (not runners or "llama.cpp" in runners):
        bench_rows, binary = _against_llama_bench(threads, llama_bench)
        ok &= all(row["ratio"] >= DECODE_RATIO_TARGET for row in bench_rows if row["test"].startswith("tg"))
    return Selfcheck(rows, silent, bench_rows, binary, harness_cost_ns() / 1000, ok)


def _against_llama_bench(threads: int, binary: str | None) -> tuple[list[dict], str]:
    """edgebench's llama.cpp vs llama-bench on the same GGUF, interleaved; no rows where it is not built."""
    from bench.data import models
    from bench.run import llama_bench

    found = llama_bench.find(binary)
    if found is None:
        return [], (
            "not built here (bash scripts/build-llama-bench.sh builds it from the same vendored llama.cpp); skipped"
        )
    gguf = models.get_model(models.default_model_id()).source_path()
    rows = [row for depth in (0, DEPTH) for row in llama_bench.interleaved_rows(gguf, threads, found, depth=depth)]
    return rows, str(found)
