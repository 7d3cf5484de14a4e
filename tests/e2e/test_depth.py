"""Depth sweeps: a fixed request on top of history the runtime holds in its own cache. The
CLI on the FAKE runner: exact figures, capacity, a runtime that loses the history, the
artifact that holds a sweep's context."""

import pytest

from bench.data.suite import load_suite
from bench.errors import BenchError
from tests.support.helpers import edgebench, on_fake, read_jsonl

SUITE = """
id = "depth-test"
description = "a depth sweep"

[[prompt]]
id = "fill"
category = "autocomplete"
kind = "completion"
text = "one two three four five six seven eight nine ten"
max_new_tokens = 4

[[prompt]]
id = "pp8-tg4"
category = "depth"
kind = "depth"
prompt_tokens = 8
max_new_tokens = 4
fill_from = "fill"
depths = {depths}
tags = ["depth"]
"""
PROFILE = """
name = "depth-test"
description = "one repetition per depth"
suite = "{suite}"
tags = ["depth"]
warmups = 0
repetitions = 1
"""


@pytest.fixture
def sweep(tmp_path, fake_script):
    """`edgebench run --profile P` on the FAKE runner over a depth suite; (result, records)."""

    def run(depths="[0, 64, 256]", out="out", **script):
        suite = tmp_path / "suite.toml"
        suite.write_text(SUITE.format(depths=depths))
        profile = tmp_path / "profile.toml"
        profile.write_text(PROFILE.format(suite=suite))
        out = tmp_path / out
        script = fake_script(prefill_ms_per_token=1, first_token_ms=4, decode_ms=8, fill_ms_per_token=2, **script)
        result = edgebench(*on_fake("run", script), "--profile", str(profile), "--out", str(out))
        run.out = out
        return result, read_jsonl(next(out.glob("*.jsonl")))

    return run


def test_a_depth_prompt_is_one_prompt_per_depth(tmp_path):
    path = tmp_path / "suite.toml"
    path.write_text(SUITE.format(depths="[0, 512, 2048]"))
    suite = load_suite(str(path))
    assert [(p.id, p.depth) for p in suite.prompts[1:]] == [
        ("pp8-tg4@d0", 0),
        ("pp8-tg4@d512", 512),
        ("pp8-tg4@d2048", 2048),
    ]
    path.write_text(SUITE.format(depths="[512, 0]"))
    with pytest.raises(BenchError, match="rising order"):
        load_suite(str(path))


def test_records_carry_the_depth_and_the_fills_own_rate(sweep):
    result, records = sweep()
    assert result.returncode == 0, result.stderr
    by_depth = {r["depth"]: r for r in records}
    assert set(by_depth) == {0, 64, 256} and all(r["status"] == "ok" for r in records)
    assert by_depth[0]["fill_tok_s"] is None
    deep = by_depth[256]
    assert deep["fill_ms"] == 512 and deep["fill_tok_s"] == pytest.approx(500)  # 2 ms a token, outside the request
    assert deep["ttft_ms"] == 8 + 4 and deep["prompt_tokens"] == 8 and deep["new_tokens"] == 4  # the request alone


def test_the_report_and_the_page_show_speed_against_depth(sweep):
    result, _ = sweep(kv_bytes_per_token=1000)
    report = next(sweep.out.glob("*.md")).read_text()
    section = report.split("## Speed at depth")[1]
    rows = [line for line in section.splitlines() if line.startswith("| fake")]
    assert [row.split("|")[3].strip() for row in rows] == ["0", "64", "256"]  # a row per depth
    assert "| 125.0 |" in rows[0] and "| 0.3 |" in rows[2]  # decode 1000/8 tok/s; KV of 256 + 8 + 4 tokens
    page = next(sweep.out.glob("*.html")).read_text()
    assert "decode tok/s against tokens of history" in page and "TTFT ms against tokens of history" in page
    merged = edgebench("matrix", str(sweep.out))
    assert merged.returncode == 0 and "## Speed at depth" in merged.stdout, merged.stderr


def test_compare_keeps_each_depth_its_own_cell(sweep):
    sweep(out="base")
    sweep(out="slower", decode_ms_from=[[2, 16]])  # the third generation on, depth 256: decode twice as slow
    base, slower = (next((sweep.out.parent / name).glob("*.jsonl")) for name in ("base", "slower"))
    result = edgebench("compare", str(base), str(slower))
    assert result.returncode == 1
    regressed = [line for line in result.stdout.splitlines() if "regress" in line.lower() and "@d" in line]
    assert regressed and all("pp8-tg4@d256" in line for line in regressed), result.stdout


