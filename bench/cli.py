"""The `edgebench` command: parse, validate, call the core, print. Nothing else."""
from __future__ import annotations

import json
import shutil
import signal
import sys
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console

# Only what every command needs is imported here: each command imports its own modules
# (pandas, numpy, the report and prepare code) when it runs, so --help answers at once.
from bench.errors import BenchError

# Plain (click) help: typer's rich help imports a Markdown parser, which alone doubles --help's time.
app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None,
                  help="Benchmark on-device LLM runtimes on one prompt suite, measured one way.")
# Off a terminal (CI logs, pipes) tables get 160 columns instead of rich's 80.
out = Console(width=shutil.get_terminal_size((160, 24)).columns)
err = Console(stderr=True, soft_wrap=True)


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def _render_table(table, title: str, columns: list | None = None):
    """`columns`: report's (column, heading, decimals) of the table; default: the suite report's."""
    from rich.table import Table

    from bench.views import report

    view = Table(title=title, title_justify="left")
    for heading in table.columns:
        view.add_column(heading, justify="left" if heading in ("runner", "quant", "prompt", "category", "note") else "right")
    for row in report.formatted(table, columns or report.COLUMNS):
        view.add_row(*row)
    return view


def _cooldown(cooldown: Optional[str], until_temp: Optional[float], limit: str):
    """The --cooldown* options as a hygiene.Cooldown, or None when none was given."""
    from bench.data.durations import parse_duration
    from bench.device.hygiene import Cooldown

    if cooldown is None and until_temp is None:
        return None
    return Cooldown(parse_duration(cooldown, "--cooldown") if cooldown else 0.0, until_temp,
                    parse_duration(limit, "--cooldown-limit"))


def _cooldown_args(cooldown: Optional[str], until_temp: Optional[float], limit: str) -> list[str]:
    """The --cooldown* options as given, for a target's command line."""
    args = ["--cooldown", cooldown] if cooldown else []
    return args + (["--cooldown-until-temp", str(until_temp), "--cooldown-limit", limit] if until_temp is not None else [])


def _streamed(on_record, stream: bool):
    """--stream-records (a host driving this run over SSH): each record also on stdout."""
    from bench.run import remote

    return remote.streaming(on_record) if stream else on_record


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


def _run_remote(command: str, options, targets, edgebench: Optional[str], extra: list[str],
                resume_run: Optional[str] = None):
    """run/sustained --target (or --resume of such a run): records stream into --out here."""
    from bench.run import remote

    def on_record(record: dict) -> None:
        what = "load" if record["prompt_id"] is None else f"{record['prompt_id']} " + \
            ("warm-up" if record["warmup"] else f"rep {record['repeat']}")
        err.print(f"{record['remote_target']} {record['runner']}: {what}: {record['status']}", highlight=False)

    found = remote.find_resumable(resume_run, options.out) if resume_run else None
    if found:
        runs = [remote.resume_run(found, edgebench, on_record, err.print)]
    else:
        runs = remote.run_command(options, list(targets), edgebench, command, extra, on_record, err.print)
    lines, failed = remote.report_runs(runs, options.out)
    if command == "sustained":
        lines += remote.sustained_reports(runs, options)
    for line in lines:
        out.print(line, highlight=False)
    if failed:
        raise typer.Exit(1)


SETTING_HELP = "RUNNER:KEY=VALUE: override a runtime's default setting (repeatable), e.g. llama.cpp:flash_attn=off."
ACCELERATOR_HELP = ("RUNNER=cpu|gpu|npu|auto: where a runtime runs (repeatable); default auto, what its own tools pick. "
                    "Shorthand for --setting RUNNER:accelerator=KIND.")
FALLBACK_HELP = "Keep results of a runtime that ran elsewhere than --accelerator asked (otherwise they are errors)."
COOLDOWN_HELP = "Wait this long between runners, e.g. 60s."
COOLDOWN_TEMP_HELP = "Between runners, also wait until the device is at most this many °C (up to --cooldown-limit)."
COOLDOWN_LIMIT_HELP = "Longest wait for --cooldown-until-temp."
TARGET_HELP = "ssh://[user@]host[:port]: run there over SSH, records streamed back here (repeatable: one target after another)."
REMOTE_EDGEBENCH_HELP = "The edgebench command on the targets; default: edgebench on their PATH."


def _with_accelerators(setting: Optional[List[str]], accelerator: Optional[List[str]]) -> tuple[str, ...]:
    """The --setting options, with each --accelerator RUNNER=KIND as the setting RUNNER:accelerator=KIND."""
    from bench.selection import parse_pairs

    asked = parse_pairs("--accelerator", tuple(accelerator or ()), "llama.cpp=gpu")
    return tuple(setting or ()) + tuple(f"{name}:accelerator={kinds[-1]}" for name, kinds in asked.items())


