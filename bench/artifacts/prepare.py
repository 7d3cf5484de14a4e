"""`edgebench prepare`: one logical model -> one artifact per runtime, cached.

Stages: the model's source (a GGUF) -> the shared transformers checkpoint -> each
runner's artifact, made by that runtime's own exporter in a child process, into a private
folder that is renamed into place only when complete (bench.artifacts.cache keys and finds
them). While an export runs, a progress callable sees its stage (bench.artifacts.export_progress).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Callable

import psutil

from bench import provenance, selection
from bench.artifacts.cache import (
    MANIFEST,
    Prepared,
    artifact_stage,
    asked_context,
    describe_files,
    exporter_version,
    lookup,
    lookup_stage,
    newest,
    prepared_contexts,
    source_sha256,
    stage_folder,
    stage_key,
)
from bench.artifacts.checkpoint import EXPORTER as CHECKPOINT
from bench.artifacts.export_progress import ExportProgress, LinePrinter, estimate, remember_timing
from bench.artifacts.families import check_family
from bench.data.models import Model, checkpoint_family
from bench.errors import BenchError
from bench.records import utc_now
from bench.workers.protocol import Orders
from bench.workers.session import run_task
from runners.base import Exporter

LOG_TAIL_LINES = 15
POLL_S = 0.5


def _export(
    exporter: Exporter,
    input_path: Path,
    folder: Path,
    quantization: str,
    describe: dict,
    on_log: Callable[[str], None],
    show: Callable[[str, float], None],
    context: int | None = None,
) -> Prepared:
    """Run the exporter into a private folder; move it into place only when complete.
    `show(stage, elapsed_s)` is called every POLL_S with the stage the exporter last named."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    if folder.exists():  # no manifest: not a finished export
        shutil.rmtree(folder)
    _sweep_abandoned(folder)
    partial = Path(tempfile.mkdtemp(prefix=f"{_partial_prefix(folder)}{os.getpid()}-", dir=folder.parent))
    out, log_path = partial / "out", partial / "export.log"
    work = {
        "target": exporter.target,
        "input": str(input_path),
        "out": str(out),
        "quantization": quantization,
        "context": context,
    }
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    started = time.monotonic()
    stage = ["starting"]  # the stage the exporter last named

    def on_step(name: str) -> None:
        stage[0] = name
        show(name, time.monotonic() - started)

    def on_wait(_seconds: float) -> None:
        show(stage[0], time.monotonic() - started)
        on_log(_last_line(log_path))

    try:
        out.mkdir()
        with log_path.open("w+b") as log, tempfile.TemporaryDirectory(prefix="edgebench-export-") as cwd:
            orders = Orders("bench.artifacts.export_worker:export", work, exit_with_parent=True)
            ended = run_task(orders, log, on_step, on_wait, POLL_S, LOG_TAIL_LINES, cwd, env)
        if not ended.ok:
            tail = "\n".join(ended.tail)
            raise BenchError(
                f"{exporter.tool} failed (exit {ended.code}); its last lines:\n{tail}",
                "fix the cause above and run `edgebench prepare` again; nothing was cached",
            )
        result = ended.result
        files, digest = describe_files(out)
        manifest = {
            **describe,
            "tool": exporter.tool,
            "tool_version": exporter_version(exporter),
            "quantization": quantization,
            # the KV capacity asked of `prepare --context` (None: the exporter's own), and the one it has
            "context_asked": context,
            "context": context or exporter.context,
            "options": {k: v for k, v in result.items() if k != "artifact"},
            "artifact": result["artifact"],
            "files": files,
            "bytes": sum(f["bytes"] for f in files),
            "sha256": digest,
            "export_seconds": round(time.monotonic() - started, 1),
            "created_at": utc_now(),
            "edgebench_version": provenance.tool_version(),
        }
        (out / MANIFEST).write_text(json.dumps(manifest, indent=2))
        try:
            out.rename(folder)  # atomic: the folder appears complete, manifest included, or not at all
        except OSError:
            if not lookup(folder):
                raise
            # Another prepare finished the same artifact first: same key, same content.
            return lookup(folder)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return Prepared(folder / manifest["artifact"], folder, manifest, built=True)


