"""Phones over adb, against the adbd test double (tests/support/adbd_double.py) serving the
real Debian `adb`: the transport, its one-line errors, the pushed aarch64 device runner
under qemu-user-static, and the phone's state from fixture files."""

from __future__ import annotations

import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.run import harness
from runners.base import TokenEvent
from runners.device_llamacpp import DeviceClock
from tests.support.helpers import ROOT, edgebench, read_jsonl, write_files
from tests.support.phone import attached_phone, why_no_aarch64, why_no_phone

BUILD = ROOT / "scripts" / "build-device-runner.sh"

needs_phone = pytest.mark.skipif(why_no_phone() is not None, reason=why_no_phone() or "")


def test_the_device_clock_times_spans_on_the_phone_not_the_gaps_between():
    """The harness reads the phone's stamps: a span starts where the phone received it, so
    adb's latency before a request (here 990 µs after the load ended) is in no figure."""
    clock = DeviceClock()
    before_load = clock()
    clock.anchor(5_000)  # the device runner started loading at 5 µs on its clock...
    clock.at(9_000)  # ...and was loaded at 9 µs
    assert clock() - before_load == 4_000

    def generation():
        clock.anchor(1_000_000)  # the request reached the phone
        clock.at(1_250_000)
        yield TokenEvent(1, "a")
        clock.at(1_300_000)
        yield TokenEvent(2, "b")
        clock.at(1_310_000)  # the runner's end

    m = harness.measure(harness.collect(generation(), clock), prompt_tokens=4)
    assert m.token_times_ns == (250_000, 300_000)
    assert (m.ttft_ms, m.e2e_ms) == pytest.approx((0.25, 0.31))


@pytest.fixture(scope="module")
def pixel(tmp_path_factory):
    if why_no_phone():
        pytest.skip(why_no_phone())
    phone = attached_phone(tmp_path_factory.mktemp("pixel"))
    yield phone
    phone.close()


@needs_phone
def test_the_double_serves_the_real_adb_client(pixel, tmp_path):
    """adb sees the phone, its shell gives exit codes, and a push reads back the same bytes."""
    listed = pixel.adb("devices", "-l").stdout
    assert f"{pixel.serial}" in listed and "model:Pixel_8" in listed
    done = pixel.adb("-s", pixel.serial, "shell", "getprop ro.product.model; exit 3")
    assert (done.stdout, done.returncode) == ("Pixel 8\n", 3)
    sent = tmp_path / "blob"
    sent.write_bytes(bytes(range(256)) * 3000)
    assert pixel.adb("-s", pixel.serial, "push", str(sent), "/data/local/tmp/t/blob").returncode == 0
    back = tmp_path / "back"
    assert pixel.adb("-s", pixel.serial, "pull", "/data/local/tmp/t/blob", str(back)).returncode == 0
    assert back.read_bytes() == sent.read_bytes()


SUITE = """
id = "phone-tiny"
description = "Small prompts for a phone under emulation (~1 token/s)."
version = 1

[[prompt]]
id = "complete"
category = "autocomplete"
kind = "completion"
description = "A short completion."
text = "The capital of France is"
max_new_tokens = 3

[[prompt]]
id = "chat"
category = "chat"
kind = "chat"
description = "A question through the GGUF's chat template."
user = "Hi"
max_new_tokens = 2

[[prompt]]
id = "pp8-tg3"
category = "throughput"
kind = "fixed"
description = "Prefill exactly 8 tokens, then decode exactly 3."
prompt_tokens = 8
fill_from = "complete"
max_new_tokens = 3
"""
PROFILE = """
name = "phone-tiny"
description = "One repetition, no warm-up."
warmups = 0
repetitions = 1
context_tokens = 256
generation_timeout_s = 300

[sustained]
prompt = "pp8-tg3"
duration = "20s"
window = "5s"
"""


def built_runner() -> Path | None:
    path = Path(subprocess.run(["bash", str(BUILD), "--print-path"], capture_output=True, text=True).stdout.strip())
    return path if path.is_file() else None


def why_no_runner() -> str | None:
    if built_runner() is None:
        return "the aarch64 device runner is not built (bash scripts/build-device-runner.sh, ~6-25 min once)"
    return why_no_aarch64()


def needs_runner(test):
    """A test of the aarch64 device runner (a real runtime): skipped, saying why, where it cannot run."""
    return pytest.mark.real(pytest.mark.skipif(why_no_runner() is not None, reason=why_no_runner() or "")(test))


