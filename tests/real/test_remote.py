"""Remote runs over SSH against a real OpenSSH server on localhost.

The test starts `sshd` on a free port with a throw-away host key and an authorized key
made here. The "target" is a second folder with its own cache; its edgebench (the same
checkout, through a wrapper given as --remote-edgebench) runs in its own mount namespace
where /proc/cpuinfo names another CPU, so device facts that came from the target are told
apart from the host's. The host reaches it through an ssh_config alias, as users do.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from tests.support.helpers import ROOT, edgebench, read_jsonl

pytestmark = pytest.mark.real

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"
TARGET_CPU = "Edge Test Target CPU (remote side)"
PROFILE = """name = "remote-{reps}"
description = "A remote test: short prompts, no warm-up."
warmups = 0
repetitions = {reps}
tags = ["short"]
context_tokens = 1024
generation_timeout_s = 120
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _why_no_sshd() -> str | None:
    if not Path(SSHD).is_file() or not shutil.which("ssh") or not shutil.which("ssh-keygen"):
        return "OpenSSH server/client not installed (scripts/setup.sh installs them where apt and root are available)"
    if shutil.which("unshare") is None or os.geteuid() != 0:
        return "the target's distinct /proc/cpuinfo needs root and unshare"
    return None


@pytest.fixture(scope="module")
def target(tmp_path_factory):
    """A running sshd, an ssh_config alias `edgetarget`, and the target's own folder."""
    if _why_no_sshd():
        pytest.skip(_why_no_sshd())
    d = tmp_path_factory.mktemp("ssh")
    for key in ("host_key", "client_key", "stranger_key"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / key)], check=True)
    (d / "authorized_keys").write_text((d / "client_key.pub").read_text())
    port = _free_port()
    (d / "sshd_config").write_text(f"""Port {port}
ListenAddress 127.0.0.1
HostKey {d}/host_key
AuthorizedKeysFile {d}/authorized_keys
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin yes
StrictModes no
UsePAM no
PidFile {d}/sshd.pid
""")
    Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege-separation folder
    sshd = subprocess.Popen([SSHD, "-D", "-e", "-f", str(d / "sshd_config")], stderr=open(d / "sshd.log", "wb"))
    user = os.environ.get("USER") or "root"
    (d / "ssh_config").write_text(f"""Host edgetarget
  HostName 127.0.0.1
  Port {port}
  User {user}
  IdentityFile {d}/client_key
  IdentitiesOnly yes
  StrictHostKeyChecking no
  UserKnownHostsFile {d}/known_hosts
  LogLevel ERROR
""")
    remote = d / "remote"
    remote.mkdir()
    cpuinfo = "".join(
        f"model name\t: {TARGET_CPU}\n" if line.startswith("model name") else line for line in open("/proc/cpuinfo")
    )
    (remote / "cpuinfo").write_text(cpuinfo)
    wrapper = remote / "edgebench"
    wrapper.write_text(f"""#!/bin/sh
# The target's edgebench: its own cache, and its own /proc/cpuinfo (another device's CPU name).
export EDGEBENCH_CACHE_DIR={remote}/cache
exec unshare -m sh -c 'mount --bind {remote}/cpuinfo /proc/cpuinfo && exec {ROOT}/.venv/bin/edgebench "$@"' edgebench "$@"
""")
    wrapper.chmod(0o755)
    env = {"EDGEBENCH_SSH_OPTIONS": f"-F {d}/ssh_config"}
    for _ in range(50):  # sshd is up when a command goes through
        if (
            subprocess.run(
                ["ssh", "-F", str(d / "ssh_config"), "-o", "BatchMode=yes", "edgetarget", "true"], capture_output=True
            ).returncode
            == 0
        ):
            break
        time.sleep(0.1)
    yield {"env": env, "remote": remote, "wrapper": str(wrapper), "port": port, "dir": d}
    sshd.terminate()
    sshd.wait()


def remote_run(target, out: Path, reps: int, *extra: str, **kwargs):
    profile = out.parent / f"remote-{reps}.toml"
    profile.write_text(PROFILE.format(reps=reps))
    return edgebench(
        "run",
        "--runner",
        "llama.cpp",
        "--profile",
        str(profile),
        "--threads",
        "1",
        "--out",
        str(out),
        "--target",
        "ssh://edgetarget",
        "--remote-edgebench",
        target["wrapper"],
        *extra,
        env=target["env"],
        **kwargs,
    )