@app.command()
def run(
    runner: Optional[List[str]] = typer.Option(None, "--runner", "-r", help="Runner to use (repeatable); default: every available one."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Model id from `edgebench models`."),
    artifact: Optional[List[str]] = typer.Option(None, "--artifact", help="RUNNER=PATH: your own artifact for a runner (repeatable)."),
    suite: str = typer.Option("default", "--suite", help="Suite name (`edgebench suites`) or path to a .toml file."),
    profile: str = typer.Option("default", "--profile", help="Run profile name (`edgebench profiles`) or path."),
    threads: Optional[int] = typer.Option(None, "--threads", "-t", help="CPU threads per runtime; default: physical cores."),
    out_dir: Path = typer.Option(Path("results"), "--out", help="Folder for the JSONL results and reports."),
    quant: Optional[List[str]] = typer.Option(None, "--quant", "-q", help="RUNNER=QUANT: a prepared quantization to run (repeatable)."),
    setting: Optional[List[str]] = typer.Option(None, "--setting", help=SETTING_HELP),
    accelerator: Optional[List[str]] = typer.Option(None, "--accelerator", help=ACCELERATOR_HELP),
    allow_fallback: bool = typer.Option(False, "--allow-fallback", help=FALLBACK_HELP),
    cache: Optional[Path] = typer.Option(None, "--cache", help="Artifact cache; default $EDGEBENCH_CACHE_DIR or ~/.cache/edgebench/artifacts."),
    prepare_missing: bool = typer.Option(False, "--prepare", help="Export each missing artifact just before its runner's turn (the runner that needs none goes first)."),
    no_budget: bool = typer.Option(False, "--no-budget", help="Measure every generation, even one the profile's generation_budget would skip."),
    memory_limit_mb: Optional[float] = typer.Option(None, "--memory-limit-mb", help="Kill a worker whose RSS exceeds this; its generation is recorded as oom."),
    resume_run: Optional[str] = typer.Option(None, "--resume", help="RUN_ID (in --out) or RESULTS.jsonl: finish that run with its own options."),
    as_json: bool = typer.Option(False, "--json", help="Print a machine-readable summary on stdout."),
    cooldown: Optional[str] = typer.Option(None, "--cooldown", help=COOLDOWN_HELP),
    cooldown_until_temp: Optional[float] = typer.Option(None, "--cooldown-until-temp", help=COOLDOWN_TEMP_HELP),
    cooldown_limit: str = typer.Option("10m", "--cooldown-limit", help=COOLDOWN_LIMIT_HELP),
    device_profile: Optional[str] = typer.Option(None, "--device-profile", help="The farm device this runs on (`edgebench device --list`): labels records with its tier and bandwidth."),
    junit: Optional[Path] = typer.Option(None, "--junit", help="Write this run's workload verdicts as JUnit XML here."),
    quality: bool = typer.Option(False, "--quality", help="After the suite, score each runner against the fp32 reference (as `edgebench quality`)."),
    target: Optional[List[str]] = typer.Option(None, "--target", help=TARGET_HELP),
    remote_edgebench: Optional[str] = typer.Option(None, "--remote-edgebench", help=REMOTE_EDGEBENCH_HELP),
    artifacts_bundle: Optional[Path] = typer.Option(None, "--artifacts", help="A bundle from `edgebench bundle`: install its artifacts (sha256-checked) into the cache and run them."),
    stream_records: bool = typer.Option(False, "--stream-records", hidden=True),
) -> None:
    """Run the suite on each runner; write JSONL results and Markdown/CSV reports."""
    from rich.text import Text

    from bench.run import setup as run_setup
    from bench.views import report
    from bench.device.hygiene import start_warnings
    from bench.records import read_records

    signal.signal(signal.SIGTERM, _interrupt)  # a CI timeout stops the run like Ctrl-C does
    pause = _cooldown(cooldown, cooldown_until_temp, cooldown_limit)
    if artifacts_bundle:
        runner, artifact = _bundle_artifacts(artifacts_bundle, cache, runner, artifact)
    if target or (resume_run and _remote_resumable(resume_run, out_dir)):
        return _run_remote("run", run_setup.RunOptions(
            runners=tuple(runner or ()), model=model, artifacts=tuple(artifact or ()), suite=suite, profile=profile,
            threads=threads, out=out_dir, quants=tuple(quant or ()), settings=_with_accelerators(setting, accelerator), cache=cache,
            prepare=prepare_missing, memory_limit_mb=memory_limit_mb, device_profile=device_profile,
            allow_fallback=allow_fallback, no_budget=no_budget),
            target, remote_edgebench, _cooldown_args(cooldown, cooldown_until_temp, cooldown_limit), resume_run)
    setup = run_setup.setup_run(run_setup.RunOptions(
        runners=tuple(runner or ()), model=model, artifacts=tuple(artifact or ()), suite=suite,
        profile=profile, threads=threads, out=out_dir, quants=tuple(quant or ()), settings=_with_accelerators(setting, accelerator),
        cache=cache, prepare=prepare_missing, memory_limit_mb=memory_limit_mb, resume=resume_run, allow_fallback=allow_fallback, device_profile=device_profile,
        no_budget=no_budget, on_prepare=lambda r, q: err.print(f"preparing {r} {q} (see `edgebench prepare`)")))
    if setup.done:
        err.print(f"resuming {setup.run_id}: {len(setup.done)} generations already recorded in {setup.results_path}")
    err.print(f"run [bold]{setup.run_id}[/]: {setup.model.id}, suite {setup.suite.id}, profile "
              f"{setup.profile.name}, runners {', '.join(p.name for p in setup.plans)}, "
              f"{setup.plans[0].threads} threads")
    for note in setup.skipped:
        err.print(Text(f"skipped {note}", style="yellow"))
    if setup.budget_s:
        err.print(f"time budget: {setup.budget_s:g} s per generation, estimated from each runtime's own rates "
                  "(--no-budget measures everything)")
    with _run_progress(setup) as view:
        result = run_setup.execute(setup, on_record=_streamed(view.record, stream_records), cooldown=pause,
                                   say=view.say, on_wait=view.wait)
    quality_failed = 0
    if quality and not result.interrupted:
        from bench.quality.run import run_quality

        quality_failed = sum(r["status"] != "ok" for r in run_quality(setup, cache, say=err.print))
    records = read_records([setup.results_path]) if setup.results_path.exists() else []
    reports = {}
    if records:
        for fmt in report.FORMATS:
            reports[fmt] = str(report.write_report(records, fmt, out_dir / f"{setup.run_id}.{fmt}"))
        reports["html"] = str(_write_run_matrix_page(records, out_dir / f"{setup.run_id}.html"))
    table, notes = report.summary_table(records)
    notes = notes + start_warnings(records)
    if junit and records:
        _write_junit_verdicts(records, junit)
    failed = sum(o.failed for o in result.outcomes) + quality_failed
    failed += len(result.export_failures) if runner else 0  # a runner asked for by name must run
    if as_json:
        json.dump({"run_id": setup.run_id, "results": str(setup.results_path), "reports": reports,
                   "interrupted": result.interrupted, "failed": failed, "budget_s": setup.budget_s,
                   "skipped": sum(o.skipped for o in result.outcomes), "export_failures": result.export_failures,
                   "summary": json.loads(table.to_json(orient="records")), "warnings": notes}, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        _print_summary(setup, result, records, notes, reports)
    if result.interrupted:
        err.print(f"[yellow]interrupted: {len(records)} records kept in {setup.results_path}[/]")
        raise typer.Exit(130)
    if failed:
        raise typer.Exit(1)


def _run_progress(setup):
    """A live bar on a terminal; plain lines with heartbeats in a log."""
    from bench.run import resume
    from bench.run.progress import LiveProgress

    if not err.is_terminal:
        return _plain_progress()
    total = sum(len(resume.remaining(setup.jobs, p, setup.done)) if setup.done and hasattr(p, "artifact")
                else len(setup.jobs) for p in setup.plans)
    return LiveProgress(err, total, len(setup.jobs))


def _plain_progress(sustained: bool = False):
    """Plain progress lines on stderr; a sustained run's many generations at most one line per heartbeat."""
    from bench.run.progress import PlainProgress, heartbeat_s

    interval = heartbeat_s()
    return PlainProgress(lambda line: err.print(line, highlight=False, markup=False), interval,
                         record_gap=interval if sustained else 0.0)


def _ignore(*args) -> None:
    return None


def _print_summary(setup, result, records: list[dict], notes: list[str], reports: dict) -> None:
    """The end of a run: workload x runtime, the budget and what it skipped, warnings, the files."""
    from rich.text import Text

    from bench.views import summary

    found = summary.build(records)
    tier = f", this device's tier: {found.tier}" if found.tier else ""
    out.print(summary.rich_table(found, f"edgebench {setup.run_id}: best runtime per workload{tier}"))
    if setup.budget_s:
        out.print(f"time budget {setup.budget_s:g} s per generation: "
                  + (f"skipped {len(found.skipped)} prompt(s), not failures: " + "; ".join(found.skipped)
                     if found.skipped else "nothing skipped"), highlight=False)
    for failure in result.export_failures:
        out.print(Text(f"not run, export failed: {failure}", style="red"))
    for note in notes:
        out.print(Text("warning: ", style="yellow") + Text(note))
    out.print(f"results: {setup.results_path}" + "".join(f"\n{fmt}: {path}" for fmt, path in reports.items()),
              highlight=False)


def _run_matrix(records: list[dict]):
    """This run's records as a device matrix (one device, one results file)."""
    import pandas as pd

    from bench.views import matrix as matrix_

    frame = pd.DataFrame.from_records([{c: r.get(c) for c in matrix_.COLUMNS} for r in records], columns=list(matrix_.COLUMNS))
    return matrix_.build(frame, 1)


def _write_run_matrix_page(records: list[dict], path: Path) -> Path:
    """The run's own HTML matrix page (as `edgebench matrix` writes for many devices)."""
    from bench.views import matrix_html
    from bench.views import report
    from bench.data import workloads as workload_data

    return report.write_text(matrix_html.page(_run_matrix(records), workload_data.load_workloads()), path)


def _write_junit_verdicts(records: list[dict], path: Path) -> None:
    from bench.views import matrix_tables
    from bench.views import report
    from bench.views.junit import to_xml

    built = _run_matrix(records)
    report.write_text(to_xml("edgebench run", matrix_tables.junit_cases(built)), path)
    err.print(f"junit: {path}")


@app.command("prepare")
def prepare_cmd(
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Model id; default: the catalogue's default."),
    runner: Optional[List[str]] = typer.Option(None, "--runner", "-r", help="Runner (repeatable); default: every installed one that needs it."),
    quant: Optional[List[str]] = typer.Option(None, "--quant", "-q", help="Quantization (repeatable); default: each runner's default."),
    cache: Optional[Path] = typer.Option(None, "--cache", help="Artifact cache; default $EDGEBENCH_CACHE_DIR or ~/.cache/edgebench/artifacts."),
    force: bool = typer.Option(False, "--force", help="Export again even when the cache has the artifact."),
) -> None:
    """Convert the model into each runner's artifact with that runtime's own exporter; cached."""
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
    from rich.table import Table
    from rich.text import Text

    from bench.data import models
    from bench.artifacts import prepare

    signal.signal(signal.SIGTERM, _interrupt)  # a stopped job still removes its unfinished export

    target = models.get_model(model or models.default_model_id())
    work = prepare.select(tuple(runner or ()), tuple(quant or ()))
    root = prepare.cache_root(cache)
    table = Table("runner", "quant", "status", "export s", "MB", "artifact")
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), TextColumn("{task.fields[line]}"),
                  console=err, transient=True) as progress:
        failures = []
        for name, exporter, q in work:
            task = progress.add_task(f"{name} {q}", line="")
            try:
                done = prepare.prepare_artifact(
                    target, name, exporter, q, root, force=force,
                    on_log=lambda line, task=task: progress.update(task, line=line[:60]),
                    # a live line on a terminal; in a log, a line per stage and a heartbeat
                    progress=(lambda p, task=task: progress.update(task, description=p.line())) if err.is_terminal else None)
            except prepare.Unsupported as exc:  # a declared limit, not a failure, unless asked for by name
                if runner:
                    raise
                table.add_row(name, q, "not supported", "–", "–", exc.message)
                continue
            except BenchError as exc:
                if runner:  # asked for by name: stop here, with the exporter's own words
                    raise
                failures.append(f"{name} {q}: {exc.message}")
                table.add_row(name, q, "FAILED", "–", "–", exc.message.splitlines()[0])
                continue
            finally:
                progress.remove_task(task)
            m = done.manifest
            table.add_row(name, q, "exported" if done.built else "cached (nothing to do)",
                          f"{m['export_seconds']:.1f}", f"{m['bytes'] / 2**20:.1f}", str(done.path))
    out.print(table)
    for failure in failures:
        err.print(Text(failure, style="red"))
    if failures:
        raise typer.Exit(1)


