"""`edgebench run`: validate every input, then run each runner in its own worker.

Everything that can be wrong with the user's input is found here, before any model
loads; the run itself then only meets the runtimes' own failures, which become records.
"""
from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import psutil

from bench import models, prepare, provenance
from bench.device import device_facts
from bench.errors import BenchError, unknown_name
from bench.orchestrator import Job, Orchestrator, RunnerOutcome, RunnerPlan, jobs_for, utc_now
from bench.profiles import RunProfile, load_profile
from bench.records import ResultsWriter
from bench.suite import Suite, load_suite
from runners import load_class, registrations
from runners.base import ArtifactError


@dataclass(frozen=True)
class RunOptions:
    runners: tuple[str, ...] = ()
    model: str | None = None
    artifacts: tuple[str, ...] = ()  # "RUNNER=PATH"
    suite: str = "default"
    profile: str = "default"
    threads: int | None = None
    out: Path = Path("results")
    quants: tuple[str, ...] = ()  # "RUNNER=QUANT"
    cache: Path | None = None
    prepare: bool = False  # make missing artifacts instead of refusing
    on_prepare: Callable[[str, str], None] = lambda runner, quant: None


@dataclass
class RunSetup:
    run_id: str
    suite: Suite
    profile: RunProfile
    model: models.Model
    plans: list[RunnerPlan]
    jobs: list[Job]
    results_path: Path
    run_fields: dict


@dataclass
class RunResult:
    setup: RunSetup
    outcomes: list[RunnerOutcome] = field(default_factory=list)
    interrupted: bool = False


def default_threads() -> int:
    return psutil.cpu_count(logical=False) or os.cpu_count() or 1


def parse_pairs(option: str, specs: tuple[str, ...], example: str) -> dict[str, list[str]]:
    """RUNNER=VALUE options, by runner."""
    parsed: dict[str, list[str]] = {}
    for spec in specs:
        name, sep, value = spec.partition("=")
        if not sep or not name or not value:
            raise BenchError(f"{option} '{spec}' is not RUNNER=VALUE", f"e.g. {option} {example}", exit_code=2)
        parsed.setdefault(name, []).append(value)
    return parsed


def select_runners(names: tuple[str, ...]) -> list[str]:
    """The named runners (each must be installed), or every available non-hidden one."""
    regs = registrations()
    for name in names:
        if name not in regs:
            raise unknown_name("runner", name, [n for n, r in regs.items() if not r.hidden])
    if names:
        chosen = list(dict.fromkeys(names))
        for name in chosen:
            probe = load_class(regs[name].target).probe()
            if not probe.available:
                raise BenchError(f"runner '{name}' is not available: {probe.reason}",
                                 probe.reason if probe.reason.startswith("pip") else "see `edgebench runners`")
        return chosen
    chosen = [n for n, r in regs.items() if not r.hidden and load_class(r.target).probe().available]
    if not chosen:
        raise BenchError("no runner is available on this machine", "see `edgebench runners` for what to install")
    return chosen


def prepare_run(options: RunOptions) -> RunSetup:
    if options.threads is not None and options.threads < 1:
        raise BenchError(f"--threads must be at least 1, got {options.threads}", "e.g. --threads 4", exit_code=2)
    suite = load_suite(options.suite)
    profile = load_profile(options.profile)
    model = models.get_model(options.model or models.default_model_id())
    user_artifacts = parse_pairs("--artifact", options.artifacts, "llama.cpp=model.gguf")
    quants = parse_pairs("--quant", options.quants, "onnxruntime=fp32")
    names = select_runners(options.runners)
    for option, given in (("--artifact", user_artifacts), ("--quant", quants)):
        for name in given:
            if name not in names:
                raise BenchError(f"{option} names runner '{name}', which this run does not use",
                                 f"add --runner {name} or drop that {option}", exit_code=2)
    jobs = jobs_for(suite, profile)
    if not jobs:
        raise BenchError(f"profile '{profile.name}' selects no prompt of suite '{suite.id}'",
                         "check the profile's tags against the suite's prompt tags")
    threads = options.threads or default_threads()
    regs = registrations()
    plans = []
    for name in names:
        cls = load_class(regs[name].target)
        for artifact in _artifacts(cls, name, model, user_artifacts.get(name, []), quants.get(name, []), options):
            plans.append(RunnerPlan(name, regs[name].target, artifact, threads,
                                    synthetic=cls.scripted_clock is not None))
    run_id = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(2)
    results_path = _writable(options.out) / f"{run_id}.jsonl"
    run_fields = dict(run_id=run_id, started_at=utc_now(), tool_version=provenance.tool_version(),
                      git_commit=provenance.git_commit(), model_id=model.id, **device_facts())
    return RunSetup(run_id, suite, profile, model, plans, jobs, results_path, run_fields)


