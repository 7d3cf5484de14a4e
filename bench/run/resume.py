"""`edgebench run --resume`: finish an interrupted run in the same results file.

Every run saves the options it was started with beside its results (RUN_ID.run.json). A
resumed run reloads them, checks the suite and profile are unchanged, skips every
measurement already recorded (a generation skipped for the time budget counts as
recorded: it is not run again), and appends the rest. A prompt with repetitions still to
do gets its warm-ups again: the new worker starts cold, like the first one did. A
conversation's run with a turn still to do runs its recorded turns again as warm-ups first,
so the turn continues the history it needs.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from pathlib import Path

from bench.errors import BenchError
from bench.records import iter_records
from bench.run.supervisor import Job, RunnerPlan
from bench.run.time_budget import budget_unit

RUN_ID = re.compile(r"\d{8}-\d{6}-[0-9a-f]{4}")


def sidecar(results_path: Path) -> Path:
    return results_path.with_suffix(".run.json")


def save(results_path: Path, options, threads: int, run_fields: dict, suite_sha256: str, profile_sha256: str) -> None:
    # The options each RunOptions field declares resumed (bench.run.setup._option).
    saved = {f.name: getattr(options, f.name) for f in dataclasses.fields(options) if f.metadata["resumed"]}
    saved |= {"threads": threads}
    saved = {k: (str(v) if isinstance(v, Path) else v) for k, v in saved.items()}
    payload = {
        "options": saved,
        "run_id": run_fields["run_id"],
        "started_at": run_fields["started_at"],
        "suite_sha256": suite_sha256,
        "profile_sha256": profile_sha256,
    }
    tmp = sidecar(results_path).with_suffix(".partial")
    tmp.write_text(json.dumps(payload, indent=2))
    os.replace(tmp, sidecar(results_path))


def locate(target: str, out: Path) -> Path:
    """The results file of a run id (in `out`) or a path."""
    path = Path(target)
    if path.suffix != ".jsonl":
        if not RUN_ID.fullmatch(target):  # a run id names a file in `out`, never a path
            raise BenchError(
                f"'{target}' is neither a run id (like 20261123-221500-ab12) nor a .jsonl file",
                "give the run id printed by `edgebench run`, or the results file's path",
                exit_code=2,
            )
        path = out / f"{target}.jsonl"
    if not path.is_file() or not sidecar(path).is_file():
        raise BenchError(
            f"no resumable run at {path} (needs {path.name} and {sidecar(path).name})",
            "give the run id printed by `edgebench run` and the same --out, or the .jsonl path",
        )
    return path


def load(target: str, options):
    """The original run's options (with `out` set to its folder) and its identity."""
    path = locate(target, options.out)
    try:
        saved = json.loads(sidecar(path).read_text())
        restored = {k: tuple(v) if isinstance(v, list) else v for k, v in saved["options"].items()}
        if restored.get("cache"):
            restored["cache"] = Path(restored["cache"])
    except (OSError, ValueError, KeyError) as exc:
        raise BenchError(f"cannot read {sidecar(path)}: {exc}", "the run cannot be resumed; start a new one") from None
    resumed = dataclasses.replace(options, **restored, out=path.parent, resume=None)
    return resumed, saved, path


def check_unchanged(saved: dict, suite_sha256: str, profile_sha256: str) -> None:
    for what, now in (("suite", suite_sha256), ("profile", profile_sha256)):
        if saved[f"{what}_sha256"] != now:
            raise BenchError(
                f"the {what} file changed since the run started; its results would not be comparable",
                "restore it, or start a new run",
            )


def check_artifacts(results_path: Path, plans: list[RunnerPlan]) -> None:
    recorded = {(r["runner"], r["artifact_path"]): r["artifact_sha256"] for r in iter_records(results_path)}
    for plan in plans:
        if not isinstance(plan, RunnerPlan):  # exported when its turn comes: nothing recorded of it yet
            continue
        before = recorded.get((plan.name, str(plan.artifact.path)))
        if before is not None and before != plan.artifact.sha256:
            raise BenchError(
                f"the artifact of {plan.name} changed since the run started ({plan.artifact.path})",
                "restore it, or start a new run",
            )


def done_keys(results_path: Path) -> set[tuple]:
    """(runner, artifact, prompt, warm-up, repeat) of every generation already recorded."""
    return {
        (r["runner"], r["artifact_sha256"], r["prompt_id"], r["warmup"], r["repeat"])
        for r in iter_records(results_path)
        if r["prompt_id"] is not None and r["status"] != "interrupted"
    }


def remaining(jobs: list[Job], plan: RunnerPlan, done: set[tuple]) -> list[Job]:
    def is_done(job: Job) -> bool:
        return (plan.name, plan.artifact.sha256, job.prompt_id, job.warmup, job.repeat) in done

    # what resumes as a whole: a prompt, or a conversation (every turn of it), as the time budget holds them
    unfinished = {budget_unit(j.prompt_id, j.payload) for j in jobs if not j.warmup and not is_done(j)}
    broken = {j.payload["conversation"] for j in jobs if j.payload.get("conversation") and not is_done(j)}
    left = []
    for job in jobs:
        if budget_unit(job.prompt_id, job.payload) not in unfinished:
            continue
        if job.warmup or not is_done(job):
            left.append(job)
        elif job.payload.get("conversation") in broken:  # its history must be rebuilt: again, as a warm-up
            left.append(dataclasses.replace(job, warmup=True))
    return left
