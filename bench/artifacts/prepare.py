"""`edgebench prepare`: one logical model -> one artifact per runtime, cached.

Stages: the model's source (a GGUF) -> the shared transformers checkpoint -> each
runner's artifact, made by that runtime's own exporter in a child process. Each result
lives in the cache under a key made of the input's hash, the exporter and its version, and
the quantization; its manifest.json (written last) lists its files with sizes and sha256.
A folder without a manifest is an export that never finished: it is removed and redone.

While an export runs, a progress callable sees its stage (named by the exporter), elapsed
time and an estimate: the last export of the same model, exporter and quantization on
this machine (timings.json beside the cache), else a typical figure. The default prints
plain lines for logs: one per stage and a heartbeat every few seconds.
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import psutil

from bench import provenance, selection
from bench.artifacts.checkpoint import EXPORTER as CHECKPOINT
from bench.errors import BenchError
from bench.data.models import Model, _file_sha256, checkpoint_family, family_name, fingerprint
from bench.records import utc_now
from runners.base import Exporter

MANIFEST = "manifest.json"
LOG_TAIL_LINES = 15
TIMINGS = "timings.json"  # beside the cache: how long each export last took on this machine
POLL_S = 0.5
# Logs get a progress line at least this often while an export runs (never minutes of silence).
HEARTBEAT_S = 5.0
# What a first export takes on a 2-core x86 (AMD EPYC, 2.6 GHz) with the default model
# (SmolLM2-135M), from RECIPES.md and this machine's cache manifests: shown until this machine
# has its own figure in timings.json.
TYPICAL_SECONDS = {
    ("bench.artifacts.checkpoint:from_gguf", "fp32"): 150,
    ("runners.executorch_export:export", "8da4w"): 720,
    ("runners.executorch_export:export", "fp32"): 720,
    ("runners.litert_export:export", "int8"): 220,
    ("runners.litert_export:export", "fp32"): 220,
    ("runners.onnxruntime_export:export", "int4"): 12,
    ("runners.onnxruntime_export:export", "fp32"): 10,
    ("runners.mlx_export:export", "4bit"): 7,
    ("runners.mlx_export:export", "fp32"): 7,
}
TYPICAL_BASIS = "typical on a 2-core x86 for SmolLM2-135M"


def cache_root(override: Path | None = None) -> Path:
    """--cache, else $EDGEBENCH_CACHE_DIR, else ~/.cache/edgebench/artifacts."""
    if override:
        return override
    if os.environ.get("EDGEBENCH_CACHE_DIR"):
        return Path(os.environ["EDGEBENCH_CACHE_DIR"])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "edgebench" / "artifacts"


@dataclass(frozen=True)
class Prepared:
    path: Path  # the artifact (file or folder) a runner loads
    folder: Path
    manifest: dict
    built: bool  # False: found in the cache

    @property
    def sha256(self) -> str:
        return self.manifest["sha256"]


def exporter_version(exporter: Exporter) -> str:
    try:
        return importlib.metadata.version(exporter.distribution)
    except importlib.metadata.PackageNotFoundError:
        raise BenchError(f"the exporter {exporter.tool} is not installed ({exporter.distribution})",
                         f"pip install 'edgebench[{exporter.extra}]'") from None


def exporter_code_sha256(exporter: Exporter) -> str:
    """The exporter module's own source: options fixed in its code are part of the key."""
    spec = importlib.util.find_spec(exporter.target.partition(":")[0])
    return _file_sha256(Path(spec.origin)) if spec and spec.origin else "unknown"


def stage_key(input_sha256: str, exporter: Exporter, quantization: str) -> str:
    material = json.dumps({"input": input_sha256, "tool": exporter.tool, "target": exporter.target,
                           "version": exporter_version(exporter), "code": exporter_code_sha256(exporter),
                           "quantization": quantization}, sort_keys=True)
    return f"{quantization}-{hashlib.sha256(material.encode()).hexdigest()[:16]}"


def stage_folder(root: Path, model: Model, stage: str, key: str) -> Path:
    return root / model.id / stage / key


