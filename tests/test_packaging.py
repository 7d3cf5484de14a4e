"""The package installs whole, and the core never drags a runtime in."""

import subprocess
import sys
import zipfile

from tests.helpers import ROOT, edgebench

RUNTIMES = (
    "llama_cpp",
    "mlx",
    "executorch",
    "ai_edge_litert",
    "litert_lm",
    "onnxruntime",
    "onnxruntime_genai",
    "torch",
)


def test_a_built_wheel_carries_the_profiles(tmp_path):
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    names = zipfile.ZipFile(next(tmp_path.glob("edgebench-*.whl"))).namelist()
    for data in ("profiles/suites/default.toml", "profiles/runs/quick.toml", "profiles/models/catalogue.toml"):
        assert data in names
    assert "runners/llamacpp.py" in names and "bench/cli/run_cmd.py" in names
    subpackages = [init.relative_to(ROOT).as_posix() for init in (ROOT / "bench").glob("*/__init__.py")]
    assert subpackages and all(init in names for init in subpackages), set(subpackages) - set(names)


def test_importing_the_core_and_listing_runners_import_no_runtime():
    code = (
        "import sys, bench.cli, bench.run.setup, bench.views.report\n"
        "from runners import registrations, load_class\n"
        "[load_class(r.target).probe() for r in registrations().values()]\n"
        f"print([m for m in {RUNTIMES!r} if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"


def test_help_lists_every_command():
    result = edgebench("--help")
    for command in ("run", "runners", "suites", "profiles", "validate", "report", "models", "prepare", "selfcheck"):
        assert command in result.stdout
