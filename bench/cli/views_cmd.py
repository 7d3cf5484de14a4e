"""`edgebench report`, `matrix` and `compare`: views of results already recorded."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import typer

from bench.cli.common import app, err, out
from bench.errors import BenchError


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