def lookup(folder: Path) -> Prepared | None:
    manifest_path = folder / MANIFEST
    if not manifest_path.is_file():
        return None
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, ValueError):
        return None
    return Prepared(folder / manifest["artifact"], folder, manifest, built=False)


def _source_sha256(model: Model, root: Path) -> str:
    """Fingerprint of the source, remembered beside the cache by path, size and mtime."""
    source = model.source_path()
    files = [p for p in source.rglob("*") if p.is_file()] if source.is_dir() else [source]
    memo = root / model.id / "source-sha256.json"
    stamp = [str(source), sum(p.stat().st_size for p in files), max(p.stat().st_mtime_ns for p in files)]
    try:
        saved = json.loads(memo.read_text())
        if saved["stamp"] == stamp:
            return saved["sha256"]
    except (OSError, ValueError, KeyError):
        pass
    digest = fingerprint(source)
    memo.parent.mkdir(parents=True, exist_ok=True)
    memo.write_text(json.dumps({"stamp": stamp, "sha256": digest}))
    return digest


def _describe_files(folder: Path) -> tuple[list[dict], str]:
    files = [{"path": str(p.relative_to(folder)), "bytes": p.stat().st_size, "sha256": _file_sha256(p)}
             for p in sorted(folder.rglob("*")) if p.is_file() and p.name != MANIFEST]
    digest = hashlib.sha256(json.dumps([(f["path"], f["sha256"]) for f in files]).encode()).hexdigest()
    return files, digest


def _export(exporter: Exporter, input_path: Path, folder: Path, quantization: str, describe: dict,
            on_log: Callable[[str], None], show: Callable[[str, float], None]) -> Prepared:
    """Run the exporter into a private folder; move it into place only when complete.
    `show(stage, elapsed_s)` is called every POLL_S with the stage the exporter last named."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    if folder.exists():  # no manifest: not a finished export
        shutil.rmtree(folder)
    _sweep_abandoned(folder)
    partial = Path(tempfile.mkdtemp(prefix=f"{_partial_prefix(folder)}{os.getpid()}-", dir=folder.parent))
    out, log_path, result_path = partial / "out", partial / "export.log", partial / "result.json"
    stage_read, stage_write = os.pipe()  # the exporter names its stages on its own fd
    job = {"target": exporter.target, "input": str(input_path), "out": str(out),
           "quantization": quantization, "result": str(result_path), "stage_fd": stage_write}
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    started = time.monotonic()
    stages = _StageReader(stage_read)
    proc = None
    try:
        out.mkdir()
        with log_path.open("wb") as log, tempfile.TemporaryDirectory(prefix="edgebench-export-") as cwd:
            proc = subprocess.Popen([sys.executable, "-m", "bench.artifacts.export_worker"], stdin=subprocess.PIPE,
                                    stdout=log, stderr=subprocess.STDOUT, cwd=cwd, env=env, pass_fds=(stage_write,))
            os.close(stage_write)
            stage_write = None
            proc.stdin.write(json.dumps(job).encode())
            proc.stdin.close()
            while proc.poll() is None:
                time.sleep(POLL_S)
                for stage in stages.read() or [stages.stage]:  # every stage named, even a brief one
                    show(stage, time.monotonic() - started)
                on_log(_last_line(log_path))
            for stage in stages.read():
                show(stage, time.monotonic() - started)
        if proc.returncode != 0:
            tail = "\n".join(log_path.read_text(errors="replace").strip().splitlines()[-LOG_TAIL_LINES:])
            raise BenchError(f"{exporter.tool} failed (exit {proc.returncode}); its last lines:\n{tail}",
                             "fix the cause above and run `edgebench prepare` again; nothing was cached")
        result = json.loads(result_path.read_text())
        files, digest = _describe_files(out)
        manifest = {**describe, "tool": exporter.tool, "tool_version": exporter_version(exporter),
                    "quantization": quantization, "options": {k: v for k, v in result.items() if k != "artifact"},
                    "artifact": result["artifact"], "files": files, "bytes": sum(f["bytes"] for f in files),
                    "sha256": digest, "export_seconds": round(time.monotonic() - started, 1),
                    "created_at": utc_now(), "edgebench_version": provenance.tool_version()}
        (out / MANIFEST).write_text(json.dumps(manifest, indent=2))
        try:
            out.rename(folder)  # atomic: the folder appears complete, manifest included, or not at all
        except OSError:
            if not lookup(folder):
                raise
            # Another prepare finished the same artifact first: same key, same content.
            return lookup(folder)
    finally:
        if proc is not None and proc.poll() is None:  # interrupted: the exporter goes too
            proc.kill()
            proc.wait()
        for fd in (stage_read, stage_write):
            if fd is not None:
                os.close(fd)
        shutil.rmtree(partial, ignore_errors=True)
    return Prepared(folder / manifest["artifact"], folder, manifest, built=True)


class _StageReader:
    """The stage names an exporter writes, one a line, to its stage fd (read without waiting)."""

    def __init__(self, fd: int):
        os.set_blocking(fd, False)
        self.fd, self.pending, self.stage = fd, b"", "starting"

    def read(self) -> list[str]:
        """The stages named since the last call, in order."""
        try:
            while chunk := os.read(self.fd, 4096):
                self.pending += chunk
        except BlockingIOError:
            pass
        *done, self.pending = self.pending.split(b"\n")
        named = [line.decode(errors="replace").strip() for line in done if line.strip()]
        self.stage = named[-1] if named else self.stage
        return named


def _partial_prefix(folder: Path) -> str:
    return f".{folder.name}.partial-"


def _sweep_abandoned(folder: Path) -> None:
    """Remove the private folders of exports whose process is gone (killed outright, so
    it could not clean up). Folder names carry the owner's pid."""
    for partial in folder.parent.glob(_partial_prefix(folder) + "*"):
        pid = partial.name[len(_partial_prefix(folder)):].split("-", 1)[0]
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


