"""`edgebench sustained`: one prompt back to back under thermal load, with the device's series."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from bench.cli.common import (
    Accelerators,
    AllowFallback,
    Artifacts,
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
    stop_on_sigterm,
)
from bench.cli.running import (
    cooldown_args,
    cooldown_from_options,
    execute_here,
    exit_after_run,
    plain_progress,
    run_options,
    run_records,
    run_remote,
    sustained_results,
)
from bench.errors import BenchError


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
    stop_on_sigterm()
    pause = cooldown_from_options(cooldown, cooldown_until_temp, cooldown_limit)
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
        sustained=True,
        duration=duration,
        window=window,
    )
    if target:
        spans = ["--duration", duration] * bool(duration) + ["--window", window] * bool(window)
        return run_remote(
            "sustained",
            options,
            target,
            remote_edgebench,
            spans + cooldown_args(cooldown, cooldown_until_temp, cooldown_limit),
            cooldown=pause,
        )
    setup = setup_run(options)
    err.print(
        f"sustained run [bold]{setup.run_id}[/]: {setup.model.id}, {setup.jobs[-1].prompt_id} for "
        f"{setup.sustained.duration_s:g} s per runner (windows of {setup.sustained.window_s:g} s), runners "
        f"{runner_names(setup)}, {setup.plans[0].threads} threads"
    )
    result = execute_here(setup, _sustained_progress(setup), pause, stream_records)
    records = run_records(setup)
    _report_sustained_run(setup, result, records, out_dir, as_json)
    exit_after_run(result, records, setup.results_path, result.failed)


def _report_sustained_run(setup, result, records: list[dict], out_dir: Path, as_json: bool) -> None:
    """Each runner's sustained figures from its records and the device series, their reports
    written, and a summary printed, as text or JSON."""
    from bench.device.hygiene import start_warnings
    from bench.records import iter_records
    from bench.views.sustained_report import figures_row

    samples = list(iter_records(setup.samples_path)) if setup.samples_path.exists() else []
    results, written = sustained_results(records, samples, setup.sustained, setup.run_id, out_dir)
    warnings = start_warnings(records)
    if as_json:
        print_json(
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


def _print_sustained_summary(setup, results: list, warnings: list[str], written: dict) -> None:
    """The end of a sustained run: each runner's figures, warnings, the files."""
    from rich.text import Text

    from bench.analysis.sustained import summary_lines

    for r in results:
        out.print(Text("\n".join(summary_lines(r))))
    print_warnings(warnings)
    out.print(
        f"results: {setup.results_path}\ndevice samples: {setup.samples_path}"
        + "".join(f"\n{name}: {path}" for name, path in written.items())
    )


def _sustained_progress(setup):
    """A bar per runner on a terminal; in a log, a line every few seconds."""
    from bench.run.progress import SustainedBars

    if not err.is_terminal:
        return plain_progress(sustained=True)
    return SustainedBars(err, [p.name for p in setup.plans], setup.sustained.duration_s)
