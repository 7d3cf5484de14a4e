"""Many results files -> one table of only the columns a view needs, fast.

A million records are ~3 GB of JSONL, most of it raw token stamps, token ids and output
text that the matrix and compare never look at. Reading goes:

1. Cut. Records are written with their keys in FIELDS order (tests/unit/views/test_matrix.py checks
   that every column read here comes before them), so one regex over a whole file drops,
   on each line, everything from `"token_times_ns"` to the record's last `"status"` key.
   A line that does not cut that way stays whole. The cut text is parsed in one orjson
   call; any line that fails (a truncated write, a foreign file) sends the file down the
   plain per-line reader, so the fast path never changes a figure.
2. Encode. Each file becomes compact columns: numbers as float64 (NaN where missing),
   everything else as categorical codes. Parts from worker processes, one per core.
3. Cache. Each file's columns are kept under the edgebench cache folder, keyed by the
   file's path, size, modification time and the columns asked for, as raw arrays behind
   a JSON header: merging the same farm results again reads only those (LRU-bounded).
"""

from __future__ import annotations

import glob
import hashlib
import json
import operator
import os
import re
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import NamedTuple

import numpy as np
import orjson
import pandas as pd

from bench.errors import BenchError
from bench.paths import cache_home
from bench.records import SCHEMA_VERSION, iter_records, migrate, truncated_line_warning, warn_once

HEAVY = re.compile(rb', "token_times_ns": .*, "status": ')
# Keys around the cut: present in every record, so their presence proves a clean cut.
CUT_CHECK = {"schema_version", "cpu_percent", "status", "error"}
# Files per worker process below which a pool costs more than it saves.
POOL_MIN_FILES = 8
CACHE_MAGIC = b"EDGEBENCH-COLUMNS 1\n"
CACHE_LIMIT_BYTES = 2 << 30


class Coded(NamedTuple):
    """A text (or mixed) column: codes into categories, -1 where missing."""

    codes: np.ndarray  # int32
    categories: list


# One file's columns: float64 array, Coded, or None (every record lacks it).
Part = dict[str, "np.ndarray | Coded | None"]
ROWS = "__rows__"  # a part's length, needed when every column is None


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
        raise BenchError(
            f"no .jsonl results found in: {', '.join(targets)}", "run `edgebench run` first, or check the paths"
        )
    return unique


def _fast_records(data: bytes) -> list[dict] | None:
    """Every record of a file, heavy fields cut out, or None when any line resists."""
    slim = HEAVY.sub(b', "status": ', data).strip()
    if not slim:
        return []
    try:
        records = orjson.loads(b"[" + slim.replace(b"\n", b",") + b"]")
    except orjson.JSONDecodeError:
        return None
    if not all(type(r) is dict and r.keys() >= CUT_CHECK for r in records):
        return None
    versions = {r["schema_version"] for r in records}
    if any(type(v) is not int or v > SCHEMA_VERSION for v in versions):
        return None  # the plain reader says what is wrong
    return records if versions <= {SCHEMA_VERSION} else [migrate(r) for r in records]


def _encode(values: tuple) -> np.ndarray | Coded | None:
    kinds = set(map(type, values)) - {type(None)}
    if not kinds:
        return None
    if kinds <= {int, float}:
        return np.array(values, dtype=np.float64)
    codes, categories = pd.factorize(np.array(values, dtype=object))
    return Coded(codes.astype(np.int32), categories.tolist())


def _columns(records: list[dict], columns: tuple[str, ...]) -> list[tuple]:
    """The records' values column by column (None where a record lacks a key)."""
    try:
        return list(zip(*map(operator.itemgetter(*columns), records))) or [()] * len(columns)
    except KeyError:
        return [tuple(r.get(c) for r in records) for c in columns]