@dataclass(frozen=True)
class Estimate:
    seconds: float | None
    basis: str  # where the figure comes from, said beside it


@dataclass(frozen=True)
class ExportProgress:
    """One look at a running export: what a progress display shows."""
    label: str  # e.g. "executorch 8da4w"
    stage: str  # the stage the exporter last named ("starting" before the first, "done" at the end)
    elapsed_s: float
    estimate: Estimate

    def status(self) -> str:
        if self.stage == "done":
            return f"done in {_duration(self.elapsed_s)}"
        if self.estimate.seconds is None:
            return f"{self.stage}, {_duration(self.elapsed_s)} elapsed ({self.estimate.basis})"
        return (f"{self.stage}, {_duration(self.elapsed_s)} elapsed of ~{_duration(self.estimate.seconds)} "
                f"({self.estimate.basis})")

    def line(self) -> str:
        return f"prepare {self.label}: {self.status()}"


class LinePrinter:
    """Progress for logs and CI: a line whenever the stage changes, and a heartbeat at
    least every `heartbeat_s` (default $EDGEBENCH_HEARTBEAT_S, else HEARTBEAT_S) between."""

    def __init__(self, stream=None, heartbeat_s: float | None = None):
        self.stream = stream
        self.heartbeat_s = heartbeat_s or float(os.environ.get("EDGEBENCH_HEARTBEAT_S") or HEARTBEAT_S)
        self.shown, self.printed_at = None, 0.0

    def __call__(self, progress: ExportProgress) -> None:
        now = time.monotonic()
        if (progress.label, progress.stage) != self.shown or now - self.printed_at >= self.heartbeat_s:
            print(progress.line(), file=self.stream or sys.stderr, flush=True)
            self.shown, self.printed_at = (progress.label, progress.stage), now


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def _timing_key(model: Model, exporter: Exporter, quantization: str) -> str:
    return f"{model.id} | {exporter.target} | {quantization}"


def _read_timings(root: Path) -> dict:
    try:
        return json.loads((root / TIMINGS).read_text())
    except (OSError, ValueError):
        return {}


def estimate(model: Model, exporter: Exporter, quantization: str, root: Path) -> Estimate:
    """How long this export should take: the last one of the same model, exporter and
    quantization on this machine, else the typical figure, else none."""
    last = _read_timings(root).get(_timing_key(model, exporter, quantization))
    if last:
        return Estimate(last["seconds"], f"last export here took {_duration(last['seconds'])}")
    typical = TYPICAL_SECONDS.get((exporter.target, quantization))
    if typical:
        return Estimate(typical, TYPICAL_BASIS)
    return Estimate(None, "no estimate: first export of this kind here")


