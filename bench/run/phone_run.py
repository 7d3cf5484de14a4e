"""A run on a phone over adb (`--target adb://[SERIAL]`): the host runs it, the phone computes.

Python does not run on a phone, so unlike an ssh:// target (bench.run.remote) the run is
the host's own: its inputs are checked and its records written here as each is measured,
with the phone's facts and tier and `remote_target`, and the device state sampled during
the run (temperatures, frequencies, battery power) is the phone's (PhoneReader). llama.cpp's
plans run the native device runner instead (runners.device_llamacpp), which the host pushes
with the GGUF by sha256 into /data/local/tmp/edgebench. A phone that goes away mid-run stops the run as
Ctrl-C does: the records kept, `run --resume RUN_ID` measures the rest.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
from pathlib import Path
from typing import Callable

from bench.device import adb, tiering
from bench.device.hygiene import Cooldown
from bench.device.phone import PhoneReader, phone_facts
from bench.errors import BenchError
from bench.records import ResultsWriter
from bench.run import device_binary
from bench.run.remote import RemoteRun
from bench.selection import parse_pairs

DEVICE_RUNNER = "runners.device_llamacpp:DeviceLlamaCppRunner"
DEVICE_RUNNER_ENV = "EDGEBENCH_DEVICE_RUNNER"  # a device runner binary of the user's own
BUILD_SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "build-device-runner.sh"
Say = Callable[[str], None]


def device_runner_binary() -> Path:
    """The aarch64 device runner: $EDGEBENCH_DEVICE_RUNNER, else the one the build script made."""
    given = os.environ.get(DEVICE_RUNNER_ENV)
    if given:
        path = Path(given)
    else:
        done = subprocess.run(["bash", str(BUILD_SCRIPT), "--print-path"], capture_output=True, text=True)
        path = Path(done.stdout.strip())
    if not path.is_file():
        raise BenchError(
            f"the llama.cpp device runner is not built ({path})",
            "build it once: bash scripts/build-device-runner.sh (~6-25 min), or set $EDGEBENCH_DEVICE_RUNNER",
        )
    return path


def for_phone(setup, target: adb.AdbTarget, say: Say, binaries: dict[str, Path]) -> list:
    """Make a checked run the phone's: its facts and tier, its llama.cpp plans on the device
    runner; the plans of runners with their own binary (`binaries`) are taken out and returned."""
    others = sorted({p.name for p in setup.plans if p.name != "llama.cpp" and p.name not in binaries})
    if others:
        raise BenchError(
            f"{target.spec}: {', '.join(others)} cannot run on a phone without its own binary "
            "(llama.cpp has edgebench's device runner)",
            "run llama.cpp there (--runner llama.cpp), or give the runtime's phone binary: --device-binary RUNNER=PATH",
        )
    tools = [p for p in setup.plans if p.name in binaries]
    setup.plans[:] = [p for p in setup.plans if p.name not in binaries]
    runner = target.push_binary(device_runner_binary()) if setup.plans else None
    for number, plan in enumerate(setup.plans):
        artifact = target.push(plan.artifact.path, plan.artifact.sha256)
        device = {"adb": target.adb(), "runner": runner, "artifact": artifact, "interrupt_run": True}
        setup.plans[number] = dataclasses.replace(
            plan, target=DEVICE_RUNNER, synthetic=False, settings={**plan.settings, "device": device}
        )
    if runner:
        say(f"{target.spec}: device runner and {len(setup.plans)} GGUF(s) on the phone in {adb.FOLDER}")
    facts = phone_facts(target)
    setup.run_fields.update(facts, **tiering.place(facts, setup.farm_device, None).record_fields())
    setup.run_fields["remote_target"] = target.spec
    return tools


def run_on_phone(
    options, spec: str, on_record: Callable[[dict], None], say: Say, cooldown: Cooldown | None = None
) -> RemoteRun:
    """`run`/`sustained --target adb://…`, or the rest of such a run (options.resume); the
    phone cooled down before each runner as `cooldown` asks."""
    from bench.run.execute import execute
    from bench.run.setup import setup_run

    target = adb.parse_target(spec).attached()
    setup = setup_run(options)
    given = parse_pairs("--device-binary", options.device_binaries, "litert-lm=./litert_lm_main")
    binaries = device_binary.check_binaries(given, {p.name for p in setup.plans})
    tools = for_phone(setup, target, say, binaries)
    run = RemoteRun(target, setup.results_path.parent, adb.FOLDER, setup.run_id)
    run.save()
    result = execute(setup, on_record=on_record, say=say, device=PhoneReader(target), cooldown=cooldown)
    if tools and not result.interrupted:
        writer = ResultsWriter(setup.results_path)
        try:
            for plan in tools:
                say(
                    f"{target.spec}: {plan.name} through its own binary {binaries[plan.name].name} (the runtime's clock)"
                )
                device_binary.run_plan(setup, plan, binaries[plan.name], target, writer, on_record)
        finally:
            writer.close()
    if result.interrupted:
        try:
            target.attached()
        except BenchError as gone:
            raise BenchError(
                f"{target.spec} went away mid-run ({gone.message}): the records so far are kept in {run.results_path}",
                f"reconnect it and finish the run with: edgebench run --resume {run.run_id} --out {run.out}",
            ) from None
        raise KeyboardInterrupt
    return run


def resume_on_phone(results_path: Path, spec: str, on_record: Callable[[dict], None], say: Say) -> RemoteRun:
    """`run --resume` of a phone's run: the run's own options, on the same phone."""
    from bench.run.setup import RunOptions

    say(f"{spec}: resuming {results_path.stem}")
    return run_on_phone(RunOptions(out=results_path.parent, resume=str(results_path)), spec, on_record, say)


def describe_phone(spec: str, device_profile: str | None) -> str:
    """`device --target adb://…`: the phone's facts and the tier they place it in, and why."""
    from bench.data import workloads

    target = adb.parse_target(spec).attached()
    facts = phone_facts(target)
    profile = workloads.load_device_profile(device_profile) if device_profile else None
    placement = tiering.place(facts, profile, None)
    lines = [f"  {key.removeprefix('device_')}: {value}" for key, value in facts.items() if value is not None]
    lines += [f"tier: {placement.tier}"] + [f"  {why}" for why in placement.why]
    return "\n".join(lines) + "\n"
