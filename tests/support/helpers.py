"""Helpers the tests share: run the CLI as a user would, read results, install a plugin,
lay out a fake /sys or /proc tree."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"  # results files of every earlier schema


def cli(*args: str, profile_quality: bool = False, budget: bool = False) -> list[str]:
    """The command line of `edgebench ARGS` in a fresh Python. A `run` scores no quality unless
    the test asks for it (--quality, or `profile_quality`: as the run profile says): the quality
    step needs the model's fp32 reference, which only the tests of that step make. A `run`
    measures every prompt unless the test asks for the profile's time budget (`budget`): the
    budget skips by how fast the machine is now, and a test's verdict must not depend on that
    (the budget's own tests pace the FAKE runner's scripted clock)."""
    if args and args[0] == "run":
        if "--quality" not in args and not profile_quality:
            args = ("run", "--no-quality", *args[1:])
        if not budget and "--no-budget" not in args:
            args = ("run", "--no-budget", *args[1:])
    return [sys.executable, "-c", "from bench.cli import main; main()", *args]


def edgebench(
    *args: str,
    cwd: Path | None = None,
    env: dict | None = None,
    timeout: float = 600,
    profile_quality: bool = False,
    budget: bool = False,
):
    """Run `edgebench ARGS` as a user would: a fresh process, real exit code and streams."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        cli(*args, profile_quality=profile_quality, budget=budget),
        capture_output=True,
        text=True,
        cwd=cwd or ROOT,
        env=full_env,
        timeout=timeout,
    )


def on_fake(command: str, script) -> tuple[str, ...]:
    """`edgebench COMMAND` (run or sustained) on the FAKE runner playing `script`."""
    return (command, "--runner", "fake", "--artifact", f"fake={script}")


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def install_plugin(site, name: str, source: str, runner_class: str):
    """Install `source` as the module edgebench_NAME in `site` (put it on PYTHONPATH), with
    a dist-info that registers runner NAME and gives distribution edgebench-NAME version 1.0."""
    (site / f"edgebench_{name}.py").write_text(textwrap.dedent(source))
    info = site / f"edgebench_{name}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: edgebench-{name}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[edgebench.runners]\n{name} = edgebench_{name}:{runner_class}\n")
    return site


# The most ids a runner's incremental detokenizer may hand its tokenizer at once (the piece
# shown last and the tokens of one unfinished character): never the whole output.
DECODE_WINDOW = 8


def assert_decodes_incrementally(runner, request) -> list:
    """Drain `runner.generate(request)` with its tokenizer's decode (`_detokenize`) counting the
    ids of each call; check every token was decoded in a short window, at most twice, and that
    the pieces join to the whole answer decoded at once. Returns the token events."""
    from runners.base import TokenEvent

    sizes: list[int] = []
    decode = runner._detokenize
    runner._detokenize = lambda ids: sizes.append(len(ids)) or decode(ids)
    try:
        events = [e for e in runner.generate(request) if isinstance(e, TokenEvent)]
    finally:
        del runner._detokenize
    assert len(events) <= len(sizes) <= 2 * len(events), f"{len(sizes)} decodes for {len(events)} tokens"
    assert max(sizes) <= DECODE_WINDOW, f"a decode of {max(sizes)} ids: the output decoded again, not a window"
    assert "".join(e.text for e in events) == runner._detokenize([e.token_id for e in events])
    return events


def write_files(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text + "\n")
    return root


def stat_line(tid: int, cpu: int, ticks: int) -> str:
    """A /proc/PID/task/TID/stat line: the name holds spaces and parentheses, as some do."""
    fields = ["0"] * 50
    fields[0], fields[11], fields[36] = "R", str(ticks), str(cpu)
    return f"{tid} (llama (worker) 1) " + " ".join(fields)


# A runner whose exporter does what $SCRIPTED_EXPORT says (tests of prepare's behaviour).
SCRIPTED_EXPORT_PLUGIN = '''
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

LAPTOP = {  # x86 laptop: a package zone with trip points, cpufreq per core, RAPL
    "sys/class/thermal/thermal_zone0/type": "acpitz",
    "sys/class/thermal/thermal_zone0/temp": "41000",
    "sys/class/thermal/thermal_zone1/type": "x86_pkg_temp",
    "sys/class/thermal/thermal_zone1/temp": "87500",
    "sys/class/thermal/thermal_zone1/trip_point_0_type": "passive",
    "sys/class/thermal/thermal_zone1/trip_point_0_temp": "90000",
    "sys/class/thermal/thermal_zone1/trip_point_1_type": "critical",
    "sys/class/thermal/thermal_zone1/trip_point_1_temp": "105000",
    "sys/devices/system/cpu/cpu0/cpufreq/scaling_cur_freq": "1800000",
    "sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq": "4200000",
    "sys/devices/system/cpu/cpu1/cpufreq/scaling_cur_freq": "2400000",
    "sys/devices/system/cpu/cpu1/cpufreq/cpuinfo_max_freq": "4200000",
    "sys/class/powercap/intel-rapl:0/name": "package-0",
    "sys/class/powercap/intel-rapl:0/energy_uj": "262143000000",
    "sys/class/powercap/intel-rapl:0/max_energy_range_uj": "262143328850",
    "sys/class/powercap/intel-rapl:0:0/name": "core",  # inside package-0: not added again
    "sys/class/powercap/intel-rapl:0:0/energy_uj": "5000000",
    "proc/loadavg": "1.52 0.98 0.61 2/431 12345",
}