def tiny_args(folder: Path, repetitions: int = 1) -> list[str]:
    """`edgebench run` of the tiny suite on llama.cpp, results in folder/out."""
    write_files(
        folder,
        {"suite.toml": SUITE, "profile.toml": PROFILE.replace("repetitions = 1", f"repetitions = {repetitions}")},
    )
    files = ["--suite", str(folder / "suite.toml"), "--profile", str(folder / "profile.toml")]
    return ["run", "--runner", "llama.cpp", *files, "--threads", "2", "--out", str(folder / "out")]


def tiny_run(folder: Path, *more: str, env: dict | None = None):
    return edgebench(*tiny_args(folder), *more, env=env)


@pytest.fixture(scope="module")
def phone_run(pixel, tmp_path_factory):
    """The tiny suite on the phone double, cooled down first to its 41.5 °C (a no-op wait)."""
    if why_no_runner():
        pytest.skip(why_no_runner())
    target = ["--target", f"adb://{pixel.serial}", "--cooldown-until-temp", "45"]
    done = tiny_run(tmp_path_factory.mktemp("phone-run"), *target, env=pixel.env)
    assert done.returncode == 0, done.stderr
    return done


@pytest.fixture(scope="module")
def phone_records(phone_run):
    (results,) = re.findall(r"results (\S+\.jsonl)", phone_run.stdout)
    return read_jsonl(Path(results))


@needs_runner
def test_a_phone_run_records_what_a_host_run_records(pixel, phone_records, tmp_path):
    """The aarch64 device runner's records carry the host runner's fields and greedy tokens,
    the phone's facts, and the phone's own clock: TTFT covers llama.cpp's prompt eval as
    measured on the device, with no adb round trip in it."""
    host = tiny_run(tmp_path)
    assert host.returncode == 0, host.stderr
    host_records = read_jsonl(next((tmp_path / "out").glob("*.jsonl")))
    # A phone has no Python, and no bandwidth figure without a device profile (so no roofline).
    explained = {"device_python", "bandwidth_gbs", "bandwidth_source", "bandwidth_threads"}
    explained |= {"decode_roofline_tok_s", "mbu"}
    explained |= {"energy_refused"}  # this host has no RAPL counter; the phone's battery gives a figure
    filled = lambda record: {key for key, value in record.items() if value is not None}  # noqa: E731
    assert [r["status"] for r in phone_records] == ["ok", "ok", "ok"]
    for phone, here in zip(phone_records, host_records, strict=True):
        assert filled(here) - filled(phone) <= explained
        # same GGUF, same prompt (a chat through the same template), same greedy tokens
        assert (phone["prompt_tokens"], phone["output_token_ids"]) == (here["prompt_tokens"], here["output_token_ids"])
        assert phone["remote_target"] == f"adb://{pixel.serial}" and not phone["synthetic"]
        assert (phone["device_board"], phone["device_arch"]) == ("Google Pixel 8, Tensor G3", "arm64-v8a")
        assert phone["device_os"].startswith("Android 14") and phone["device_cores_logical"] == 8
        assert (phone["temp_c_start"], phone["cpu_freq_max_mhz"]) == (41.5, 2367)  # sampled on the phone
        assert phone["runtime_version"].endswith("(device runner)")
        assert "NEON = 1" in phone["runner_settings"]["system_info"]  # the aarch64 build's features
        native = phone["native"]
        assert (native["n_p_eval"], native["n_eval"]) == (phone["prompt_tokens"], phone["new_tokens"] - 1)
        assert native["t_p_eval_ms"] <= phone["ttft_ms"] < native["t_p_eval_ms"] * 1.2
    assert phone_records[2]["new_tokens"] == 3 and phone_records[2]["prompt_tokens"] == 8


@needs_runner
def test_a_phone_run_cools_the_phone_first_and_records_its_state_before_the_runner(phone_run, phone_records):
    """--cooldown-until-temp before the phone's (one) runner, on the phone's own sensor; its
    screen, charger and CPU use before the runner in every record (the CPU is this host's
    under the double, whose /proc is the host's)."""
    assert "device at 42 °C (dumpsys thermalservice AP (thermal status 1))" in phone_run.stderr
    for record in phone_records:
        assert (record["screen_state"], record["charging"]) == ("OFF", False)
        assert 0 <= record["cpu_busy_percent_before"] <= 100