def _remember_timing(model: Model, exporter: Exporter, quantization: str, root: Path, seconds: float) -> None:
    timings = _read_timings(root)
    timings[_timing_key(model, exporter, quantization)] = {"seconds": seconds, "at": utc_now()}
    (root / TIMINGS).write_text(json.dumps(timings, indent=2, sort_keys=True))


def _stage(model: Model, root: Path, stage: str, exporter: Exporter, input_path: Path, input_sha: str,
           quantization: str, force: bool, on_log: Callable[[str], None], label: str,
           progress: Callable[[ExportProgress], None] | None) -> Prepared:
    folder = stage_folder(root, model, stage, stage_key(input_sha, exporter, quantization))
    found = None if force else lookup(folder)
    if found:
        return found
    describe = {"model_id": model.id, "stage": stage, "source": str(model.source_path()),
                "source_sha256": _source_sha256(model, root), "input": str(input_path), "input_sha256": input_sha}
    show_progress = progress or LinePrinter()
    expected = estimate(model, exporter, quantization, root)

    def show(step: str, elapsed_s: float) -> None:
        show_progress(ExportProgress(label, step, elapsed_s, expected))

    done = _export(exporter, input_path, folder, quantization, describe, on_log, show)
    if done.built:
        _remember_timing(model, exporter, quantization, root, done.manifest["export_seconds"])
        show("done", done.manifest["export_seconds"])
    return done


def checkpoint(model: Model, root: Path, force: bool = False, on_log: Callable[[str], None] = lambda line: None,
               progress: Callable[[ExportProgress], None] | None = None) -> Prepared:
    """The shared transformers checkpoint of `model`, made once; a model given as a
    checkpoint folder is its own. `progress` sees the export while it runs (default: a
    LinePrinter on stderr)."""
    if model.source.format == "hf":
        source = model.source_path()
        return Prepared(source, source, {"sha256": _source_sha256(model, root)}, built=False)
    return _stage(model, root, "checkpoint", CHECKPOINT, model.source_path(), _source_sha256(model, root),
                  CHECKPOINT.default_quantization, force, on_log, "checkpoint", progress)


def _newest(root: Path, model: Model, stage: str, input_sha: str, quantization: str) -> Prepared | None:
    """The newest finished result of a stage made from `input_sha`. Run time needs no
    exporter installed, so this matches manifests rather than recomputing keys."""
    found = [p for p in map(lookup, sorted((root / model.id / stage).glob("*"))) if p
             and p.manifest.get("input_sha256") == input_sha and p.manifest.get("quantization") == quantization]
    return max(found, key=lambda p: p.manifest["created_at"], default=None)


def artifact_stage(runner_name: str, exporter: Exporter) -> str:
    """The cache folder of a runner's artifacts: its exporter's group if it has one (runners
    sharing an exporter share its artifacts), else the runner's own name."""
    return exporter.artifact_group or runner_name


def find_checkpoint(model: Model, root: Path) -> Prepared | None:
    """The checkpoint prepared artifacts are exported from, if `prepare` made it (a
    transformers folder given as the model is its own checkpoint)."""
    if model.source.format == "hf":
        return checkpoint(model, root)
    return _newest(root, model, "checkpoint", _source_sha256(model, root), CHECKPOINT.default_quantization)


def find_artifact(model: Model, stage: str, quantization: str, root: Path) -> Prepared | None:
    """The prepared artifact of (model, stage, quantization), if `prepare` made one; `stage`
    comes from artifact_stage."""
    ckpt = find_checkpoint(model, root)
    return ckpt and _newest(root, model, stage, ckpt.sha256, quantization)


