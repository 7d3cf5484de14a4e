"""Device facts from fixture OS trees, the bandwidth benchmark, and a run labelled with a
farm device's profile: tier, bandwidth, decode roofline and MBU in every record."""

from __future__ import annotations

import threading
import time
import xml.etree.ElementTree as ET

import psutil
import pytest

from bench.device import bandwidth, roofline
from bench.device import facts as device
from tests.support.helpers import edgebench, on_fake, read_jsonl


def _tree(root, files: dict[str, str]):
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_a_raspberry_pi_tree(tmp_path):
    root = _tree(
        tmp_path,
        {
            "proc/device-tree/model": "Raspberry Pi 5 Model B Rev 1.0\x00",
            "proc/cpuinfo": "processor\t: 0\nBogoMIPS\t: 108.00\nModel\t\t: Raspberry Pi 5 Model B Rev 1.0\n",
            "sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq": "2400000\n",
            "sys/devices/system/cpu/cpu1/cpufreq/cpuinfo_max_freq": "1800000\n",
            "dev/dri/renderD128": "",
        },
    )
    assert device.board(root) == "Raspberry Pi 5 Model B Rev 1.0"
    assert device.cpu_model(root) == "Raspberry Pi 5 Model B Rev 1.0"
    assert device.max_freq_mhz(root) == 2400
    assert device.accelerators(root) == {"gpu": "drm", "npu": None}


def test_a_jetson_tree(tmp_path):
    root = _tree(tmp_path, {"proc/device-tree/model": "NVIDIA Jetson Orin Nano Developer Kit", "dev/nvgpu": ""})
    assert device.board(root) == "NVIDIA Jetson Orin Nano Developer Kit"
    assert device.accelerators(root)["gpu"] == "nvidia-tegra"


def test_an_android_tree(tmp_path):
    root = _tree(
        tmp_path,
        {
            "system/build.prop": "# build\nro.product.manufacturer=Google\nro.product.model=Pixel 8 Pro\n",
            "vendor/build.prop": "ro.soc.model=Tensor G3\n",
            "dev/mali0": "",
        },
    )
    assert device.board(root) == "Google Pixel 8 Pro, Tensor G3"
    assert device.accelerators(root)["gpu"] == "mali"


def test_an_empty_tree_knows_nothing_but_does_not_fail(tmp_path):
    facts = device.device_facts(tmp_path)
    assert facts["device_board"] is None and facts["device_max_freq_mhz"] is None
    assert len(facts["device_fingerprint"]) == 16


def test_the_bandwidth_benchmark_measures_something_plausible():
    result = bandwidth.measure(buffer_mb=32, passes=3)
    assert 0.1 < result.gbs < 2000 and result.median_gbs <= result.gbs and result.threads == 1


def test_the_bandwidth_copy_is_shared_by_as_many_threads_as_asked():
    def busy_threads(threads: int) -> int:
        """Threads of this process, other than the test's own, that did a real share (a
        fifth or more) of the CPU work while the copy ran; sampled while they live."""
        me, mine = psutil.Process(), {t.id for t in psutil.Process().threads()}
        copying = threading.Thread(target=bandwidth.measure, kwargs=dict(threads=threads, buffer_mb=64, passes=12))
        seen: dict[int, float] = {}
        copying.start()
        while copying.is_alive():
            for t in me.threads():
                if t.id not in mine:
                    seen[t.id] = max(seen.get(t.id, 0.0), t.user_time + t.system_time)
            time.sleep(0.01)
        copying.join()
        seen.pop(copying.native_id, None)  # it allocates and waits; the pool's threads copy
        return sum(cpu > 0.2 * sum(seen.values()) for cpu in seen.values())

    assert busy_threads(1) == 1
    assert busy_threads(2) == 2


def test_the_roofline_reads_the_bytes_a_token_streams_not_the_artifact_folders_size():
    # LiteRT's folder holds the same weights twice (.tflite and .litertlm): its size is no roofline.
    record = {
        "bandwidth_gbs": 10.0,
        "weights_bytes": 100_000_000,
        "kv_bytes_per_token": 0,
        "artifact_bytes": 200_000_000,
        "prompt_tokens": 100,
        "new_tokens": 100,
        "decode_tok_s": 50.0,
    }
    assert roofline.roofline_fields(record) == {"decode_roofline_tok_s": 100.0, "mbu": 0.5}
    with_kv = roofline.roofline_fields({**record, "kv_bytes_per_token": 1_000_000})  # 150 tokens of context
    assert with_kv["decode_roofline_tok_s"] == 40.0
    assert roofline.roofline_fields({**record, "weights_bytes": None}) == {"decode_roofline_tok_s": None, "mbu": None}


def test_a_run_with_a_device_profile_labels_every_record(tmp_path, fake_script):
    script = fake_script(
        load_ms=5,
        prefill_ms_per_token=1,
        first_token_ms=4,
        decode_ms=8,
        eos_after=5,
        weights_bytes=50_000_000,
        kv_bytes_per_token=23040,
    )
    result = edgebench(
        *on_fake("run", script),
        "--profile",
        "quick",
        "--out",
        str(tmp_path / "out"),
        "--threads",
        "1",
        "--device-profile",
        "raspberry-pi-5",
        "--junit",
        str(tmp_path / "verdicts.xml"),
    )
    assert result.returncode == 0, result.stderr
    suites = ET.parse(tmp_path / "verdicts.xml").getroot()
    assert suites.find("testsuite").get("name") == "entry.raspberry-pi-5" and int(suites.get("tests")) == 8
    records = read_jsonl(next((tmp_path / "out").glob("*.jsonl")))
    assert {r["device_profile"] for r in records} == {"raspberry-pi-5"}
    assert {r["tier"] for r in records} == {"entry"}
    assert {r["bandwidth_gbs"] for r in records} == {17.1}
    assert {r["bandwidth_source"] for r in records} == {"datasheet (device profile raspberry-pi-5)"}
    assert {r["bandwidth_threads"] for r in records} == {None}  # a datasheet figure ran on no thread
    fixed = next(r for r in records if r["prompt_id"] == "pp128-tg64" and not r["warmup"])
    expected = 17.1e9 / (50_000_000 + 23040 * (128 + 64 / 2))
    assert fixed["decode_roofline_tok_s"] == pytest.approx(expected, abs=0.01)
    assert fixed["mbu"] == pytest.approx(fixed["decode_tok_s"] / expected, rel=1e-3)
    # The matrix reads the source the run wrote: this MBU is a datasheet one, in its own column.
    merged = edgebench("matrix", str(tmp_path / "out"), "--out", str(tmp_path / "matrix"))
    assert merged.returncode == 0, merged.stderr
    table = (tmp_path / "matrix" / "matrix.md").read_text()
    assert "MBU % (datasheet bw)" in table and "MBU % (measured bw)" not in table


def test_an_unknown_device_profile_is_one_line_error(tmp_path):
    result = edgebench(
        "run", "--runner", "fake", "--profile", "quick", "--out", str(tmp_path), "--device-profile", "nokia-3310"
    )
    assert result.returncode != 0 and "Error:" in result.stderr and "Traceback" not in result.stderr
    assert "pixel-8-pro" in result.stderr  # the hint lists the known profiles


def test_the_device_command_prints_facts_tier_and_why():
    result = edgebench("device", "--device-profile", "galaxy-a54")
    assert result.returncode == 0, result.stderr
    assert "fingerprint" in result.stdout and "tier: mid" in result.stdout
    assert "mid: the tier of its SoC, Samsung Exynos 1380, as device profile galaxy-a54 states it" in result.stdout
