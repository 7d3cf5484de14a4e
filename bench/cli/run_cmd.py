"""`edgebench run`: the suite on each runner, then the reports, the run's matrix page and the
compact summary."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import List, Optional

import typer

from bench.cli.common import (
    Accelerators,
    AllowFallback,
    Artifacts,
    Cache,
    CooldownLimit,
    CooldownUntilTemp,
    CooldownWait,
    JsonSummary,
    ModelId,
    RemoteEdgebench,
    Runners,
    Settings,
    StreamRecords,
    Targets,
    Threads,
    app,
    err,
    out,
    print_json,
    print_warnings,
    runner_names,
    say_left_out,
    stop_on_sigterm,
)
from bench.cli.running import (
    cooldown_args,
    cooldown_from_options,
    execute_here,
    exit_after_run,
    plain_progress,
    remote_resumable,
    run_options,
    run_records,
    run_remote,
)
from bench.errors import BenchError


@app.command()
def run(
    runner: Runners = None,
    model: ModelId = None,
    artifact: Artifacts = None,
    suite: str = typer.Option(
        None,
        "--suite",
        help="Suite name (`edgebench suites`) or path to a .toml file (default: the profile's, else default).",
    ),
    profile: str = typer.Option("default", "--profile", help="Run profile name (`edgebench profiles`) or path."),
    threads: Threads = None,
    out_dir: Path = typer.Option(Path("results"), "--out", help="Folder for the JSONL results and reports."),
    quant: Optional[List[str]] = typer.Option(
        None, "--quant", "-q", help="RUNNER=QUANT: a prepared quantization to run (repeatable)."
    ),
    setting: Settings = None,
    accelerator: Accelerators = None,
    allow_fallback: AllowFallback = False,
    cache: Cache = None,
    prepare_missing: bool = typer.Option(
        False,
        "--prepare",
        help="Export each missing artifact just before its runner's turn (the runner that needs none goes first).",
    ),
    no_budget: bool = typer.Option(
        False, "--no-budget", help="Measure every generation, even ones past the profile's prompt_budget."
    ),
    memory_limit_mb: Optional[float] = typer.Option(
        None, "--memory-limit-mb", help="Kill a worker whose RSS exceeds this; its generation is recorded as oom."
    ),
    resume_run: Optional[str] = typer.Option(
        None, "--resume", help="RUN_ID (in --out) or RESULTS.jsonl: finish that run with its own options."
    ),
    as_json: JsonSummary = False,
    cooldown: CooldownWait = None,
    cooldown_until_temp: CooldownUntilTemp = None,
    cooldown_limit: CooldownLimit = "10m",
    device_profile: Optional[str] = typer.Option(
        None,
        "--device-profile",
        help="The farm device this runs on (`edgebench device --list`): labels records with its tier and bandwidth.",
    ),
    junit: Optional[Path] = typer.Option(None, "--junit", help="Write this run's workload verdicts as JUnit XML here."),
    quality: Optional[bool] = typer.Option(
        None,
        "--quality/--no-quality",
        help="Score each runner against the fp32 reference right after its suite (as `edgebench quality`); "
        "default: as the profile says (default and quick do).",
    ),
    target: Targets = None,
    remote_edgebench: RemoteEdgebench = None,
    artifacts_bundle: Optional[Path] = typer.Option(
        None,
        "--artifacts",
        help="A bundle from `edgebench bundle`: install its artifacts (sha256-checked) into the cache and run them.",
    ),
    stream_records: StreamRecords = False,
    device_binary: Optional[List[str]] = typer.Option(
        None,
        "--device-binary",
        help="RUNNER=PATH: with --target adb://, run executorch or litert-lm through the runtime's own phone "
        "binary (llama_main, litert_lm_main), its fixed-length prompts timed by the runtime's own clock.",
    ),
) -> None:
    """Run the suite on each runner; write JSONL results and Markdown/CSV reports."""
    from bench.run.setup import setup_run

    stop_on_sigterm()
    pause = cooldown_from_options(cooldown, cooldown_until_temp, cooldown_limit)
    if artifacts_bundle:
        runner, artifact = _bundle_artifacts(artifacts_bundle, cache, runner, artifact)
    options = run_options(
        runner=runner,
        model=model,
        artifact=artifact,
        suite=suite,
        profile=profile,
        threads=threads,
        out_dir=out_dir,
        setting=setting,
        accelerator=accelerator,
        allow_fallback=allow_fallback,
        quants=tuple(quant or ()),
        cache=cache,
        prepare=prepare_missing,
        memory_limit_mb=memory_limit_mb,
        device_profile=device_profile,
        no_budget=no_budget,
        quality=quality,
        device_binaries=tuple(device_binary or ()),
    )
    if device_binary and not any(t.startswith("adb://") for t in target or ()):
        raise BenchError("--device-binary takes a phone: give --target adb://[SERIAL]", "or leave it out", exit_code=2)
    if target or (resume_run and remote_resumable(resume_run, out_dir)):
        return run_remote(
            "run",
            options,
            target,
            remote_edgebench,
            cooldown_args(cooldown, cooldown_until_temp, cooldown_limit),
            resume_run,
            pause,
        )
    setup = setup_run(dataclasses.replace(options, resume=resume_run))
    _say_run_started(setup)
    view = _run_progress(setup)
    result = execute_here(setup, view, pause, stream_records, _quality_step(setup, view, cache, prepare_missing))
    failed = result.failed + (len(result.export_failures) if runner else 0)  # a runner asked for by name must run
    records = run_records(setup)
    _report_suite_run(setup, result, records, failed, out_dir, junit, as_json)
    exit_after_run(result, records, setup.results_path, failed)


def _bundle_artifacts(path: Path, cache: Optional[Path], runner, artifact):
    """run --artifacts: install the bundle, then run its artifacts (of the runners asked for)."""
    from bench.artifacts import bundle

    installed = bundle.install_file(path, cache)
    err.print(f"{path}: {installed.copied} artifacts installed, the others already in the cache")
    given = tuple(runner or ())
    added = bundle.artifact_options(installed, given)
    return list(given or dict.fromkeys(a.partition("=")[0] for a in added)), list(artifact or ()) + list(added)


def _say_run_started(setup) -> None:
    """What the run resumes, runs and leaves out, and its time budget."""
    if setup.done:
        err.print(f"resuming {setup.run_id}: {len(setup.done)} generations already recorded in {setup.results_path}")
    err.print(
        f"run [bold]{setup.run_id}[/]: {setup.model.id}, suite {setup.suite.id}, profile "
        f"{setup.profile.name}, runners {runner_names(setup)}, {setup.plans[0].threads} threads"
    )
    say_left_out(setup)
    if setup.budget_s:
        err.print(
            f"time budget: {setup.budget_s:g} s per prompt and runtime (warm-ups and repetitions together), "
            "estimated from each runtime's own rates (--no-budget measures everything)"
        )


def _quality_step(setup, view, cache: Optional[Path], make_checkpoint: bool):
    """The run's quality step after each runner's suite (None: the run scores no quality),
    with heartbeats while it runs, as a long generation has."""
    if not setup.quality:
        return None
    from bench.quality.run import QualityStep
    from bench.run.progress import ticking

    step = QualityStep(setup, cache, make_checkpoint, view.say)

    def after_runner(plan) -> list[dict]:
        with ticking(view.wait, plan.name, "quality"):
            return step(plan)

    return after_runner


def _report_suite_run(
    setup, result, records: list[dict], failed: int, out_dir: Path, junit: Optional[Path], as_json: bool
) -> None:
    """The run's reports and JUnit verdicts written; its summary printed, as a table or JSON."""
    from bench.device.hygiene import start_warnings
    from bench.views import report, summary
    from bench.views.run_reports import write_run_reports

    reports = write_run_reports(records, setup.run_id, out_dir)
    # The summary's budget line names what the budget left out; the .md report keeps a note per cell.
    table, notes = report.summary_table(records, budget_skips=not setup.budget_s)
    notes = start_warnings(records) + notes  # a busy machine is said first: it explains the variance notes
    if junit and records:
        _write_junit_verdicts(records, junit)
    if as_json:
        print_json(
            {
                "run_id": setup.run_id,
                "results": str(setup.results_path),
                "reports": reports,
                "interrupted": result.interrupted,
                "failed": failed,
                "budget_s": setup.budget_s,
                "skipped": result.skipped,
                "export_failures": result.export_failures,
                "summary": json.loads(table.to_json(orient="records")),
                "workloads": summary.cells_json(summary.build(records)),
                "warnings": notes,
            }
        )
    else:
        _print_summary(setup, result, records, notes, reports)


