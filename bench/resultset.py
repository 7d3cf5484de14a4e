"""Many results files -> one table of only the columns a view needs, fast.

Records carry raw token stamps, token ids and output text that the matrix and compare
never look at; parsing them dominates reading. Records are written with their keys in
FIELDS order, so the heavy fields sit together before `status`: each line is cut to the
part before `"token_times_ns"` plus the part from the last `"status"` key, and only that
is parsed, all lines of a file in one call. A line where the cut does not give valid JSON
with the keys around the cut is parsed whole, so the fast path never changes a figure.

Parsing is still the cost, so the columns read from a file are cached (columnar JSON under
the edgebench cache folder, keyed by the file's path, size and modification time and the
columns asked for): merging the same farm results again reads only the caches.
"""
from __future__ import annotations

import glob
import hashlib
import json
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pandas as pd

from bench.errors import BenchError
from bench.records import SCHEMA_VERSION, migrate

HEAVY_START = b', "token_times_ns": '
TAIL_START = b'"status": '
# Files per worker process below which a pool costs more than it saves.
POOL_MIN_FILES = 8


def expand(targets: list[str]) -> list[Path]:
    """Results files named by paths, folders (every *.jsonl below) and glob patterns."""
    found: list[Path] = []
    for target in targets:
        path = Path(target)
        if path.is_dir():
            found += sorted(path.rglob("*.jsonl"))
        elif path.is_file():
            found.append(path)
        elif any(ch in target for ch in "*?["):
            found += sorted(Path(p) for p in glob.glob(target, recursive=True) if p.endswith(".jsonl"))
        else:
            raise BenchError(f"no such results file or folder: {target}", "give .jsonl files, folders or glob patterns")
    unique = list(dict.fromkeys(p.resolve() for p in found))
    if not unique:
        raise BenchError(f"no .jsonl results found in: {', '.join(targets)}", "run `edgebench run` first, or check the paths")
    return unique


# Keys around the cut: present in every record, so their presence proves a clean cut.
CUT_CHECK = ("schema_version", "cpu_percent", "status", "error")


def _slim(line: bytes) -> dict:
    cut = line.find(HEAVY_START)
    tail = line.rfind(TAIL_START)
    if cut > 0 and tail > cut:
        try:
            record = json.loads(line[:cut] + b", " + line[tail:])
            if all(c in record for c in CUT_CHECK):
                return record
        except ValueError:
            pass
    return json.loads(line)


def _fast_parse(lines: list[bytes]) -> list[dict] | None:
    """Every line's record from one json.loads call over the cut lines, or None when any
    line does not cut cleanly (the caller then parses line by line)."""
    slims = []
    for line in lines:
        cut, tail = line.find(HEAVY_START), line.rfind(TAIL_START)
        if not line.strip():
            continue
        if not (0 < cut < tail):
            return None
        slims.append(line[:cut] + b", " + line[tail:])
    try:
        records = json.loads(b"[" + b",".join(slims) + b"]")
    except ValueError:
        return None
    if not all(isinstance(r, dict) and all(c in r for c in CUT_CHECK) for r in records):
        return None
    return records


def read_file(path: Path, columns: tuple[str, ...]) -> list[tuple]:
    """The wanted columns of every record of one file (None where a record lacks one)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise BenchError(f"cannot read results file {path}: {exc.strerror}", "check the path") from None
    lines = data.split(b"\n")
    fast = _fast_parse(lines)
    if fast is not None and all(isinstance(r.get("schema_version"), int) and r["schema_version"] <= SCHEMA_VERSION
                                for r in fast):
        return [tuple(migrate(r).get(c) for c in columns) for r in fast]
    rows = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = _slim(line)
        except ValueError:
            if number == len(lines) and line.startswith(b'{"schema_version"'):
                continue  # the last write of an interrupted run was cut short
            raise BenchError(f"{path}:{number} is not a JSON record",
                             "give edgebench results files (.jsonl written by `edgebench run`)") from None
        version = record.get("schema_version") if isinstance(record, dict) else None
        if not isinstance(version, int):
            raise BenchError(f"{path}:{number} is not an edgebench record (no schema_version)",
                             "give edgebench results files (.jsonl written by `edgebench run`)")
        if version > SCHEMA_VERSION:
            raise BenchError(f"{path}:{number} has schema_version {version}, newer than this edgebench ({SCHEMA_VERSION})",
                             "upgrade edgebench: pip install -U edgebench")
        record = migrate(record)
        rows.append(tuple(record.get(c) for c in columns))
    return rows


def cache_dir() -> Path:
    if os.environ.get("EDGEBENCH_COLUMN_CACHE"):
        return Path(os.environ["EDGEBENCH_COLUMN_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "edgebench" / "columns"


def cached_read(path: Path, columns: tuple[str, ...]) -> list[tuple]:
    """read_file, through the column cache."""
    try:
        stat = path.stat()
    except OSError as exc:
        raise BenchError(f"cannot read results file {path}: {exc.strerror}", "check the path") from None
    identity = json.dumps([str(path), stat.st_size, stat.st_mtime_ns, columns])
    entry = cache_dir() / (hashlib.sha256(identity.encode()).hexdigest()[:32] + ".json")
    try:
        cached = json.loads(entry.read_bytes())
        if cached["identity"] == identity:
            return list(zip(*cached["columns"])) if cached["columns"] else []
    except (OSError, ValueError, KeyError, TypeError):
        pass
    rows = read_file(path, columns)
    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        tmp = entry.with_suffix(f".{os.getpid()}.partial")
        tmp.write_text(json.dumps({"identity": identity, "columns": [list(c) for c in zip(*rows)]}))
        os.replace(tmp, entry)
    except OSError:
        pass  # a cache that cannot be written only costs time
    return rows


def _read_many(args: tuple[list[Path], tuple[str, ...]]) -> list[tuple]:
    paths, columns = args
    return [row for p in paths for row in cached_read(p, columns)]


def load(paths: list[Path], columns: tuple[str, ...]) -> pd.DataFrame:
    """One frame of the wanted columns over all files; files read in parallel when many."""
    workers = min(os.cpu_count() or 1, 8)
    if len(paths) < POOL_MIN_FILES * 2 or workers < 2:
        rows = _read_many((paths, columns))
    else:
        chunks = [(paths[i::workers], columns) for i in range(workers)]
        with ProcessPoolExecutor(workers) as pool:
            rows = [row for part in pool.map(_read_many, chunks) for row in part]
    frame = pd.DataFrame.from_records(rows, columns=list(columns))
    return frame
