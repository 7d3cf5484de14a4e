"""The `edgebench` command: parse, validate, call the core, print. Nothing else."""

from __future__ import annotations

import dataclasses
import json
import shutil
import signal
import sys
from pathlib import Path
from typing import Annotated, List, Optional

import typer
from rich.console import Console

# Only what every command needs is imported here: each command imports its own modules
# (pandas, numpy, the report and prepare code) when it runs, so --help answers at once.
from bench.errors import BenchError

# Plain (click) help: typer's rich help imports a Markdown parser, which alone doubles --help's time.
app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    rich_markup_mode=None,
    help="Benchmark on-device LLM runtimes on one prompt suite, measured one way.",
)
# Off a terminal (CI logs, pipes) tables get 160 columns instead of rich's 80.
out = Console(width=shutil.get_terminal_size((160, 24)).columns)
err = Console(stderr=True, soft_wrap=True)


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def _stop_on_sigterm() -> None:
    """SIGTERM (a CI timeout, a stopped job) stops a command as Ctrl-C does."""
    signal.signal(signal.SIGTERM, _interrupt)


# Options several commands share, each defined once: the same name, default and help everywhere.
Runners = Annotated[
    Optional[List[str]],
    typer.Option("--runner", "-r", help="Runner to use (repeatable); default: every available one."),
]
ModelId = Annotated[Optional[str], typer.Option("--model", "-m", help="Model id from `edgebench models`.")]
CatalogueModel = Annotated[
    Optional[str], typer.Option("--model", "-m", help="Model id; default: the catalogue's default.")
]
Artifacts = Annotated[
    Optional[List[str]], typer.Option("--artifact", help="RUNNER=PATH: your own artifact for a runner (repeatable).")
]
Threads = Annotated[
    Optional[int], typer.Option("--threads", "-t", help="CPU threads per runtime; default: physical cores.")
]
Cache = Annotated[
    Optional[Path],
    typer.Option("--cache", help="Artifact cache; default $EDGEBENCH_CACHE_DIR or ~/.cache/edgebench/artifacts."),
]
Settings = Annotated[
    Optional[List[str]],
    typer.Option(
        "--setting",
        help="RUNNER:KEY=VALUE: override a runtime's default setting (repeatable), e.g. llama.cpp:flash_attn=off.",
    ),
]
Accelerators = Annotated[
    Optional[List[str]],
    typer.Option(
        "--accelerator",
        help="RUNNER=cpu|gpu|npu|auto: where a runtime runs (repeatable); default auto, what its own "
        "tools pick. Shorthand for --setting RUNNER:accelerator=KIND.",
    ),
]
AllowFallback = Annotated[
    bool,
    typer.Option(
        "--allow-fallback",
        help="Keep results of a runtime that ran elsewhere than --accelerator asked (otherwise they are errors).",
    ),
]
JsonSummary = Annotated[bool, typer.Option("--json", help="Print a machine-readable summary on stdout.")]
CooldownWait = Annotated[Optional[str], typer.Option("--cooldown", help="Wait this long between runners, e.g. 60s.")]
CooldownUntilTemp = Annotated[
    Optional[float],
    typer.Option(
        "--cooldown-until-temp",
        help="Between runners, also wait until the device is at most this many °C (up to --cooldown-limit).",
    ),
]
CooldownLimit = Annotated[str, typer.Option("--cooldown-limit", help="Longest wait for --cooldown-until-temp.")]
Targets = Annotated[
    Optional[List[str]],
    typer.Option(
        "--target",
        help="ssh://[user@]host[:port]: run there over SSH, records streamed back here "
        "(repeatable: one target after another).",
    ),
]
RemoteEdgebench = Annotated[
    Optional[str],
    typer.Option("--remote-edgebench", help="The edgebench command on the targets; default: edgebench on their PATH."),
]
# A host driving this run over SSH: each record also on stdout (bench.run.remote).
StreamRecords = Annotated[bool, typer.Option("--stream-records", hidden=True)]


def _cooldown(cooldown: Optional[str], until_temp: Optional[float], limit: str):
    """The --cooldown* options as a hygiene.Cooldown, or None when none was given."""
    from bench.data.durations import parse_duration
    from bench.device.hygiene import Cooldown

    if cooldown is None and until_temp is None:
        return None
    return Cooldown(
        parse_duration(cooldown, "--cooldown") if cooldown else 0.0,
        until_temp,
        parse_duration(limit, "--cooldown-limit"),
    )


def _cooldown_args(cooldown: Optional[str], until_temp: Optional[float], limit: str) -> list[str]:
    """The --cooldown* options as given, for a target's command line."""
    args = ["--cooldown", cooldown] if cooldown else []
    if until_temp is not None:
        args += ["--cooldown-until-temp", str(until_temp), "--cooldown-limit", limit]
    return args


def _with_accelerators(setting: Optional[List[str]], accelerator: Optional[List[str]]) -> tuple[str, ...]:
    """The --setting options, with each --accelerator RUNNER=KIND as the setting RUNNER:accelerator=KIND."""
    from bench.selection import parse_pairs

    asked = parse_pairs("--accelerator", tuple(accelerator or ()), "llama.cpp=gpu")
    return tuple(setting or ()) + tuple(f"{name}:accelerator={kinds[-1]}" for name, kinds in asked.items())


