"""The artifact cache: where `prepare` keeps each stage's result, under which key, and how a
finished one is found.

A result lives at <cache>/<model>/<stage>/<quantization>-<key>, the key made of what the
exporter does: the input's sha256, the exporter's tool, its version, the quantization and
the exporter's `recipe` (a number its code bumps when its output changes). The exporter's
source file is not part of the key, so moving or reformatting it keeps every cached
artifact. Its manifest.json, written last, lists the files with sizes and sha256: a folder
without one is an export that never finished.

Caches made before the key took recipes (edgebench up to 0.1.0's layout move) keyed on the
exporter's module path and its source's sha256: `lookup_stage` adopts such a folder when it
is exactly what that source made (the exporter's `legacy_key`), by renaming it to its new key.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
from dataclasses import dataclass
from pathlib import Path

from bench.data.models import Model, _file_sha256, fingerprint
from bench.errors import BenchError
from bench.paths import cache_home
from runners.base import Exporter

MANIFEST = "manifest.json"


def cache_root(override: Path | None = None) -> Path:
    """--cache, else $EDGEBENCH_CACHE_DIR, else ~/.cache/edgebench/artifacts."""
    if override:
        return override
    if os.environ.get("EDGEBENCH_CACHE_DIR"):
        return Path(os.environ["EDGEBENCH_CACHE_DIR"])
    return cache_home() / "artifacts"


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
        raise BenchError(
            f"the exporter {exporter.tool} is not installed ({exporter.distribution})",
            f"pip install 'edgebench[{exporter.extra}]'",
        ) from None


def asked_context(exporter: Exporter, context: int | None) -> int | None:
    """A `prepare --context` that keys its own artifact: None for the exporter's own capacity,
    so artifacts made before contexts were asked keep their keys."""
    return None if context is None or context == exporter.context else context


def stage_key(input_sha256: str, exporter: Exporter, quantization: str, context: int | None = None) -> str:
    context = asked_context(exporter, context)
    material = json.dumps(
        {
            "input": input_sha256,
            "tool": exporter.tool,
            "version": exporter_version(exporter),
            "quantization": quantization,
            "recipe": exporter.recipe,
            **({"context": context} if context else {}),
        },
        sort_keys=True,
    )
    digest = hashlib.sha256(material.encode()).hexdigest()[:16]
    return f"{quantization}-{f'ctx{context}-' if context else ''}{digest}"


def legacy_stage_key(input_sha256: str, exporter: Exporter, quantization: str) -> str | None:
    """The key the exporter's recipe-1 output had before keys took recipes, if it had one."""
    if exporter.recipe != 1 or exporter.legacy_key is None:
        return None
    target, code = exporter.legacy_key
    material = json.dumps(
        {
            "input": input_sha256,
            "tool": exporter.tool,
            "target": target,
            "version": exporter_version(exporter),
            "code": code,
            "quantization": quantization,
        },
        sort_keys=True,
    )
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


def lookup_stage(folder: Path, input_sha256: str, exporter: Exporter, quantization: str) -> Prepared | None:
    """The finished result in `folder` (named by stage_key), adopting one a legacy key names."""
    found = lookup(folder)
    legacy = None if found else legacy_stage_key(input_sha256, exporter, quantization)
    if legacy and lookup(folder.with_name(legacy)):
        try:
            folder.with_name(legacy).rename(folder)
        except OSError:  # another process adopted it first, or the new key's folder appeared
            pass
        found = lookup(folder)
    return found


def source_sha256(model: Model, root: Path) -> str:
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


def describe_files(folder: Path) -> tuple[list[dict], str]:
    files = [
        {"path": str(p.relative_to(folder)), "bytes": p.stat().st_size, "sha256": _file_sha256(p)}
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != MANIFEST
    ]
    digest = hashlib.sha256(json.dumps([(f["path"], f["sha256"]) for f in files]).encode()).hexdigest()
    return files, digest


def newest(
    root: Path, model: Model, stage: str, input_sha: str, quantization: str, context: int | None = None
) -> Prepared | None:
    """The newest finished result of a stage made from `input_sha` (with the KV capacity
    `context` asked of `prepare --context`; None: the exporter's own). Run time needs no
    exporter installed, so this matches manifests rather than recomputing keys."""
    found = [
        p
        for p in prepared_contexts(root, model, stage, input_sha, quantization)
        if p.manifest.get("context_asked") == context
    ]
    return max(found, key=lambda p: p.manifest["created_at"], default=None)


def prepared_contexts(root: Path, model: Model, stage: str, input_sha: str, quantization: str) -> list[Prepared]:
    """Every finished result of a stage made from `input_sha` in `quantization`, whatever
    KV capacity it was exported with."""
    return [
        p
        for p in map(lookup, sorted((root / model.id / stage).glob("*")))
        if p and p.manifest.get("input_sha256") == input_sha and p.manifest.get("quantization") == quantization
    ]


def artifact_stage(runner_name: str, exporter: Exporter) -> str:
    """The cache folder of a runner's artifacts: its exporter's group if it has one (runners
    sharing an exporter share its artifacts), else the runner's own name."""
    return exporter.artifact_group or runner_name
