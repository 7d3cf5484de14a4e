"""The CI gate: `edgebench compare` on results of several simulated farm devices
(tests/support/simulated_devices.py), and the farm workflow's merge-then-gate steps."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from bench.errors import BenchError
from bench.views import compare
from tests.support import simulated_devices as sim
from tests.support.helpers import ROOT, edgebench

DEVICES = {"pixel-8-pro": (60, 40), "galaxy-a54": (25, 300), "raspberry-pi-5": (12, 900)}


def _farm(root, slower: dict[str, float] | None = None, spread: float = 0.05, run: str = "1", **extra):
    """One folder per device, as the farm's upload step leaves them."""
    for device, (decode, ttft) in DEVICES.items():
        factor = (slower or {}).get(device, 1.0)
        sim.write(
            root / device / "results.jsonl",
            sim.records(device, decode=decode / factor, ttft=ttft * factor, spread=spread, run=run, **extra),
        )
    return root


def test_identical_results_pass_the_gate(tmp_path):
    _farm(tmp_path / "base"), _farm(tmp_path / "cand", run="2")
    result = edgebench("compare", str(tmp_path / "base"), str(tmp_path / "cand"))
    assert result.returncode == 0, result.stderr
    assert "✅ no regression" in result.stdout


def test_a_slowdown_on_one_device_fails_the_gate_and_names_it(tmp_path):
    _farm(tmp_path / "base"), _farm(tmp_path / "cand", slower={"galaxy-a54": 1.25}, run="2")
    result = edgebench(
        "compare",
        str(tmp_path / "base"),
        str(tmp_path / "cand"),
        "--threshold",
        "5%",
        "--junit",
        str(tmp_path / "compare.xml"),
    )
    assert result.returncode == 1
    regression_lines = [line for line in result.stdout.splitlines() if line.startswith("| regression")]
    assert regression_lines and all("galaxy-a54" in line for line in regression_lines)
    assert any("decode tok/s" in line and "-20.0%" in line for line in regression_lines)
    root = ET.parse(tmp_path / "compare.xml").getroot()
    assert int(root.get("failures")) == len(regression_lines)


def test_a_change_inside_the_measured_spread_is_noise(tmp_path):
    # Baseline repetitions vary ±30%: a 10% slower median lies within that spread.
    _farm(tmp_path / "base", spread=0.3), _farm(tmp_path / "cand", slower={"galaxy-a54": 1.1}, spread=0.3, run="2")
    deltas = compare.compare(str(tmp_path / "base"), str(tmp_path / "cand"), 5.0)
    a54 = [d for d in deltas if d.device == "galaxy-a54" and d.metric == "decode tok/s"]
    assert a54 and {d.status for d in a54} == {"noise"}
    assert compare.regressions(deltas) == []


def test_the_threshold_decides_what_counts(tmp_path):
    _farm(tmp_path / "base", spread=0.0), _farm(tmp_path / "cand", slower={"pixel-8-pro": 1.04}, spread=0.0, run="2")
    assert compare.regressions(compare.compare(str(tmp_path / "base"), str(tmp_path / "cand"), 5.0)) == []
    assert compare.regressions(compare.compare(str(tmp_path / "base"), str(tmp_path / "cand"), 2.0))


def test_a_different_suite_is_not_compared(tmp_path):
    _farm(tmp_path / "base"), _farm(tmp_path / "cand", slower={"galaxy-a54": 2}, suite_sha256="f" * 64, run="2")
    deltas = compare.compare(str(tmp_path / "base"), str(tmp_path / "cand"), 5.0)
    assert {d.status for d in deltas} == {"not comparable"} and compare.regressions(deltas) == []


def test_a_device_missing_from_the_candidate_is_reported(tmp_path):
    _farm(tmp_path / "base")
    sim.write(tmp_path / "cand" / "pixel.jsonl", sim.records("pixel-8-pro", decode=60, ttft=40, run="2"))
    deltas = compare.compare(str(tmp_path / "base"), str(tmp_path / "cand"), 5.0)
    assert {d.device for d in deltas if d.status == "missing"} == {"galaxy-a54", "raspberry-pi-5"}


def _crashed(records: list[dict]) -> list[dict]:
    """The same generations, each one crashed: no figure, an error."""
    return [
        r
        | {
            "status": "crashed",
            "error": "worker killed by SIGSEGV",
            "ttft_ms": None,
            "decode_tok_s": None,
            "e2e_ms": None,
            "prefill_tok_s": None,
        }
        for r in records
    ]


def test_a_device_absent_from_the_candidate_fails_the_gate_unless_allowed(tmp_path):
    _farm(tmp_path / "base")
    sim.write(tmp_path / "cand" / "pixel.jsonl", sim.records("pixel-8-pro", decode=60, ttft=40, run="2"))
    gate = edgebench("compare", str(tmp_path / "base"), str(tmp_path / "cand"))
    assert gate.returncode == 1, gate.stderr
    verdict = next(line for line in gate.stdout.splitlines() if line.startswith("❌"))
    assert "missing" in verdict and "galaxy-a54" in verdict and "raspberry-pi-5" in verdict
    assert "pixel-8-pro" not in verdict and "absent from the candidate" in gate.stdout
    allowed = edgebench("compare", str(tmp_path / "base"), str(tmp_path / "cand"), "--allow-missing")
    assert allowed.returncode == 0 and "allowed by --allow-missing" in allowed.stdout