def _run_options(
    *,
    runner,
    model,
    artifact,
    suite: str,
    profile: str,
    threads,
    out_dir: Path,
    setting,
    accelerator,
    allow_fallback: bool,
    **more,
):
    """The options `run` and `sustained` share as RunOptions, with `more` of the command's own."""
    from bench.run.setup import RunOptions

    return RunOptions(
        runners=tuple(runner or ()),
        model=model,
        artifacts=tuple(artifact or ()),
        suite=suite,
        profile=profile,
        threads=threads,
        out=out_dir,
        settings=_with_accelerators(setting, accelerator),
        allow_fallback=allow_fallback,
        **more,
    )


def _bundle_artifacts(path: Path, cache: Optional[Path], runner, artifact):
    """run --artifacts: install the bundle, then run its artifacts (of the runners asked for)."""
    from bench.artifacts import bundle

    installed = bundle.install_file(path, cache)
    err.print(f"{path}: {installed.copied} artifacts installed, the others already in the cache")
    given = tuple(runner or ())
    added = bundle.artifact_options(installed, given)
    return list(given or dict.fromkeys(a.partition("=")[0] for a in added)), list(artifact or ()) + list(added)


def _remote_resumable(resume_run: str, out_dir: Path) -> bool:
    from bench.run import remote

    return remote.find_resumable(resume_run, out_dir) is not None


def _run_remote(
    command: str, options, targets, edgebench: Optional[str], extra: list[str], resume_run: Optional[str] = None
):
    """run/sustained --target (or --resume of such a run): records stream into --out here."""
    from bench.run import remote

    def on_record(record: dict) -> None:
        what = (
            "load"
            if record["prompt_id"] is None
            else f"{record['prompt_id']} " + ("warm-up" if record["warmup"] else f"rep {record['repeat']}")
        )
        err.print(f"{record['remote_target']} {record['runner']}: {what}: {record['status']}", highlight=False)

    found = remote.find_resumable(resume_run, options.out) if resume_run else None
    if found:
        runs = [remote.resume_run(found, edgebench, on_record, err.print)]
    else:
        runs = remote.run_command(options, list(targets), edgebench, command, extra, on_record, err.print)
    lines, failed = _report_remote_runs(runs, options.out)
    if command == "sustained":
        lines += _report_remote_sustained(runs, options)
    for line in lines:
        out.print(line, highlight=False)
    if failed:
        raise typer.Exit(1)


def _report_remote_runs(runs: list, out_dir: Path) -> tuple[list[str], int]:
    """Markdown/CSV reports of each target's results, and one matrix when there are several;
    returns what was written and the count of generations that failed."""
    from bench.records import read_records
    from bench.views import report

    lines, failed, files = [], 0, []
    for run in runs:
        records = read_records([run.results_path]) if run.run_id and run.results_path.exists() else []
        failed += sum(r["status"] not in ("ok", "skipped") for r in records)
        if records:
            files.append(run.results_path)
            written = [report.write_report(records, fmt, out_dir / f"{run.run_id}.{fmt}") for fmt in report.FORMATS]
            lines.append(f"{run.target.spec}: results {run.results_path}; " + ", ".join(map(str, written)))
    if len(files) > 1:
        from bench.views import matrix as matrix_
        from bench.views import matrix_tables

        frame, count = matrix_.load([str(f) for f in files])
        built = matrix_.build(frame, count)
        if built.rows:
            written = report.write_text(matrix_tables.markdown(built), out_dir / f"matrix-{runs[0].run_id}.md")
            lines.append(f"matrix: {written}")
    return lines, failed


def _report_remote_sustained(runs: list, options) -> list[str]:
    """Each target's sustained report, from its records and its own device series."""
    from bench.data.run_profiles import load_profile
    from bench.data.suite import load_suite
    from bench.records import iter_records, read_records
    from bench.run import remote
    from bench.run.setup import sustained_settings_for

    settings = sustained_settings_for(options, load_suite(options.suite), load_profile(options.profile))
    lines = []
    for run in runs:
        series = remote.fetch_series(run) if run.run_id else None
        if series is None:
            continue
        _, written = _sustained_results(
            read_records([run.results_path]), list(iter_records(series)), settings, run.run_id, run.out
        )
        lines.append(f"{run.target.spec}: device samples {series}; " + ", ".join(map(str, written.values())))
    return lines


def _execute(setup, view, cooldown, stream_records: bool):
    """Run it here, `view` showing its progress."""
    from bench.run.execute import execute

    on_record = view.record
    if stream_records:  # a host drives this run over SSH: each record also goes to stdout
        from bench.run import remote

        on_record = remote.streaming(view.record)
    with view:
        return execute(setup, on_record=on_record, cooldown=cooldown, say=view.say, on_wait=view.wait)


def _run_records(setup) -> list[dict]:
    from bench.records import read_records

    return read_records([setup.results_path]) if setup.results_path.exists() else []


def _print_json(summary: dict) -> None:
    json.dump(summary, sys.stdout, indent=2)
    sys.stdout.write("\n")


def _print_warnings(notes: list[str]) -> None:
    from rich.text import Text

    for note in notes:
        out.print(Text("warning: ", style="yellow") + Text(note))


def _exit_after_run(result, records: list[dict], results_path: Path, failed: int) -> None:
    """Exit code 130 when the run was interrupted (its records are kept), 1 when anything failed."""
    if result.interrupted:
        err.print(f"[yellow]interrupted: {len(records)} records kept in {results_path}[/]")
        raise typer.Exit(130)
    if failed:
        raise typer.Exit(1)


