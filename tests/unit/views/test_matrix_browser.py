"""The matrix page in a real browser: headless Chromium renders it (a screenshot that is
not blank), its script runs (it writes a marker into the DOM) and logs no console error."""

from __future__ import annotations

import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import pytest

from bench.data import workloads
from bench.views import matrix, matrix_html
from tests.support import simulated_devices as sim

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (scripts/setup.sh installs it with apt-get)"
)
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--enable-logging=stderr",
    "--v=0",
]


def _chromium(tmp_path: Path, page: Path, *args: str) -> subprocess.CompletedProcess:
    profile = tmp_path / f"profile-{len(list(tmp_path.glob('profile-*')))}"
    return subprocess.run(
        [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args, page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    )


def _console_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if ":CONSOLE" in line]


def _distinct_pixel_bytes(png: Path) -> int:
    """How many different byte values the decoded scanlines hold: a handful for a blank page."""
    data, pos, idat = png.read_bytes(), 8, b""
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        if kind == b"IDAT":
            idat += data[pos + 8 : pos + 8 + length]
        pos += 12 + length
    return len(set(zlib.decompress(idat)))


@pytest.fixture(scope="module")
def page(tmp_path_factory) -> tuple[Path, int]:
    root = tmp_path_factory.mktemp("browser")
    sim.write(root / "pixel.jsonl", sim.records("pixel-8-pro", decode=60, ttft=40))
    sim.write(root / "a54.jsonl", sim.records("galaxy-a54", decode=25, ttft=300, text="<script>alert(1)</script>"))
    sim.write(root / "pi.jsonl", sim.records("raspberry-pi-5", decode=12, ttft=900))
    frame, files = matrix.load([str(root)])
    built = matrix.build(frame, files)
    path = root / "matrix.html"
    path.write_text(matrix_html.page(built, workloads.load_workloads()), encoding="utf-8")
    return path, 2 * len(built.tiers)


def test_the_page_renders_its_charts_without_console_errors(page, tmp_path):
    path, charts = page
    result = _chromium(tmp_path, path, "--dump-dom")
    assert result.returncode == 0, result.stderr[-2000:]
    assert f'data-charts="{charts}">rendered {charts} charts<' in result.stdout
    assert "galaxy-a54" in result.stdout and "<svg" in result.stdout
    assert _console_lines(result.stderr) == []


def test_a_screenshot_of_the_page_is_not_blank(page, tmp_path):
    path, _ = page
    shot = tmp_path / "matrix.png"
    result = _chromium(tmp_path, path, f"--screenshot={shot}", "--window-size=1400,1000")
    assert result.returncode == 0 and shot.is_file(), result.stderr[-2000:]
    assert _distinct_pixel_bytes(shot) > 50


def test_the_console_check_catches_an_error(tmp_path):
    """The check above can fail: a page with a script error shows up in the log."""
    bad = tmp_path / "bad.html"
    bad.write_text("<html><body><script>notDefined();</script></body></html>")
    lines = _console_lines(_chromium(tmp_path, bad, "--dump-dom").stderr)
    assert any("Uncaught ReferenceError" in line for line in lines)
    blank = tmp_path / "blank.html"
    blank.write_text("<html><body></body></html>")
    shot = tmp_path / "blank.png"
    _chromium(tmp_path, blank, f"--screenshot={shot}", "--window-size=400,300")
    assert _distinct_pixel_bytes(shot) <= 8
