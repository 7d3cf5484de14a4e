"""Runs a checked run (bench.run.setup): each runner in turn, in its own worker, exporting a
pending artifact just before its runner's turn so no export runs while another runner is
measured, cooling down between runners as asked. Ctrl-C stops after recording what was
finished."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from bench.artifacts.families import Unsupported
from bench.artifacts.prepare import prepare_artifact
from bench.device.hygiene import Cooldown, cool_down
from bench.device.sensors import DeviceReader
from bench.errors import BenchError
from bench.records import SCHEMA_VERSION, ResultsWriter
from bench.run import resume
from bench.run.record import build_record
from bench.run.setup import PendingPlan, RunSetup, checked_artifact, prepared_artifact
from bench.run.supervisor import Job, RunnerOutcome, RunnerPlan, Supervisor

Say = Callable[[str], None]


@dataclass
class RunResult:
    outcomes: list[RunnerOutcome] = field(default_factory=list)
    interrupted: bool = False
    export_failures: list[str] = field(default_factory=list)  # runners `run --prepare` could not export

    @property
    def failed(self) -> int:
        """Generations that failed (skips for the time budget are not failures)."""
        return sum(o.failed for o in self.outcomes)

    @property
    def skipped(self) -> int:
        return sum(o.skipped for o in self.outcomes)


def execute(
    setup: RunSetup,
    on_record: Callable[[dict], None] = lambda r: None,
    cooldown: Cooldown | None = None,
    say: Say = lambda message: None,
    device: DeviceReader | None = None,
    on_wait: Callable[[str, Job | None, float], None] = lambda runner, job, seconds: None,
    after_runner: Callable[[RunnerPlan], list[dict]] = lambda plan: [],
) -> RunResult:
    """Run every runner of `setup` in turn; `say` hears of exports and cool-downs.
    `after_runner` (the run's quality step) follows each runner's suite; its records join the run."""
    result = RunResult()
    device = device or DeviceReader()
    writer = ResultsWriter(setup.results_path)
    samples = ResultsWriter(setup.samples_path) if setup.samples_path else None

    def on_sample(runner: str, sample: dict) -> None:
        samples.append({"schema_version": SCHEMA_VERSION, "run_id": setup.run_id, "runner": runner, **sample})

    supervisor = Supervisor(
        run_fields=setup.run_fields,
        suite=setup.suite,
        profile=setup.profile,
        jobs=setup.jobs,
        writer=writer,
        on_record=on_record,
        sustained=setup.sustained,
        device=device,
        on_sample=on_sample,
        on_wait=on_wait,
        budget_s=setup.budget_s,
    )
    try:
        for number, plan in enumerate(list(setup.plans)):
            if isinstance(plan, PendingPlan):
                plan = _export_for_turn(setup, number, plan, supervisor, result, say)
                if plan is None:
                    continue
            if cooldown and (number or device.cool_before_first):
                cool_down(cooldown, device, say)
            supervisor.run_fields = {**setup.run_fields, **device.runner_state()}
            jobs = resume.remaining(setup.jobs, plan, setup.done) if setup.done else setup.jobs
            result.outcomes.append(supervisor.run_runner(plan, jobs))
            for record in after_runner(plan):
                supervisor.emit(result.outcomes[-1], record)
    except KeyboardInterrupt:
        result.interrupted = True
    finally:
        writer.close()
        if samples:
            samples.close()
        # Later steps see only runners that got an artifact.
        setup.plans[:] = [p for p in setup.plans if not isinstance(p, PendingPlan)]
    return result


def export_pending(plan: PendingPlan, say: Say) -> RunnerPlan:
    """Export the plan's artifact (prepare shows its own progress lines) and return the runner's plan."""
    say(f"preparing {plan.name} {plan.quant} (see `edgebench prepare`)")
    found = prepare_artifact(plan.model, plan.name, plan.runner.exporter, plan.quant, plan.cache, context=plan.context)
    artifact = prepared_artifact(found, plan.quant, plan.runner)
    return plan.with_artifact(artifact=checked_artifact(plan.runner, plan.name, artifact))


def _export_for_turn(
    setup: RunSetup, number: int, plan: PendingPlan, supervisor: Supervisor, result: RunResult, say: Say
) -> RunnerPlan | None:
    """The runner's plan once its artifact is exported; None when the export failed, which is
    reported while the other runners still run."""
    try:
        ready = setup.plans[number] = export_pending(plan, say)  # later steps see the real plan
    except BenchError as exc:
        say(f"{plan.name} {plan.quant}: export failed, not run: {exc.message}")
        result.export_failures.append(f"{plan.name} {plan.quant}: {exc.message.splitlines()[0]}")
        if isinstance(exc, Unsupported):  # known before any export: a record says why
            supervisor.emit(RunnerOutcome(), _unsupported_record(setup, plan, exc))
        return None
    return ready


def _unsupported_record(setup: RunSetup, plan: PendingPlan, exc: Unsupported) -> dict:
    """A runner whose exporter does not take the model's family: one error record saying so."""
    return build_record(
        setup.run_fields,
        setup.suite,
        setup.profile,
        None,
        {},
        mode="suite",
        runner=plan.name,
        quantization=plan.quant,
        threads_requested=plan.threads,
        status="error",
        error=f"{exc.message}; {exc.hint}",
    )