def _say_left_out(setup) -> None:
    from rich.text import Text

    for note in setup.left_out:
        err.print(Text(f"skipped {note}", style="yellow"))


def _runner_names(setup) -> str:
    return ", ".join(p.name for p in setup.plans)


@app.command()
def run(
    runner: Runners = None,
    model: ModelId = None,
    artifact: Artifacts = None,
    suite: str = typer.Option("default", "--suite", help="Suite name (`edgebench suites`) or path to a .toml file."),
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
    quality: bool = typer.Option(
        False,
        "--quality",
        help="After the suite, score each runner against the fp32 reference (as `edgebench quality`).",
    ),
    target: Targets = None,
    remote_edgebench: RemoteEdgebench = None,
    artifacts_bundle: Optional[Path] = typer.Option(
        None,
        "--artifacts",
        help="A bundle from `edgebench bundle`: install its artifacts (sha256-checked) into the cache and run them.",
    ),
    stream_records: StreamRecords = False,
) -> None:
    """Run the suite on each runner; write JSONL results and Markdown/CSV reports."""
    from bench.run.setup import setup_run

    _stop_on_sigterm()
    pause = _cooldown(cooldown, cooldown_until_temp, cooldown_limit)
    if artifacts_bundle:
        runner, artifact = _bundle_artifacts(artifacts_bundle, cache, runner, artifact)
    options = _run_options(
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
    )
    if target or (resume_run and _remote_resumable(resume_run, out_dir)):
        return _run_remote(
            "run",
            options,
            target,
            remote_edgebench,
            _cooldown_args(cooldown, cooldown_until_temp, cooldown_limit),
            resume_run,
        )
    setup = setup_run(dataclasses.replace(options, resume=resume_run))
    _say_run_started(setup)
    result = _execute(setup, _run_progress(setup), pause, stream_records)
    failed = _score_quality(setup, cache) if quality and not result.interrupted else 0
    failed += result.failed + (len(result.export_failures) if runner else 0)  # a runner asked for by name must run
    records = _run_records(setup)
    _report_suite_run(setup, result, records, failed, out_dir, junit, as_json)
    _exit_after_run(result, records, setup.results_path, failed)


def _say_run_started(setup) -> None:
    """What the run resumes, runs and leaves out, and its time budget."""
    if setup.done:
        err.print(f"resuming {setup.run_id}: {len(setup.done)} generations already recorded in {setup.results_path}")
    err.print(
        f"run [bold]{setup.run_id}[/]: {setup.model.id}, suite {setup.suite.id}, profile "
        f"{setup.profile.name}, runners {_runner_names(setup)}, {setup.plans[0].threads} threads"
    )
    _say_left_out(setup)
    if setup.budget_s:
        err.print(
            f"time budget: {setup.budget_s:g} s per prompt and runtime (warm-ups and repetitions together), "
            "estimated from each runtime's own rates (--no-budget measures everything)"
        )


def _score_quality(setup, cache: Optional[Path]) -> int:
    """run --quality: each runner's quality records appended to the run; returns how many failed."""
    from bench.quality.run import run_quality

    return sum(r["status"] != "ok" for r in run_quality(setup, cache, say=err.print))