@app.command()
def sustained(
    runner: Optional[List[str]] = typer.Option(None, "--runner", "-r", help="Runner to use (repeatable); default: every available one."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Model id from `edgebench models`."),
    artifact: Optional[List[str]] = typer.Option(None, "--artifact", help="RUNNER=PATH: your own artifact for a runner (repeatable)."),
    duration: Optional[str] = typer.Option(None, "--duration", help="How long each runner generates, e.g. 10m; default: the profile's."),
    window: Optional[str] = typer.Option(None, "--window", help="Analysis window, e.g. 30s; default: the profile's."),
    suite: str = typer.Option("default", "--suite", help="Suite name or path (holds the profile's fixed-length prompt)."),
    profile: str = typer.Option("sustained", "--profile", help="A run profile with sustained settings: sustained or sustained-ci."),
    threads: Optional[int] = typer.Option(None, "--threads", "-t", help="CPU threads per runtime; default: physical cores."),
    out_dir: Path = typer.Option(Path("results"), "--out", help="Folder for the JSONL results, device samples and reports."),
    setting: Optional[List[str]] = typer.Option(None, "--setting", help=SETTING_HELP),
    accelerator: Optional[List[str]] = typer.Option(None, "--accelerator", help=ACCELERATOR_HELP),
    allow_fallback: bool = typer.Option(False, "--allow-fallback", help=FALLBACK_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print a machine-readable summary on stdout."),
    cooldown: Optional[str] = typer.Option(None, "--cooldown", help=COOLDOWN_HELP),
    cooldown_until_temp: Optional[float] = typer.Option(None, "--cooldown-until-temp", help=COOLDOWN_TEMP_HELP),
    cooldown_limit: str = typer.Option("10m", "--cooldown-limit", help=COOLDOWN_LIMIT_HELP),
    target: Optional[List[str]] = typer.Option(None, "--target", help=TARGET_HELP),
    remote_edgebench: Optional[str] = typer.Option(None, "--remote-edgebench", help=REMOTE_EDGEBENCH_HELP),
    stream_records: bool = typer.Option(False, "--stream-records", hidden=True),
) -> None:
    """Generate back to back for a duration per runner; report burst, floor, drops and the device's state."""
    import importlib.util

    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.text import Text

    from bench.run import setup as run_setup
    from bench.device.hygiene import start_warnings
    from bench.records import iter_records, read_records
    from bench.analysis.sustained import summary_lines
    from bench.views.sustained_report import figures_row, results_for, write_reports

    if importlib.util.find_spec("matplotlib") is None:
        raise BenchError("the sustained report draws plots with matplotlib, which is not installed",
                         "pip install 'edgebench[plots]'")
    signal.signal(signal.SIGTERM, _interrupt)  # a CI timeout stops the run like Ctrl-C does
    pause = _cooldown(cooldown, cooldown_until_temp, cooldown_limit)
    if target:
        spans = ["--duration", duration] * bool(duration) + ["--window", window] * bool(window)
        return _run_remote("sustained", run_setup.RunOptions(
            runners=tuple(runner or ()), model=model, artifacts=tuple(artifact or ()), suite=suite, profile=profile,
            threads=threads, out=out_dir, settings=_with_accelerators(setting, accelerator), sustained=True, duration=duration, window=window,
            allow_fallback=allow_fallback),
            target, remote_edgebench, spans + _cooldown_args(cooldown, cooldown_until_temp, cooldown_limit))
    setup = run_setup.setup_run(run_setup.RunOptions(
        runners=tuple(runner or ()), model=model, artifacts=tuple(artifact or ()), suite=suite, profile=profile,
        threads=threads, out=out_dir, settings=_with_accelerators(setting, accelerator), sustained=True, duration=duration, window=window,
        allow_fallback=allow_fallback))
    span = setup.sustain.duration_s
    err.print(f"sustained run [bold]{setup.run_id}[/]: {setup.model.id}, {setup.jobs[-1].prompt_id} for "
              f"{span:g} s per runner (windows of {setup.sustain.window_s:g} s), runners "
              f"{', '.join(p.name for p in setup.plans)}, {setup.plans[0].threads} threads")
    plain = None if err.is_terminal else _plain_progress(sustained=True)  # a log: a line every few seconds
    with plain or Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed:.0f}/{task.total:.0f} s"),
                           TimeElapsedColumn(), console=err, transient=False) as progress:
        tasks = {} if plain else {p.name: progress.add_task(p.name, total=span) for p in setup.plans}

        def on_record(record: dict) -> None:
            if plain:
                return plain.record(record)
            task = tasks[record["runner"]]
            if record["status"] != "ok":
                err.print(Text(f"{record['runner']}: {record['status']}: {record['error']}", style="red"))
            elif record["elapsed_s"] is not None:
                rate = f"{record['decode_tok_s']:.1f} tok/s" if record["decode_tok_s"] else "no decode rate"
                progress.update(task, completed=min(span, record["elapsed_s"] + record["e2e_ms"] / 1000),
                                description=f"{record['runner']}: {rate}")

        result = run_setup.execute(setup, on_record=_streamed(on_record, stream_records), cooldown=pause,
                                   say=plain.say if plain else err.print, on_wait=plain.wait if plain else _ignore)
    records = read_records([setup.results_path]) if setup.results_path.exists() else []
    samples = list(iter_records(setup.samples_path)) if setup.samples_path.exists() else []
    results = results_for(records, samples, span, setup.sustain.window_s)
    written = write_reports(results, setup.run_id, out_dir) if results else {}
    warnings = start_warnings(records)
    failed = sum(o.failed for o in result.outcomes)
    if as_json:
        json.dump({"run_id": setup.run_id, "results": str(setup.results_path), "samples": str(setup.samples_path),
                   "reports": {k: str(v) for k, v in written.items()}, "interrupted": result.interrupted,
                   "failed": failed, "summary": [figures_row(r) | {"drop_s": r.drop_s, "missing_signals": r.missing_signals}
                                                 for r in results],
                   "warnings": warnings}, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        for r in results:
            out.print(Text("\n".join(summary_lines(r))))
        for note in warnings:
            out.print(Text("warning: ", style="yellow") + Text(note))
        out.print(f"results: {setup.results_path}\ndevice samples: {setup.samples_path}"
                  + "".join(f"\n{name}: {path}" for name, path in written.items()))
    if result.interrupted:
        err.print(f"[yellow]interrupted: {len(records)} records kept in {setup.results_path}[/]")
        raise typer.Exit(130)
    if failed:
        raise typer.Exit(1)


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
        table.add_row(reg.name + (" (FAKE: tests only)" if reg.hidden else ""),
                      "yes" if probe.available else "no", probe.runtime_version or "–", cls.artifact_kind,
                      "" if probe.available else probe.reason, reg.origin)
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
def validate(paths: List[Path] = typer.Argument(..., help="Suite, run profile, catalogue, workloads, tiers or device profile .toml files.")) -> None:
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
    from bench.views import report
    from bench.records import read_records

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
    support: bool = typer.Option(False, "--support", help="Which model families each runner takes, per quantization, "
                                 "or why not (what tests/test_families.py proves)."),
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
        table.add_row(m.id + (" (default)" if m.default else ""), m.name, f"{m.parameters_m:g}",
                      f"{m.source.format} in {m.source.package}", m.source.quantization, where)
    out.print(table)


def _print_family_support() -> None:
    """Family x runner: the quantizations it takes, or a numbered reason it takes none."""
    from rich.table import Table

    from bench.data import models
    from bench.artifacts import prepare

    cells = {family: prepare.support_cells(family) for family in models.FAMILIES}
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
    runner: Optional[List[str]] = typer.Option(None, "--runner", "-r", help="Runner to check (repeatable); default: every available one with an artifact ready."),
    threads: Optional[int] = typer.Option(None, "--threads", "-t", help="Default: physical cores."),
    llama_bench: Optional[str] = typer.Option(None, "--llama-bench", help="Path of a llama-bench binary, or 'off'; default: the one scripts/build-llama-bench.sh built, when present."),
) -> None:
    """Fidelity benchmark: harness figures vs each runtime's own timers (and llama-bench), in one run."""
    from bench import selection
    from bench.run.selfcheck import run_selfcheck

    if not run_selfcheck(tuple(runner or ()), threads or selection.default_threads(), out, llama_bench):
        raise typer.Exit(1)