def _run_progress(setup):
    """A live bar on a terminal; plain lines with heartbeats in a log."""
    from bench.run import resume
    from bench.run.progress import LiveProgress
    from bench.run.supervisor import RunnerPlan

    if not err.is_terminal:
        return plain_progress()
    total = sum(
        len(resume.remaining(setup.jobs, p, setup.done))
        if setup.done and isinstance(p, RunnerPlan)
        else len(setup.jobs)
        for p in setup.plans
    )
    return LiveProgress(err, total, len(setup.jobs))


def _print_summary(setup, result, records: list[dict], notes: list[str], reports: dict) -> None:
    """The end of a run: workload x runtime, whether each runtime reuses a conversation's history,
    the budget and what it skipped, warnings, the files."""
    from rich.text import Text

    from bench.views import conversations, summary

    found = summary.build(records)
    tier = f", this device's tier: {found.tier}" if found.tier else ""
    out.print(summary.rich_table(found, f"edgebench {setup.run_id}: best runtime per workload{tier}"))
    for line in conversations.reuse_lines(records):
        out.print(f"conversation: {line}", highlight=False)
    if setup.budget_s:
        out.print(
            f"time budget {setup.budget_s:g} s per prompt and runtime: " + summary.budget_text(found),
            highlight=False,
        )
    for failure in result.export_failures:
        out.print(Text(f"not run, export failed: {failure}", style="red"))
    print_warnings(notes)
    out.print(
        f"results: {setup.results_path}" + "".join(f"\n{fmt}: {path}" for fmt, path in reports.items()), highlight=False
    )


def _write_junit_verdicts(records: list[dict], path: Path) -> None:
    from bench.views import matrix, matrix_tables, report
    from bench.views.junit import to_xml

    built = matrix.from_records(records)
    report.write_text(to_xml("edgebench run", matrix_tables.junit_cases(built)), path)
    err.print(f"junit: {path}")