def _report_suite_run(
    setup, result, records: list[dict], failed: int, out_dir: Path, junit: Optional[Path], as_json: bool
) -> None:
    """The run's reports and JUnit verdicts written; its summary printed, as a table or JSON."""
    from bench.device.hygiene import start_warnings
    from bench.views import report

    reports = _write_run_reports(records, setup.run_id, out_dir)
    table, notes = report.summary_table(records)
    notes = notes + start_warnings(records)
    if junit and records:
        _write_junit_verdicts(records, junit)
    if as_json:
        _print_json(
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
        return _plain_progress()
    total = sum(
        len(resume.remaining(setup.jobs, p, setup.done))
        if setup.done and isinstance(p, RunnerPlan)
        else len(setup.jobs)
        for p in setup.plans
    )
    return LiveProgress(err, total, len(setup.jobs))


def _plain_progress(sustained: bool = False):
    """Plain progress lines on stderr; a sustained run's many generations at most one line per heartbeat."""
    from bench.run.progress import PlainProgress, heartbeat_s

    interval = heartbeat_s()
    return PlainProgress(
        lambda line: err.print(line, highlight=False, markup=False), interval, record_gap=interval if sustained else 0.0
    )


def _print_summary(setup, result, records: list[dict], notes: list[str], reports: dict) -> None:
    """The end of a run: workload x runtime, the budget and what it skipped, warnings, the files."""
    from rich.text import Text

    from bench.views import summary

    found = summary.build(records)
    tier = f", this device's tier: {found.tier}" if found.tier else ""
    out.print(summary.rich_table(found, f"edgebench {setup.run_id}: best runtime per workload{tier}"))
    if setup.budget_s:
        out.print(
            f"time budget {setup.budget_s:g} s per prompt and runtime: " + summary.budget_text(found),
            highlight=False,
        )
    for failure in result.export_failures:
        out.print(Text(f"not run, export failed: {failure}", style="red"))
    _print_warnings(notes)
    out.print(
        f"results: {setup.results_path}" + "".join(f"\n{fmt}: {path}" for fmt, path in reports.items()), highlight=False
    )


def _write_run_reports(records: list[dict], run_id: str, out_dir: Path) -> dict[str, str]:
    """The run's Markdown and CSV reports and its HTML matrix page: their paths by format."""
    from bench.views import report

    if not records:
        return {}
    reports = {fmt: str(report.write_report(records, fmt, out_dir / f"{run_id}.{fmt}")) for fmt in report.FORMATS}
    reports["html"] = str(_write_run_matrix_page(records, out_dir / f"{run_id}.html"))
    return reports


def _run_matrix(records: list[dict]):
    """This run's records as a device matrix (one device, one results file)."""
    import pandas as pd

    from bench.views import matrix as matrix_

    frame = pd.DataFrame.from_records(
        [{c: r.get(c) for c in matrix_.COLUMNS} for r in records], columns=list(matrix_.COLUMNS)
    )
    return matrix_.build(frame, 1)


def _write_run_matrix_page(records: list[dict], path: Path) -> Path:
    """The run's own HTML matrix page (as `edgebench matrix` writes for many devices)."""
    from bench.data import workloads as workload_data
    from bench.views import matrix_html, report

    return report.write_text(matrix_html.page(_run_matrix(records), workload_data.load_workloads()), path)


def _write_junit_verdicts(records: list[dict], path: Path) -> None:
    from bench.views import matrix_tables, report
    from bench.views.junit import to_xml

    built = _run_matrix(records)
    report.write_text(to_xml("edgebench run", matrix_tables.junit_cases(built)), path)
    err.print(f"junit: {path}")


@app.command("prepare")
def prepare_cmd(
    model: CatalogueModel = None,
    runner: Optional[List[str]] = typer.Option(
        None, "--runner", "-r", help="Runner (repeatable); default: every installed one that needs it."
    ),
    quant: Optional[List[str]] = typer.Option(
        None, "--quant", "-q", help="Quantization (repeatable); default: each runner's default."
    ),
    cache: Cache = None,
    force: bool = typer.Option(False, "--force", help="Export again even when the cache has the artifact."),
) -> None:
    """Convert the model into each runner's artifact with that runtime's own exporter; cached."""
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
    from rich.table import Table
    from rich.text import Text

    from bench.artifacts import prepare
    from bench.artifacts.cache import cache_root
    from bench.data import models

    _stop_on_sigterm()  # a stopped job still removes its unfinished export
    target = models.get_model(model or models.default_model_id())
    work = prepare.select(tuple(runner or ()), tuple(quant or ()))
    root = cache_root(cache)
    table = Table("runner", "quant", "status", "export s", "MB", "artifact")
    failures = []
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        TextColumn("{task.fields[line]}"),
        console=err,
        transient=True,
    ) as progress:
        for name, exporter, q in work:
            row, failure = _prepare_one(progress, target, name, exporter, q, root, force, by_name=bool(runner))
            table.add_row(*row)
            failures += [failure] if failure else []
    out.print(table)
    for failure in failures:
        err.print(Text(failure, style="red"))
    if failures:
        raise typer.Exit(1)


def _prepare_one(
    progress, model, name: str, exporter, quant: str, root: Path, force: bool, by_name: bool
) -> tuple[list[str], Optional[str]]:
    """One export, with its live line: its table row, and its failure to report. A runner
    asked for by name stops the command instead, with the exporter's own words."""
    from bench.artifacts import prepare
    from bench.artifacts.families import Unsupported

    task = progress.add_task(f"{name} {quant}", line="")
    try:
        done = prepare.prepare_artifact(
            model,
            name,
            exporter,
            quant,
            root,
            force=force,
            on_log=lambda line: progress.update(task, line=line[:60]),
            # a live line on a terminal; in a log, a line per stage and a heartbeat
            progress=(lambda p: progress.update(task, description=p.line())) if err.is_terminal else None,
        )
    except Unsupported as exc:  # a declared limit, not a failure, unless asked for by name
        if by_name:
            raise
        return [name, quant, "not supported", "–", "–", exc.message], None
    except BenchError as exc:
        if by_name:
            raise
        return [name, quant, "FAILED", "–", "–", exc.message.splitlines()[0]], f"{name} {quant}: {exc.message}"
    finally:
        progress.remove_task(task)
    m = done.manifest
    return [
        name,
        quant,
        "exported" if done.built else "cached (nothing to do)",
        f"{m['export_seconds']:.1f}",
        f"{m['bytes'] / 2**20:.1f}",
        str(done.path),
    ], None


