"""`edgebench prepare` shows its progress in a log: a line per stage the exporter really
goes through, a heartbeat during a long stage, and an estimate from the last export of the
same kind on this machine (timings.json beside the cache). Output is captured, so these
run as a log or CI job sees them (not a terminal)."""

import importlib.util
import json
import os
import re

import pytest

from tests.support.helpers import ROOT, edgebench, install_plugin

LINE = re.compile(r"^prepare (?P<label>[\w-]+ \w+): (?P<stage>[^,]+?)(?:, | in )")


def stages_shown(stderr: str, label: str) -> list[str]:
    """The stages a log shows for one export, each once, in the order they first appear."""
    shown = [m["stage"] for m in map(LINE.match, stderr.splitlines()) if m and m["label"] == label]
    return list(dict.fromkeys(shown))


def lines_of(stderr: str, label: str, stage: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith(f"prepare {label}: {stage}, ")]


@pytest.mark.skipif(
    importlib.util.find_spec("executorch") is None, reason="pip install 'edgebench[prepare-executorch]'"
)
def test_an_executorch_export_logs_each_of_its_stages_in_order(tiny_checkpoint, tmp_path):
    result = edgebench(
        "prepare",
        "--model",
        str(tiny_checkpoint),
        "--runner",
        "executorch",
        "--quant",
        "8da4w",
        "--cache",
        str(tmp_path / "cache"),
        timeout=1800,
    )  # ~1 min; far more on a busy machine
    assert result.returncode == 0, result.stderr[-3000:]
    shown = [s for s in stages_shown(result.stderr, "executorch 8da4w") if s != "starting"]
    assert shown == ["checkpoint", "loading", "quantization", "export", "lowering", "emitting", "writing", "done"]
    for line in lines_of(result.stderr, "executorch 8da4w", "lowering"):
        assert re.search(r"\d+s elapsed of ~\d+m\d\ds \(typical on a 2-core x86", line), line


def test_the_last_exports_time_is_kept_and_becomes_the_next_estimate(tiny_checkpoint, tmp_path):
    cache = tmp_path / "cache"
    args = (
        "prepare",
        "--model",
        str(tiny_checkpoint),
        "--runner",
        "onnxruntime",
        "--quant",
        "int4",
        "--cache",
        str(cache),
    )
    first = edgebench(*args)
    assert first.returncode == 0, first.stderr[-3000:]
    assert lines_of(first.stderr, "onnxruntime int4", "export")
    assert all("(typical on a 2-core x86" in line for line in lines_of(first.stderr, "onnxruntime int4", "export"))

    [timing] = json.loads((cache / "timings.json").read_text()).values()
    [manifest] = cache.glob("*/onnxruntime/*/manifest.json")
    assert timing["seconds"] == json.loads(manifest.read_text())["export_seconds"]

    second = edgebench(*args, "--force")
    assert second.returncode == 0, second.stderr[-3000:]
    shown = lines_of(second.stderr, "onnxruntime int4", "export")
    seconds = round(timing["seconds"])
    last = f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"
    assert shown and all(f"(last export here took {last})" in line for line in shown)


SLOW_EXPORTER = '''
"""A runner whose exporter names two stages and spends $SLOW_STAGE_S seconds in the first (tests only)."""
import json
import os
import time

from runners.base import Exporter
from runners.fake import FakeRunner


class SlowExportRunner(FakeRunner):
    name = "slow"
    artifact_kind = "slow export"
    exporter = Exporter(tool="slow exporter", distribution="edgebench-slow", target="edgebench_slow:export",
                        quantizations=("q8",), default_quantization="q8", extra="slow")


def export(checkpoint, out, quantization, stage):
    stage("lowering")
    time.sleep(float(os.environ["SLOW_STAGE_S"]))
    stage("writing")
    (out / "script.json").write_text(json.dumps({"decode_ms": 5}))
    return {"artifact": "script.json"}
'''


@pytest.fixture
def slow_plugin(tmp_path):
    (tmp_path / "slow-plugin").mkdir()
    return install_plugin(tmp_path / "slow-plugin", "slow", SLOW_EXPORTER, "SlowExportRunner")


def test_a_long_stage_gets_a_heartbeat_line_in_the_log(slow_plugin, tiny_checkpoint, tmp_path):
    env = {
        "PYTHONPATH": os.pathsep.join([str(slow_plugin), str(ROOT)]),
        "SLOW_STAGE_S": "4",
        "EDGEBENCH_HEARTBEAT_S": "1",
    }
    result = edgebench(
        "prepare", "--runner", "slow", "--model", str(tiny_checkpoint), "--cache", str(tmp_path / "c"), env=env
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert [s for s in stages_shown(result.stderr, "slow q8") if s != "starting"] == ["lowering", "writing", "done"]
    beats = lines_of(result.stderr, "slow q8", "lowering")
    assert len(beats) >= 3, result.stderr  # 4 s in the stage, a line at least every second
    assert all("(no estimate: first export of this kind here)" in line for line in beats)
