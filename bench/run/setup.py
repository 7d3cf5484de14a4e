"""`edgebench run` and `edgebench sustained`, before anything runs: every input checked and
turned into a plan per runner (bench.run.execute then runs them).

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
from bench.artifacts.cache import Prepared, artifact_stage, cache_root
from bench.artifacts.families import check_family
from bench.artifacts.prepare import find_artifact
from bench.data import models, workloads
from bench.data.durations import format_duration
from bench.data.run_profiles import RunProfile, SustainedSettings, load_profile, sustained_settings
from bench.data.suite import Suite, load_suite
from bench.device import accelerators, bandwidth, tiering
from bench.device.facts import device_facts
from bench.errors import BenchError
from bench.records import utc_now
from bench.run import resume
from bench.run.supervisor import Job, RunnerPlan, jobs_for, sustained_jobs
from bench.selection import default_threads, parse_pairs, parse_settings, runner_settings, select_runners
from runners import load_class, registrations
from runners.base import ArtifactError


@dataclass(frozen=True)
class PendingPlan:
    """A runner whose artifact `run --prepare` exports just before its turn (bench.run.execute),
    so no export runs while another runner is measuring."""

    runner: type  # the runner's class: its exporter, and the check of what the export made
    name: str
    quant: str
    threads: int
    model: models.Model
    cache: Path  # the artifact cache's root
    with_artifact: Callable[..., RunnerPlan]  # with_artifact(artifact=...): the runner's plan
    context: int | None = None  # the KV capacity to export for, where the export fixes one (None: its own)


def _option(default, *, resumed: bool = True, forward: str | None = None, flag: str | None = None):
    """A run option, declared once: whether `--resume` restores it (bench.run.resume) and how a
    remote target's command line carries it (bench.run.remote.forwarded_options): "value"
    (FLAG VALUE when set), "each" (FLAG VALUE per item), "switch" (FLAG when true), "upload"
    (a file given by path goes to the target first), or None (the host handles it itself)."""
    return field(default=default, metadata={"resumed": resumed, "forward": forward, "flag": flag})


@dataclass(frozen=True)
class RunOptions:
    runners: tuple[str, ...] = _option(())  # forwarded with each plan's artifact on the target
    model: str | None = _option(None)  # forwarded as its catalogue id
    artifacts: tuple[str, ...] = _option(())  # "RUNNER=PATH"
    suite: str | None = _option(None, forward="upload", flag="--suite")  # None: the profile's, else default
    profile: str = _option("default", forward="upload", flag="--profile")
    threads: int | None = _option(None, forward="value", flag="--threads")
    out: Path = _option(Path("results"), resumed=False)  # a resumed run writes beside its results file
    quants: tuple[str, ...] = _option(())  # "RUNNER=QUANT"
    # "RUNNER:KEY=VALUE": overrides of a runner's defaults
    settings: tuple[str, ...] = _option((), forward="each", flag="--setting")
    cache: Path | None = _option(None)  # the host's cache; a target uses its own
    prepare: bool = _option(False, resumed=False)  # make missing artifacts instead of refusing
    memory_limit_mb: float | None = _option(None, forward="value", flag="--memory-limit-mb")
    resume: str | None = _option(None, resumed=False)  # a run id or results file to finish
    # a farm device's profile (profiles/devices) labelling the run
    device_profile: str | None = _option(None, forward="upload", flag="--device-profile")
    # measure every generation, however long the profile's budget says it would take (suite runs)
    no_budget: bool = _option(False, forward="switch", flag="--no-budget")
    # `edgebench sustained`: the profile's sustained settings apply (a sustained series is not resumable)
    sustained: bool = _option(False, resumed=False)
    duration: str | None = _option(None, resumed=False)  # overrides the profile's sustained duration ("10m")
    window: str | None = _option(None, resumed=False)
    # keep results of a runner that ran elsewhere than its --accelerator asked
    allow_fallback: bool = _option(False, forward="switch", flag="--allow-fallback")
    # "RUNNER=PATH": a runtime's own phone binary (adb:// targets; bench.run.device_binary)
    device_binaries: tuple[str, ...] = _option(())
    # score each runner's quality after its suite (None: as the profile says); never on a target,
    # as the reference needs the host's fp32 checkpoint
    quality: bool | None = _option(None)


@dataclass
class RunInputs:
    """Every input of a run, checked, and what it selects: what a run here and the host of a
    remote run (bench.run.remote) both know before any model loads."""

    suite: Suite
    profile: RunProfile
    farm_device: workloads.DeviceProfile | None
    model: models.Model
    sustained: SustainedSettings | None  # None: a suite run
    jobs: list[Job]
    threads: int
    plans: list[RunnerPlan | PendingPlan]
    left_out: list[str]  # runners not in the run, and why


@dataclass
class RunSetup(RunInputs):
    """A run ready to execute: its inputs, its identity and where its records go."""

    run_id: str
    results_path: Path
    run_fields: dict  # what every record of the run carries
    budget_s: float | None = None  # the most time one prompt may take on one runtime (bench.run.time_budget)
    quality: bool = False  # each runner's quality is scored after its suite (bench.quality.run.QualityStep)
    done: set = field(default_factory=set)  # keys of generations a resumed run already has
    samples_path: Path | None = None  # the device time series of a sustained run


def setup_run(options: RunOptions) -> RunSetup:
    """The run `options` ask for, every input checked: a new run, or (`options.resume`) the
    rest of an earlier one, with that run's own options."""
    saved = results_path = None
    if options.resume:
        options, saved, results_path = resume.load(options.resume, options)
    inputs = check_inputs(options)
    if saved:
        resume.check_unchanged(saved, inputs.suite.sha256, inputs.profile.sha256)
        resume.check_artifacts(results_path, inputs.plans)
        run_id, started_at = saved["run_id"], saved["started_at"]
    else:
        run_id = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(2)
        started_at, results_path = utc_now(), writable_folder(options.out) / f"{run_id}.jsonl"
    run_fields = _run_fields(run_id, started_at, inputs)
    if not saved and not inputs.sustained:  # a sustained series is not resumable: a new worker starts cold
        resume.save(results_path, options, inputs.threads, run_fields, inputs.suite.sha256, inputs.profile.sha256)
    return RunSetup(
        **vars(inputs),
        run_id=run_id,
        results_path=results_path,
        run_fields=run_fields,
        budget_s=None if options.no_budget or inputs.sustained else inputs.profile.prompt_budget_s,
        quality=not inputs.sustained and (inputs.profile.quality if options.quality is None else options.quality),
        done=resume.done_keys(results_path) if saved else set(),
        samples_path=results_path.with_suffix(".device.jsonl") if inputs.sustained else None,
    )


