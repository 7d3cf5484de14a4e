"""The `edgebench` command: parse, validate, call the core, print. Nothing else."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from bench import benchmark, datafiles, models, report
from bench.errors import BenchError
from bench.records import read_records

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Benchmark on-device LLM runtimes on one prompt suite, measured one way.")
out = Console()
err = Console(stderr=True)


def _render_table(table, title: str) -> Table:
    view = Table(title=title, title_justify="left")
    for heading in table.columns:
        view.add_column(heading, justify="left" if heading in ("runner", "quant", "prompt", "category") else "right")
    for row in report.formatted(table):
        view.add_row(*row)
    return view


def _cooldown(cooldown: Optional[str], until_temp: Optional[float], limit: str):
    """The --cooldown* options as a hygiene.Cooldown, or None when none was given."""
    from bench.durations import parse_duration
    from bench.hygiene import Cooldown

    if cooldown is None and until_temp is None:
        return None
    return Cooldown(parse_duration(cooldown, "--cooldown") if cooldown else 0.0, until_temp,
                    parse_duration(limit, "--cooldown-limit"))


COOLDOWN_HELP = "Wait this long between runners, e.g. 60s."
COOLDOWN_TEMP_HELP = "Between runners, also wait until the device is at most this many °C (up to --cooldown-limit)."
COOLDOWN_LIMIT_HELP = "Longest wait for --cooldown-until-temp."


@app.command()
def run(
    runner: Optional[List[str]] = typer.Option(None, "--runner", "-r", help="Runner to use (repeatable); default: every available one."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Model id from `edgebench models`."),
    artifact: Optional[List[str]] = typer.Option(None, "--artifact", help="RUNNER=PATH: your own artifact for a runner (repeatable)."),
    suite: str = typer.Option("default", "--suite", help="Suite name (`edgebench suites`) or path to a .toml file."),
    profile: str = typer.Option("default", "--profile", help="Run profile name (`edgebench profiles`) or path."),
    threads: Optional[int] = typer.Option(None, "--threads", "-t", help="CPU threads per runtime; default: physical cores."),
    out_dir: Path = typer.Option(Path("results"), "--out", help="Folder for the JSONL results and reports."),
    as_json: bool = typer.Option(False, "--json", help="Print a machine-readable summary on stdout."),
    cooldown: Optional[str] = typer.Option(None, "--cooldown", help=COOLDOWN_HELP),
    cooldown_until_temp: Optional[float] = typer.Option(None, "--cooldown-until-temp", help=COOLDOWN_TEMP_HELP),
    cooldown_limit: str = typer.Option("10m", "--cooldown-limit", help=COOLDOWN_LIMIT_HELP),
) -> None:
    """Run the suite on each runner; write JSONL results and Markdown/CSV reports."""
    from bench.hygiene import start_warnings

    pause = _cooldown(cooldown, cooldown_until_temp, cooldown_limit)
    setup = benchmark.prepare_run(benchmark.RunOptions(
        runners=tuple(runner or ()), model=model, artifacts=tuple(artifact or ()), suite=suite,
        profile=profile, threads=threads, out=out_dir))
    err.print(f"run [bold]{setup.run_id}[/]: {setup.model.id}, suite {setup.suite.id}, profile "
              f"{setup.profile.name}, runners {', '.join(p.name for p in setup.plans)}, "
              f"{setup.plans[0].threads} threads")
    total = len(setup.jobs) * len(setup.plans)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err, transient=False) as progress:
        task = progress.add_task("starting", total=total)

        def on_record(record: dict) -> None:
            what = "warm-up" if record["warmup"] else f"rep {record['repeat']}"
            progress.update(task, description=f"{record['runner']}: {record['prompt_id']} {what}")
            if record["prompt_id"] is None:  # the runner failed before its first job
                progress.update(task, advance=len(setup.jobs))
                err.print(f"[red]{record['runner']}: {record['status']}: {record['error']}[/]")
            else:
                progress.advance(task)

        result = benchmark.execute(setup, on_record=on_record, cooldown=pause, say=err.print)
    records = read_records([setup.results_path]) if setup.results_path.exists() else []
    reports = {}
    if records:
        for fmt in report.FORMATS:
            reports[fmt] = str(report.write_report(records, fmt, out_dir / f"{setup.run_id}.{fmt}"))
    table, notes = report.summary_table(records)
    notes = notes + start_warnings(records)
    failed = sum(o.failed for o in result.outcomes)
    if as_json:
        json.dump({"run_id": setup.run_id, "results": str(setup.results_path), "reports": reports,
                   "interrupted": result.interrupted, "failed": failed,
                   "summary": json.loads(table.to_json(orient="records")), "warnings": notes}, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        out.print(_render_table(table[report.TERMINAL], f"edgebench {setup.run_id} (medians)"))
        for note in notes:
            out.print(f"[yellow]warning:[/] {note}")
        out.print(f"results: {setup.results_path}" + "".join(f"\n{fmt}: {path}" for fmt, path in reports.items()))
    if result.interrupted:
        err.print(f"[yellow]interrupted: {len(records)} records kept in {setup.results_path}[/]")
        raise typer.Exit(130)
    if failed:
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
    as_json: bool = typer.Option(False, "--json", help="Print a machine-readable summary on stdout."),
    cooldown: Optional[str] = typer.Option(None, "--cooldown", help=COOLDOWN_HELP),
    cooldown_until_temp: Optional[float] = typer.Option(None, "--cooldown-until-temp", help=COOLDOWN_TEMP_HELP),
    cooldown_limit: str = typer.Option("10m", "--cooldown-limit", help=COOLDOWN_LIMIT_HELP),
) -> None:
    """Generate back to back for a duration per runner; report burst, floor, drops and the device's state."""
    import importlib.util

    from bench.hygiene import start_warnings
    from bench.records import iter_records
    from bench.sustained import summary_lines
    from bench.sustained_report import figures_row, results_for, write_reports

    if importlib.util.find_spec("matplotlib") is None:
        raise BenchError("the sustained report draws plots with matplotlib, which is not installed",
                         "pip install 'edgebench[plots]'")
    pause = _cooldown(cooldown, cooldown_until_temp, cooldown_limit)
    setup = benchmark.prepare_run(benchmark.RunOptions(
        runners=tuple(runner or ()), model=model, artifacts=tuple(artifact or ()), suite=suite, profile=profile,
        threads=threads, out=out_dir, sustained=True, duration=duration, window=window))
    span = setup.sustain.duration_s
    err.print(f"sustained run [bold]{setup.run_id}[/]: {setup.model.id}, {setup.jobs[-1].prompt_id} for "
              f"{span:g} s per runner (windows of {setup.sustain.window_s:g} s), runners "
              f"{', '.join(p.name for p in setup.plans)}, {setup.plans[0].threads} threads")
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed:.0f}/{task.total:.0f} s"),
                  TimeElapsedColumn(), console=err, transient=False) as progress:
        tasks = {p.name: progress.add_task(p.name, total=span) for p in setup.plans}

        def on_record(record: dict) -> None:
            task = tasks[record["runner"]]
            if record["status"] != "ok":
                err.print(f"[red]{record['runner']}: {record['status']}: {record['error']}[/]")
            elif record["elapsed_s"] is not None:
                progress.update(task, completed=min(span, record["elapsed_s"] + record["e2e_ms"] / 1000),
                                description=f"{record['runner']}: {record['decode_tok_s']:.1f} tok/s")

        result = benchmark.execute(setup, on_record=on_record, cooldown=pause, say=err.print)
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
            out.print("\n".join(summary_lines(r)), highlight=False)
        for note in warnings:
            out.print(f"[yellow]warning:[/] {note}")
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
    from bench.suite import load_suite

    table = Table("suite", "prompts", "categories", "description")
    for name in datafiles.packaged_names("suites"):
        s = load_suite(name)
        table.add_row(s.id, str(len(s.prompts)), ", ".join(dict.fromkeys(p.category for p in s.prompts)), s.description)
    out.print(table)