@app.command()
def sustained(
    runner: Runners = None,
    model: ModelId = None,
    artifact: Artifacts = None,
    duration: Optional[str] = typer.Option(
        None, "--duration", help="How long each runner generates, e.g. 10m; default: the profile's."
    ),
    window: Optional[str] = typer.Option(None, "--window", help="Analysis window, e.g. 30s; default: the profile's."),
    suite: str = typer.Option(
        "default", "--suite", help="Suite name or path (holds the profile's fixed-length prompt)."
    ),
    profile: str = typer.Option(
        "sustained", "--profile", help="A run profile with sustained settings: sustained or sustained-ci."
    ),
    threads: Threads = None,
    out_dir: Path = typer.Option(
        Path("results"), "--out", help="Folder for the JSONL results, device samples and reports."
    ),
    setting: Settings = None,
    accelerator: Accelerators = None,
    allow_fallback: AllowFallback = False,
    as_json: JsonSummary = False,
    cooldown: CooldownWait = None,
    cooldown_until_temp: CooldownUntilTemp = None,
    cooldown_limit: CooldownLimit = "10m",
    target: Targets = None,
    remote_edgebench: RemoteEdgebench = None,
    stream_records: StreamRecords = False,
) -> None:
    """Generate back to back for a duration per runner; report burst, floor, drops and the device's state."""
    import importlib.util

    from bench.run.setup import setup_run

    if importlib.util.find_spec("matplotlib") is None:
        raise BenchError(
            "the sustained report draws plots with matplotlib, which is not installed", "pip install 'edgebench[plots]'"
        )
    _stop_on_sigterm()
    pause = _cooldown(cooldown, cooldown_until_temp, cooldown_limit)
    options = _run_options(
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
        sustained=True,
        duration=duration,
        window=window,
    )
    if target:
        spans = ["--duration", duration] * bool(duration) + ["--window", window] * bool(window)
        return _run_remote(
            "sustained",
            options,
            target,
            remote_edgebench,
            spans + _cooldown_args(cooldown, cooldown_until_temp, cooldown_limit),
        )
    setup = setup_run(options)
    err.print(
        f"sustained run [bold]{setup.run_id}[/]: {setup.model.id}, {setup.jobs[-1].prompt_id} for "
        f"{setup.sustained.duration_s:g} s per runner (windows of {setup.sustained.window_s:g} s), runners "
        f"{_runner_names(setup)}, {setup.plans[0].threads} threads"
    )
    result = _execute(setup, _sustained_progress(setup), pause, stream_records)
    records = _run_records(setup)
    _report_sustained_run(setup, result, records, out_dir, as_json)
    _exit_after_run(result, records, setup.results_path, result.failed)


def _report_sustained_run(setup, result, records: list[dict], out_dir: Path, as_json: bool) -> None:
    """Each runner's sustained figures from its records and the device series, their reports
    written, and a summary printed, as text or JSON."""
    from bench.device.hygiene import start_warnings
    from bench.records import iter_records
    from bench.views.sustained_report import figures_row

    samples = list(iter_records(setup.samples_path)) if setup.samples_path.exists() else []
    results, written = _sustained_results(records, samples, setup.sustained, setup.run_id, out_dir)
    warnings = start_warnings(records)
    if as_json:
        _print_json(
            {
                "run_id": setup.run_id,
                "results": str(setup.results_path),
                "samples": str(setup.samples_path),
                "reports": {k: str(v) for k, v in written.items()},
                "interrupted": result.interrupted,
                "failed": result.failed,
                "summary": [
                    figures_row(r) | {"drop_s": r.drop_s, "missing_signals": r.missing_signals} for r in results
                ],
                "warnings": warnings,
            }
        )
    else:
        _print_sustained_summary(setup, results, warnings, written)


def _sustained_results(records: list[dict], samples: list[dict], settings, run_id: str, out_dir: Path):
    """Each runner's sustained figures, from its records and the device series, and the
    reports written of them (paths by kind)."""
    from bench.views.sustained_report import results_for, write_reports

    results = results_for(records, samples, settings.duration_s, settings.window_s)
    return results, write_reports(results, run_id, out_dir) if results else {}


def _print_sustained_summary(setup, results: list, warnings: list[str], written: dict) -> None:
    """The end of a sustained run: each runner's figures, warnings, the files."""
    from rich.text import Text

    from bench.analysis.sustained import summary_lines

    for r in results:
        out.print(Text("\n".join(summary_lines(r))))
    _print_warnings(warnings)
    out.print(
        f"results: {setup.results_path}\ndevice samples: {setup.samples_path}"
        + "".join(f"\n{name}: {path}" for name, path in written.items())
    )


def _sustained_progress(setup):
    """A bar per runner on a terminal; in a log, a line every few seconds."""
    from bench.run.progress import SustainedBars

    if not err.is_terminal:
        return _plain_progress(sustained=True)
    return SustainedBars(err, [p.name for p in setup.plans], setup.sustained.duration_s)


@app.command()
def runners(all_: bool = typer.Option(False, "--all", help="Also list the fake runner used by tests.")) -> None:
    """Every registered runner: available or not, version, artifact kind, what to install."""
    from rich.table import Table

    from runners import load_class, registrations

    table = Table("runner", "available", "version", "artifact", "install", "from")
    for reg in registrations().values():
        if reg.hidden and not all_:
            continue
        cls = load_class(reg.target)
        probe = cls.probe()
        table.add_row(
            reg.name + (" (FAKE: tests only)" if reg.hidden else ""),
            "yes" if probe.available else "no",
            probe.runtime_version or "–",
            cls.artifact_kind,
            "" if probe.available else probe.reason,
            reg.origin,
        )
    out.print(table)


@app.command()
def suites() -> None:
    """The packaged prompt suites."""
    from rich.table import Table

    from bench.data import files as datafiles
    from bench.data.suite import load_suite

    table = Table("suite", "prompts", "categories", "description")
    for name in datafiles.packaged_names("suites"):
        s = load_suite(name)
        table.add_row(s.id, str(len(s.prompts)), ", ".join(dict.fromkeys(p.category for p in s.prompts)), s.description)
    out.print(table)


