"""Portable artifacts: `edgebench bundle` packs prepared artifacts, each with its manifest,
into one tar; `edgebench unbundle` (and `run --artifacts`) installs them into another
machine's cache.

The unit is a manifest's folder (bench/artifacts/prepare.py): its files, sizes and sha256. A model
file read as shipped (llama.cpp's GGUF) travels as a unit of its own, whose manifest the
bundle writes. Installing is safe and atomic: absolute paths, `..`, links and special
files are refused; every file is checked against its manifest's sha256 in a private
folder; the unit's folder is renamed into place and its manifest written last, so nothing
half-copied is ever taken for a finished artifact.
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import shutil
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from bench import provenance
from bench.artifacts.cache import MANIFEST, cache_root, lookup
from bench.data.models import Artifact, _file_sha256
from bench.errors import BenchError
from bench.records import utc_now

INDEX = "bundle.json"
UNITS = "units"


@dataclass(frozen=True)
class Unit:
    rel: str  # the unit's folder under a cache root, posix
    manifest: dict
    files: dict[str, Path]  # path inside the unit -> the local file
    runner: str

    @property
    def artifact(self) -> str:
        return str(PurePosixPath(self.rel) / self.manifest["artifact"])


def digest(files: list[dict]) -> str:
    """A unit's sha256 as prepare computes it: over its files' paths and hashes."""
    return hashlib.sha256(json.dumps([(f["path"], f["sha256"]) for f in files]).encode()).hexdigest()


def unit_for(runner: str, artifact: Artifact, model_id: str, root: Path) -> Unit:
    """The unit holding a runner's artifact: its prepared folder, or (a model file read as
    shipped, or a user's file) a source unit described here."""
    for folder in (artifact.path, *artifact.path.parents):
        found = lookup(folder) if folder.is_dir() else None
        if found and (found.sha256 == artifact.sha256 or found.path == artifact.path):
            files = {f["path"]: folder / f["path"] for f in found.manifest["files"]}
            rel = (
                folder.relative_to(root).as_posix()
                if folder.is_relative_to(root)
                else f"{model_id}/{found.manifest['stage']}/{folder.name}"
            )
            return Unit(rel, found.manifest, files, runner)
    return _source_unit(runner, artifact, model_id)


def _source_unit(runner: str, artifact: Artifact, model_id: str) -> Unit:
    path = artifact.path
    if path.is_dir():
        files = {p.relative_to(path).as_posix(): p for p in sorted(path.rglob("*")) if p.is_file()}
        name = "."
    else:
        files, name = {path.name: path}, path.name
    described = [
        {"path": rel, "bytes": p.stat().st_size, "sha256": artifact.sha256 if p == path else _file_sha256(p)}
        for rel, p in files.items()
    ]
    manifest = {
        "model_id": model_id,
        "stage": "source",
        "tool": "as shipped",
        "quantization": artifact.quantization,
        "artifact": name,
        "files": described,
        "bytes": sum(f["bytes"] for f in described),
        "sha256": digest(described),
        "created_at": utc_now(),
        "edgebench_version": provenance.tool_version(),
    }
    return Unit(f"{model_id}/source/{manifest['sha256'][:16]}", manifest, files, runner)


def write(units: list[Unit], out: BinaryIO, stream: bool = False) -> int:
    """A tar of `units` (index first, each unit's manifest after its files); returns the
    bytes of file content written."""
    written = 0
    # dereference: a cache file that is a link travels as the file (a bundle holds no links)
    with tarfile.open(fileobj=out, mode="w|" if stream else "w", format=tarfile.PAX_FORMAT, dereference=True) as tar:
        index = {
            "edgebench_version": provenance.tool_version(),
            "created_at": utc_now(),
            "units": [
                {
                    "folder": u.rel,
                    "runner": u.runner,
                    "artifact": u.artifact,
                    "sha256": u.manifest["sha256"],
                    "quantization": u.manifest.get("quantization"),
                    "bytes": u.manifest["bytes"],
                }
                for u in units
            ],
        }
        _add_bytes(tar, INDEX, json.dumps(index, indent=2).encode())
        for unit in {u.rel: u for u in units}.values():  # runners sharing an artifact share its files
            for rel, path in unit.files.items():
                tar.add(str(path), arcname=f"{UNITS}/{unit.rel}/{rel}", recursive=False)
                written += path.stat().st_size
            _add_bytes(tar, f"{UNITS}/{unit.rel}/{MANIFEST}", json.dumps(unit.manifest, indent=2).encode())
    return written


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), 0o644
    tar.addfile(info, io.BytesIO(data))


def write_file(units: list[Unit], path: Path) -> int:
    partial = path.with_name(f".{path.name}.partial-{os.getpid()}")
    try:
        with partial.open("wb") as f:
            written = write(units, f)
        os.replace(partial, path)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise BenchError(f"cannot write bundle {path}: {exc.strerror}", "choose a writable path with --out") from None
    return written


@dataclass(frozen=True)
class Installed:
    units: list[dict]  # the bundle's index entries, "path" set to the artifact in the cache
    copied: int  # unit folders installed now (the others were already there)


