"""Fixtures the tests share (helpers they import are in tests/support/helpers.py)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.support import exports_ahead
from tests.support.helpers import ROOT, SCRIPTED_EXPORT_PLUGIN, edgebench, install_plugin


def _test_cache() -> Path:
    from bench.paths import cache_home

    root = Path(os.environ.get("EDGEBENCH_TEST_CACHE") or cache_home() / "test-artifacts")
    root.mkdir(parents=True, exist_ok=True)
    return root


def pytest_collection_finish(session):
    """Tests that need the slowest exports collected: those start now, on the core the tests leave idle."""
    if not session.config.option.collectonly and any(
        item.path.name in exports_ahead.NEEDED_BY for item in session.items
    ):
        exports_ahead.start(_test_cache())


def pytest_sessionfinish(session):
    exports_ahead.stop()


@pytest.fixture
def fake_script(tmp_path):
    """Write a FAKE-runner script (see runners/fake.py) and return its path."""

    def write(**script) -> Path:
        path = tmp_path / f"fake-{len(list(tmp_path.glob('fake-*.json')))}.json"
        path.write_text(json.dumps(script))
        return path

    return write


@pytest.fixture(scope="session")
def artifact_cache() -> Path:
    """The tests' own artifact cache, kept between runs (entries are keyed by content
    hashes, so a kept entry is always the right one) so a second test run skips exports.
    Tests of export behaviour itself use a fresh folder instead."""
    return _test_cache()


@pytest.fixture(scope="session")
def default_checkpoint(artifact_cache) -> Path:
    """The default model's shared transformers checkpoint, made through prepare."""
    from bench.artifacts import prepare
    from bench.data import models

    exports_ahead.wait_for(*exports_ahead.CHECKPOINT)
    return prepare.checkpoint(models.get_model(exports_ahead.DEFAULT_MODEL), artifact_cache).path


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory, default_checkpoint) -> Path:
    """A 3 M-parameter random llama with the default model's tokenizer (tests/support/tiny_model.py)."""
    from tests.support.tiny_model import TINY_FOLDER, build_tiny_checkpoint

    return build_tiny_checkpoint(tmp_path_factory.mktemp("tiny") / TINY_FOLDER, default_checkpoint)


@pytest.fixture(scope="module")
def plugin_path(tmp_path_factory):
    return install_plugin(
        tmp_path_factory.mktemp("scripted-plugin"), "scripted", SCRIPTED_EXPORT_PLUGIN, "ScriptedExportRunner"
    )


@pytest.fixture
def prep(plugin_path, tiny_checkpoint, tmp_path):
    """`edgebench ARGS` with the scripted runner installed, a fresh cache and the tiny model."""
    cache = tmp_path / "cache"

    def call(*args, mode="ok"):
        return edgebench(*args, *call.args, env=call.env(mode))

    call.args = ("--model", str(tiny_checkpoint), "--cache", str(cache))
    call.env = lambda mode: {"PYTHONPATH": os.pathsep.join([str(plugin_path), str(ROOT)]), "SCRIPTED_EXPORT": mode}
    call.folders = lambda: sorted((cache / tiny_checkpoint.name / "scripted").glob("*"))
    return call


@pytest.fixture
def phone(tmp_path, request):
    """An attached phone double of kind request.param, this process's adb pointed at it
    (for readers made here, not in an edgebench subprocess)."""
    from tests.support.phone import attached_phone, why_no_phone

    if why_no_phone():
        pytest.skip(why_no_phone())
    attached = attached_phone(tmp_path, request.param)
    os.environ["ANDROID_ADB_SERVER_PORT"] = attached.env["ANDROID_ADB_SERVER_PORT"]
    yield attached
    os.environ.pop("ANDROID_ADB_SERVER_PORT")
    attached.close()