def run_suite(options: RunOptions, profile: RunProfile) -> Suite:
    """The suite a run measures: --suite, else the one its profile names, else the default."""
    return load_suite(options.suite or profile.suite or "default")


def check_inputs(options: RunOptions) -> RunInputs:
    """Every input checked, and each runner's artifact found (or its export planned)."""
    _check_numbers(options)
    profile = load_profile(options.profile)
    suite = run_suite(options, profile)
    farm_device = workloads.load_device_profile(options.device_profile) if options.device_profile else None
    model = models.get_model(options.model or models.default_model_id())
    names, user_artifacts, quants, overrides = _per_runner_options(options)
    sustained = sustained_settings_for(options, suite, profile) if options.sustained else None
    jobs = sustained_jobs(suite, sustained.prompt, profile.warmups) if sustained else jobs_for(suite, profile)
    if not jobs:
        raise BenchError(
            f"profile '{profile.name}' selects no prompt of suite '{suite.id}'",
            "check the profile's tags against the suite's prompt tags",
        )
    threads = options.threads or default_threads()
    plans, left_out = runner_plans(names, model, user_artifacts, quants, overrides, threads, options, profile)
    return RunInputs(suite, profile, farm_device, model, sustained, jobs, threads, plans, left_out)


def _check_numbers(options: RunOptions) -> None:
    if options.memory_limit_mb is not None and options.memory_limit_mb <= 0:
        raise BenchError(
            f"--memory-limit-mb must be positive, got {options.memory_limit_mb:g}",
            "e.g. --memory-limit-mb 4096",
            exit_code=2,
        )