@app.command()
def profiles() -> None:
    """The packaged run profiles."""
    from rich.table import Table

    from bench.data import files as datafiles
    from bench.data.run_profiles import load_profile

    table = Table("profile", "warm-ups", "repetitions", "prompt tags", "description")
    for name in datafiles.packaged_names("runs"):
        p = load_profile(name)
        table.add_row(p.name, str(p.warmups), str(p.repetitions), ", ".join(p.tags) or "all", p.description)
    out.print(table)


@app.command()
def validate(
    paths: List[Path] = typer.Argument(
        ..., help="Suite, run profile, catalogue, workloads, tiers or device profile .toml files."
    ),
) -> None:
    """Check data files without running anything."""
    from bench.data.validate import validate_file

    for path in paths:
        out.print(f"{path}: ok ({validate_file(path)})")


@app.command("report")
def report_cmd(
    results: List[Path] = typer.Argument(..., help="JSONL results files."),
    fmt: str = typer.Option("md", "--format", "-f", help="md or csv."),
    out_path: Optional[Path] = typer.Option(None, "--out", "-o", help="Output file; default: stdout."),
) -> None:
    """Build a Markdown or CSV report from results files."""
    from bench.records import read_records
    from bench.views import report

    if fmt not in report.FORMATS:
        raise BenchError(f"unknown format '{fmt}'", f"use one of: {', '.join(report.FORMATS)}", exit_code=2)
    records = read_records(results, warn=lambda m: err.print(f"[yellow]warning:[/] {m}"))
    if not records:
        raise BenchError("the results files hold no records", "run `edgebench run` first")
    if out_path:
        out.print(f"wrote {report.write_report(records, fmt, out_path)}")
    else:
        sys.stdout.write(report.render(records, fmt))


@app.command("models")
def models_cmd(
    support: bool = typer.Option(
        False,
        "--support",
        help="Which model families each runner takes, per quantization, "
        "or why not (what tests/test_families.py proves).",
    ),
) -> None:
    """The model catalogue and where each model's source artifact is."""
    from rich.table import Table

    from bench.data import models

    if support:
        _print_family_support()
        return
    table = Table("model", "name", "params (M)", "source", "quant", "where")
    for m in models.catalogue().values():
        try:
            where = str(m.source_path())
        except BenchError as exc:
            where = f"not installed: {exc.hint}"
        table.add_row(
            m.id + (" (default)" if m.default else ""),
            m.name,
            f"{m.parameters_m:g}",
            f"{m.source.format} in {m.source.package}",
            m.source.quantization,
            where,
        )
    out.print(table)


def _print_family_support() -> None:
    """Family x runner: the quantizations it takes, or a numbered reason it takes none."""
    from rich.table import Table

    from bench.artifacts.families import support_cells
    from bench.data import models

    cells = {family: support_cells(family) for family in models.FAMILIES}
    runners = list(next(iter(cells.values())))
    reasons: list[str] = []
    table = Table("family (model_type)", *runners)
    for family, row in cells.items():
        shown = []
        for cell in row.values():
            if isinstance(cell, str):
                reasons.append(cell) if cell not in reasons else None
                cell = f"no ({reasons.index(cell) + 1})"
            else:
                cell = ", ".join(cell)
            shown.append(cell)
        table.add_row(models.family_name(family), *shown)
    out.print(table)
    for number, reason in enumerate(reasons, 1):
        out.print(f"({number}) {reason}", highlight=False)


@app.command()
def selfcheck(
    runner: Optional[List[str]] = typer.Option(
        None,
        "--runner",
        "-r",
        help="Runner to check (repeatable); default: every available one with an artifact ready.",
    ),
    threads: Optional[int] = typer.Option(None, "--threads", "-t", help="Default: physical cores."),
    llama_bench: Optional[str] = typer.Option(
        None,
        "--llama-bench",
        help="Path of a llama-bench binary, or 'off'; "
        "default: the one scripts/build-llama-bench.sh built, when present.",
    ),
) -> None:
    """Fidelity benchmark: harness figures vs each runtime's own timers (and llama-bench), in one run."""
    from bench import selection
    from bench.run.selfcheck import run_selfcheck

    if not run_selfcheck(tuple(runner or ()), threads or selection.default_threads(), out, llama_bench):
        raise typer.Exit(1)


@app.command()
def matrix(
    results: List[str] = typer.Argument(..., help="Results: .jsonl files, folders, glob patterns."),
    out_dir: Optional[Path] = typer.Option(
        None, "--out", "-o", help="Write matrix.md, matrix.csv and matrix.html here."
    ),
    junit: Optional[Path] = typer.Option(None, "--junit", help="Write the verdicts as JUnit XML here."),
) -> None:
    """Merge results of many devices into the tiered device matrix, with workload verdicts."""
    from bench.data import workloads as workload_data
    from bench.views import matrix as matrix_
    from bench.views import matrix_html, matrix_tables, report
    from bench.views.junit import to_xml

    frame, files = matrix_.load(results)
    built = matrix_.build(frame, files)
    if not built.rows:
        raise BenchError("the results hold no successful measured generation", "check the runs' error records")
    text = matrix_tables.markdown(built)
    if out_dir:
        for name, content in (
            ("matrix.csv", matrix_tables.csv(built)),
            ("matrix.html", matrix_html.page(built, workload_data.load_workloads())),
        ):
            out.print(f"wrote {report.write_text(content, out_dir / name)}")
    _emit(
        text,
        out_dir / "matrix.md" if out_dir else None,
        junit,
        lambda: to_xml("edgebench matrix", matrix_tables.junit_cases(built)),
    )


