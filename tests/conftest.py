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