def _per_runner_options(options: RunOptions) -> tuple[list[str], dict, dict, dict]:
    """The runners of the run, and the --artifact, --quant and --setting options by runner,
    each naming one of them."""
    user_artifacts = parse_pairs("--artifact", options.artifacts, "llama.cpp=model.gguf")
    quants = parse_pairs("--quant", options.quants, "onnxruntime=fp32")
    names = select_runners(options.runners)
    overrides = parse_settings(options.settings)
    for option, given in (("--artifact", user_artifacts), ("--quant", quants), ("--setting", overrides)):
        for name in given:
            if name not in names:
                raise BenchError(
                    f"{option} names runner '{name}', which this run does not use",
                    f"add --runner {name} or drop that {option}",
                    exit_code=2,
                )
    return names, user_artifacts, quants, overrides


def _run_fields(run_id: str, started_at: str, inputs: RunInputs) -> dict:
    """The run's identity and provenance, and this device's facts and tier."""
    facts = device_facts()
    placement = tiering.place(facts, inputs.farm_device, lambda: bandwidth.measure(inputs.threads))
    return dict(
        run_id=run_id,
        started_at=started_at,
        tool_version=provenance.tool_version(),
        git_commit=provenance.git_commit(),
        model_id=inputs.model.id,
        **facts,
        **placement.record_fields(),
    )


def sustained_settings_for(options: RunOptions, suite: Suite, profile: RunProfile) -> SustainedSettings:
    """The profile's sustained settings with the command line's overrides, checked."""
    base = profile.sustained
    if base is None:
        raise BenchError(
            f"profile '{profile.name}' has no sustained settings",
            "use --profile sustained or sustained-ci",
            exit_code=2,
        )
    settings = (
        sustained_settings(
            base.prompt,
            options.duration or format_duration(base.duration_s),
            options.window or format_duration(base.window_s),
            "--",
            exit_code=2,
        )
        if options.duration or options.window
        else base
    )
    if settings.prompt not in {p.id for p in suite.prompts} or suite.by_id(settings.prompt).kind != "fixed":
        raise BenchError(
            f"sustained prompt '{settings.prompt}' is not a fixed-length prompt of suite '{suite.id}'",
            'name a prompt of kind "fixed" as the prompt of the profile\'s sustained table',
        )
    return settings


def runner_plans(
    names: list[str],
    model: models.Model,
    user_artifacts: dict,
    quants: dict,
    overrides: dict,
    threads: int,
    options: RunOptions,
    profile: RunProfile,
) -> tuple[list[RunnerPlan | PendingPlan], list[str]]:
    """One plan per runner and artifact, and the runners left out (with why), or the part of
    the run they leave out (depths past an artifact's capacity)."""
    regs = registrations()
    plans, left_out = [], []
    for name in names:
        cls = load_class(regs[name].target)
        settings = runner_settings(name, cls, overrides.get(name, {}))
        accelerators.check_request(name, regs[name].target, settings.get("accelerator"))
        try:
            artifacts = _artifacts(
                cls, name, model, user_artifacts.get(name, []), quants.get(name, []), options, profile.context_tokens
            )
            left_out += _short_of(cls, name, artifacts, profile.context_tokens, options.prepare)
        except BenchError as exc:
            # A runner nobody asked for by name is left out when its artifact is not
            # ready, so "every available runner" still runs the others.
            if options.runners:
                raise
            left_out.append(f"{name}: {exc.message} ({exc.hint})")
            continue
        plan = functools.partial(
            RunnerPlan,
            name,
            regs[name].target,
            threads=threads,
            synthetic=cls.scripted_clock is not None,
            memory_limit_mb=options.memory_limit_mb,
            settings=settings,
            allow_fallback=options.allow_fallback,
        )
        plans += [
            plan(artifact=a)
            if isinstance(a, models.Artifact)
            else PendingPlan(
                cls, name, a, threads, model, cache_root(options.cache), plan, _export_context(cls, profile)
            )
            for a in artifacts
        ]
    if not plans:
        raise BenchError(
            "no runner has an artifact ready: " + "; ".join(left_out), "run `edgebench prepare` first, or add --prepare"
        )
    return plans, left_out  # in the order of `names`: cheapest export first (selection.cheapest_first)


def _export_context(cls, profile: RunProfile) -> int | None:
    """The KV capacity `run --prepare` exports for: the profile's context where the export
    fixes one smaller (a depth sweep), else the exporter's own."""
    fixed = cls.exporter and cls.exporter.context
    return profile.context_tokens if fixed and profile.context_tokens > fixed else None