def _gguf_in_target(target) -> Path:
    return next((target["remote"] / "cache").rglob("*.gguf"))


@pytest.fixture(scope="module")
def runs(target, tmp_path_factory):
    """A local run and two remote runs of the same profile."""
    base = tmp_path_factory.mktemp("runs")
    profile = base / "remote-1.toml"
    profile.write_text(PROFILE.format(reps=1))
    started = time.monotonic()
    local = edgebench(
        "run", "--runner", "llama.cpp", "--profile", str(profile), "--threads", "1", "--out", str(base / "local")
    )
    local_s = time.monotonic() - started
    started = time.monotonic()
    first = remote_run(target, base / "remote1", 1)
    first_s = time.monotonic() - started
    copied = _gguf_in_target(target).stat()
    started = time.monotonic()
    second = remote_run(target, base / "remote2", 1)
    second_s = time.monotonic() - started
    print(
        f"\nlocal quick run {local_s:.1f} s; remote first (copies the GGUF) {first_s:.1f} s; "
        f"remote second {second_s:.1f} s"
    )
    return {
        "local": (local, base / "local"),
        "first": (first, base / "remote1"),
        "second": (second, base / "remote2"),
        "copied": copied,
        "after_second": _gguf_in_target(target).stat(),
    }


def _records(out: Path) -> list[dict]:
    return read_jsonl(next(out.glob("*[0-9a-f].jsonl")))


def test_remote_run_gives_the_local_records_fields_with_the_targets_device_facts(runs, target):
    local, local_out = runs["local"]
    remote, remote_out = runs["first"]
    assert local.returncode == 0, local.stderr
    assert remote.returncode == 0, remote.stderr
    here, there = _records(local_out), _records(remote_out)
    assert [r["prompt_id"] for r in here] == [r["prompt_id"] for r in there]
    for a, b in zip(here, there):
        assert a.keys() == b.keys()
        assert b["status"] == "ok" and b["remote_target"] == "ssh://edgetarget" and a["remote_target"] is None
        for same in (
            "runner",
            "model_id",
            "artifact_sha256",
            "quantization",
            "suite_sha256",
            "profile_sha256",
            "new_tokens",
            "prompt_tokens",
            "threads",
            "tool_version",
            "git_commit",
        ):
            assert a[same] == b[same], same
        assert b["artifact_path"].startswith(str(target["remote"] / "cache"))  # the target's own copy
        assert b["device_cpu_model"] == TARGET_CPU != a["device_cpu_model"]  # measured there, not here
        assert b["decode_tok_s"] > 0 and b["runner_settings"]["system_info"]
    # The same reports as a run here: Markdown, CSV and the run's matrix page.
    assert {p.suffix for p in remote_out.glob(f"{there[0]['run_id']}.*")} >= {".md", ".csv", ".html"}
    assert {p.suffix for p in local_out.glob(f"{here[0]['run_id']}.*")} >= {".md", ".csv", ".html"}


def test_artifacts_are_copied_once(runs):
    first, _ = runs["first"]
    second, second_out = runs["second"]
    assert second.returncode == 0, second.stderr
    assert "copied 1 artifacts (93.8 MB)" in first.stderr
    assert "copied 0 artifacts (0 B); 1 already there" in second.stderr
    before, after = runs["copied"], runs["after_second"]
    assert (before.st_ino, before.st_mtime_ns) == (after.st_ino, after.st_mtime_ns)  # the file was not rewritten
    assert all(r["status"] == "ok" for r in _records(second_out))


def _wait_for_records(path_glob, out: Path, count: int, proc, limit_s: float = 300) -> None:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline and proc.poll() is None:
        files = list(out.glob(path_glob))
        if files and len(files[0].read_text().splitlines()) >= count:
            return
        time.sleep(0.2)
    raise AssertionError(f"no {count} records arrived: {proc.poll()}")


