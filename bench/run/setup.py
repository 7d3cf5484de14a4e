"""`edgebench run` and `edgebench sustained`: validate every input, then run each runner
in its own worker.

Everything that can be wrong with the user's input is found here, before any model
loads; the run itself then only meets the runtimes' own failures, which become records.
"""
from __future__ import annotations

import functools
import os
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable


from bench import provenance
from bench.device import accelerators
from bench.device import bandwidth
from bench.data import models
from bench.artifacts import prepare
from bench.run import resume
from bench.data import workloads
from bench.device import tiering
from bench.device.facts import device_facts
from bench.data.durations import format_duration
from bench.errors import BenchError
from bench.device.hygiene import Cooldown, cool_down
from bench.run.supervisor import Job, Supervisor, RunnerOutcome, RunnerPlan, jobs_for, sustained_jobs
from bench.data.run_profiles import RunProfile, SustainedSettings, load_profile, sustained_settings
from bench.records import SCHEMA_VERSION, ResultsWriter, make_record, utc_now
from bench.selection import default_threads, parse_pairs, parse_settings, runner_settings, select_runners
from bench.data.suite import Suite, load_suite
from bench.device.sensors import DeviceReader
from runners import load_class, registrations
from runners.base import ArtifactError


# The order `run` takes runners in: the one that needs no export first (its results are
# on screen about a minute after set-up), then the cheapest exports (typical first exports
# on 2 cores: ONNX Runtime and MLX seconds, LiteRT minutes, ExecuTorch about ten minutes).
# Runners not named here (plugins) come last, in registration order.
RUN_ORDER = ("llama.cpp", "onnxruntime", "mlx", "litert", "litert-lm", "executorch")


@dataclass(frozen=True)
class PendingPlan:
    """A runner whose artifact `run --prepare` exports just before its turn, so no export
    runs while another runner is measuring. `make()` exports (showing prepare's own
    progress lines) and returns its plan."""
    name: str
    quant: str
    threads: int
    make: Callable[[], RunnerPlan]


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
    settings: tuple[str, ...] = ()  # "RUNNER:KEY=VALUE": overrides of a runner's defaults
    cache: Path | None = None
    prepare: bool = False  # make missing artifacts instead of refusing
    memory_limit_mb: float | None = None
    resume: str | None = None  # a run id or results file to finish
    device_profile: str | None = None  # a farm device's profile (profiles/devices) labelling the run
    on_prepare: Callable[[str, str], None] = lambda runner, quant: None
    no_budget: bool = False  # measure every generation, however long the profile's budget says it would take
    sustained: bool = False  # `edgebench sustained`: the profile's sustained settings apply
    duration: str | None = None  # overrides the profile's sustained duration ("10m")
    window: str | None = None
    allow_fallback: bool = False  # keep results of a runner that ran elsewhere than its --accelerator asked


@dataclass
class RunSetup:
    run_id: str
    suite: Suite
    profile: RunProfile
    model: models.Model
    plans: list[RunnerPlan | PendingPlan]
    jobs: list[Job]
    results_path: Path
    run_fields: dict
    skipped: list[str] = field(default_factory=list)  # runners left out, and why
    budget_s: float | None = None  # a generation estimated to take longer is skipped
    done: set = field(default_factory=set)  # keys of generations a resumed run already has
    sustain: SustainedSettings | None = None
    samples_path: Path | None = None  # the device time series of a sustained run


@dataclass
class RunResult:
    setup: RunSetup
    outcomes: list[RunnerOutcome] = field(default_factory=list)
    interrupted: bool = False
    export_failures: list[str] = field(default_factory=list)  # runners `run --prepare` could not export