def read_file(path: Path, columns: tuple[str, ...]) -> Part:
    """The wanted columns of every record of one file."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise BenchError(f"cannot read results file {path}: {exc.strerror}", "check the path") from None
    records = _fast_records(data)
    if records is None:
        records = list(iter_records(path, warn=lambda message: None))  # `load` warns, cached or not
    part: Part = {c: _encode(values) for c, values in zip(columns, _columns(records, columns))}
    part[ROWS] = len(records)
    return part


def cache_dir() -> Path:
    if os.environ.get("EDGEBENCH_COLUMN_CACHE"):
        return Path(os.environ["EDGEBENCH_COLUMN_CACHE"])
    return cache_home() / "columns"


def _identity(path: Path, columns: tuple[str, ...]) -> str:
    try:
        stat = path.stat()
    except OSError as exc:
        raise BenchError(f"cannot read results file {path}: {exc.strerror}", "check the path") from None
    return json.dumps([str(path), stat.st_size, stat.st_mtime_ns, columns])


def _entry(identity: str) -> Path:
    return cache_dir() / (hashlib.sha256(identity.encode()).hexdigest()[:32] + ".columns")


def _store(entry: Path, identity: str, part: Part) -> None:
    floats = [c for c, v in part.items() if isinstance(v, np.ndarray)]
    cats = {c: v.categories for c, v in part.items() if isinstance(v, Coded)}
    header = json.dumps({"identity": identity, "rows": part[ROWS], "floats": floats, "categoricals": cats}).encode()
    blocks = [part[c].tobytes() for c in floats] + [part[c].codes.tobytes() for c in cats]
    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        tmp = entry.with_suffix(f".{os.getpid()}.partial")
        tmp.write_bytes(b"".join([CACHE_MAGIC, header, b"\n", *blocks]))
        os.replace(tmp, entry)
    except OSError:
        pass  # a cache that cannot be written only costs time


def _fetch(entry: Path, identity: str, columns: tuple[str, ...]) -> Part | None:
    """The cached columns of a file, or None when there are none (or they are damaged)."""
    try:
        data = entry.read_bytes()
        os.utime(entry)  # recently used: kept when the cache is pruned
    except OSError:
        return None
    try:
        end = data.index(b"\n", len(CACHE_MAGIC))
        header = json.loads(data[len(CACHE_MAGIC) : end]) if data.startswith(CACHE_MAGIC) else {}
        if header.get("identity") != identity:
            return None
        rows, offset = header["rows"], end + 1
        part: Part = dict.fromkeys(columns)
        part[ROWS] = rows
        for c in header["floats"]:
            part[c] = np.frombuffer(data, np.float64, rows, offset)
            offset += 8 * rows
        for c, categories in header["categoricals"].items():
            part[c] = Coded(np.frombuffer(data, np.int32, rows, offset), categories)
            offset += 4 * rows
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
    return part


def prune(limit_bytes: int = CACHE_LIMIT_BYTES) -> None:
    """Drop the least recently used cache entries beyond the limit."""
    try:
        entries = [(s.st_mtime_ns, s.st_size, e) for e in cache_dir().iterdir() for s in [e.stat()]]
    except OSError:
        return
    total = sum(size for _, size, _ in entries)
    for _, size, entry in sorted(entries):
        if total <= limit_bytes:
            break
        entry.unlink(missing_ok=True)
        total -= size


def _read_and_cache(args: tuple[list[Path], tuple[str, ...]]) -> list[Part]:
    paths, columns = args
    parts = []
    for path in paths:
        identity = _identity(path, columns)
        parts.append(read_file(path, columns))
        _store(_entry(identity), identity, parts[-1])
    return parts


def _column(pieces: list) -> np.ndarray | pd.Categorical:
    """One column over all parts; a row count stands for a file without the column."""
    kinds = {type(p) for p in pieces if not isinstance(p, int)}
    if kinds == {np.ndarray}:
        return np.concatenate([np.full(p, np.nan) if isinstance(p, int) else p for p in pieces])
    if not kinds:  # missing in every file
        return np.full(sum(pieces), None, dtype=object)
    if kinds == {Coded}:
        index: dict = {}
        codes = []
        for p in pieces:
            if isinstance(p, int):
                codes.append(np.full(p, -1, np.int32))
                continue
            lookup = np.array([index.setdefault(c, len(index)) for c in p.categories] + [-1], np.int32)
            codes.append(lookup[p.codes])  # -1 (missing) picks the last entry: -1
        return pd.Categorical.from_codes(np.concatenate(codes), categories=pd.Index(list(index), dtype=object))
    # Numbers in one file, text in another: plain objects.
    return np.concatenate(
        [
            np.full(p, None, dtype=object)
            if isinstance(p, int)
            else np.array(p.categories + [None], dtype=object)[p.codes]
            if isinstance(p, Coded)
            else np.where(np.isnan(p), None, p.astype(object))
            for p in pieces
        ]
    )


def load(paths: list[Path], columns: tuple[str, ...]) -> pd.DataFrame:
    """One frame of the wanted columns over all files: cached files read here, the others
    parsed in parallel (one worker per core) when there are enough of them."""
    identities = [_identity(p, columns) for p in paths]
    parts = [_fetch(_entry(i), i, columns) for i in identities]
    missing = [p for p, part in zip(paths, parts) if part is None]
    workers = min(os.cpu_count() or 1, 8)
    if len(missing) < POOL_MIN_FILES * 2 or workers < 2:
        read = _read_and_cache((missing, columns))
    else:
        size = -(-len(missing) // workers)
        chunks = [(missing[i : i + size], columns) for i in range(0, len(missing), size)]
        with ProcessPoolExecutor(workers) as pool:
            read = [part for chunk in pool.map(_read_and_cache, chunks) for part in chunk]
    if read:
        prune()
    fresh = iter(read)
    parts = [part if part is not None else next(fresh) for part in parts]
    for path, part in zip(paths, parts):
        _warn_if_truncated(path, part[ROWS])
    return pd.DataFrame({c: _column([p[c] if p[c] is not None else p[ROWS] for p in parts]) for c in columns})


def _warn_if_truncated(path: Path, rows: int) -> None:
    """A file whose last line was cut short (its records are read without it) says so on
    every read, from the cache too."""
    with path.open("rb") as f:
        if f.seek(0, 2) and (f.seek(-1, 2), f.read(1))[1] != b"\n":
            warn_once(truncated_line_warning(path, rows + 1))


def fill(frame: pd.DataFrame, columns: tuple[str, ...]) -> None:
    """Missing values of the given (grouping) columns shown as "–", so groups keep them."""
    for column in columns:
        values = frame[column]
        if isinstance(values.dtype, pd.CategoricalDtype) and "–" not in values.cat.categories:
            values = values.cat.add_categories(["–"])
        frame[column] = values.fillna("–")


def known(value):
    """A cell's value, or None where it is missing (NaN in number columns)."""
    return None if value is None or (isinstance(value, float) and value != value) else value


def groups(frame: pd.DataFrame | pd.Series, by: list):
    """Grouped as views need it: groups in order of appearance, missing keys kept as a group
    of their own, only the categories that occur."""
    return frame.groupby(by, sort=False, dropna=False, observed=True)


def numbers(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame's columns as float64; anything that is not a number becomes NaN."""
    return frame.apply(
        lambda c: pd.to_numeric(
            c.astype(object) if isinstance(c.dtype, pd.CategoricalDtype) else c, errors="coerce"
        ).astype(np.float64)
    )


def runner_on_accelerator(df: pd.DataFrame) -> pd.Categorical:
    """Each record's runner, named with the accelerator it ran on unless that is the CPU: one
    runtime's CPU and GPU results are different cells, never averaged (records older than
    schema 4, and those that do not say, ran on the CPU)."""
    fill(df, ("accelerator",))
    pairs = groups(df, ["runner", "accelerator"])
    names = pd.Index(
        [
            runner if accelerator in ("cpu", "–") else f"{runner} on {accelerator}"
            for runner, accelerator in pairs.size().index
        ]
    )
    unique = names.unique()
    return pd.Categorical.from_codes(unique.get_indexer(names)[pairs.ngroup().to_numpy()], unique)