def test_a_dropped_connection_keeps_the_records_and_resume_finishes(target, tmp_path):
    out = tmp_path / "out"
    profile = tmp_path / "remote-3.toml"
    profile.write_text(PROFILE.format(reps=3))
    args = [
        "run",
        "--runner",
        "llama.cpp",
        "--profile",
        str(profile),
        "--threads",
        "1",
        "--out",
        str(out),
        "--target",
        "ssh://edgetarget",
        "--remote-edgebench",
        target["wrapper"],
    ]
    host = subprocess.Popen(
        [sys.executable, "-c", "from bench.cli import main; main()", *args],
        cwd=ROOT,
        env={**os.environ, **target["env"]},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    _wait_for_records("*[0-9a-f].jsonl", out, 3, host)
    ssh = [p for p in psutil.Process(host.pid).children(recursive=True) if p.name() == "ssh"]
    assert ssh, "the host runs the target through its ssh client"
    for p in ssh:
        p.send_signal(signal.SIGKILL)  # the connection drops mid-run
    _, stderr = host.communicate(timeout=120)
    assert host.returncode == 1
    assert "dropped mid-run" in stderr and "--resume" in stderr and "Traceback" not in stderr
    results = next(out.glob("*[0-9a-f].jsonl"))
    kept = read_jsonl(results)
    assert len(kept) >= 3 and all(r["status"] == "ok" for r in kept)
    run_id = kept[0]["run_id"]

    resumed = edgebench("run", "--resume", run_id, "--out", str(out), env=target["env"])
    assert resumed.returncode == 0, resumed.stderr
    records = read_jsonl(results)
    keys = [(r["prompt_id"], r["repeat"]) for r in records]
    assert len(keys) == len(set(keys)) == 6 * 3  # every short prompt × 3 repetitions, none twice
    assert records[: len(kept)] == kept  # what was measured before the drop is kept as it was
    assert all(r["status"] == "ok" and r["device_cpu_model"] == TARGET_CPU for r in records)


@pytest.mark.parametrize("case", ["unreachable", "auth", "missing", "version", "disk"])
def test_failures_are_one_line_errors(target, tmp_path, case):
    spec, env = "ssh://edgetarget", dict(target["env"])
    edgebench_there = target["wrapper"]
    if case == "unreachable":
        spec = f"ssh://root@127.0.0.1:{_free_port()}"
    elif case == "auth":
        spec = f"ssh://root@127.0.0.1:{target['port']}"
        env["EDGEBENCH_SSH_OPTIONS"] = (
            f"-i {target['dir']}/stranger_key -o IdentitiesOnly=yes "
            f"-o StrictHostKeyChecking=no -o UserKnownHostsFile={target['dir']}/known_hosts"
        )
    elif case == "missing":
        edgebench_there = str(tmp_path / "no" / "edgebench")
    elif case == "version":  # an older edgebench there: it describes itself as such
        old = tmp_path / "old-edgebench"
        old.write_text('#!/bin/sh\necho \'{"edgebench_version": "0.0.1", "git_commit": null}\'\n')
        old.chmod(0o755)
        edgebench_there = str(old)
    elif case == "disk":  # the target's cache on a 1 MB file system
        small = tmp_path / "small"
        small.mkdir()
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(small)], check=True)
        wrapper = tmp_path / "edgebench"
        wrapper.write_text(Path(target["wrapper"]).read_text().replace(f"{target['remote']}/cache", f"{small}/cache"))
        wrapper.chmod(0o755)
        edgebench_there = str(wrapper)
    try:
        result = edgebench(
            "run",
            "--runner",
            "llama.cpp",
            "--profile",
            "quick",
            "--out",
            str(tmp_path / "out"),
            "--target",
            spec,
            "--remote-edgebench",
            edgebench_there,
            env=env,
        )
    finally:
        if case == "disk":
            subprocess.run(["umount", str(small)], check=True)
    assert result.returncode == 1
    error = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(error) == 1 and "Traceback" not in result.stderr, result.stderr
    expected = {
        "unreachable": "cannot reach",
        "auth": "refused authentication",
        "missing": "edgebench not found",
        "version": "has edgebench 0.0.1",
        "disk": "disk full on ssh://edgetarget",
    }[case]
    assert expected in error[0], result.stderr
    assert not list((tmp_path / "out").glob("*.jsonl"))


def test_device_facts_come_from_the_target(target):
    result = edgebench(
        "device", "--target", "ssh://edgetarget", "--remote-edgebench", target["wrapper"], env=target["env"]
    )
    assert result.returncode == 0, result.stderr
    assert "ssh://edgetarget:" in result.stdout and TARGET_CPU in result.stdout
