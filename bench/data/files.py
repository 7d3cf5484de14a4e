"""Data files under profiles/: find them by name or path, read TOML, build frozen
dataclasses that reject unknown and missing keys with a message naming the file."""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.resources
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import tomllib

from bench.errors import BenchError, unknown_name

T = TypeVar("T")


def packaged_dir(kind: str) -> Path:
    """The folder of packaged data files of one kind, e.g. "suites" or "runs"."""
    return Path(str(importlib.resources.files("profiles") / kind))


def packaged_names(kind: str) -> list[str]:
    return sorted(p.stem for p in packaged_dir(kind).glob("*.toml"))


def resolve(kind: str, name_or_path: str) -> Path:
    """A packaged name ("default") or a path to a .toml file."""
    candidate = Path(name_or_path)
    if candidate.suffix == ".toml" or "/" in name_or_path:
        if not candidate.is_file():
            raise BenchError(
                f"{kind[:-1]} file not found: {name_or_path}",
                f"give an existing .toml file or one of: {', '.join(packaged_names(kind))}",
            )
        return candidate
    packaged = packaged_dir(kind) / f"{name_or_path}.toml"
    if not packaged.is_file():
        raise unknown_name(kind[:-1], name_or_path, packaged_names(kind))
    return packaged


def read_toml(path: Path) -> tuple[dict[str, Any], str]:
    """The parsed table and the sha256 of the file's bytes."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise BenchError(f"cannot read {path}: {exc.strerror}", "check the path and its permissions") from None
    try:
        table = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise BenchError(f"{path} is not UTF-8 text", "save the file as UTF-8") from None
    except tomllib.TOMLDecodeError as exc:
        raise BenchError(f"{path} is not valid TOML: {exc}", "fix the syntax at the position given") from None
    return table, hashlib.sha256(raw).hexdigest()


def build(cls: type[T], table: Any, where: str) -> T:
    """Build a frozen dataclass from a TOML table: unknown keys, missing keys and values of
    the wrong type are errors naming `where` (the file and the entry)."""
    if not isinstance(table, dict):
        raise BenchError(f"{where}: expected a table, got {type(table).__name__}", "see profiles/ for examples")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    unknown = sorted(set(table) - set(fields))
    if unknown:
        raise BenchError(f"{where}: unknown key(s) {', '.join(unknown)}", f"allowed keys: {', '.join(sorted(fields))}")
    values = {}
    for name, f in fields.items():
        if name not in table:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise BenchError(f"{where}: missing key '{name}'", "see profiles/ for a complete example")
            continue
        values[name] = _check_type(table[name], hints[name], f"{where}: '{name}'")
    return cls(**values)


def _check_type(value: Any, hint: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        failures = {}
        for option in typing.get_args(hint):
            try:
                return _check_type(value, option, where)
            except BenchError as exc:
                failures[option] = exc
        real = [exc for option, exc in failures.items() if option is not type(None)]
        if len(real) == 1:
            raise real[0]  # an optional value: its own error says the most (e.g. a nested table's)
        raise BenchError(f"{where} has the wrong type ({type(value).__name__})", f"expected {hint}")
    if hint is type(None):
        if value is None:
            return None
        raise BenchError(f"{where} must be empty", "remove it")
    if origin is tuple:
        (item,) = typing.get_args(hint)[:1]
        if not isinstance(value, list):
            raise BenchError(f"{where} must be a list", "write it as [ ... ]")
        return tuple(_check_type(v, item, where) for v in value)
    if dataclasses.is_dataclass(hint):
        return build(hint, value, where)
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is Any or (
        isinstance(hint, type) and isinstance(value, hint) and not (hint is int and isinstance(value, bool))
    ):
        return value
    raise BenchError(
        f"{where} must be {getattr(hint, '__name__', hint)}, got {type(value).__name__}", "fix the value's type"
    )