def test_a_history_the_runtime_does_not_hold_fails_its_records(sweep):
    result, records = sweep(loses_history=True)
    assert result.returncode == 1
    deep = [r for r in records if r["depth"]]
    assert deep and all(r["status"] == "error" and "history was not in its cache" in r["error"] for r in deep)
    assert next(r for r in records if r["depth"] == 0)["status"] == "ok"  # no history: nothing to lose


def test_the_sweep_stops_at_the_caches_capacity_and_says_where(sweep):
    result, records = sweep(depths="[0, 64, 256, 512]", capacity=200)
    assert result.returncode == 0, result.stderr  # a cache too small is not a failure
    status = {r["depth"]: r["status"] for r in records}
    assert status == {0: "ok", 64: "ok", 256: "skipped", 512: "skipped"}
    reason = next(r for r in records if r["depth"] == 256)["skip_reason"]
    assert "stops here" in reason and "256 tokens of history" in reason and "200" in reason
    report = next(sweep.out.glob("*.md")).read_text()
    assert "skipped: the depth sweep stops here" in report and "--no-budget" not in report  # not the time budget's


CONTEXT_PLUGIN = '''
"""A FAKE runner whose export fixes its KV capacity, as ExecuTorch's and LiteRT's do (tests only)."""
import json

from runners.base import Exporter
from runners.fake import FakeRunner


class ContextRunner(FakeRunner):
    name = "ctxfake"
    artifact_kind = "scripted export"
    exporter = Exporter(tool="ctx exporter", distribution="edgebench-ctxfake", target="edgebench_ctxfake:export",
                        quantizations=("q8",), default_quantization="q8", extra="ctxfake", context=128)


def export(checkpoint, out, quantization, context=128):
    (out / "script.json").write_text(json.dumps({"decode_ms": 5, "capacity": context, "fill_ms_per_token": 1}))
    return {"artifact": "script.json", "cache_length": context}
'''


def test_run_takes_the_artifact_that_holds_the_sweep_or_says_which_prepare_to_run(tmp_path, tiny_checkpoint):
    import os

    from tests.support.helpers import ROOT, install_plugin

    (tmp_path / "site").mkdir()
    site = install_plugin(tmp_path / "site", "ctxfake", CONTEXT_PLUGIN, "ContextRunner")
    env = {"PYTHONPATH": os.pathsep.join([str(site), str(ROOT)])}
    suite, profile = tmp_path / "suite.toml", tmp_path / "profile.toml"
    suite.write_text(SUITE.format(depths="[0, 64, 256]"))
    profile.write_text(PROFILE.format(suite=suite) + "context_tokens = 300\n")
    common = ("--model", str(tiny_checkpoint), "--cache", str(tmp_path / "cache"))

    def run(out: str, *more: str):
        result = edgebench(
            "run", "--runner", "ctxfake", "--profile", str(profile), "--out", out, *common, *more, env=env
        )
        return result, {r["depth"]: r["status"] for r in read_jsonl(next((tmp_path / out).glob("*.jsonl")))}

    assert edgebench("prepare", "--runner", "ctxfake", *common, env=env).returncode == 0
    result, status = run(str(tmp_path / "short"))
    assert result.returncode == 0, result.stderr
    assert status == {0: "ok", 64: "ok", 256: "skipped"}  # the export's 128 tokens hold 64 + 12, not 256 + 12
    assert "edgebench prepare --runner ctxfake --quant q8 --context 300" in " ".join(result.stderr.split())
    made = edgebench("prepare", "--runner", "ctxfake", "--context", "300", *common, env=env)
    assert made.returncode == 0 and "exported" in made.stdout  # its own cache key, beside the first
    result, status = run(str(tmp_path / "long"))
    assert result.returncode == 0 and status == {0: "ok", 64: "ok", 256: "ok"}, result.stderr
    common = ("--model", str(tiny_checkpoint), "--cache", str(tmp_path / "fresh"))
    result, status = run(str(tmp_path / "prepared"), "--prepare")  # exports one that holds the profile's context
    assert result.returncode == 0 and status == {0: "ok", 64: "ok", 256: "ok"}, result.stderr


def test_prepare_context_refuses_a_runner_that_sizes_its_cache_at_load(tmp_path):
    result = edgebench("prepare", "--runner", "onnxruntime", "--context", "4096", "--cache", str(tmp_path))
    assert result.returncode == 2 and "sizes its KV cache when it loads" in result.stderr
    assert "Traceback" not in result.stderr