@needs_runner
def test_a_phone_runs_records_carry_energy_per_token_from_its_battery(pixel, phone_records):
    """Each generation's energy above the idle draw measured just before it: the fixture
    draws 3.9 V × 1 A more while the device runner computes, which it does the whole
    generation long (e2e on the phone's clock), to within the readings' resolution."""
    for record in phone_records:
        assert record["energy_refused"] is None, record["energy_refused"]
        assert record["idle_power_w"] == pytest.approx(3.9 * 0.25, rel=0.05)
        readings = int(re.search(r"(\d+) readings", record["energy_source"]).group(1))
        seconds = record["e2e_ms"] / 1000
        expected_j = 3.9 * 1.0 * seconds
        assert abs(record["energy_j"] - expected_j) <= 3.9 * 2 * seconds / readings + 0.1 * expected_j, record
        assert record["energy_j_per_token"] == pytest.approx(record["energy_j"] / record["new_tokens"], rel=1e-3)


def one_line_error(done, *words: str) -> str:
    """The command failed with one `Error:` line (and its hint), saying `words`, no traceback."""
    assert done.returncode != 0 and "Traceback" not in done.stderr, done.stderr
    (line,) = [line for line in done.stderr.splitlines() if line.startswith("Error:")]
    assert all(word in line for word in words), line
    return line


@needs_phone
def test_device_shows_the_phone(pixel):
    """`device --target adb://` (the one phone attached) prints the phone's facts and tier."""
    done = edgebench("device", "--target", "adb://", env=pixel.env)
    assert done.returncode == 0, done.stderr
    assert "adb://:" in done.stdout and "Google Pixel 8, Tensor G3" in done.stdout
    assert "arch: arm64-v8a" in done.stdout and "os: Android 14 (SDK 34" in done.stdout
    assert "tier: flagship" in done.stdout and "as device profile pixel-8-pro states it" in done.stdout  # by its SoC


@needs_phone
def test_no_device_is_one_line(pixel):
    one_line_error(
        edgebench("device", "--target", "adb://R58N12ABCDE", env=pixel.env), "no device R58N12ABCDE", pixel.serial
    )


@needs_phone
@pytest.mark.parametrize(
    "mode,words", [("unauthorized", "has not authorized this computer"), ("offline", "is offline")]
)
def test_an_unready_phone_is_one_line(tmp_path, mode, words):
    phone = attached_phone(tmp_path, mode=mode)
    try:
        one_line_error(edgebench("device", "--target", f"adb://{phone.serial}", env=phone.env), words)
    finally:
        phone.close()


@needs_phone
@needs_runner  # the space is checked as the runner is pushed: without one the run stops before
def test_a_full_phone_is_one_line(tmp_path):
    phone = attached_phone(tmp_path, free_bytes=5 * 2**20)
    try:
        done = tiny_run(tmp_path, "--target", f"adb://{phone.serial}", env=phone.env)
        one_line_error(done, "no space on the phone", "5 MiB free")
    finally:
        phone.close()


@needs_phone
def test_a_binary_the_phone_cannot_execute_is_one_line(pixel, tmp_path):
    """An x86-64 device runner is refused before anything is pushed."""
    done = tiny_run(
        tmp_path, "--target", f"adb://{pixel.serial}", env=pixel.env | {"EDGEBENCH_DEVICE_RUNNER": "/bin/true"}
    )
    one_line_error(done, "the phone (arm64-v8a) cannot execute /bin/true", "x86-64 binary")


@needs_runner
@needs_phone
def test_a_dropped_phone_keeps_its_records_and_resume_finishes(tmp_path):
    """The phone goes away after the first record: the run stops saying how to resume, the
    record is kept, and `run --resume` on the reattached phone measures the rest."""
    phone = attached_phone(tmp_path)
    try:
        command = [sys.executable, "-c", "from bench.cli import main; main()", *tiny_args(tmp_path, repetitions=2)]
        command += ["--target", f"adb://{phone.serial}"]
        run = subprocess.Popen(command, cwd=ROOT, env=os.environ | phone.env, stderr=subprocess.PIPE, text=True)
        results = None
        while run.poll() is None and not (results and read_jsonl(results)):
            results = next((tmp_path / "out").glob("*.jsonl"), None) if (tmp_path / "out").exists() else None
            time.sleep(0.2)
        phone.stop()
        _, stderr = run.communicate(timeout=300)
        line = one_line_error(subprocess.CompletedProcess(command, run.returncode, "", stderr), "went away mid-run")
        kept = read_jsonl(results)
        assert kept[0]["status"] == "ok" and "kept" in line
        assert [r["status"] for r in kept[1:]] in ([], ["interrupted"])
        (hint,) = re.findall(r"edgebench run --resume (\S+) --out", stderr)

        phone.start()
        done = edgebench("run", "--resume", hint, "--out", str(tmp_path / "out"), env=phone.env)
        assert done.returncode == 0, done.stderr
        measured = [(r["prompt_id"], r["repeat"]) for r in read_jsonl(results) if r["status"] == "ok"]
        assert sorted(measured) == [(p, r) for p in ("chat", "complete", "pp8-tg3") for r in (0, 1)]
    finally:
        phone.close()