def test_a_runtime_that_crashed_on_every_prompt_fails_the_gate(tmp_path):
    _farm(tmp_path / "base")
    _farm(tmp_path / "cand", run="2")
    a54 = tmp_path / "cand" / "galaxy-a54" / "results.jsonl"
    sim.write(a54, _crashed(sim.records("galaxy-a54", decode=25, ttft=300, run="2")))
    gate = edgebench("compare", str(tmp_path / "base"), str(tmp_path / "cand"), "--junit", str(tmp_path / "c.xml"))
    assert gate.returncode == 1, gate.stderr
    missing = [line for line in gate.stdout.splitlines() if line.startswith("| missing")]
    assert len(missing) == len(sim.SUITE.prompts) and all("galaxy-a54" in line for line in missing)
    assert all("only 3 crashed" in line for line in missing)  # the measured repetitions, warm-ups aside
    root = ET.parse(tmp_path / "c.xml").getroot()
    assert int(root.get("failures")) == len(missing)
    allowed = edgebench(
        "compare",
        str(tmp_path / "base"),
        str(tmp_path / "cand"),
        "--allow-missing",
        "--junit",
        str(tmp_path / "allowed.xml"),
    )
    assert allowed.returncode == 0 and int(ET.parse(tmp_path / "allowed.xml").getroot().get("failures")) == 0


def test_a_candidate_whose_every_generation_failed_gets_the_gate_failure(tmp_path):
    _farm(tmp_path / "base")
    sim.write(
        tmp_path / "cand" / "all.jsonl",
        *(_crashed(sim.records(d, decode=decode, ttft=ttft, run="2")) for d, (decode, ttft) in DEVICES.items()),
    )
    gate = edgebench("compare", str(tmp_path / "base"), str(tmp_path / "cand"))
    assert gate.returncode == 1 and "Error" not in gate.stderr and "Traceback" not in gate.stderr
    assert gate.stdout.count("| missing") == len(DEVICES) * len(sim.SUITE.prompts)
    assert f"❌ {len(DEVICES) * len(sim.SUITE.prompts)} missing" in gate.stdout


@pytest.mark.parametrize("text", ["five", "-3%"])
def test_a_bad_threshold_is_a_usage_error(text):
    with pytest.raises(BenchError) as info:
        compare.parse_threshold(text)
    assert info.value.exit_code == 2


def test_the_farm_workflow_merge_and_gate_steps(tmp_path):
    """What ci-examples/device-farm.yml's final job runs, on uploaded per-device artifacts."""
    _farm(tmp_path / "baseline"), _farm(tmp_path / "artifacts", slower={"raspberry-pi-5": 1.3}, run="2")
    merged = edgebench(
        "matrix",
        str(tmp_path / "artifacts" / "*" / "*.jsonl"),
        "--out",
        str(tmp_path / "matrix"),
        "--junit",
        str(tmp_path / "matrix" / "verdicts.xml"),
    )
    assert merged.returncode == 0, merged.stderr
    md = (tmp_path / "matrix" / "matrix.md").read_text()
    assert all(f"### {d}" in md for d in DEVICES)
    gate = edgebench(
        "compare", str(tmp_path / "baseline"), str(tmp_path / "artifacts"), "--out", str(tmp_path / "comment.md")
    )
    assert gate.returncode == 1
    assert "raspberry-pi-5" in (tmp_path / "comment.md").read_text()


def test_the_example_farm_workflow_uses_real_commands_and_options():
    import yaml
    from typer.main import get_command

    from bench.cli import app

    workflow = yaml.safe_load((ROOT / "ci-examples" / "device-farm.yml").read_text())
    jobs = workflow["jobs"]
    assert set(jobs) == {"prepare", "bench", "bench-over-ssh", "matrix"}
    assert jobs["bench"]["needs"] == jobs["bench-over-ssh"]["needs"] == "prepare"
    assert jobs["matrix"]["needs"] == ["bench", "bench-over-ssh"]
    assert "matrix.device" in str(workflow["jobs"]["bench"]["runs-on"])
    commands = get_command(app).commands
    used = [
        step["run"] for job in workflow["jobs"].values() for step in job["steps"] if "edgebench " in step.get("run", "")
    ]
    assert len(used) == 6  # prepare, bundle, run on a device, run over SSH, matrix, compare
    for line in used:
        words = line.replace("\n", " ").split()
        name = words[words.index(next(w for w in words if w.endswith("edgebench"))) + 1]
        options = {o for p in commands[name].params for o in p.opts}
        assert {w for w in words if w.startswith("--")} <= options, line