def _emit(text: str, path: Optional[Path], junit: Optional[Path], junit_xml) -> None:
    """The Markdown to a file (or stdout), and the JUnit XML when asked for."""
    from bench.views.report import write_text

    if path:
        out.print(f"wrote {write_text(text, path)}")
    else:
        sys.stdout.write(text)
    if junit:
        write_text(junit_xml(), junit)
        err.print(f"wrote {junit}")


@app.command("compare")
def compare_cmd(
    baseline: str = typer.Argument(..., help="Baseline results: a .jsonl file, folder or glob."),
    candidate: str = typer.Argument(..., help="Candidate results: a .jsonl file, folder or glob."),
    threshold: str = typer.Option(
        "5%", "--threshold", help="A change worse than this (and outside the measured spread) is a regression."
    ),
    out_path: Optional[Path] = typer.Option(
        None, "--out", "-o", help="Write the Markdown (a PR comment) here; default: stdout."
    ),
    junit: Optional[Path] = typer.Option(None, "--junit", help="Write the comparisons as JUnit XML here."),
    allow_missing: bool = typer.Option(
        False, "--allow-missing", help="Pass the gate when baseline results have no successful candidate generation."
    ),
) -> None:
    """Compare two sets of results per device/runner/prompt/metric; exit 1 on a regression or a missing result."""
    from bench.views import compare
    from bench.views.junit import to_xml

    threshold_pct = compare.parse_threshold(threshold)
    deltas = compare.compare(baseline, candidate, threshold_pct)
    _emit(
        compare.markdown(deltas, threshold_pct, baseline, candidate, allow_missing),
        out_path,
        junit,
        lambda: to_xml("edgebench compare", compare.junit_cases(deltas, allow_missing)),
    )
    if compare.gate_fails(deltas, allow_missing):
        raise typer.Exit(1)


@app.command()
def quality(
    runner: Optional[List[str]] = typer.Option(
        None, "--runner", "-r", help="Runner to score (repeatable); default: every available one."
    ),
    model: Optional[str] = typer.Option(
        None, "--model", "-m", help="Model id from `edgebench models`, or a checkpoint folder."
    ),
    quant: Optional[List[str]] = typer.Option(
        None, "--quant", "-q", help="RUNNER=QUANT (repeatable); default: every quantization prepared in the cache."
    ),
    artifact: Artifacts = None,
    cache: Optional[Path] = typer.Option(
        None,
        "--cache",
        help="Artifact cache (the reference is cached there too); "
        "default $EDGEBENCH_CACHE_DIR or ~/.cache/edgebench/artifacts.",
    ),
    out_dir: Path = typer.Option(Path("results"), "--out", help="Folder for the JSONL results."),
    threads: Threads = None,
) -> None:
    """Each runner and quantization against the fp32 reference: perplexity, KL divergence, top-1 and greedy
    agreement."""
    from bench.quality.run import run_quality, setup_quality
    from bench.run.setup import RunOptions
    from bench.views import report
    from bench.views.table import terminal

    _stop_on_sigterm()
    setup = setup_quality(
        RunOptions(
            runners=tuple(runner or ()),
            model=model,
            artifacts=tuple(artifact or ()),
            threads=threads,
            out=out_dir,
            quants=tuple(quant or ()),
            cache=cache,
        )
    )
    err.print(
        f"quality [bold]{setup.run_id}[/]: {setup.model.id}, "
        f"{', '.join(f'{p.name} {p.artifact.quantization or chr(8211)}' for p in setup.plans)}"
    )
    _say_left_out(setup)
    records = run_quality(setup, cache, say=err.print)
    out.print(terminal(report.quality_terminal(records), f"edgebench quality {setup.run_id}"))
    out.print(f"results: {setup.results_path}")
    if any(r["status"] != "ok" for r in records):
        raise typer.Exit(1)


@app.command()
def device(
    measure: bool = typer.Option(False, "--bandwidth", help="Measure memory bandwidth here (a copy benchmark, ~2 s)."),
    threads: Optional[int] = typer.Option(
        None, "--threads", "-t", help="Threads the copy runs on; default: physical cores, as a run decodes with."
    ),
    device_profile: Optional[str] = typer.Option(None, "--device-profile", help="A device profile name or .toml path."),
    list_: bool = typer.Option(False, "--list", help="List the packaged device profiles."),
    target: Optional[List[str]] = typer.Option(
        None, "--target", help="ssh://[user@]host[:port]: that device's facts instead (repeatable)."
    ),
    remote_edgebench: RemoteEdgebench = None,
) -> None:
    """This device's facts, fingerprint, and the tier it is assigned, and why."""
    if target:
        from bench.run import remote

        args = ["--bandwidth"] * measure + ["--threads", str(threads)] * (threads is not None) + ["--list"] * list_
        for spec, text in remote.device_on_targets(target, remote_edgebench, args, device_profile):
            out.print(f"{spec}:", highlight=False)
            sys.stdout.write(text)
        return
    if list_:
        return _list_device_profiles()

    from bench import selection
    from bench.data import workloads as workload_data
    from bench.device import bandwidth, tiering
    from bench.device.facts import device_facts

    facts = device_facts()
    if threads is not None and threads < 1:
        raise BenchError(f"--threads must be at least 1, got {threads}", "e.g. --threads 4", exit_code=2)
    measured = bandwidth.measure(threads or selection.default_threads()) if measure else None
    profile = workload_data.load_device_profile(device_profile) if device_profile else None
    placement = tiering.place(facts, profile, (lambda: measured) if measured else None)
    out.print(_device_table(facts, measured, placement))
    out.print(f"tier: [bold]{placement.tier}[/]")
    for line in placement.why:
        out.print(f"  {line}")
    out.print(_accelerators_table())