def install(source: BinaryIO, root: Path | None = None, name: str = "bundle") -> Installed:
    """Unpack a bundle read from `source` into the cache at `root` (default: this
    machine's cache), verifying each unit before it takes its place."""
    root = cache_root(root)
    try:
        root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".bundle-partial-", dir=root))
    except OSError as exc:
        raise _os_error(exc, root) from None
    try:
        _unpack(source, staging, name)
        index = _read_index(staging, name)
        folders = {entry["folder"]: entry for entry in index["units"]}
        copied = sum(_place(staging / UNITS / folder, root / folder, entry, name) for folder, entry in folders.items())
        for entry in index["units"]:
            entry["path"] = str(root / entry["artifact"])
        return Installed(index["units"], copied)
    except OSError as exc:
        raise _os_error(exc, root) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def install_file(path: Path, root: Path | None = None) -> Installed:
    try:
        with path.open("rb") as f:
            return install(f, root, path.name)
    except FileNotFoundError:
        raise BenchError(f"bundle not found: {path}", "give the file `edgebench bundle --out` wrote") from None


def _os_error(exc: OSError, root: Path) -> BenchError:
    if exc.errno == errno.ENOSPC:
        return BenchError(
            f"disk full: no space left for the artifacts in {root}",
            "free space there, or give another cache with --cache / $EDGEBENCH_CACHE_DIR",
        )
    return BenchError(f"cannot install artifacts into {root}: {exc.strerror or exc}", "check the cache folder")


def _unpack(source: BinaryIO, staging: Path, name: str) -> None:
    """Every member a plain file or folder inside the bundle, else refused."""
    try:
        with tarfile.open(fileobj=source, mode="r|*") as tar:
            for member in tar:
                target = staging / _safe_name(member, name)
                if member.isdir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                with tar.extractfile(member) as data, target.open("wb") as out:
                    shutil.copyfileobj(data, out, 1 << 20)
    except (tarfile.TarError, EOFError) as exc:
        raise BenchError(
            f"{name} is not a complete edgebench bundle ({exc})",
            "make it again with `edgebench bundle`, and copy it whole",
        ) from None


def _safe_name(member: tarfile.TarInfo, name: str) -> PurePosixPath:
    path = PurePosixPath(member.name)
    why = (
        "an absolute path"
        if path.is_absolute()
        else "a '..' path"
        if ".." in path.parts
        else "a link"
        if member.issym() or member.islnk()
        else "a special file"
        if not (member.isfile() or member.isdir())
        else None
    )
    if why:
        raise BenchError(
            f"refused {name}: {member.name!r} is {why}; nothing was installed",
            "a bundle holds plain files only: make it with `edgebench bundle`",
        )
    return path


def _read_index(staging: Path, name: str) -> dict:
    try:
        index = json.loads((staging / INDEX).read_text())
        for entry in index["units"]:
            folder = PurePosixPath(entry["folder"])
            if folder.is_absolute() or ".." in folder.parts or len(folder.parts) != 3:
                raise ValueError(f"bad unit folder {entry['folder']!r}")
        return index
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise BenchError(
            f"refused {name}: its {INDEX} is missing or unreadable ({exc})", "make it again with `edgebench bundle`"
        ) from None


def _place(unit: Path, final: Path, entry: dict, name: str) -> int:
    """Move a verified unit into the cache, manifest last; 0 when the cache has it already."""
    manifest = _verified(unit, entry, name)
    present = lookup(final)
    if present and present.sha256 == manifest["sha256"]:
        return 0
    if final.exists():
        shutil.rmtree(final)  # unfinished (no manifest) or another content: replaced whole
    final.parent.mkdir(parents=True, exist_ok=True)
    text = (unit / MANIFEST).read_text()
    (unit / MANIFEST).unlink()
    unit.rename(final)
    partial = final / f".{MANIFEST}.partial"
    partial.write_text(text)
    os.replace(partial, final / MANIFEST)
    return 1


def _verified(unit: Path, entry: dict, name: str) -> dict:
    """The unit's manifest, once every file matches it and nothing else is there."""

    def refuse(why: str) -> BenchError:
        return BenchError(
            f"refused {name}: {entry['folder']}: {why}; nothing of it was installed",
            "the bundle was altered or damaged in transit: make it again with `edgebench bundle`",
        )

    try:
        manifest = json.loads((unit / MANIFEST).read_text())
        listed = {f["path"]: f for f in manifest["files"]}
    except (OSError, ValueError, KeyError, TypeError):
        raise refuse("no readable manifest") from None
    if manifest["sha256"] != entry["sha256"] or digest(manifest["files"]) != manifest["sha256"]:
        raise refuse("its manifest does not match the bundle's index")
    present = {p.relative_to(unit).as_posix() for p in unit.rglob("*") if p.is_file() and p.name != MANIFEST}
    if present != set(listed):
        raise refuse(f"files differ from its manifest ({', '.join(sorted(present ^ set(listed))[:3])})")
    for rel, f in listed.items():
        if (unit / rel).stat().st_size != f["bytes"] or _file_sha256(unit / rel) != f["sha256"]:
            raise refuse(f"{rel} does not match its sha256 in the manifest")
    return manifest


def cached_units(root: Path) -> dict[str, str]:
    """folder -> sha256 of every finished unit in a cache (model/stage/key)."""
    found = {}
    for path in root.glob(f"*/*/*/{MANIFEST}"):
        unit = lookup(path.parent)
        if unit:
            found[path.parent.relative_to(root).as_posix()] = unit.sha256
    return found


def human_bytes(count: int) -> str:
    return f"{count / 2**20:.1f} MB" if count >= 2**20 else f"{count} B"


def artifact_options(installed: Installed, runners: tuple[str, ...]) -> tuple[str, ...]:
    """--artifact RUNNER=PATH for each installed unit of the runners asked for (all when none)."""
    return tuple(f"{e['runner']}={e['path']}" for e in installed.units if not runners or e["runner"] in runners)