@app.command()
def profiles() -> None:
    """The packaged run profiles."""
    from bench.profiles import load_profile

    table = Table("profile", "warm-ups", "repetitions", "prompt tags", "description")
    for name in datafiles.packaged_names("runs"):
        p = load_profile(name)
        table.add_row(p.name, str(p.warmups), str(p.repetitions), ", ".join(p.tags) or "all", p.description)
    out.print(table)


@app.command()
def validate(paths: List[Path] = typer.Argument(..., help="Suite, run profile or catalogue .toml files.")) -> None:
    """Check data files without running anything."""
    from bench.validate import validate_file

    for path in paths:
        out.print(f"{path}: ok ({validate_file(path)})")


@app.command("report")
def report_cmd(
    results: List[Path] = typer.Argument(..., help="JSONL results files."),
    fmt: str = typer.Option("md", "--format", "-f", help="md or csv."),
    out_path: Optional[Path] = typer.Option(None, "--out", "-o", help="Output file; default: stdout."),
) -> None:
    """Build a Markdown or CSV report from results files."""

    if fmt not in report.FORMATS:
        raise BenchError(f"unknown format '{fmt}'", f"use one of: {', '.join(report.FORMATS)}", exit_code=2)
    records = read_records(results, warn=lambda m: err.print(f"[yellow]warning:[/] {m}"))
    if not records:
        raise BenchError("the results files hold no records", "run `edgebench run` first")
    if out_path:
        out.print(f"wrote {report.write_report(records, fmt, out_path)}")
    else:
        table, notes = report.summary_table(records)
        sys.stdout.write(report.markdown(records, table, notes) if fmt == "md" else table.to_csv(index=False))


@app.command("models")
def models_cmd() -> None:
    """The model catalogue and where each model's source artifact is."""
    table = Table("model", "name", "params (M)", "source", "quant", "where")
    for m in models.catalogue().values():
        try:
            where = str(m.source_path())
        except BenchError as exc:
            where = f"not installed: {exc.hint}"
        table.add_row(m.id + (" (default)" if m.default else ""), m.name, f"{m.parameters_m:g}",
                      f"{m.source.format} in {m.source.package}", m.source.quantization, where)
    out.print(table)


@app.command()
def selfcheck(threads: Optional[int] = typer.Option(None, "--threads", "-t", help="Default: physical cores.")) -> None:
    """Fidelity benchmark: harness figures vs llama.cpp's own counters, in one run."""
    from bench.selfcheck import run_selfcheck

    if not run_selfcheck(threads or benchmark.default_threads(), out):
        raise typer.Exit(1)


def main() -> None:
    try:
        app(standalone_mode=False)
    except BenchError as exc:
        err.print(f"[red]Error:[/] {exc.message}", highlight=False)
        if exc.hint:
            err.print(f"  hint: {exc.hint}", highlight=False)
        sys.exit(exc.exit_code)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        err.print("aborted")
        sys.exit(130)
    except Exception as exc:  # click usage errors carry their own exit code
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        raise