def setup_run(options: RunOptions) -> RunSetup:
    saved = None
    if options.resume:
        options, saved, results_path = resume.load(options.resume, options)
    if options.memory_limit_mb is not None and options.memory_limit_mb <= 0:
        raise BenchError(f"--memory-limit-mb must be positive, got {options.memory_limit_mb:g}", "e.g. --memory-limit-mb 4096",
                         exit_code=2)
    if options.threads is not None and options.threads < 1:
        raise BenchError(f"--threads must be at least 1, got {options.threads}", "e.g. --threads 4", exit_code=2)
    suite = load_suite(options.suite)
    profile = load_profile(options.profile)
    farm_device = workloads.load_device_profile(options.device_profile) if options.device_profile else None
    model = models.get_model(options.model or models.default_model_id())
    user_artifacts = parse_pairs("--artifact", options.artifacts, "llama.cpp=model.gguf")
    quants = parse_pairs("--quant", options.quants, "onnxruntime=fp32")
    names = select_runners(options.runners)
    overrides = parse_settings(options.settings)
    for option, given in (("--artifact", user_artifacts), ("--quant", quants), ("--setting", overrides)):
        for name in given:
            if name not in names:
                raise BenchError(f"{option} names runner '{name}', which this run does not use",
                                 f"add --runner {name} or drop that {option}", exit_code=2)
    sustain, jobs = sustained_plan(options, suite, profile) if options.sustained else (None, jobs_for(suite, profile))
    if not jobs:
        raise BenchError(f"profile '{profile.name}' selects no prompt of suite '{suite.id}'",
                         "check the profile's tags against the suite's prompt tags")
    threads = options.threads or default_threads()
    plans, skipped = runner_plans(names, model, user_artifacts, quants, overrides, threads, options)
    if saved:
        resume.check_unchanged(saved, suite.sha256, profile.sha256)
        resume.check_artifacts(results_path, plans)
        run_id, started_at = saved["run_id"], saved["started_at"]
    else:
        run_id = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(2)
        started_at, results_path = utc_now(), writable_folder(options.out) / f"{run_id}.jsonl"
    facts = device_facts()
    placement = tiering.place(facts, farm_device, lambda: bandwidth.measure(threads))
    run_fields = dict(run_id=run_id, started_at=started_at, tool_version=provenance.tool_version(),
                      git_commit=provenance.git_commit(), model_id=model.id, **facts, **placement.record_fields())
    if not saved and not sustain:  # a sustained series is not resumable: a new worker starts cold
        resume.save(results_path, options, threads, run_fields, suite.sha256, profile.sha256)
    done = resume.done_keys(results_path) if saved else set()
    samples_path = results_path.with_suffix(".device.jsonl") if sustain else None
    budget_s = None if options.no_budget or sustain else profile.generation_budget_s
    return RunSetup(run_id, suite, profile, model, plans, jobs, results_path, run_fields, skipped, budget_s,
                    done, sustain, samples_path)


def sustained_plan(options: RunOptions, suite: Suite, profile: RunProfile) -> tuple[SustainedSettings, list[Job]]:
    """The profile's sustained settings with the command line's overrides, checked."""
    base = profile.sustained
    if base is None:
        raise BenchError(f"profile '{profile.name}' has no sustained settings",
                         "use --profile sustained or sustained-ci", exit_code=2)
    settings = sustained_settings(base.prompt, options.duration or format_duration(base.duration_s),
                                  options.window or format_duration(base.window_s), "--", exit_code=2) \
        if options.duration or options.window else base
    if settings.prompt not in {p.id for p in suite.prompts} or suite.by_id(settings.prompt).kind != "fixed":
        raise BenchError(f"sustained prompt '{settings.prompt}' is not a fixed-length prompt of suite '{suite.id}'",
                         "name a prompt of kind \"fixed\" as the prompt of the profile's sustained table")
    return settings, sustained_jobs(suite, settings.prompt, profile.warmups)


def runner_plans(names: list[str], model: models.Model, user_artifacts: dict, quants: dict, overrides: dict,
           threads: int, options: RunOptions) -> tuple[list[RunnerPlan], list[str]]:
    """One plan per runner and artifact, and the runners left out (with why)."""
    regs = registrations()
    plans, skipped = [], []
    for name in names:
        cls = load_class(regs[name].target)
        settings = runner_settings(name, cls.defaults, overrides.get(name, {}))
        accelerators.check_request(name, regs[name].target, settings.get("accelerator"))
        try:
            artifacts = _artifacts(cls, name, model, user_artifacts.get(name, []), quants.get(name, []), options)
        except BenchError as exc:
            # A runner nobody asked for by name is left out when its artifact is not
            # ready, so "every available runner" still runs the others.
            if options.runners:
                raise
            skipped.append(f"{name}: {exc.message} ({exc.hint})")
            continue
        plan = functools.partial(RunnerPlan, name, regs[name].target, threads=threads,
                                 synthetic=cls.scripted_clock is not None, memory_limit_mb=options.memory_limit_mb,
                                 settings=settings, allow_fallback=options.allow_fallback)
        plans += [plan(artifact=a) if isinstance(a, models.Artifact) else
                  PendingPlan(name, a.quant, threads, lambda a=a, plan=plan: plan(artifact=a.export()))
                  for a in artifacts]
    if not plans:
        raise BenchError("no runner has an artifact ready: " + "; ".join(skipped),
                         "run `edgebench prepare` first, or add --prepare")
    order = {name: i for i, name in enumerate(RUN_ORDER)}
    return sorted(plans, key=lambda p: order.get(p.name, len(order))), skipped


def _artifacts(cls, name: str, model: models.Model, user_paths: list[str], quants: list[str],
               options: RunOptions) -> list[models.Artifact | _Export]:
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
    return [a if isinstance(a, _Export) else _checked(cls, name, a) for a in found]


