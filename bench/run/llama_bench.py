"""edgebench's llama.cpp runner against llama.cpp's own benchmark, `llama-bench`.

llama-bench is built by scripts/build-llama-bench.sh from the llama.cpp that llama-cpp-python
vendors, with set-up's CMake flags, so both sides run the same code. Both measure llama-bench's
default tests on the same GGUF, threads and settings (the runner's defaults with the same
--setting overrides, passed to llama-bench as its own options), in alternating rounds so
that a machine getting busier or hotter weighs on both alike:
  pp512  prompt processing of 512 tokens: edgebench's prefill tok/s (512 / TTFT)
  tg128  128 single-token decode steps:   edgebench's decode tok/s (a 1-token prompt, 129 new
         tokens: the first comes from the prefill, the next 128 from decode steps)
At a depth D (llama-bench's `-d D`), both on top of D tokens already in the KV cache: edgebench's
depth-sweep prompts, whose fill puts them there before the clock starts, as llama-bench does.
Tests are named as llama-bench names them, "@dD" added at a depth (pp512@d1024).
This module runs llama-bench as a program; it never imports llama.cpp.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import tempfile
from pathlib import Path

from bench import selection
from bench.errors import BenchError
from bench.records import is_failed, is_measured, read_records
from bench.run import setup as run_setup
from bench.run.execute import execute

ROOT = Path(__file__).resolve().parents[2]
ENV_BINARY = "EDGEBENCH_LLAMA_BENCH"
PROMPT_TOKENS, GEN_TOKENS = 512, 128  # llama-bench's default tests
RUNNER = "llama.cpp"
FLASH_ATTN_VALUES = {"auto": -1, "off": 0, "on": 1}  # as llama-bench's JSON writes them


def find(binary: str | None = None) -> Path | None:
    """The llama-bench to compare with: the path given, else $EDGEBENCH_LLAMA_BENCH, else what
    scripts/build-llama-bench.sh built for this machine's flags; None when there is none."""
    given = binary or os.environ.get(ENV_BINARY)
    if given:
        path = Path(given).expanduser()
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise BenchError(
                f"llama-bench: {path} is not an executable file",
                "give the path of a llama-bench binary, or build one: bash scripts/build-llama-bench.sh",
            )
        return path
    built = built_path()
    return built if built is not None and built.is_file() else None


def built_path() -> Path | None:
    """Where scripts/build-llama-bench.sh puts llama-bench for this CPU's flags (the script
    says: it alone knows the cache folder and the flags' key); None without the script (an
    installed package has no scripts/)."""
    script = ROOT / "scripts" / "build-llama-bench.sh"
    if not script.is_file():
        return None
    return Path(
        subprocess.run(["bash", str(script), "--print-path"], capture_output=True, text=True, check=True).stdout.strip()
    )


def runner_settings(overrides: tuple[str, ...] = ()) -> dict:
    """The llama.cpp runner's settings with `RUNNER:KEY=VALUE` overrides, as a run gets them."""
    from runners.llamacpp import LlamaCppRunner  # the class only: llama_cpp loads in `load`

    return selection.runner_settings(RUNNER, LlamaCppRunner, selection.parse_settings(overrides).get(RUNNER, {}))


def llama_bench_args(settings: dict, threads: int) -> list[str]:
    """llama-bench's own options for the runner's settings."""
    return [
        "-t",
        str(threads),
        "-fa",
        settings["flash_attn"],
        "-b",
        str(settings["n_batch"]),
        "-ub",
        str(settings["n_ubatch"]),
        "-ctk",
        settings["type_k"],
        "-ctv",
        settings["type_v"],
        "-lm",
        "mmap" if settings["use_mmap"] else "none",
    ]


def reported_fields(settings: dict, threads: int) -> dict:
    """The fields of llama-bench's JSON that must hold the runner's settings and threads."""
    return {
        "n_threads": threads,
        "flash_attn": FLASH_ATTN_VALUES[settings["flash_attn"]],
        "n_batch": settings["n_batch"],
        "n_ubatch": settings["n_ubatch"],
        "type_k": settings["type_k"],
        "type_v": settings["type_v"],
    }


def parse_results(text: str, expected: dict | None = None) -> dict[str, list[float]]:
    """llama-bench's `-o json` output as {test: tok/s of each repetition}, tests named as
    llama-bench names them (pp512, tg128). A test whose fields differ from `expected`
    (reported_fields) ran with other settings than asked, and is refused."""
    try:
        tests = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BenchError(f"llama-bench printed no JSON ({exc})", "run it by hand with -o json to see why") from None
    results = {}
    for test in tests:
        differ = {key: (test.get(key), value) for key, value in (expected or {}).items() if test.get(key) != value}
        if differ:
            raise BenchError(
                f"llama-bench ran with other settings than asked (got, asked): {differ}",
                "the binary may be another llama.cpp's; rebuild: bash scripts/build-llama-bench.sh",
            )
        n_prompt, n_gen = test["n_prompt"], test["n_gen"]
        name = f"pp{n_prompt}" if not n_gen else f"tg{n_gen}" if not n_prompt else f"pp{n_prompt}+tg{n_gen}"
        results[name + at_depth(test.get("n_depth") or 0)] = [float(x) for x in test["samples_ts"]]
    return results


def at_depth(depth: int) -> str:
    """A test name's suffix at a depth, as llama-bench prints it ("@d1024"), nothing at 0."""
    return f"@d{depth}" if depth else ""


