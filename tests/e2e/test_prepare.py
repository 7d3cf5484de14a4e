"""`edgebench prepare`: cached, fingerprinted artifacts, safe against killed and failed
exports. A scripted exporter (a plugin runner, installed by hand on PYTHONPATH) makes the
failures happen on cue; its artifact is a FAKE-runner script, so prepare -> run is cheap."""

import json
import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

from tests.support.helpers import ROOT, SCRIPTED_EXPORT_PLUGIN, edgebench, install_plugin, read_jsonl


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
    run = prep(
        "run",
        "--runner",
        "scripted",
        "--quant",
        "scripted=q4",
        "--prepare",
        "--profile",
        "quick",
        "--out",
        str(tmp_path / "out"),
    )
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
    proc = subprocess.Popen(
        [sys.executable, "-c", "from bench.cli import main; main()", "prepare", "--runner", "scripted", *prep.args],
        env={**os.environ, **prep.env("hang")},
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
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


def test_moving_or_reformatting_an_exporter_keeps_its_cache_and_a_new_recipe_does_not(prep, tmp_path):
    """The key is what the exporter does (tool, version, quantization, recipe), not its source."""

    def installed(source: str, where: str):
        site = install_plugin(tmp_path / where, "scripted", source, "ScriptedExportRunner")
        prep.env = lambda mode: {"PYTHONPATH": os.pathsep.join([str(site), str(ROOT)]), "SCRIPTED_EXPORT": mode}

    (tmp_path / "a").mkdir()
    installed(SCRIPTED_EXPORT_PLUGIN, "a")
    assert prep("prepare", "--runner", "scripted").returncode == 0
    [folder] = prep.folders()

    (tmp_path / "b").mkdir()  # elsewhere, reformatted
    installed(SCRIPTED_EXPORT_PLUGIN.replace("import json\n", "import json  # reformatted\n") + "\n# moved\n", "b")
    again = prep("prepare", "--runner", "scripted", mode="fail")  # would fail if it exported
    assert again.returncode == 0 and "cached (nothing to do)" in again.stdout, again.stdout + again.stderr
    assert prep.folders() == [folder]

    (tmp_path / "c").mkdir()  # what the export writes changed: the exporter says so with its recipe
    installed(SCRIPTED_EXPORT_PLUGIN.replace('extra="scripted")', 'extra="scripted", recipe=2)'), "c")
    changed = prep("prepare", "--runner", "scripted")
    assert changed.returncode == 0 and "exported" in changed.stdout
    assert len(prep.folders()) == 2

    (tmp_path / "d").mkdir()  # back to recipe 1: a run takes what prepare gives, not the newest export
    installed(SCRIPTED_EXPORT_PLUGIN, "d")
    run = prep("run", "--runner", "scripted", "--profile", "quick", "--out", str(tmp_path / "out"))
    assert run.returncode == 0, run.stderr
    assert {r["artifact_path"] for r in read_jsonl(next((tmp_path / "out").glob("*.jsonl")))} == {
        str(folder / "script.json")
    }


def _legacy_key(input_sha256: str, tool: str, target: str, version: str, code: str, quantization: str) -> str:
    """The key a cache had before keys took recipes: it held the exporter's module path and source."""
    import hashlib

    material = json.dumps(
        {
            "input": input_sha256,
            "tool": tool,
            "target": target,
            "version": version,
            "code": code,
            "quantization": quantization,
        },
        sort_keys=True,
    )
    return f"{quantization}-{hashlib.sha256(material.encode()).hexdigest()[:16]}"


def _cached_before_the_move(cache, model, input_sha256: str, code: str):
    import importlib.metadata

    key = _legacy_key(
        input_sha256,
        "onnxruntime-genai model builder",
        "runners.onnxruntime_export:export",
        importlib.metadata.version("onnxruntime-genai"),
        code,
        "fp32",
    )
    folder = cache / model.name / "onnxruntime" / key
    folder.mkdir(parents=True)
    (folder / "model.onnx").write_bytes(b"made before the move")
    (folder / "manifest.json").write_text(
        json.dumps(
            {
                "model_id": model.name,
                "stage": "onnxruntime",
                "input_sha256": input_sha256,
                "quantization": "fp32",
                "tool": "onnxruntime-genai model builder",
                "artifact": ".",
                "sha256": "0" * 64,
                "bytes": 20,
                "export_seconds": 9.0,
                "created_at": "2026-11-28T00:00:00.000+00:00",
            }
        )
    )
    return folder


def test_an_artifact_cached_before_the_layout_move_is_found_after_it(tiny_checkpoint, tmp_path):
    pytest.importorskip("onnxruntime_genai")
    from bench.data.models import fingerprint

    cache = tmp_path / "cache"
    # what runners/onnxruntime_export.py's source was when keys held it
    before = _cached_before_the_move(
        cache,
        tiny_checkpoint,
        fingerprint(tiny_checkpoint),
        "4efb3d2265be66dd62976899a34d79930bfec3744a800f25e0616579b755e666",
    )
    result = edgebench(
        "prepare", "--runner", "onnxruntime", "--quant", "fp32", "--model", str(tiny_checkpoint), "--cache", str(cache)
    )
    assert result.returncode == 0 and "cached (nothing to do)" in result.stdout, result.stdout + result.stderr
    [adopted] = (cache / tiny_checkpoint.name / "onnxruntime").iterdir()
    assert adopted.name != before.name and (adopted / "model.onnx").read_bytes() == b"made before the move"


def test_a_legacy_folder_made_by_other_exporter_code_is_not_taken(tiny_checkpoint, tmp_path):
    pytest.importorskip("onnxruntime_genai")
    from bench.artifacts.cache import lookup_stage, stage_folder, stage_key
    from bench.data.models import fingerprint, get_model
    from runners.onnxruntime import OnnxRuntimeRunner

    cache, sha = tmp_path / "cache", fingerprint(tiny_checkpoint)
    _cached_before_the_move(cache, tiny_checkpoint, sha, "another version of the exporter's source")
    exporter = OnnxRuntimeRunner.exporter
    folder = stage_folder(cache, get_model(str(tiny_checkpoint)), "onnxruntime", stage_key(sha, exporter, "fp32"))
    assert lookup_stage(folder, sha, exporter, "fp32") is None