def _artifacts(cls, name: str, model: models.Model, user_paths: list[str], quants: list[str],
               options: RunOptions) -> list[models.Artifact]:
    """What each plan of this runner loads: the user's files, else the model's source or
    the prepared artifact of each quantization asked for (default: the exporter's)."""
    if user_paths and quants:
        raise BenchError(f"{name}: --artifact and --quant both given", "a file of your own has its own quantization", exit_code=2)
    if not user_paths and cls.artifact_kind == "fake-script":
        raise BenchError("the fake runner needs a script", "pass --artifact fake=SCRIPT.json (see runners/fake.py)")
    if user_paths:
        found = [models.artifact_for(model, cls.artifact_kind, path) for path in user_paths]
    elif cls.exporter is None:
        if quants:
            raise BenchError(f"{name} reads the model's {model.source.format} as shipped ({model.source.quantization})",
                             f"pass another file with --artifact {name}=PATH", exit_code=2)
        found = [models.artifact_for(model, cls.artifact_kind, None)]
    else:
        found = [_prepared(cls, name, model, quant, options) for quant in quants or [cls.exporter.default_quantization]]
    for artifact in found:
        try:
            cls.check_artifact(artifact.path)
        except ArtifactError as exc:
            raise BenchError(f"{name}: {exc}", f"give {name} a {cls.artifact_kind} artifact") from None
    return found


def _prepared(cls, name: str, model: models.Model, quant: str, options: RunOptions) -> models.Artifact:
    exporter = cls.exporter
    if quant not in exporter.quantizations:
        raise BenchError(f"{name} has no quantization '{quant}'", f"choose one of: {', '.join(exporter.quantizations)}",
                         exit_code=2)
    root = prepare.cache_root(options.cache)
    found = prepare.find_artifact(model, prepare.artifact_stage(name, exporter), quant, root)
    if found is None and options.prepare:
        options.on_prepare(name, quant)
        found = prepare.prepare_artifact(model, name, exporter, quant, root)
    if found is None:
        raise BenchError(f"no prepared {name} artifact of {model.id} ({quant})",
                         f"make it with: edgebench prepare --model {model.id} --runner {name} --quant {quant} "
                         "(or add --prepare to this run)")
    return models.Artifact(found.path, found.sha256, found.manifest["bytes"], quant, "prepared")


def _writable(out: Path) -> Path:
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise BenchError(f"cannot write to output folder {out}: {exc.strerror}", "choose a writable folder with --out") from None
    return out


def execute(setup: RunSetup, on_record: Callable[[dict], None] = lambda r: None,
            on_runner: Callable[[str], None] = lambda name: None) -> RunResult:
    """Run every runner in turn; Ctrl-C stops after recording what was finished."""
    result = RunResult(setup)
    writer = ResultsWriter(setup.results_path)
    orchestrator = Orchestrator(run_fields=setup.run_fields, suite=setup.suite, profile=setup.profile,
                                jobs=setup.jobs, writer=writer, on_record=on_record)
    try:
        for plan in setup.plans:
            on_runner(plan.name)
            result.outcomes.append(orchestrator.run_runner(plan))
    except KeyboardInterrupt:
        result.interrupted = True
    finally:
        writer.close()
    return result
