"""Shared test helpers: run the real CLI in-process or as a subprocess, write fake scripts."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def edgebench(*args: str, cwd: Path | None = None, env: dict | None = None, timeout: float = 600):
    """Run `edgebench ARGS` as a user would: a fresh process, real exit code and streams."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-c", "from bench.cli import main; main()", *args],
                          capture_output=True, text=True, cwd=cwd or ROOT, env=full_env, timeout=timeout)


@pytest.fixture
def fake_script(tmp_path):
    """Write a FAKE-runner script (see runners/fake.py) and return its path."""
    def write(**script) -> Path:
        path = tmp_path / f"fake-{len(list(tmp_path.glob('fake-*.json')))}.json"
        path.write_text(json.dumps(script))
        return path
    return write


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture(scope="session")
def artifact_cache() -> Path:
    """The tests' own artifact cache, kept between runs (entries are keyed by content
    hashes, so a kept entry is always the right one) so a second test run skips exports.
    Tests of export behaviour itself use a fresh folder instead."""
    root = Path(os.environ.get("EDGEBENCH_TEST_CACHE", Path.home() / ".cache" / "edgebench" / "test-artifacts"))
    root.mkdir(parents=True, exist_ok=True)
    return root


@pytest.fixture(scope="session")
def default_checkpoint(artifact_cache) -> Path:
    """The default model's shared transformers checkpoint, made through prepare."""
    from bench.data import models
    from bench.artifacts import prepare

    return prepare.checkpoint(models.get_model("smollm2-135m"), artifact_cache).path


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory, default_checkpoint) -> Path:
    """A 3 M-parameter random llama with the default model's tokenizer (tests/tiny_model.py)."""
    from tests.tiny_model import build_tiny_checkpoint

    return build_tiny_checkpoint(tmp_path_factory.mktemp("tiny-llama"), default_checkpoint)
