"""`edgebench prepare`: cached, fingerprinted artifacts, safe against killed and failed
exports. A scripted exporter (a plugin runner, installed by hand on PYTHONPATH) makes the
failures happen on cue; its artifact is a FAKE-runner script, so prepare -> run is cheap."""
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import psutil
import pytest

from tests.conftest import ROOT, edgebench, read_jsonl

PLUGIN = '''
"""A runner whose exporter does what $SCRIPTED_EXPORT says: ok, fail, or hang (tests only)."""
import json
import os
import sys
import time

from runners.base import Exporter
from runners.fake import FakeRunner


class ScriptedExportRunner(FakeRunner):
    name = "scripted"
    artifact_kind = "scripted export"
    exporter = Exporter(tool="scripted exporter", distribution="edgebench-scripted", target="edgebench_scripted:export",
                        quantizations=("q8", "q4"), default_quantization="q8", extra="scripted")


def export(checkpoint, out, quantization):
    mode = os.environ.get("SCRIPTED_EXPORT", "ok")
    (out / "weights.bin").write_bytes(b"w" * 1000)
    for i in range(40):
        print(f"converting layer {i}", flush=True)
    if mode == "fail":
        print("ValueError: layer 40 has an unsupported shape", file=sys.stderr, flush=True)
        sys.exit(3)
    if mode == "hang":
        time.sleep(600)
    (out / "script.json").write_text(json.dumps({"decode_ms": 5, "eos_after": 3}))
    return {"artifact": "script.json", "level": quantization}
'''


def install_plugin(site, name: str, source: str, runner_class: str):
    """Install `source` as the module edgebench_NAME in `site` (put it on PYTHONPATH), with
    a dist-info that registers runner NAME and gives distribution edgebench-NAME version 1.0."""
    (site / f"edgebench_{name}.py").write_text(textwrap.dedent(source))
    info = site / f"edgebench_{name}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: edgebench-{name}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[edgebench.runners]\n{name} = edgebench_{name}:{runner_class}\n")
    return site


@pytest.fixture(scope="module")
def plugin_path(tmp_path_factory):
    return install_plugin(tmp_path_factory.mktemp("scripted-plugin"), "scripted", PLUGIN, "ScriptedExportRunner")


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


def test_prepare_makes_the_artifact_with_a_manifest_then_run_uses_it(prep, tmp_path):
    result = prep("prepare", "--runner", "scripted")
    assert result.returncode == 0, result.stderr
    assert "exported" in result.stdout
    [folder] = prep.folders()
    assert folder.name.startswith("q8-")
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["source"].endswith("tiny-llama0") and len(manifest["source_sha256"]) == 64
    assert (manifest["tool"], manifest["tool_version"], manifest["quantization"]) == ("scripted exporter", "1.0", "q8")
    assert manifest["options"] == {"level": "q8"} and manifest["artifact"] == "script.json"
    files = {f["path"]: f for f in manifest["files"]}
    assert files["weights.bin"]["bytes"] == 1000 and len(files["weights.bin"]["sha256"]) == 64
    assert set(files) == {"weights.bin", "script.json"} and manifest["export_seconds"] >= 0

    run = prep("run", "--runner", "scripted", "--profile", "quick", "--out", str(tmp_path / "out"))
    assert run.returncode == 0, run.stderr
    records = read_jsonl(next((tmp_path / "out").glob("*.jsonl")))
    assert {r["artifact_path"] for r in records} == {str(folder / "script.json")}
    assert {r["artifact_sha256"] for r in records} == {manifest["sha256"]} and records[0]["quantization"] == "q8"


def test_run_with_prepare_makes_what_is_missing(prep, tmp_path):
    run = prep("run", "--runner", "scripted", "--quant", "scripted=q4", "--prepare", "--profile", "quick",
               "--out", str(tmp_path / "out"))
    assert run.returncode == 0, run.stderr
    assert "preparing scripted q4" in run.stderr
    [folder] = prep.folders()
    assert folder.name.startswith("q4-") and (folder / "manifest.json").is_file()


def test_a_second_prepare_does_no_work_and_says_so(prep):
    assert prep("prepare", "--runner", "scripted").returncode == 0
    [folder] = prep.folders()
    made = (folder / "manifest.json").stat().st_mtime_ns
    again = prep("prepare", "--runner", "scripted", mode="fail")  # would fail if it exported
    assert again.returncode == 0, again.stderr
    assert "cached (nothing to do)" in again.stdout
    assert prep.folders() == [folder] and (folder / "manifest.json").stat().st_mtime_ns == made


def test_each_quantization_is_its_own_artifact(prep):
    assert prep("prepare", "--runner", "scripted", "--quant", "q8", "--quant", "q4").returncode == 0
    assert [f.name[:3] for f in prep.folders()] == ["q4-", "q8-"]


def test_a_failed_export_shows_the_exporters_last_lines_and_caches_nothing(prep, tmp_path):
    result = prep("prepare", "--runner", "scripted", mode="fail")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "scripted exporter failed (exit 3)" in result.stderr
    assert "ValueError: layer 40 has an unsupported shape" in result.stderr and "converting layer 39" in result.stderr
    assert "converting layer 0\n" not in result.stderr  # the last lines only
    assert prep.folders() == []  # not even a private partial folder is left

    run = prep("run", "--runner", "scripted", "--out", str(tmp_path / "out"))
    assert run.returncode == 1
    assert "no prepared scripted artifact" in run.stderr and "edgebench prepare" in run.stderr


def start_a_hanging_export(prep):
    """`edgebench prepare` in its own process, returned once its exporter is midway
    (files written, not finished)."""
    proc = subprocess.Popen([sys.executable, "-c", "from bench.cli import main; main()", "prepare", "--runner",
                             "scripted", *prep.args], env={**os.environ, **prep.env("hang")}, cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not any((f / "out" / "weights.bin").exists() for f in prep.folders()):
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.2)
    return proc


def test_a_killed_export_leaves_nothing_taken_for_finished(prep, tmp_path):
    proc = start_a_hanging_export(prep)
    exporter = psutil.Process(proc.pid).children()
    proc.send_signal(signal.SIGKILL)  # no chance to clean up
    proc.wait()
    _, alive = psutil.wait_procs(exporter, timeout=10)
    assert not alive  # the exporter does not run on alone
    [partial] = prep.folders()
    assert partial.name.startswith(".") and not (partial / "manifest.json").exists()

    run = prep("run", "--runner", "scripted", "--out", str(tmp_path / "out"))
    assert run.returncode == 1 and "no prepared scripted artifact" in run.stderr

    again = prep("prepare", "--runner", "scripted")
    assert again.returncode == 0 and "exported" in again.stdout
    [folder] = prep.folders()  # the abandoned folder was swept away
    assert not folder.name.startswith(".") and (folder / "manifest.json").is_file()


def test_a_stopped_prepare_stops_its_exporter_and_cleans_up(prep):
    proc = start_a_hanging_export(prep)
    exporter = psutil.Process(proc.pid).children()
    proc.terminate()  # what a CI timeout sends
    assert proc.wait(timeout=30) != 0
    assert not psutil.wait_procs(exporter, timeout=10)[1]
    assert prep.folders() == []
