"""Bad input: a one-line `Error:` with a hint and the right exit code, never a traceback,
and nothing loaded or written before the input is known to be good."""

import pytest

from tests.support.helpers import edgebench


def error_of(result):
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(lines) == 1, result.stderr
    assert "hint:" in result.stderr
    return lines[0]


@pytest.fixture
def files(tmp_path, fake_script):
    (tmp_path / "notgguf.gguf").write_bytes(b"this is not a model")
    (tmp_path / "bad.toml").write_text("id = 'x'\n[[prompt]\n")
    (tmp_path / "latin1.toml").write_bytes("id = 'caf\xe9'".encode("latin-1"))
    (tmp_path / "unknown-key.toml").write_text(
        'id = "s"\ndescription = ""\ncolour = "red"\n[[prompt]]\nid = "a"\ncategory = "chat"\nkind = "chat"\n'
        'user = "hi"\nmax_new_tokens = 4\n'
    )
    (tmp_path / "zero-reps.toml").write_text('name = "z"\ndescription = ""\nwarmups = 0\nrepetitions = 0\n')
    (tmp_path / "empty.toml").write_text("")
    (tmp_path / "future.jsonl").write_text('{"schema_version": 99}\n')
    (tmp_path / "other-tool.jsonl").write_text('{"model": "x", "tokens_per_second": 12}\n')
    (tmp_path / "readonly").mkdir(mode=0o500)
    (tmp_path / "afile").write_text("")
    return tmp_path


CASES = [
    (["run", "--runner", "llama.cp"], 1, "unknown runner 'llama.cp'. Did you mean 'llama.cpp'?"),
    (["run", "--suite", "defualt"], 1, "Did you mean 'default'?"),
    (["run", "--profile", "quik"], 1, "Did you mean 'quick'?"),
    (["run", "--model", "smollm2-13m"], 1, "unknown model 'smollm2-13m'"),
    (["run", "--runner", "llama.cpp", "--artifact", "llama.cpp={tmp}/missing.gguf"], 1, "artifact not found"),
    (["run", "--runner", "llama.cpp", "--artifact", "llama.cpp={tmp}/notgguf.gguf"], 1, "not a GGUF file"),
    (["run", "--runner", "llama.cpp", "--artifact", "llama.cpp"], 2, "is not RUNNER=VALUE"),
    (["run", "--runner", "llama.cpp", "--setting", "llama.cpp=flash_attn=off"], 2, "is not RUNNER:KEY=VALUE"),
    (["run", "--runner", "llama.cpp", "--setting", "llama.cpp:flash=off"], 2, "llama.cpp has no setting 'flash'"),
    (
        ["run", "--runner", "llama.cpp", "--setting", "llama.cpp:n_batch=big"],
        2,
        "n_batch=big: n_batch takes a whole number",
    ),
    (["run", "--runner", "llama.cpp", "--setting", "mlx:kv_bits=4"], 2, "--setting names runner 'mlx'"),
    (["run", "--runner", "llama.cpp", "--artifact", "onnx=x"], 2, "which this run does not use"),
    (["run", "--suite", "{tmp}/bad.toml"], 1, "is not valid TOML"),
    (["run", "--suite", "{tmp}/latin1.toml"], 1, "is not UTF-8"),
    (["run", "--suite", "{tmp}/unknown-key.toml"], 1, "unknown key(s) colour"),
    (["run", "--suite", "{tmp}/empty.toml"], 1, "missing key 'id'"),
    (["run", "--profile", "{tmp}/zero-reps.toml"], 1, "repetitions must be at least 1"),
    (["run", "--runner", "llama.cpp", "--threads", "0"], 2, "--threads must be at least 1"),
    (["device", "--bandwidth", "--threads", "0"], 2, "--threads must be at least 1"),
    (["quality", "--threads", "0"], 2, "--threads must be at least 1"),
    (["run", "--runner", "llama.cpp", "--out", "{tmp}/afile/sub"], 1, "cannot write to output folder"),
    (["run", "--runner", "fake"], 1, "the fake runner needs a script"),
    (["report", "{tmp}/bad.toml"], 1, "is not a JSON record"),
    (["report", "{tmp}/nothing.jsonl"], 1, "cannot read results file"),
    (["validate", "{tmp}/zero-reps.toml"], 1, "repetitions must be at least 1"),
    (["report", "{tmp}/bad.toml", "--format", "pdf"], 2, "unknown format 'pdf'"),
    (["report", "{tmp}/other-tool.jsonl"], 1, "is not an edgebench record"),
    (["report", "{tmp}/latin1.toml"], 1, "is not a JSON record"),
    (["run", "--resume", "../../etc/passwd"], 2, "neither a run id"),
    (["report", "{tmp}/future.jsonl"], 1, "newer than this edgebench"),
    (["run", "--runner", "llama.cpp", "--memory-limit-mb", "-5"], 2, "--memory-limit-mb must be positive"),
]


@pytest.mark.parametrize("args, code, message", CASES, ids=[" ".join(c[0])[:60] for c in CASES])
def test_bad_input_is_one_line_with_a_hint(files, args, code, message):
    result = edgebench(*[a.format(tmp=files) for a in args])
    assert result.returncode == code
    assert message in error_of(result)


def test_nothing_is_written_when_the_input_is_bad(tmp_path):
    out = tmp_path / "out"
    edgebench("run", "--suite", "nope", "--out", str(out))
    assert not out.exists()


def test_a_setting_outside_its_choices_is_refused_before_any_worker_starts(tmp_path):
    """llama.cpp's flash_attn takes auto, on or off (LlamaCppRunner.choices): anything else is
    refused at set-up, not found by a worker whose load fails into a results file."""
    out = tmp_path / "out"
    result = edgebench("run", "--runner", "llama.cpp", "--setting", "llama.cpp:flash_attn=maybe", "--out", str(out))
    assert result.returncode == 2
    assert error_of(result) == "Error: --setting llama.cpp:flash_attn=maybe: flash_attn takes one of auto, on, off"
    assert not out.exists()  # set-up ends before the output folder, which precedes any worker


def test_a_usage_mistake_exits_2_without_traceback():
    result = edgebench("run", "--threads", "many")
    assert result.returncode == 2 and "Traceback" not in result.stderr


def test_validate_accepts_the_packaged_files():
    from bench.data.files import packaged_dir

    paths = [str(p) for kind in ("suites", "runs", "models") for p in packaged_dir(kind).glob("*.toml")]
    result = edgebench("validate", *paths)
    assert result.returncode == 0 and result.stdout.count(": ok") == len(paths)