@app.command()
def matrix(
    results: List[str] = typer.Argument(..., help="Results: .jsonl files, folders, glob patterns."),
    out_dir: Optional[Path] = typer.Option(None, "--out", "-o", help="Write matrix.md, matrix.csv and matrix.html here."),
    junit: Optional[Path] = typer.Option(None, "--junit", help="Write the verdicts as JUnit XML here."),
) -> None:
    """Merge results of many devices into the tiered device matrix, with workload verdicts."""
    from bench.views import matrix as matrix_
    from bench.views import matrix_html
    from bench.views import matrix_tables
    from bench.views import report
    from bench.data import workloads as workload_data
    from bench.views.junit import to_xml

    frame, files = matrix_.load(results)
    built = matrix_.build(frame, files)
    if not built.rows:
        raise BenchError("the results hold no successful measured generation", "check the runs' error records")
    text = matrix_tables.markdown(built)
    if out_dir:
        for name, content in (("matrix.csv", matrix_tables.csv(built)),
                              ("matrix.html", matrix_html.page(built, workload_data.load_workloads()))):
            out.print(f"wrote {report.write_text(content, out_dir / name)}")
    _emit(text, out_dir / "matrix.md" if out_dir else None, junit,
          lambda: to_xml("edgebench matrix", matrix_tables.junit_cases(built)))


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
    threshold: str = typer.Option("5%", "--threshold", help="A change worse than this (and outside the measured spread) is a regression."),
    out_path: Optional[Path] = typer.Option(None, "--out", "-o", help="Write the Markdown (a PR comment) here; default: stdout."),
    junit: Optional[Path] = typer.Option(None, "--junit", help="Write the comparisons as JUnit XML here."),
    allow_missing: bool = typer.Option(False, "--allow-missing", help="Pass the gate when baseline results have no successful candidate generation."),
) -> None:
    """Compare two sets of results per device/runner/prompt/metric; exit 1 on a regression or a missing result."""
    from bench.views import compare
    from bench.views.junit import to_xml

    threshold_pct = compare.parse_threshold(threshold)
    deltas = compare.compare(baseline, candidate, threshold_pct)
    _emit(compare.markdown(deltas, threshold_pct, baseline, candidate, allow_missing), out_path, junit,
          lambda: to_xml("edgebench compare", compare.junit_cases(deltas, allow_missing)))
    if compare.gate_fails(deltas, allow_missing):
        raise typer.Exit(1)