@needs_phone
@pytest.mark.parametrize(
    "name,watts,source",
    [
        ("pixel", 3.9 * 0.25, "current_now in µA, negative while discharging"),
        ("galaxy", 4.1 * 0.3, "current_now in mA, positive while discharging"),
        ("charging", None, "charging (AC powered)"),
        ("nocurrent", None, "no battery current_now"),
    ],
)
def test_the_phone_state_is_read_in_each_vendors_units(tmp_path, name, watts, source):
    """The battery's draw in W whatever the vendor's units and sign, refused with the reason
    while charging or without a current; temperature from the thermal HAL, cpufreq in MHz."""
    from bench.device.adb import AdbTarget
    from bench.device.phone import PhoneReader

    phone = attached_phone(tmp_path, name)
    try:
        os.environ["ANDROID_ADB_SERVER_PORT"] = phone.env["ANDROID_ADB_SERVER_PORT"]
        reader = PhoneReader(AdbTarget(f"adb://{phone.serial}", phone.serial))
        temp, freq = reader.temperature(), reader.frequency()
        assert (reader.power.watts, source in reader.power.source) == (pytest.approx(watts), True)
        assert (reader.energy() is None) == (watts is None)
        assert (temp.celsius, temp.source) == (41.5, "dumpsys thermalservice AP (thermal status 1)")
        assert (freq.current_mhz, freq.max_mhz) == ((1704 + 2367) / 2, 2367)
    finally:
        os.environ.pop("ANDROID_ADB_SERVER_PORT")
        phone.close()


@needs_runner
@needs_phone
def test_sustained_on_a_phone_samples_the_phones_power_and_temperature(pixel, tmp_path):
    """The sustained series is the phone's: its thermal HAL, and its battery's draw, which the
    fixture raises from 0.25 A to 1.25 A while the device runner runs (all the loop long). Each
    sample's power is the energy counter's rise over the monitor's own span, so the check
    is the median's order of magnitude: busy, not idle (0.98 W), nor a unit off."""
    run = tiny_args(tmp_path)
    done = edgebench("sustained", *run[1:], "--target", f"adb://{pixel.serial}", env=pixel.env)
    assert done.returncode == 0, done.stderr
    samples = read_jsonl(next((tmp_path / "out").glob("*.device.jsonl")))
    assert {s["temp_source"] for s in samples} == {"dumpsys thermalservice AP (thermal status 1)"}
    # A reading over adb that a busy host did not finish in time leaves its sample without power.
    powered = [s for s in samples if s["power_w"] is not None]
    assert len(powered) >= 0.75 * len(samples)
    assert {s["power_source"] for s in powered} == {"battery V×I (current_now in µA, negative while discharging)"}
    assert 3.9 * 1.25 / 1.5 < statistics.median(s["power_w"] for s in powered) < 3.9 * 1.25 * 1.5
    assert list((tmp_path / "out").glob("*.llama.cpp.png"))  # power and temperature against time


# The default suite's autocomplete-note completion: the first of its greedy tokens where x86
# and the aarch64 build disagree is the 5th (the x86 top-2 margin there is 0.024 logits).
NEAR_TIE_PROMPT = "The pump at the north well stopped twice this morning, so the technician replaced the"


def host_greedy_with_margins(gguf: Path, prompt: str, n: int) -> tuple[list[int], list[int], list[float]]:
    """The x86 host runner's greedy ids, with the runner-up and top-2 margin of the logits
    each was sampled from (read from its context as each token is yielded)."""
    import llama_cpp
    import numpy as np

    from runners.base import GenerationRequest, RunnerOptions
    from runners.llamacpp import LlamaCppRunner

    runner = LlamaCppRunner()
    runner.load(gguf, RunnerOptions(threads=2, context_tokens=256, settings=dict(LlamaCppRunner.defaults)))
    ids, seconds, margins = [], [], []
    for event in runner.generate(GenerationRequest(n, text=prompt)):
        logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(runner.llm.ctx, -1), shape=(runner.n_vocab,))
        second, first = np.argsort(logits)[-2:]
        assert first == event.token_id
        ids.append(int(first)), seconds.append(int(second)), margins.append(float(logits[first] - logits[second]))
    runner.close()
    return ids, seconds, margins