def prepare_artifact(model: Model, runner_name: str, exporter: Exporter, quantization: str, root: Path,
                     force: bool = False, on_log: Callable[[str], None] = lambda line: None,
                     on_stage: Callable[[str], None] = lambda stage: None,
                     progress: Callable[[ExportProgress], None] | None = None) -> Prepared:
    """The artifact of (model, runner, quantization): from the cache, else exported.
    `progress` sees each export while it runs (default: a LinePrinter on stderr)."""
    if quantization not in exporter.quantizations:
        raise BenchError(f"{runner_name} has no quantization '{quantization}'",
                         f"choose one of: {', '.join(exporter.quantizations)}", exit_code=2)
    on_stage("checkpoint")
    ckpt = checkpoint(model, root, on_log=on_log, progress=progress)
    check_family(runner_name, exporter, checkpoint_family(ckpt.path), quantization)
    on_stage(f"{runner_name} {quantization}")
    return _stage(model, root, artifact_stage(runner_name, exporter), exporter, ckpt.path, ckpt.sha256,
                  quantization, force, on_log, f"{runner_name} {quantization}", progress)


class Unsupported(BenchError):
    """A (family, runner, quantization) its exporter does not take: found before it runs."""


def family_support(exporter: Exporter) -> dict[str, tuple[str, ...] | str]:
    """The exporter's own declaration (FAMILY_SUPPORT in its module): per family, the
    quantizations it converts or why it converts none. Imports no runtime."""
    return getattr(importlib.import_module(exporter.target.partition(":")[0]), "FAMILY_SUPPORT", {})


def support_cells(family: str) -> dict[str, tuple[str, ...] | str]:
    """Per visible runner: the quantizations it takes `family` in (a tuple), or why it takes
    none (a str). A runner without an exporter reads a file of its own format as shipped,
    whatever the family: its cell says so."""
    from runners import load_class, registrations

    cells = {}
    for name, reg in registrations().items():
        cls = load_class(reg.target)
        if reg.hidden:
            continue
        if cls.exporter is None:
            cells[name] = (f"its {cls.artifact_kind} file (--artifact)",)
            continue
        cells[name] = family_support(cls.exporter).get(family, f"{family} is not declared for {cls.exporter.tool}")
    return cells


def check_family(runner_name: str, exporter: Exporter, family: str, quantization: str) -> None:
    """Raise Unsupported unless `runner_name`'s exporter declares `family` at `quantization`.
    An exporter that declares no family at all (a plugin's) is left to try: its own errors
    are reported like any failed export."""
    if not family_support(exporter):
        return
    cells = support_cells(family)
    declared = cells.get(runner_name, family_support(exporter).get(family))
    if isinstance(declared, tuple) and quantization in declared:
        return
    why = declared if isinstance(declared, str) else f"only {', '.join(declared)} is converted"
    takers = [f"{name} ({', '.join(cell)})" for name, cell in cells.items() if name != runner_name
              and isinstance(cell, tuple)]
    raise Unsupported(f"{runner_name} cannot take {family_name(family)} at {quantization}: {why}",
                      f"runners that take {family}: {', '.join(takers) or 'none'}", exit_code=2)


def select(runner_names: tuple[str, ...], quants: tuple[str, ...]) -> list[tuple[str, Exporter, str]]:
    """(runner, exporter, quantization) to prepare. Named runners must have an exporter;
    by default every available runner that has one. `quants` apply to each runner that
    offers them (default: each runner's own default)."""
    from runners import load_class, registrations

    regs = registrations()
    if runner_names:
        chosen = selection.select_runners(runner_names)
        for name in chosen:
            if load_class(regs[name].target).exporter is None:
                raise BenchError(f"{name} needs no prepare step: it reads the model's source as shipped",
                                 "leave it out of `prepare`", exit_code=2)
    else:
        chosen = [n for n, r in regs.items() if not r.hidden and load_class(r.target).exporter is not None
                  and load_class(r.target).probe().available]
    if not chosen:
        raise BenchError("no installed runner needs a prepare step", "see `edgebench runners`")
    work = []
    for name in chosen:
        exporter = load_class(regs[name].target).exporter
        wanted = [q for q in quants if q in exporter.quantizations] if quants else [exporter.default_quantization]
        work += [(name, exporter, q) for q in wanted]
    if not work:
        raise BenchError(f"no selected runner offers quantization {', '.join(quants)}",
                         "see the quantizations each runner offers in `edgebench runners`", exit_code=2)
    return work
