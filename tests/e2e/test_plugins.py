"""A runner from another package plugs in through the `edgebench.runners` entry-point
group, without touching edgebench: installed here with pip, for real."""

import subprocess
import sys
import textwrap

import pytest

from tests.support.helpers import edgebench, read_jsonl


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory):
    src = tmp_path_factory.mktemp("plugin-src")
    (src / "edgebench_echo").mkdir()
    (src / "edgebench_echo" / "__init__.py").write_text(
        textwrap.dedent('''
        """A third-party runner: the FAKE runner under another name (tests only)."""
        from runners.fake import FakeRunner

        class EchoRunner(FakeRunner):
            name = "echo"
    ''')
    )
    (src / "pyproject.toml").write_text(
        textwrap.dedent("""
        [build-system]
        requires = ["setuptools>=61"]
        build-backend = "setuptools.build_meta"
        [project]
        name = "edgebench-echo"
        version = "1.0"
        [project.entry-points."edgebench.runners"]
        echo = "edgebench_echo:EchoRunner"
        [tool.setuptools]
        packages = ["edgebench_echo"]
    """)
    )
    site = tmp_path_factory.mktemp("plugin-site")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(site),
            str(src),
        ],
        check=True,
        capture_output=True,
    )
    return site


def test_an_installed_plugin_is_listed_with_its_origin(plugin_site):
    result = edgebench("runners", env={"PYTHONPATH": str(plugin_site)})
    row = next(line for line in result.stdout.splitlines() if " echo " in line)
    assert "yes" in row and "edgebench-echo" in row


def test_a_plugin_runner_runs_in_a_worker_like_a_builtin(plugin_site, tmp_path, fake_script):
    script = fake_script(decode_ms=5)
    result = edgebench(
        "run",
        "--runner",
        "echo",
        "--artifact",
        f"echo={script}",
        "--profile",
        "quick",
        "--out",
        str(tmp_path),
        env={"PYTHONPATH": str(plugin_site)},
    )
    assert result.returncode == 0, result.stderr
    records = read_jsonl(next(tmp_path.glob("*.jsonl")))
    assert {r["runner"] for r in records} == {"echo"} and all(r["status"] == "ok" for r in records)


def test_a_runner_whose_runtime_is_missing_says_what_to_install():
    code = (
        "from runners.base import Runner\n"
        "class Missing(Runner):\n"
        "    name = 'missing'; package = 'no_such_runtime_pkg'; distribution = 'x'; extra = 'missing'\n"
        "print(Missing.probe())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "available=False" in out and "pip install 'edgebench[missing]'" in out