QUALITY_TERMINAL = ["runner", "quant", "perplexity", "reference perplexity", "KLD mean", "top-1 %",
                    "greedy agreement %", "first divergence", "scoring s", "note"]


@app.command()
def quality(
    runner: Optional[List[str]] = typer.Option(None, "--runner", "-r", help="Runner to score (repeatable); default: every available one."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Model id from `edgebench models`, or a checkpoint folder."),
    quant: Optional[List[str]] = typer.Option(None, "--quant", "-q", help="RUNNER=QUANT (repeatable); default: every quantization prepared in the cache."),
    artifact: Optional[List[str]] = typer.Option(None, "--artifact", help="RUNNER=PATH: your own artifact for a runner (repeatable)."),
    cache: Optional[Path] = typer.Option(None, "--cache", help="Artifact cache (the reference is cached there too); default $EDGEBENCH_CACHE_DIR or ~/.cache/edgebench/artifacts."),
    out_dir: Path = typer.Option(Path("results"), "--out", help="Folder for the JSONL results."),
    threads: Optional[int] = typer.Option(None, "--threads", "-t", help="CPU threads per runtime; default: physical cores."),
) -> None:
    """Each runner and quantization against the fp32 reference: perplexity, KL divergence, top-1 and greedy agreement."""
    from bench.run import setup as run_setup
    from bench.views import report
    from bench.quality.run import run_quality, setup_quality

    signal.signal(signal.SIGTERM, _interrupt)
    setup = setup_quality(run_setup.RunOptions(runners=tuple(runner or ()), model=model, artifacts=tuple(artifact or ()),
                                               threads=threads, out=out_dir, quants=tuple(quant or ()), cache=cache))
    err.print(f"quality [bold]{setup.run_id}[/]: {setup.model.id}, "
              f"{', '.join(f'{p.name} {p.artifact.quantization or chr(8211)}' for p in setup.plans)}")
    for note in setup.skipped:
        err.print(f"[yellow]skipped {note}[/]")
    records = run_quality(setup, cache, say=err.print)
    table = report.quality_table(records)
    table["scoring s"] = [(r["quality_detail"] or {}).get("scoring_s") for r in records]
    out.print(_render_table(table[QUALITY_TERMINAL], f"edgebench quality {setup.run_id}",
                            report.QUALITY_COLUMNS + [("", "scoring s", 1)]))
    out.print(f"results: {setup.results_path}")
    if any(r["status"] != "ok" for r in records):
        raise typer.Exit(1)


@app.command()
def device(
    measure: bool = typer.Option(False, "--bandwidth", help="Measure memory bandwidth here (a copy benchmark, ~2 s)."),
    threads: Optional[int] = typer.Option(None, "--threads", "-t", help="Threads the copy runs on; default: physical cores, as a run decodes with."),
    device_profile: Optional[str] = typer.Option(None, "--device-profile", help="A device profile name or .toml path."),
    list_: bool = typer.Option(False, "--list", help="List the packaged device profiles."),
    target: Optional[List[str]] = typer.Option(None, "--target", help="ssh://[user@]host[:port]: that device's facts instead (repeatable)."),
    remote_edgebench: Optional[str] = typer.Option(None, "--remote-edgebench", help=REMOTE_EDGEBENCH_HELP),
) -> None:
    """This device's facts, fingerprint, and the tier it is assigned, and why."""
    from rich.table import Table

    if target:
        from bench.run import remote

        args = ["--bandwidth"] * measure + ["--threads", str(threads)] * (threads is not None) + ["--list"] * list_
        for spec, text in remote.device_on_targets(target, remote_edgebench, args, device_profile):
            out.print(f"{spec}:", highlight=False)
            sys.stdout.write(text)
        return

    from bench import selection
    from bench.device import bandwidth
    from bench.data import workloads as workload_data
    from bench.device import tiering
    from bench.device.facts import device_facts, runtime_accelerators

    if list_:
        table = Table("profile", "name", "class", "SoC", "RAM GB", "cores", "GB/s")
        for p in workload_data.device_profiles().values():
            table.add_row(p.id, p.name, p.device_class, p.soc, f"{p.ram_gb:g}", str(p.cores),
                          f"{p.bandwidth_gbs:g}" if p.bandwidth_gbs else "–")
        out.print(table)
        return
    facts = device_facts()
    if threads is not None and threads < 1:
        raise BenchError(f"--threads must be at least 1, got {threads}", "e.g. --threads 4", exit_code=2)
    measured = bandwidth.measure(threads or selection.default_threads()) if measure else None
    profile = workload_data.load_device_profile(device_profile) if device_profile else None
    placement = tiering.place(facts, profile, (lambda: measured) if measured else None)
    table = Table("fact", "value", title="device", title_justify="left")
    for key, value in facts.items():
        table.add_row(key.removeprefix("device_"), "–" if value is None else str(value))
    if measured:
        table.add_row("bandwidth (copy)", f"{measured.gbs:g} GB/s best, {measured.median_gbs:g} median "
                      f"({measured.passes} passes of {measured.buffer_mb} MB on {measured.threads} threads)")
    for key, value in placement.record_fields().items():
        table.add_row(key, "–" if value is None else str(value))
    out.print(table)
    out.print(f"tier: [bold]{placement.tier}[/]")
    for line in placement.why:
        out.print(f"  {line}")
    seen = Table("runtime", "accelerator", "as the runtime names it", title="accelerators each runtime can use here "
                 "(--accelerator RUNNER=KIND)", title_justify="left")
    for runtime, kinds in runtime_accelerators().items():
        for kind, what in (kinds.items() if isinstance(kinds, dict) else [("–", kinds)]):
            seen.add_row(runtime, kind, what)
    out.print(seen)


@app.command("bundle")
def bundle_cmd(
    out_path: Path = typer.Option(..., "--out", "-o", help="The bundle file to write (a tar)."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Model id; default: the catalogue's default."),
    runner: Optional[List[str]] = typer.Option(None, "--runner", "-r", help="Runner (repeatable); default: every available one whose artifact is ready."),
    quant: Optional[List[str]] = typer.Option(None, "--quant", "-q", help="RUNNER=QUANT: a prepared quantization (repeatable); default: each runner's default."),
    artifact: Optional[List[str]] = typer.Option(None, "--artifact", help="RUNNER=PATH: your own artifact (repeatable)."),
    cache: Optional[Path] = typer.Option(None, "--cache", help="Artifact cache; default $EDGEBENCH_CACHE_DIR or ~/.cache/edgebench/artifacts."),
) -> None:
    """Pack prepared artifacts, each with its manifest (files, sizes, sha256), into one file for another machine."""
    from bench.artifacts import bundle
    from bench.run import remote
    from bench.run.setup import RunOptions
    from bench.artifacts.prepare import cache_root

    options = RunOptions(runners=tuple(runner or ()), model=model, quants=tuple(quant or ()),
                         artifacts=tuple(artifact or ()), cache=cache)
    found, plans = remote.host_plans(options)
    units = [bundle.unit_for(p, found.id, cache_root(cache)) for p in plans]
    written = bundle.write_file(units, out_path)
    for unit in units:
        out.print(f"{unit.runner} {unit.manifest.get('quantization') or ''}: {unit.rel} "
                  f"({bundle.human_bytes(unit.manifest['bytes'])})", highlight=False)
    out.print(f"wrote {out_path} ({bundle.human_bytes(written)} of artifacts)", highlight=False)


@app.command("unbundle")
def unbundle_cmd(
    path: str = typer.Argument(..., help="A bundle from `edgebench bundle`, or - for stdin."),
    cache: Optional[Path] = typer.Option(None, "--cache", help="Artifact cache; default $EDGEBENCH_CACHE_DIR or ~/.cache/edgebench/artifacts."),
) -> None:
    """Install a bundle's artifacts into the cache, each file checked against its manifest's sha256."""
    from bench.artifacts import bundle

    installed = bundle.install(sys.stdin.buffer, cache, "stdin") if path == "-" else bundle.install_file(Path(path), cache)
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
