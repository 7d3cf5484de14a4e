"""Another runtime's own phone binary (`--device-binary RUNNER=PATH` with `--target adb://`):
ExecuTorch's `llama_main` for executorch, LiteRT-LM's `litert_lm_main` for litert-lm.

The host pushes the binary with the runner's artifact (by sha256, as the device runner's),
runs each fixed-length request of the suite through it with `adb shell`, and parses the
statistics the tool prints about itself (bench.run.runtime_stats) into records marked
`clock: "runtime"`: no per-token stamps exist, so no ITL; the harness's clock is not in them.
A prompt that is not fixed-length gets a skipped record saying why: these tools take a
token count (litert_lm_main) or a text and a total length (llama_main), not a chat.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Callable

from bench.device.adb import AdbTarget
from bench.errors import BenchError
from bench.records import ResultsWriter
from bench.run import resume, runtime_stats
from bench.run.record import build_record
from bench.run.supervisor import Job, RunnerPlan

TOOLS = {"executorch": "llama_main", "litert-lm": "litert_lm_main"}  # runner -> the tool it takes
# The files of each runner's prepared artifact folder that its tool reads.
ARTIFACT_FILES = {"executorch": ("model.pte", "tokenizer.json"), "litert-lm": ("model.litertlm",)}
NOT_METERED = "the runtime's own binary runs outside the harness: not metered"


def check_binaries(given: dict[str, list[str]], runner_names: set[str]) -> dict[str, Path]:
    """--device-binary RUNNER=PATH, checked: a runner that takes one, in the run, an existing file."""
    binaries = {}
    for name, paths in given.items():
        if name not in TOOLS:
            raise BenchError(
                f"--device-binary {name}=…: only {', '.join(f'{r} ({t})' for r, t in TOOLS.items())} take one",
                "llama.cpp runs on a phone through edgebench's own device runner",
                exit_code=2,
            )
        if name not in runner_names:
            raise BenchError(
                f"--device-binary {name}=…: {name} is not in this run", f"add --runner {name}", exit_code=2
            )
        path = Path(paths[-1]).expanduser()
        if not path.is_file():
            raise BenchError(
                f"--device-binary {name}={path}: no such file", f"give the path of {TOOLS[name]}", exit_code=2
            )
        binaries[name] = path
    return binaries


def command(name: str, binary: str, files: dict[str, str], job: Job, threads: int) -> str:
    """The tool's command line for one fixed-length request (its own flags)."""
    prompt, new = job.payload["prompt_tokens"], job.payload["max_new_tokens"]
    if name == "litert-lm":
        args = [binary, "--backend=cpu", f"--model_path={files['model.litertlm']}", "--benchmark"]
        args += [f"--benchmark_prefill_tokens={prompt}", f"--benchmark_decode_tokens={new}"]
        return shlex.join(args + [f"--num_cpu_threads={threads}"])
    words = job.payload["fill_text"].split()  # about a token a word: llama_main counts what it gets
    text = " ".join((words * (prompt // max(len(words), 1) + 1))[:prompt])
    args = [binary, f"--model_path={files['model.pte']}", f"--tokenizer_path={files['tokenizer.json']}"]
    return shlex.join(
        args + [f"--prompt={text}", f"--seq_len={prompt + new}", "--temperature=0", f"--cpu_threads={threads}"]
    )


def run_plan(
    setup, plan: RunnerPlan, binary: Path, target: AdbTarget, writer: ResultsWriter, on_record: Callable[[dict], None]
) -> int:
    """Every job of the run through `plan`'s tool on the phone; returns the failures."""
    name = plan.name
    remote = target.push_binary(binary)
    folder = plan.artifact.path if plan.artifact.path.is_dir() else plan.artifact.path.parent
    files = {f: target.push(folder / f) for f in ARTIFACT_FILES[name]}
    loaded = {"runtime_version": f"{binary.name} (the runtime's own binary)", "backend": "cpu"}
    failed = 0
    for job in resume.remaining(setup.jobs, plan, setup.done) if setup.done else setup.jobs:
        prompt = setup.suite.by_id(job.prompt_id)
        values = dict(prompt_id=job.prompt_id, category=prompt.category, kind=prompt.kind, warmup=job.warmup)
        values |= dict(repeat=job.repeat, max_new_tokens=prompt.max_new_tokens, clock="runtime")
        if prompt.kind != "fixed":
            values |= dict(skip_reason=f"{TOOLS[name]} takes fixed-length requests only", status="skipped")
        else:
            values |= _measure(name, target, command(name, remote, files, job, plan.threads), job)
        if values["status"] not in ("ok", "skipped"):
            failed += 1
        record = build_record(setup.run_fields, setup.suite, setup.profile, plan, loaded, mode="suite", **values)
        writer.append(record)
        on_record(record)
    return failed


def _measure(name: str, target: AdbTarget, script: str, job: Job) -> dict:
    """One request through the tool: its statistics as record fields, or why there are none."""
    done = target.shell(script, check=False)
    try:
        stats = runtime_stats.PARSERS[name](done.stdout + done.stderr)
    except runtime_stats.StatsMissing as missing:
        said = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        return {"status": "error", "error": f"{missing} (exit {done.returncode}: {said[0]})"}
    fields = stats.record_fields() | {"energy_refused": NOT_METERED}
    asked = (job.payload["prompt_tokens"], job.payload["max_new_tokens"])
    if name == "litert-lm" and (stats.prompt_tokens, stats.new_tokens) != asked:
        error = f"{TOOLS[name]} processed {stats.prompt_tokens}+{stats.new_tokens} tokens, asked {asked[0]}+{asked[1]}"
        return fields | {"status": "error", "error": error}
    return fields | {"status": "ok"}  # llama_main: its own counts (a text prompt, an end of text) recorded
