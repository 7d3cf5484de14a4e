"""What `run` and `sustained` share: their options as RunOptions, cool-downs, remote targets
over SSH and adb, running here with a progress view, and the exit code."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from bench.cli.common import err, out


def cooldown_from_options(cooldown: Optional[str], until_temp: Optional[float], limit: str):
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


def cooldown_args(cooldown: Optional[str], until_temp: Optional[float], limit: str) -> list[str]:
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


def run_options(
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


def remote_resumable(resume_run: str, out_dir: Path) -> bool:
    from bench.run import remote

    return remote.find_resumable(resume_run, out_dir) is not None


def run_remote(
    command: str,
    options,
    targets,
    edgebench: Optional[str],
    extra: list[str],
    resume_run: Optional[str] = None,
    cooldown=None,
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
        runs = remote.run_command(options, list(targets), edgebench, command, extra, on_record, err.print, cooldown)
    lines, failed = _report_remote_runs(runs, options.out)
    if command == "sustained":
        lines += _report_remote_sustained(runs, options)
    for line in lines:
        out.print(line, highlight=False)
    if failed:
        raise typer.Exit(1)


def _report_remote_runs(runs: list, out_dir: Path) -> tuple[list[str], int]:
    """Each target's reports, as a run here writes them (bench.views.run_reports), and one
    matrix when there are several; returns what was written and the count of generations that failed."""
    from bench.records import is_failed, read_records
    from bench.views import report
    from bench.views.run_reports import write_run_reports

    lines, failed, files = [], 0, []
    for run in runs:
        records = read_records([run.results_path]) if run.run_id and run.results_path.exists() else []
        failed += sum(map(is_failed, _latest_of_each(records)))
        if records:
            files.append(run.results_path)
            written = write_run_reports(records, run.run_id, out_dir).values()
            lines.append(f"{run.target.spec}: results {run.results_path}; " + ", ".join(written))
    if len(files) > 1:
        from bench.views import matrix as matrix_
        from bench.views import matrix_tables

        frame, count = matrix_.load([str(f) for f in files])
        built = matrix_.build(frame, count)
        if built.rows:
            written = report.write_text(matrix_tables.markdown(built), out_dir / f"matrix-{runs[0].run_id}.md")
            lines.append(f"matrix: {written}")
    return lines, failed


def _latest_of_each(records: list[dict]) -> list[dict]:
    """Each generation's last record: one cut short by a dropped connection and measured again
    by `run --resume` counts as measured."""
    latest = {
        (r["runner"], r["artifact_sha256"], r["mode"], r["prompt_id"], r["warmup"], r["repeat"]): r for r in records
    }
    return list(latest.values())


def _report_remote_sustained(runs: list, options) -> list[str]:
    """Each target's sustained report, from its records and its own device series."""
    from bench.data.run_profiles import load_profile
    from bench.records import iter_records, read_records
    from bench.run import remote
    from bench.run.setup import run_suite, sustained_settings_for

    profile = load_profile(options.profile)
    settings = sustained_settings_for(options, run_suite(options, profile), profile)
    lines = []
    for run in runs:
        series = remote.fetch_series(run) if run.run_id else None
        if series is None:
            continue
        _, written = sustained_results(
            read_records([run.results_path]), list(iter_records(series)), settings, run.run_id, run.out
        )
        lines.append(f"{run.target.spec}: device samples {series}; " + ", ".join(map(str, written.values())))
    return lines


def execute_here(setup, view, cooldown, stream_records: bool, after_runner=None):
    """Run it here, `view` showing its progress; `after_runner` follows each runner's suite."""
    from bench.run.execute import execute

    on_record = view.record
    if stream_records:  # a host drives this run over SSH: each record also goes to stdout
        from bench.run import remote

        on_record = remote.streaming(view.record)
    with view:
        return execute(
            setup,
            on_record=on_record,
            cooldown=cooldown,
            say=view.say,
            on_wait=view.wait,
            after_runner=after_runner or (lambda plan: []),
        )


def run_records(setup) -> list[dict]:
    from bench.records import read_records

    return read_records([setup.results_path]) if setup.results_path.exists() else []


def exit_after_run(result, records: list[dict], results_path: Path, failed: int) -> None:
    """Exit code 130 when the run was interrupted (its records are kept), 1 when anything failed."""
    if result.interrupted:
        err.print(f"[yellow]interrupted: {len(records)} records kept in {results_path}[/]")
        raise typer.Exit(130)
    if failed:
        raise typer.Exit(1)


def plain_progress(sustained: bool = False):
    """Plain progress lines on stderr; a sustained run's many generations at most one line per heartbeat."""
    from bench.run.progress import PlainProgress, heartbeat_s

    interval = heartbeat_s()
    return PlainProgress(
        lambda line: err.print(line, highlight=False, markup=False), interval, record_gap=interval if sustained else 0.0
    )


def sustained_results(records: list[dict], samples: list[dict], settings, run_id: str, out_dir: Path):
    """Each runner's sustained figures, from its records and the device series, and the
    reports written of them (paths by kind)."""
    from bench.views.sustained_report import results_for, write_reports

    results = results_for(records, samples, settings.duration_s, settings.window_s)
    return results, write_reports(results, run_id, out_dir) if results else {}
