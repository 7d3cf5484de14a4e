"""Workloads, tiers and device profiles as data: the packaged files load, every suite
category has a budget, tiers assign by their rules, bad files are refused by name."""

from __future__ import annotations

import pytest

from bench.data import workloads as workload_data
from bench.data.suite import load_suite
from bench.data.validate import validate_file
from bench.errors import BenchError
from tests.support.helpers import edgebench


def test_every_default_suite_category_maps_to_a_workload():
    categories = {p.category for p in load_suite("default").prompts}
    assert categories == {
        "autocomplete",
        "chat",
        "summarization",
        "extraction",
        "classification",
        "conversation",
        "throughput",
    }
    assert workload_data.check_suite_categories(categories, workload_data.load_workloads()) == []


def test_the_stated_budgets():
    workloads = {w.id: w for w in workload_data.load_workloads()}
    assert workloads["keyboard-autocomplete"].ttft_ms_max == 50
    assert workloads["interactive-chat"].ttft_ms_max == 1000
    assert workloads["interactive-chat"].decode_tok_s_min == 10


def test_device_profiles_name_their_sources():
    profiles = workload_data.device_profiles()
    assert {"pixel-8-pro", "raspberry-pi-5", "macbook-air-m2"} <= set(profiles)
    classes = {p.device_class for p in profiles.values()}
    assert {"phone", "board", "laptop"} <= classes
    for p in profiles.values():
        assert p.sources and p.bandwidth_gbs and p.bandwidth_gbs > 0


def test_tiers_assign_the_first_tier_whose_rules_hold_and_say_why():
    tiers = workload_data.load_tiers()
    tier, why = workload_data.assign_tier(tiers, ram_gb=12, cores=9, bandwidth_gbs=68.3, device_class="phone")
    assert tier.id == "flagship" and why[-1].startswith("flagship: RAM 12 >= 7.5 GB")
    tier, why = workload_data.assign_tier(tiers, ram_gb=8, cores=4, bandwidth_gbs=17.1, device_class="board")
    assert tier.id == "entry"
    assert any("bandwidth 17.1 < 20 GB/s" in line for line in why)
    # Bandwidth not measured: a tier that needs it does not hold.
    tier, why = workload_data.assign_tier(tiers, ram_gb=24, cores=2, bandwidth_gbs=None, device_class=None)
    assert tier.id == "micro" and "bandwidth unknown < 50 GB/s" in why[0]


def test_validate_knows_the_new_kinds(tmp_path):
    assert validate_file(workload_data.datafiles.packaged_dir(".") / "workloads.toml").startswith("workloads")
    assert validate_file(workload_data.datafiles.packaged_dir(".") / "tiers.toml").startswith("device tiers")
    assert "pixel-8-pro" in validate_file(workload_data.datafiles.packaged_dir("devices") / "pixel-8-pro.toml")


@pytest.mark.parametrize(
    "text, message",
    [
        (
            '[[workload]]\nid="a"\ndescription="d"\ncategories=["chat"]\nttft_ms_max=1\nspeed=3\n',
            "unknown key(s) speed",
        ),
        ('[[workload]]\nid="a"\ndescription="d"\ncategories=["chat"]\n', "states no budget"),
        (
            '[[workload]]\nid="a"\ndescription="d"\ncategories=["chat"]\nttft_ms_max=1\n'
            '[[workload]]\nid="b"\ndescription="d"\ncategories=["chat"]\nttft_ms_max=1\n',
            "maps to both",
        ),
        ('[[tier]]\nid="a"\ndescription="d"\nclasses=["toaster"]\n', "unknown device class 'toaster'"),
        ('id="x"\nname="X"\nsources=["s"]\nram_gb=4\ncores=4\nclass="phone"\nbandwidth_gbs=-1\n', "must be positive"),
        ('id="x"\nname="X"\nsources=["s"]\nram_gb="4"\ncores=4\n', "'ram_gb' must be float"),
    ],
)
def test_bad_files_are_refused_with_the_file_named(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(BenchError) as info:
        validate_file(path)
    assert message in info.value.message and str(path) in info.value.message


def test_validate_command_on_the_packaged_files():
    result = edgebench(
        "validate", "profiles/workloads.toml", "profiles/tiers.toml", "profiles/devices/raspberry-pi-5.toml"
    )
    assert result.returncode == 0, result.stderr
    assert "device profile 'raspberry-pi-5'" in result.stdout


def test_a_targets_command_line_carries_each_run_option_as_run_options_declares_it(tmp_path):
    from bench.data import models
    from bench.run.remote import forwarded_options
    from bench.run.setup import RunOptions

    profile = tmp_path / "mine.toml"
    profile.write_text("")
    options = RunOptions(
        threads=2,
        settings=("llama.cpp:n_batch=64", "llama.cpp:use_mmap=false"),
        allow_fallback=True,
        no_budget=True,
        memory_limit_mb=512.0,
        profile=str(profile),
        cache=tmp_path,
        quality=True,
    )
    uploaded = []
    args = forwarded_options(
        options,
        {"llama.cpp": ["/t/m.gguf"]},
        models.get_model("smollm2-135m"),
        ["--json"],
        lambda v: uploaded.append(v) or v,
    )
    line = " ".join(args)
    assert "--model smollm2-135m --runner llama.cpp --artifact llama.cpp=/t/m.gguf" in line
    assert "--threads 2" in line and "--memory-limit-mb 512.0" in line
    assert "--setting llama.cpp:n_batch=64 --setting llama.cpp:use_mmap=false" in line
    assert "--allow-fallback" in line and "--no-budget" in line
    assert "--no-quality" in line and "--cache" not in line  # the target scores none and keeps its own cache
    assert args[-1] == "--json" and uploaded == [str(profile)]  # files go over first (the suite: the profile names it)


def test_phone_profiles_state_their_socs_own_tier():
    """A phone's tier is its SoC's class (flagship, mid, entry), stated in its profile."""
    phones = {p.id: p.tier for p in workload_data.device_profiles().values() if p.device_class == "phone"}
    assert phones == {
        "pixel-8-pro": "flagship",
        "galaxy-s23-ultra": "flagship",
        "galaxy-a54": "mid",
        "galaxy-a15": "entry",
    }


def test_an_attached_phone_is_tiered_by_its_soc_else_by_the_rules():
    """A Pixel 8 (8 GB, no bandwidth measured on a phone) would be ruled entry; its SoC,
    getprop's "Tensor G3", is a flagship's. An unknown SoC falls back to the rules."""
    from bench.device import tiering

    facts = {"device_cpu_model": "Tensor G3", "device_ram_gb": 7.6, "device_cores_logical": 8}
    placed = tiering.place(facts, None, None)
    assert (placed.tier, placed.why) == (
        "flagship",
        ("flagship: the tier of its SoC, Google Tensor G3, as device profile pixel-8-pro states it",),
    )
    assert tiering.place(facts | {"device_cpu_model": "SM6225"}, None, None).tier == "entry"
    assert tiering.place({}, workload_data.load_device_profile("galaxy-a54"), None).tier == "mid"


def test_a_profile_stating_an_unknown_tier_is_refused(tmp_path):
    import pytest

    from bench.errors import BenchError

    text = (workload_data.datafiles.packaged_dir(".") / "devices" / "galaxy-a15.toml").read_text()
    (tmp_path / "x.toml").write_text(text.replace('tier = "entry"', 'tier = "low"'))
    with pytest.raises(BenchError, match="tier 'low' is not a tier of tiers.toml"):
        workload_data.load_device_profile(str(tmp_path / "x.toml"))
