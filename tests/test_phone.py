"""Phones over adb, against the adbd test double (tests/support/adbd_double.py) serving the
real Debian `adb`: the transport, its one-line errors, the pushed aarch64 device runner
under qemu-user-static, and the phone's state from fixture files."""

from __future__ import annotations

import pytest

from tests.support.phone import attached_phone, why_no_phone

pytestmark = pytest.mark.skipif(why_no_phone() is not None, reason=why_no_phone() or "")


@pytest.fixture(scope="module")
def pixel(tmp_path_factory):
    phone = attached_phone(tmp_path_factory.mktemp("pixel"))
    yield phone
    phone.close()


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
