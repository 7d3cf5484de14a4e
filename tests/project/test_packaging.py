"""The package installs whole, and the core never drags a runtime in."""

import subprocess
import sys
import zipfile

from runners import load_class, registrations
from tests.support.helpers import ROOT, edgebench

# Each registered runtime's package, and the libraries under them.
RUNTIMES = tuple(
    sorted(
        {load_class(r.target).package for r in registrations().values() if not r.hidden}
        | {"mlx", "onnxruntime", "torch"}
    )
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
    """Nor does reading each runner's facts (its settings, their choices, its runtime figures,
    its exporter) or the order a run takes them in."""
    code = (
        "import sys, bench.cli, bench.run.setup, bench.views.report\n"
        "from bench.selection import cheapest_first\n"
        "from runners import registrations, load_class\n"
        "for r in registrations().values():\n"
        "    c = load_class(r.target)\n"
        "    c.probe(), c.defaults, c.choices, c.runtime_figures, c.exporter, c.export_cost()\n"
        "cheapest_first(list(registrations()))\n"
        f"print([m for m in {RUNTIMES!r} if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"


def test_help_lists_every_command():
    result = edgebench("--help")
    for command in ("run", "runners", "suites", "profiles", "validate", "report", "models", "prepare", "selfcheck"):
        assert command in result.stdout
