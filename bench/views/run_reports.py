"""The files one suite run writes beside its JSONL, wherever it ran (here or on a target):
RUN_ID.md and RUN_ID.csv (bench.views.report) and the run's own matrix page RUN_ID.html."""

from __future__ import annotations

from pathlib import Path

from bench.data import workloads as workload_data
from bench.views import matrix, matrix_html, report


def write_run_reports(records: list[dict], run_id: str, out_dir: Path) -> dict[str, str]:
    """The run's reports: their paths by format (none for a run without records)."""
    if not records:
        return {}
    reports = {fmt: str(report.write_report(records, fmt, out_dir / f"{run_id}.{fmt}")) for fmt in report.FORMATS}
    page = matrix_html.page(matrix.from_records(records), workload_data.load_workloads())
    reports["html"] = str(report.write_text(page, out_dir / f"{run_id}.html"))
    return reports