def _partial_prefix(folder: Path) -> str:
    return f".{folder.name}.partial-"


def _sweep_abandoned(folder: Path) -> None:
    """Remove the private folders of exports whose process is gone (killed outright, so
    it could not clean up). Folder names carry the owner's pid."""
    for partial in folder.parent.glob(_partial_prefix(folder) + "*"):
        pid = partial.name[len(_partial_prefix(folder)) :].split("-", 1)[0]
        if pid.isdigit() and not psutil.pid_exists(int(pid)):
            shutil.rmtree(partial, ignore_errors=True)


def _last_line(path: Path) -> str:
    try:
        with path.open("rb") as f:
            f.seek(max(0, f.seek(0, 2) - 2000))
            lines = f.read().decode(errors="replace").replace("\r", "\n").strip().splitlines()
        return lines[-1][:120] if lines else ""
    except OSError:
        return ""


def _stage(
    model: Model,
    root: Path,
    stage: str,
    exporter: Exporter,
    input_path: Path,
    input_sha: str,
    quantization: str,
    force: bool,
    on_log: Callable[[str], None],
    label: str,
    progress: Callable[[ExportProgress], None] | None,
    context: int | None = None,
) -> Prepared:
    folder = stage_folder(root, model, stage, stage_key(input_sha, exporter, quantization, context))
    found = None if force else lookup_stage(folder, input_sha, exporter, quantization)
    if found:
        return found
    describe = {
        "model_id": model.id,
        "stage": stage,
        "source": str(model.source_path()),
        "source_sha256": source_sha256(model, root),
        "input": str(input_path),
        "input_sha256": input_sha,
    }
    show_progress = progress or LinePrinter()
    expected = estimate(model, exporter, quantization, root)

    def show(step: str, elapsed_s: float) -> None:
        show_progress(ExportProgress(label, step, elapsed_s, expected))

    done = _export(exporter, input_path, folder, quantization, describe, on_log, show, asked_context(exporter, context))
    if done.built:
        remember_timing(model, exporter, quantization, root, done.manifest["export_seconds"])
        show("done", done.manifest["export_seconds"])
    return done


def checkpoint(
    model: Model,
    root: Path,
    force: bool = False,
    on_log: Callable[[str], None] = lambda line: None,
    progress: Callable[[ExportProgress], None] | None = None,
) -> Prepared:
    """The shared transformers checkpoint of `model`, made once; a model given as a
    checkpoint folder is its own. `progress` sees the export while it runs (default: a
    LinePrinter on stderr)."""
    if model.source.format == "hf":
        source = model.source_path()
        return Prepared(source, source, {"sha256": source_sha256(model, root)}, built=False)
    return _stage(
        model,
        root,
        "checkpoint",
        CHECKPOINT,
        model.source_path(),
        source_sha256(model, root),
        CHECKPOINT.default_quantization,
        force,
        on_log,
        "checkpoint",
        progress,
    )


def find_checkpoint(model: Model, root: Path) -> Prepared | None:
    """The checkpoint prepared artifacts are exported from, if `prepare` made it (a
    transformers folder given as the model is its own checkpoint)."""
    if model.source.format == "hf":
        return checkpoint(model, root)
    return _found(root, model, "checkpoint", source_sha256(model, root), CHECKPOINT.default_quantization)


def find_artifact(
    model: Model, stage: str, quantization: str, root: Path, context: int | None = None
) -> Prepared | None:
    """The prepared artifact of (model, stage, quantization), if `prepare` made one; `stage`
    comes from artifact_stage. `context`: the smallest KV capacity it must hold, where its
    export fixes one (None: the one exported without --context)."""
    ckpt = find_checkpoint(model, root)
    if not ckpt:
        return None
    exporter = _stage_exporter(stage)
    if context is None or exporter is None or exporter.context is None:
        return _found(root, model, stage, ckpt.sha256, quantization)
    holding = [
        (capacity, _found(root, model, stage, ckpt.sha256, quantization, p.manifest.get("context_asked")))
        for p in prepared_contexts(root, model, stage, ckpt.sha256, quantization)
        if (capacity := p.manifest.get("context") or exporter.context) >= context
    ]
    return min(holding, key=lambda found: found[0])[1] if holding else None


