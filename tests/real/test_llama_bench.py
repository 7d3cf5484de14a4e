"""edgebench's llama.cpp runner against llama-bench built from the same vendored llama.cpp."""

import json
import os
import stat

import pytest

from bench.errors import BenchError
from bench.run import llama_bench

# The JSON of a real `llama-bench -m SmolLM2-135M-Instruct.Q4_1.gguf -p 16 -n 4 -r 2 -t 2 -o json`
# (built by scripts/build-llama-bench.sh), cut to the fields edgebench reads and a few others.
REAL_OUTPUT = [
    {
        "build_commit": "0c1e570",
        "model_type": "llama 256M Q4_1",
        "model_size": 96576768,
        "n_batch": 2048,
        "n_ubatch": 512,
        "n_threads": 2,
        "type_k": "f16",
        "type_v": "f16",
        "flash_attn": -1,
        "load_mode": "auto",
        "repack": True,
        "n_prompt": 16,
        "n_gen": 0,
        "n_depth": 0,
        "avg_ts": 8.926884,
        "samples_ns": [1239621901, 3234541297],
        "samples_ts": [12.9072, 4.94661],
    },
    {
        "build_commit": "0c1e570",
        "model_type": "llama 256M Q4_1",
        "model_size": 96576768,
        "n_batch": 2048,
        "n_ubatch": 512,
        "n_threads": 2,
        "type_k": "f16",
        "type_v": "f16",
        "flash_attn": -1,
        "load_mode": "auto",
        "repack": True,
        "n_prompt": 0,
        "n_gen": 4,
        "n_depth": 0,
        "avg_ts": 3.197865,
        "samples_ns": [3368587785, 768006488],
        "samples_ts": [1.18744, 5.20829],
    },
]


def test_llama_bench_json_gives_each_tests_repetitions():
    expected = llama_bench.reported_fields(llama_bench.runner_settings(), threads=2)
    assert llama_bench.parse_results(json.dumps(REAL_OUTPUT), expected) == {
        "pp16": [12.9072, 4.94661],
        "tg4": [1.18744, 5.20829],
    }


def test_a_llama_bench_run_with_other_settings_is_refused():
    # The runner's settings with flash attention off; llama-bench reported auto (-1).
    expected = llama_bench.reported_fields(llama_bench.runner_settings(("llama.cpp:flash_attn=off",)), threads=2)
    with pytest.raises(BenchError, match=r"other settings than asked.*'flash_attn': \(-1, 0\)"):
        llama_bench.parse_results(json.dumps(REAL_OUTPUT), expected)


def test_llama_bench_gets_the_runners_settings_as_its_own_options():
    args = llama_bench.llama_bench_args(llama_bench.runner_settings(("llama.cpp:type_k=q8_0",)), threads=3)
    assert " ".join(args) == "-t 3 -fa auto -b 2048 -ub 512 -ctk q8_0 -ctv f16 -lm mmap"


def test_a_given_path_that_is_no_program_is_a_one_line_error(tmp_path):
    not_a_program = tmp_path / "llama-bench"
    not_a_program.write_text("")
    with pytest.raises(BenchError, match="is not an executable file"):
        llama_bench.find(str(not_a_program))
    not_a_program.chmod(not_a_program.stat().st_mode | stat.S_IXUSR)
    assert llama_bench.find(str(not_a_program)) == not_a_program


BUILT = llama_bench.find()


@pytest.mark.real
# Its figure is the printed ratio; beside a busy core llama-bench's spinning thread pool
# collapses (12 min here instead of ~1), so it runs with the other idle checks.
@pytest.mark.idle
@pytest.mark.skipif(BUILT is None, reason="llama-bench is not built here (bash scripts/build-llama-bench.sh, ~5 min)")
def test_edgebench_and_llama_bench_measure_the_same_shapes_interleaved():
    from bench.data import models

    gguf = models.get_model(models.default_model_id()).source_path()
    rows = llama_bench.interleaved_rows(gguf, threads=2, binary=BUILT, rounds=2, repetitions=2)
    assert [r["test"] for r in rows] == ["pp512", "tg128"]
    for row in rows:
        # Two rounds of two repetitions on each side; both sides measured something real.
        assert len(row["edgebench_samples"]) == len(row["llama_bench_samples"]) == 4
        assert row["ratio"] == row["edgebench_tok_s"] / row["llama_bench_tok_s"] > 0
    print(
        json.dumps([{k: v for k, v in r.items() if not k.endswith("samples")} for r in rows]), "load:", os.getloadavg()
    )


def test_tests_at_a_depth_are_named_as_llama_bench_prints_them():
    deep = [dict(test, n_depth=1024) for test in REAL_OUTPUT]
    expected = llama_bench.reported_fields(llama_bench.runner_settings(), threads=2)
    assert set(llama_bench.parse_results(json.dumps(deep), expected)) == {"pp16@d1024", "tg4@d1024"}


@pytest.mark.real
@pytest.mark.idle  # as the comparison on an empty cache: its figure is the printed ratio
@pytest.mark.skipif(BUILT is None, reason="llama-bench is not built here (bash scripts/build-llama-bench.sh, ~5 min)")
def test_edgebench_and_llama_bench_measure_the_same_shapes_at_depth():
    from bench.data import models

    gguf = models.get_model(models.default_model_id()).source_path()
    rows = llama_bench.interleaved_rows(gguf, threads=2, binary=BUILT, rounds=2, repetitions=2, depth=1024)
    assert [r["test"] for r in rows] == ["pp512@d1024", "tg128@d1024"]
    for row in rows:
        assert len(row["edgebench_samples"]) == len(row["llama_bench_samples"]) == 4 and row["ratio"] > 0
    print(
        json.dumps([{k: v for k, v in r.items() if not k.endswith("samples")} for r in rows]), "load:", os.getloadavg()
    )
