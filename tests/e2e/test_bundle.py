"""Portable artifacts: `edgebench bundle` / `unbundle` / `run --artifacts` with real files.

The bundled artifact is a FAKE-runner script (small, so the tests are quick); the packing,
verification and safety checks are the same for any unit. What is checked is what lands in
the cache (or does not), and what the CLI says.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest

from tests.support.helpers import edgebench, read_jsonl

SCRIPT = dict(load_ms=50, prefill_ms_per_token=1, first_token_ms=4, decode_ms=8, eos_after=5)


@pytest.fixture
def bundled(tmp_path, fake_script) -> tuple[Path, Path]:
    script = fake_script(**SCRIPT)
    path = tmp_path / "fake.bundle"
    result = edgebench("bundle", "--runner", "fake", "--artifact", f"fake={script}", "--out", str(path))
    assert result.returncode == 0, result.stderr
    return path, script


def _members(path: Path) -> dict[str, bytes]:
    with tarfile.open(path) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}


def _repack(path: Path, members: dict[str, bytes], extra: list[tarfile.TarInfo] = ()) -> None:
    with tarfile.open(path, "w") as tar:
        for info in extra:
            tar.addfile(info, io.BytesIO(b"x" * info.size) if info.isfile() else None)
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def _installed(cache: Path) -> list[Path]:
    return [p for p in cache.rglob("*") if p.is_file()] if cache.exists() else []


def test_unbundle_installs_each_file_with_its_manifest(bundled, tmp_path):
    path, script = bundled
    cache = tmp_path / "cache"
    result = edgebench("unbundle", str(path), "--cache", str(cache))
    assert result.returncode == 0, result.stderr
    assert "installed 1 artifacts, 0 already there" in result.stdout
    manifest = json.loads(next(cache.rglob("manifest.json")).read_text())
    copy = next(p for p in _installed(cache) if p.name == script.name)
    assert copy.read_bytes() == script.read_bytes()
    assert manifest["files"][0]["sha256"] == hashlib.sha256(script.read_bytes()).hexdigest()
    again = edgebench("unbundle", str(path), "--cache", str(cache))
    assert "installed 0 artifacts, 1 already there" in again.stdout


def test_run_with_a_bundle_runs_its_artifact(bundled, tmp_path):
    path, script = bundled
    result = edgebench(
        "run",
        "--artifacts",
        str(path),
        "--cache",
        str(tmp_path / "cache"),
        "--profile",
        "quick",
        "--out",
        str(tmp_path / "out"),
        "--threads",
        "1",
    )
    assert result.returncode == 0, result.stderr
    records = read_jsonl(next((tmp_path / "out").glob("*[0-9a-f].jsonl")))
    assert {r["runner"] for r in records} == {"fake"}
    assert {r["artifact_sha256"] for r in records} == {hashlib.sha256(script.read_bytes()).hexdigest()}
    assert all(r["artifact_path"].startswith(str(tmp_path / "cache")) for r in records)


def test_a_tampered_file_is_refused_and_nothing_installed(bundled, tmp_path):
    path, script = bundled
    members = _members(path)
    name = next(n for n in members if n.endswith(script.name))
    original = members[name]
    members[name] = original.replace(b"8", b"9", 1)  # same size, other content
    assert members[name] != original and len(members[name]) == len(original)
    _repack(path, members)
    cache = tmp_path / "cache"
    result = edgebench("unbundle", str(path), "--cache", str(cache))
    assert result.returncode == 1
    assert "does not match its sha256" in result.stderr and "Traceback" not in result.stderr
    assert _installed(cache) == []  # nothing, not even a partial folder's files


@pytest.mark.parametrize("member", ["../escape.txt", "/tmp/absolute.txt", "link", "fifo"])
def test_unsafe_members_are_refused(bundled, tmp_path, member):
    path, _ = bundled
    info = tarfile.TarInfo(member if member.endswith(".txt") else f"units/{member}")
    if member == "link":
        info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
    elif member == "fifo":
        info.type = tarfile.FIFOTYPE
    else:
        info.size = 1
    _repack(path, _members(path), [info])
    cache = tmp_path / "deep" / "cache"
    result = edgebench("unbundle", str(path), "--cache", str(cache))
    assert result.returncode == 1, result.stdout
    error = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(error) == 1 and "refused" in error[0] and "Traceback" not in result.stderr
    assert _installed(cache) == []
    assert not (tmp_path / "deep" / "escape.txt").exists() and not Path("/tmp/absolute.txt").exists()


def test_a_prepared_artifact_given_by_path_keeps_the_identity_it_has_in_the_cache(artifact_cache, default_checkpoint):
    """A bundle installs prepared folders elsewhere; runs of them must group with local runs."""
    from bench.artifacts import prepare as stages
    from bench.data import models

    model = models.get_model("smollm2-135m")
    found = stages.find_artifact(model, "onnxruntime", "fp32", artifact_cache)
    if found is None:
        pytest.skip("no fp32 ONNX export in the test cache yet")
    given = models.artifact_for(model, "onnx", str(found.path))
    assert (given.sha256, given.bytes, given.quantization) == (found.sha256, found.manifest["bytes"], "fp32")