def _found(
    root: Path, model: Model, stage: str, input_sha: str, quantization: str, context: int | None = None
) -> Prepared | None:
    """What `prepare` would give now where its exporter is installed to say (the cache may also
    hold results of other exporter versions), else the newest result: run time needs no exporter."""
    exporter = _stage_exporter(stage)
    try:
        key = exporter and stage_key(input_sha, exporter, quantization, context)
    except BenchError:  # the exporter is not installed here
        key = None
    current = key and lookup_stage(stage_folder(root, model, stage, key), input_sha, exporter, quantization)
    return current or newest(root, model, stage, input_sha, quantization, context)


def _stage_exporter(stage: str) -> Exporter | None:
    """The exporter whose results a cache stage holds."""
    if stage == "checkpoint":
        return CHECKPOINT
    from runners import load_class, registrations

    for name, reg in registrations().items():
        exporter = load_class(reg.target).exporter
        if exporter and artifact_stage(name, exporter) == stage:
            return exporter
    return None


def prepare_artifact(
    model: Model,
    runner_name: str,
    exporter: Exporter,
    quantization: str,
    root: Path,
    force: bool = False,
    on_log: Callable[[str], None] = lambda line: None,
    on_stage: Callable[[str], None] = lambda stage: None,
    progress: Callable[[ExportProgress], None] | None = None,
    context: int | None = None,
) -> Prepared:
    """The artifact of (model, runner, quantization): from the cache, else exported.
    `progress` sees each export while it runs (default: a LinePrinter on stderr). `context`:
    the KV capacity to export for, where the export fixes it (None: the exporter's own)."""
    if context is not None and exporter.context is None:
        raise BenchError(
            f"{runner_name} sizes its KV cache when it loads: --context does not apply to its export",
            "leave it out of `prepare --context`; a run profile's context_tokens sizes it",
            exit_code=2,
        )
    if quantization not in exporter.quantizations:
        raise BenchError(
            f"{runner_name} has no quantization '{quantization}'",
            f"choose one of: {', '.join(exporter.quantizations)}",
            exit_code=2,
        )
    on_stage("checkpoint")
    ckpt = checkpoint(model, root, on_log=on_log, progress=progress)
    check_family(runner_name, exporter, checkpoint_family(ckpt.path), quantization)
    on_stage(f"{runner_name} {quantization}")
    return _stage(
        model,
        root,
        artifact_stage(runner_name, exporter),
        exporter,
        ckpt.path,
        ckpt.sha256,
        quantization,
        force,
        on_log,
        f"{runner_name} {quantization}",
        progress,
        context,
    )


def select(
    runner_names: tuple[str, ...], quants: tuple[str, ...], with_context: bool = False
) -> list[tuple[str, Exporter, str]]:
    """(runner, exporter, quantization) to prepare, cheapest export first. Named runners must
    have an exporter; by default every available runner that has one (`with_context`: one whose
    export fixes the KV capacity). `quants` apply to each runner that offers them (default:
    each runner's own default)."""
    from runners import load_class, registrations

    regs = registrations()
    if runner_names:
        chosen = selection.select_runners(runner_names)
        for name in chosen:
            if load_class(regs[name].target).exporter is None:
                raise BenchError(
                    f"{name} needs no prepare step: it reads the model's source as shipped",
                    "leave it out of `prepare`",
                    exit_code=2,
                )
    else:
        chosen = selection.cheapest_first(
            [
                n
                for n, r in regs.items()
                if not r.hidden
                and (exporter := load_class(r.target).exporter) is not None
                and (exporter.context is not None or not with_context)
                and load_class(r.target).probe().available
            ]
        )
    if not chosen:
        raise BenchError("no installed runner needs a prepare step", "see `edgebench runners`")
    work = []
    for name in chosen:
        exporter = load_class(regs[name].target).exporter
        wanted = [q for q in quants if q in exporter.quantizations] if quants else [exporter.default_quantization]
        work += [(name, exporter, q) for q in wanted]
    if not work:
        raise BenchError(
            f"no selected runner offers quantization {', '.join(quants)}",
            "see the quantizations each runner offers in `edgebench runners`",
            exit_code=2,
        )
    return work