@needs_runner
def test_greedy_tokens_match_x86_until_a_near_tie_the_isas_round_apart(pixel, monkeypatch):
    """The same GGUF, code, settings and thread count: the aarch64 device runner's greedy
    tokens equal x86's while the top choice leads clearly, and part at the first near tie,
    where it picks x86's runner-up. Not a thread count or sampler difference (1 and 2
    threads give bit-identical logits on each ISA): the two ISAs' kernels round differently
    (x86 AVX-512 and Arm NEON/dot-product quantize activations to 8 bits with differently
    rounded scales), so every logit differs by ~0.14 on average from the first token on."""
    from bench.data import models
    from bench.device import adb
    from bench.run.phone_run import device_runner_binary
    from runners.base import GenerationRequest, RunnerOptions
    from runners.device_llamacpp import DeviceLlamaCppRunner

    gguf = models.get_model(models.default_model_id()).source_path()
    host, runner_up, margins = host_greedy_with_margins(gguf, NEAR_TIE_PROMPT, 5)
    tie = next(i for i, margin in enumerate(margins) if margin < 0.05)
    assert tie == 4 and min(margins[:tie]) > 0.25  # clear leads, then a near tie at the 5th token

    monkeypatch.setenv("ANDROID_ADB_SERVER_PORT", pixel.env["ANDROID_ADB_SERVER_PORT"])
    target = adb.AdbTarget(f"adb://{pixel.serial}", pixel.serial)
    device = {"adb": target.adb(), "runner": target.push_binary(device_runner_binary()), "artifact": target.push(gguf)}
    runner = DeviceLlamaCppRunner()
    settings = {**DeviceLlamaCppRunner.defaults, "device": device}
    runner.load(gguf, RunnerOptions(threads=2, context_tokens=256, settings=settings))
    try:
        phone = [e.token_id for e in runner.generate(GenerationRequest(tie + 1, text=NEAR_TIE_PROMPT))]
    finally:
        runner.close()
    assert phone[:tie] == host[:tie]
    assert phone[tie] == runner_up[tie] != host[tie]


@needs_phone
def test_a_runtimes_own_phone_binary_gives_records_on_its_own_clock(pixel, tmp_path):
    """--device-binary litert-lm=PATH: the binary (here a TEST DOUBLE of litert_lm_main, built
    for aarch64 from tests/support/litert_lm_main_double.c, printing BenchmarkInfo in the real
    engine's format) is pushed with the artifact and run for the fixed-length prompt with the
    flags litert_lm_main takes; its statistics become records on the runtime's clock, which the
    run's matrix labels; the chat and completion prompts are skipped, saying why."""
    if why_no_aarch64() or not shutil.which("aarch64-linux-gnu-gcc"):
        pytest.skip(why_no_aarch64() or "no aarch64 cross compiler (apt-get install gcc-aarch64-linux-gnu)")
    double = tmp_path / "litert_lm_main"
    source = ROOT / "tests" / "support" / "litert_lm_main_double.c"
    subprocess.run(["aarch64-linux-gnu-gcc", "-static", "-O1", "-o", str(double), str(source)], check=True)
    files = {"model.litertlm": "not a model: the double only opens it", "litert.json": "{}"}
    artifact = write_files(tmp_path / "artifact", files)
    args = tiny_args(tmp_path)
    args[args.index("llama.cpp")] = "litert-lm"
    done = edgebench(
        *args, "--artifact", f"litert-lm={artifact}", "--target", f"adb://{pixel.serial}",
        "--device-binary", f"litert-lm={double}", env=pixel.env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    records = {r["prompt_id"]: r for r in read_jsonl(next((tmp_path / "out").glob("*.jsonl")))}
    assert {records[p]["skip_reason"] for p in ("complete", "chat")} == {
        "litert_lm_main takes fixed-length requests only"
    }
    fixed = records["pp8-tg3"]
    assert (fixed["status"], fixed["clock"], fixed["prompt_tokens"], fixed["new_tokens"]) == ("ok", "runtime", 8, 3)
    assert (fixed["ttft_ms"], fixed["decode_tok_s"]) == (1020, pytest.approx(3 / 2.220158268, rel=1e-3))
    assert fixed["token_times_ns"] is None and fixed["itl_p50_ms"] is None  # no per-token stamps: no ITL
    assert fixed["native"]["prefill_turns"][0]["tokens"] == 8 and fixed["remote_target"] == f"adb://{pixel.serial}"
    assert fixed["runtime_version"] == "litert_lm_main (the runtime's own binary)"
    matrix = edgebench("matrix", str(next((tmp_path / "out").glob("*.jsonl"))))
    assert "litert-lm (runtime clock)" in matrix.stdout, matrix.stdout + matrix.stderr
