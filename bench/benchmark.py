"""`edgebench run` and `edgebench sustained`: validate every input, then run each runner
in its own worker.

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

from bench import models, provenance
from bench.device import device_facts
from bench.errors import BenchError, unknown_name
from bench.hygiene import Cooldown, cool_down
from bench.orchestrator import Job, Orchestrator, RunnerOutcome, RunnerPlan, Sustain, jobs_for, sustained_jobs, utc_now
from bench.profiles import RunProfile, load_profile, sustained_settings
from bench.records import SCHEMA_VERSION, ResultsWriter
from bench.suite import Suite, load_suite
from bench.thermal import DeviceReader
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
    sustained: bool = False  # `edgebench sustained`: the profile's [sustained] settings apply
    duration: str | None = None  # overrides the profile's sustained duration ("10m")
    window: str | None = None


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
    sustain: Sustain | None = None
    samples_path: Path | None = None  # the device time series of a sustained run


@dataclass
class RunResult:
    setup: RunSetup
    outcomes: list[RunnerOutcome] = field(default_factory=list)
    interrupted: bool = False


def default_threads() -> int:
    return psutil.cpu_count(logical=False) or os.cpu_count() or 1


def parse_artifacts(specs: tuple[str, ...]) -> dict[str, str]:
    parsed: dict[str, str] = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            raise BenchError(f"--artifact '{spec}' is not RUNNER=PATH", "e.g. --artifact llama.cpp=model.gguf", exit_code=2)
        parsed[name] = path
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
    user_artifacts = parse_artifacts(options.artifacts)
    names = select_runners(options.runners)
    for name in user_artifacts:
        if name not in names:
            raise BenchError(f"--artifact names runner '{name}', which this run does not use",
                             f"add --runner {name} or drop that --artifact", exit_code=2)
    sustain, jobs = _sustained_plan(options, suite, profile) if options.sustained else (None, jobs_for(suite, profile))
    if not jobs:
        raise BenchError(f"profile '{profile.name}' selects no prompt of suite '{suite.id}'",
                         "check the profile's tags against the suite's prompt tags")
    threads = options.threads or default_threads()
    regs = registrations()
    plans = []
    for name in names:
        cls = load_class(regs[name].target)
        artifact = _artifact(cls, name, model, user_artifacts.get(name))
        plans.append(RunnerPlan(name, regs[name].target, artifact, threads, synthetic=cls.scripted_clock is not None))
    run_id = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(2)
    results_path = _writable(options.out) / f"{run_id}.jsonl"
    run_fields = dict(run_id=run_id, started_at=utc_now(), tool_version=provenance.tool_version(),
                      git_commit=provenance.git_commit(), model_id=model.id, **device_facts())
    samples_path = results_path.with_suffix(".device.jsonl") if sustain else None
    return RunSetup(run_id, suite, profile, model, plans, jobs, results_path, run_fields, sustain, samples_path)


def _sustained_plan(options: RunOptions, suite: Suite, profile: RunProfile) -> tuple[Sustain, list[Job]]:
    """The profile's sustained settings with the command line's overrides, checked."""
    base = profile.sustained
    if base is None:
        raise BenchError(f"profile '{profile.name}' has no sustained settings",
                         "use --profile sustained or sustained-ci", exit_code=2)
    settings = sustained_settings(base.prompt, options.duration or f"{base.duration_s}s",
                                  options.window or f"{base.window_s}s", "--", exit_code=2) \
        if options.duration or options.window else base
    if settings.prompt not in {p.id for p in suite.prompts} or suite.by_id(settings.prompt).kind != "fixed":
        raise BenchError(f"sustained prompt '{settings.prompt}' is not a fixed-length prompt of suite '{suite.id}'",
                         "name a prompt of kind \"fixed\" as the prompt of the profile's sustained table")
    return Sustain(settings.duration_s, settings.window_s), sustained_jobs(suite, settings.prompt, profile.warmups)


def _artifact(cls, name: str, model: models.Model, user_path: str | None) -> models.Artifact:
    if user_path is None and cls.artifact_kind == "fake-script":
        raise BenchError("the fake runner needs a script", "pass --artifact fake=SCRIPT.json (see runners/fake.py)")
    artifact = models.artifact_for(model, cls.artifact_kind, user_path)
    try:
        cls.check_artifact(artifact.path)
    except ArtifactError as exc:
        raise BenchError(f"{name}: {exc}", f"give {name} a {cls.artifact_kind} file") from None
    return artifact


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
            on_runner: Callable[[str], None] = lambda name: None, cooldown: Cooldown | None = None,
            say: Callable[[str], None] = lambda message: None, device: DeviceReader | None = None) -> RunResult:
    """Run every runner in turn, cooling down between them as asked; Ctrl-C stops after
    recording what was finished."""
    result = RunResult(setup)
    device = device or DeviceReader()
    writer = ResultsWriter(setup.results_path)
    samples = ResultsWriter(setup.samples_path) if setup.samples_path else None

    def on_sample(runner: str, sample: dict) -> None:
        samples.append({"schema_version": SCHEMA_VERSION, "run_id": setup.run_id, "runner": runner, **sample})

    orchestrator = Orchestrator(run_fields=setup.run_fields, suite=setup.suite, profile=setup.profile,
                                jobs=setup.jobs, writer=writer, on_record=on_record, sustain=setup.sustain,
                                device=device, on_sample=on_sample)
    try:
        for number, plan in enumerate(setup.plans):
            if number and cooldown:
                cool_down(cooldown, device, say)
            on_runner(plan.name)
            result.outcomes.append(orchestrator.run_runner(plan))
    except KeyboardInterrupt:
        result.interrupted = True
    finally:
        writer.close()
        if samples:
            samples.close()
    return result