def run_llama_bench(
    binary: Path, gguf: Path, threads: int, settings: dict, repetitions: int, depth: int = 0
) -> dict[str, list[float]]:
    """One llama-bench run of pp512 and tg128 (after its own warm-up), at `depth`."""
    command = [
        str(binary),
        "-m",
        str(gguf),
        "-p",
        str(PROMPT_TOKENS),
        "-n",
        str(GEN_TOKENS),
        "-r",
        str(repetitions),
        "-d",
        str(depth),
        "-o",
        "json",
        *llama_bench_args(settings, threads),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=1800)
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise BenchError(
            f"llama-bench failed (exit {result.returncode}): {last}", "run it by hand: " + " ".join(command)
        )
    return parse_results(result.stdout, reported_fields(settings, threads))


def write_plan(folder: Path, repetitions: int, depth: int = 0) -> tuple[Path, Path]:
    """A suite of llama-bench's two test shapes as fixed-length prompts (at a depth, depth-sweep
    prompts of that one depth), and a profile of one warm-up (as llama-bench does) and
    `repetitions` measured generations."""
    suite, profile = folder / "llama-bench-suite.toml", folder / "llama-bench-profile.toml"
    kind = f'"depth"\ndepths = [{depth}]' if depth else '"fixed"'
    suite.write_text(
        'id = "llama-bench"\ndescription = "llama-bench\'s default tests as fixed-length prompts."\n\n'
        '[[prompt]]\nid = "text"\ncategory = "autocomplete"\nkind = "completion"\n'
        'text = "The river runs past the old mill, and the town wakes to the sound of the wheel."\n'
        "max_new_tokens = 1\n\n"
        f'[[prompt]]\nid = "pp{PROMPT_TOKENS}"\ncategory = "throughput"\nkind = {kind}\ntags = ["llama-bench"]\n'
        f'prompt_tokens = {PROMPT_TOKENS}\nfill_from = "text"\nmax_new_tokens = 2\n\n'
        f'[[prompt]]\nid = "tg{GEN_TOKENS}"\ncategory = "throughput"\nkind = {kind}\ntags = ["llama-bench"]\n'
        f'prompt_tokens = 1\nfill_from = "text"\nmax_new_tokens = {GEN_TOKENS + 1}\n'
    )
    profile.write_text(
        f'name = "llama-bench"\ndescription = "interleaved with llama-bench"\nwarmups = 1\n'
        f'repetitions = {repetitions}\ntags = ["llama-bench"]\n'
        f"context_tokens = {depth + PROMPT_TOKENS + GEN_TOKENS + 2}\n"
    )
    return suite, profile


def run_edgebench(
    gguf: Path, threads: int, overrides: tuple[str, ...], repetitions: int, depth: int = 0
) -> dict[str, list[float]]:
    """The same two shapes through the normal worker path, at `depth`: {test: tok/s of each repetition}."""
    with tempfile.TemporaryDirectory() as tmp:
        suite, profile = write_plan(Path(tmp), repetitions, depth)
        setup = run_setup.setup_run(
            run_setup.RunOptions(
                runners=(RUNNER,),
                model=str(gguf),
                suite=str(suite),
                profile=str(profile),
                threads=threads,
                settings=overrides,
                out=Path(tmp) / "results",
            )
        )
        execute(setup)
        records = read_records([setup.results_path])
    failed = [r for r in records if is_failed(r) and not r["warmup"]]
    if failed:
        raise BenchError(
            f"edgebench's llama.cpp run failed: {failed[0].get('error')}",
            f"see `edgebench run --runner llama.cpp --model {gguf}`",
        )
    measured = [r for r in records if is_measured(r)]
    pp, tg = (f"{name}{at_depth(depth)}" for name in (f"pp{PROMPT_TOKENS}", f"tg{GEN_TOKENS}"))
    return {
        pp: [r["prefill_tok_s"] for r in measured if r["prompt_id"] == pp],
        tg: [r["decode_tok_s"] for r in measured if r["prompt_id"] == tg],
    }


def interleaved_rows(
    gguf: Path,
    threads: int,
    binary: Path,
    rounds: int = 3,
    repetitions: int = 3,
    overrides: tuple[str, ...] = (),
    depth: int = 0,
) -> list[dict]:
    """edgebench vs llama-bench on pp512 and tg128 (at `depth`): `rounds` alternating runs of
    each (`repetitions` measured generations per run), medians over all of them.
    One row per test: test, edgebench_tok_s, llama_bench_tok_s, ratio (edgebench / llama-bench)."""
    settings = runner_settings(overrides)
    ours: dict[str, list[float]] = {}
    theirs: dict[str, list[float]] = {}
    for n in range(rounds):
        # Alternate who goes first, so neither always runs on the cooler machine.
        order = [
            (lambda: run_edgebench(gguf, threads, overrides, repetitions, depth), ours),
            (lambda: run_llama_bench(binary, gguf, threads, settings, repetitions, depth), theirs),
        ]
        for run, into in order if n % 2 == 0 else order[::-1]:
            for test, samples in run().items():
                into.setdefault(test, []).extend(samples)
    tests = (f"pp{PROMPT_TOKENS}{at_depth(depth)}", f"tg{GEN_TOKENS}{at_depth(depth)}")
    return [_row(test, ours[test], theirs[test]) for test in tests]


def _row(test: str, ours: list[float], theirs: list[float]) -> dict:
    mine, bench = statistics.median(ours), statistics.median(theirs)
    return {
        "test": test,
        "edgebench_tok_s": mine,
        "llama_bench_tok_s": bench,
        "ratio": mine / bench,
        "edgebench_samples": ours,
        "llama_bench_samples": theirs,
    }