def _checked(cls, name: str, artifact: models.Artifact) -> models.Artifact:
    try:
        cls.check_artifact(artifact.path)
    except ArtifactError as exc:
        raise BenchError(f"{name}: {exc}", f"give {name} a {cls.artifact_kind} artifact") from None
    return artifact


@dataclass(frozen=True)
class _Export:
    """A missing artifact that `run --prepare` makes when its runner's turn comes."""
    cls: type
    name: str
    model: models.Model
    quant: str
    root: Path
    options: RunOptions

    def export(self) -> models.Artifact:
        self.options.on_prepare(self.name, self.quant)
        found = prepare.prepare_artifact(self.model, self.name, self.cls.exporter, self.quant, self.root)
        return _checked(self.cls, self.name, _prepared_artifact(found, self.quant))


def _unsupported_record(setup: RunSetup, plan: PendingPlan, exc: prepare.Unsupported) -> dict:
    """A runner whose exporter does not take the model's family: one error record saying so."""
    return make_record(**setup.run_fields, measured_at=utc_now(), mode="suite", runner=plan.name,
                       quantization=plan.quant, threads_requested=plan.threads, suite_id=setup.suite.id,
                       suite_sha256=setup.suite.sha256, profile_name=setup.profile.name,
                       profile_sha256=setup.profile.sha256, status="error", error=f"{exc.message}; {exc.hint}")


def _prepared_artifact(found: prepare.Prepared, quant: str) -> models.Artifact:
    return models.Artifact(found.path, found.sha256, found.manifest["bytes"], quant, "prepared")


def _prepared(cls, name: str, model: models.Model, quant: str, options: RunOptions) -> models.Artifact | _Export:
    exporter = cls.exporter
    if quant not in exporter.quantizations:
        raise BenchError(f"{name} has no quantization '{quant}'", f"choose one of: {', '.join(exporter.quantizations)}",
                         exit_code=2)
    root = prepare.cache_root(options.cache)
    found = prepare.find_artifact(model, prepare.artifact_stage(name, exporter), quant, root)
    if found is None and not options.prepare and model.source.format == "hf":  # say so before "prepare it"
        prepare.check_family(name, exporter, models.checkpoint_family(model.source_path()), quant)
    if found is None and options.prepare:
        return _Export(cls, name, model, quant, root, options)
    if found is None:
        raise BenchError(f"no prepared {name} artifact of {model.id} ({quant})",
                         f"make it with: edgebench prepare --model {model.id} --runner {name} --quant {quant} "
                         "(or add --prepare to this run)")
    return _prepared_artifact(found, quant)


def writable_folder(out: Path) -> Path:
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
            say: Callable[[str], None] = lambda message: None, device: DeviceReader | None = None,
            on_wait: Callable[[str, Job | None, float], None] = lambda runner, job, seconds: None) -> RunResult:
    """Run every runner in turn (exporting a pending artifact first), cooling down between
    them as asked; Ctrl-C stops after recording what was finished."""
    result = RunResult(setup)
    device = device or DeviceReader()
    writer = ResultsWriter(setup.results_path)
    samples = ResultsWriter(setup.samples_path) if setup.samples_path else None

    def on_sample(runner: str, sample: dict) -> None:
        samples.append({"schema_version": SCHEMA_VERSION, "run_id": setup.run_id, "runner": runner, **sample})

    supervisor = Supervisor(run_fields=setup.run_fields, suite=setup.suite, profile=setup.profile,
                                jobs=setup.jobs, writer=writer, on_record=on_record, sustain=setup.sustain,
                                device=device, on_sample=on_sample, on_wait=on_wait, budget_s=setup.budget_s)
    try:
        for number, plan in enumerate(list(setup.plans)):
            if isinstance(plan, PendingPlan):
                try:
                    plan = setup.plans[number] = plan.make()  # later steps (quality) see the real plan
                except BenchError as exc:  # reported; the other runners still run
                    say(f"{plan.name} {plan.quant}: export failed, not run: {exc.message}")
                    result.export_failures.append(f"{plan.name} {plan.quant}: {exc.message.splitlines()[0]}")
                    if isinstance(exc, prepare.Unsupported):  # known before any export: a record says why
                        supervisor.emit(RunnerOutcome(plan.name), _unsupported_record(setup, plan, exc))
                    continue
            if number and cooldown:
                cool_down(cooldown, device, say)
            on_runner(plan.name)
            jobs = resume.remaining(setup.jobs, plan, setup.done) if setup.done else setup.jobs
            result.outcomes.append(supervisor.run_runner(plan, jobs))
    except KeyboardInterrupt:
        result.interrupted = True
    finally:
        writer.close()
        if samples:
            samples.close()
        # Later steps (quality) see only runners that got an artifact.
        setup.plans[:] = [p for p in setup.plans if not isinstance(p, PendingPlan)]
    return result