def _short_of(cls, name: str, artifacts: list, context_tokens: int, prepare: bool) -> list[str]:
    """What a run leaves out of a runner whose artifact's KV capacity, fixed at export, is
    shorter than the profile's context (the depths past it are skipped records), in one line
    saying which `prepare` makes one that holds it."""
    notes = []
    for artifact in artifacts:
        capacity = getattr(artifact, "context", None)
        if isinstance(artifact, models.Artifact) and capacity and capacity < context_tokens:
            notes.append(
                f"{name}'s requests past {capacity:,} tokens of context: its artifact holds {capacity:,}, the "
                f"profile asks {context_tokens:,} (make one that holds it: edgebench prepare --runner {name} "
                f"--quant {artifact.quantization} --context {context_tokens})"
            )
    return notes


def _artifacts(
    cls,
    name: str,
    model: models.Model,
    user_paths: list[str],
    quants: list[str],
    options: RunOptions,
    context_tokens: int,
) -> list[models.Artifact | str]:
    """What each plan of this runner loads: the user's files, else the model's source or the
    prepared artifact of each quantization asked for (default: the exporter's), or the
    quantization itself where `run --prepare` exports it when the runner's turn comes."""
    if user_paths and quants:
        raise BenchError(
            f"{name}: --artifact and --quant both given", "a file of your own has its own quantization", exit_code=2
        )
    if not user_paths and cls.artifact_kind == "fake-script":
        raise BenchError("the fake runner needs a script", "pass --artifact fake=SCRIPT.json (see runners/fake.py)")
    if user_paths:
        found = [models.artifact_for(model, cls.artifact_kind, path) for path in user_paths]
    elif cls.exporter is None:
        if quants:
            raise BenchError(
                f"{name} reads the model's {model.source.format} as shipped ({model.source.quantization})",
                f"pass another file with --artifact {name}=PATH",
                exit_code=2,
            )
        found = [models.artifact_for(model, cls.artifact_kind, None)]
    else:
        return [
            _prepared(cls, name, model, quant, options, context_tokens)
            for quant in quants or [cls.exporter.default_quantization]
        ]
    return [checked_artifact(cls, name, a) for a in found]


def checked_artifact(cls, name: str, artifact: models.Artifact) -> models.Artifact:
    """The artifact, once the runner says it is one of its kind."""
    try:
        cls.check_artifact(artifact.path)
    except ArtifactError as exc:
        raise BenchError(f"{name}: {exc}", f"give {name} a {cls.artifact_kind} artifact") from None
    return artifact


def prepared_artifact(found: Prepared, quant: str, cls) -> models.Artifact:
    """A prepared artifact of runner `cls`, with the KV capacity its export fixed (manifests made
    before `prepare --context` hold the exporter's own)."""
    context = found.manifest.get("context") or cls.exporter.context
    return models.Artifact(found.path, found.sha256, found.manifest["bytes"], quant, "prepared", context)


def _prepared(
    cls, name: str, model: models.Model, quant: str, options: RunOptions, context_tokens: int
) -> models.Artifact | str:
    """The prepared artifact of `quant`, checked: where the export fixes the KV capacity, the
    smallest one that holds the profile's context, else the default one (the run then says
    what it leaves out), or `quant` itself when `run --prepare` is to export one that holds it."""
    exporter = cls.exporter
    if quant not in exporter.quantizations:
        raise BenchError(
            f"{name} has no quantization '{quant}'", f"choose one of: {', '.join(exporter.quantizations)}", exit_code=2
        )
    root, stage = cache_root(options.cache), artifact_stage(name, exporter)
    holding = exporter.context is not None and context_tokens > exporter.context
    found = find_artifact(model, stage, quant, root, context_tokens) if holding else None
    if found is None and holding and options.prepare:
        return quant
    found = found or find_artifact(model, stage, quant, root)
    if found is None and not options.prepare and model.source.format == "hf":  # say so before "prepare it"
        check_family(name, exporter, models.checkpoint_family(model.source_path()), quant)
    if found is None and options.prepare:
        return quant
    if found is None:
        raise BenchError(
            f"no prepared {name} artifact of {model.id} ({quant})",
            f"make it with: edgebench prepare --model {model.id} --runner {name} --quant {quant} "
            "(or add --prepare to this run)",
        )
    return checked_artifact(cls, name, prepared_artifact(found, quant, cls))


def writable_folder(out: Path) -> Path:
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise BenchError(
            f"cannot write to output folder {out}: {exc.strerror}", "choose a writable folder with --out"
        ) from None
    return out