def _list_device_profiles() -> None:
    from rich.table import Table

    from bench.data import workloads as workload_data

    table = Table("profile", "name", "class", "SoC", "RAM GB", "cores", "GB/s")
    for p in workload_data.device_profiles().values():
        table.add_row(
            p.id,
            p.name,
            p.device_class,
            p.soc,
            f"{p.ram_gb:g}",
            str(p.cores),
            f"{p.bandwidth_gbs:g}" if p.bandwidth_gbs else "–",
        )
    out.print(table)


def _device_table(facts: dict, measured, placement):
    """The device's facts, the bandwidth measured and the tiering's fields."""
    from rich.table import Table

    table = Table("fact", "value", title="device", title_justify="left")
    for key, value in facts.items():
        table.add_row(key.removeprefix("device_"), "–" if value is None else str(value))
    if measured:
        table.add_row(
            "bandwidth (copy)",
            f"{measured.gbs:g} GB/s best, {measured.median_gbs:g} median "
            f"({measured.passes} passes of {measured.buffer_mb} MB on {measured.threads} threads)",
        )
    for key, value in placement.record_fields().items():
        table.add_row(key, "–" if value is None else str(value))
    return table


def _accelerators_table():
    from rich.table import Table

    from bench.device.facts import runtime_accelerators

    seen = Table(
        "runtime",
        "accelerator",
        "as the runtime names it",
        title="accelerators each runtime can use here (--accelerator RUNNER=KIND)",
        title_justify="left",
    )
    for runtime, kinds in runtime_accelerators().items():
        for kind, what in kinds.items() if isinstance(kinds, dict) else [("–", kinds)]:
            seen.add_row(runtime, kind, what)
    return seen


@app.command("bundle")
def bundle_cmd(
    out_path: Path = typer.Option(..., "--out", "-o", help="The bundle file to write (a tar)."),
    model: CatalogueModel = None,
    runner: Optional[List[str]] = typer.Option(
        None, "--runner", "-r", help="Runner (repeatable); default: every available one whose artifact is ready."
    ),
    quant: Optional[List[str]] = typer.Option(
        None,
        "--quant",
        "-q",
        help="RUNNER=QUANT: a prepared quantization (repeatable); default: each runner's default.",
    ),
    artifact: Optional[List[str]] = typer.Option(
        None, "--artifact", help="RUNNER=PATH: your own artifact (repeatable)."
    ),
    cache: Cache = None,
) -> None:
    """Pack prepared artifacts, each with its manifest (files, sizes, sha256), into one file for another machine."""
    from bench.artifacts import bundle
    from bench.artifacts.cache import cache_root
    from bench.run import remote
    from bench.run.setup import RunOptions

    options = RunOptions(
        runners=tuple(runner or ()),
        model=model,
        quants=tuple(quant or ()),
        artifacts=tuple(artifact or ()),
        cache=cache,
    )
    found, plans = remote.host_plans(options)
    units = [bundle.unit_for(p.name, p.artifact, found.id, cache_root(cache)) for p in plans]
    written = bundle.write_file(units, out_path)
    for unit in units:
        out.print(
            f"{unit.runner} {unit.manifest.get('quantization') or ''}: {unit.rel} "
            f"({bundle.human_bytes(unit.manifest['bytes'])})",
            highlight=False,
        )
    out.print(f"wrote {out_path} ({bundle.human_bytes(written)} of artifacts)", highlight=False)


@app.command("unbundle")
def unbundle_cmd(
    path: str = typer.Argument(..., help="A bundle from `edgebench bundle`, or - for stdin."),
    cache: Cache = None,
) -> None:
    """Install a bundle's artifacts into the cache, each file checked against its manifest's sha256."""
    from bench.artifacts import bundle

    if path == "-":
        installed = bundle.install(sys.stdin.buffer, cache, "stdin")
    else:
        installed = bundle.install_file(Path(path), cache)
    for entry in installed.units:
        out.print(f"{entry['runner']}: --artifact {entry['runner']}={entry['path']}", highlight=False)
    folders = len({entry["folder"] for entry in installed.units})
    out.print(f"installed {installed.copied} artifacts, {folders - installed.copied} already there")


@app.command("remote-info", hidden=True)
def remote_info(cache: Optional[Path] = typer.Option(None, "--cache")) -> None:
    """For a host driving this machine over SSH: version, cache units, free space, runners (JSON)."""
    from bench.run import remote

    sys.stdout.write(json.dumps(remote.describe_here(cache)) + "\n")


def main() -> None:
    try:
        app()  # standalone: typer reports usage mistakes itself, with exit code 2
    except BenchError as exc:
        err.print(f"[red]Error:[/] {exc.message}", highlight=False)
        if exc.hint:
            err.print(f"  hint: {exc.hint}", highlight=False)
        sys.exit(exc.exit_code)
