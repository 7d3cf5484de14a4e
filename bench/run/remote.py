"""Remote targets: `--target ssh://[user@]host[:port]` on run, sustained and device (and
`adb://[SERIAL]`, a phone, whose runs the host runs itself: bench.run.phone_run).

The host validates every input and finds (or prepares) the artifacts; then, per target in
turn, it asks the target's edgebench what it is and what its cache holds, copies the
units it lacks as a bundle piped into `edgebench unbundle -` there, and runs edgebench
there with `--stream-records`: each record comes back as one JSON line the moment it is
measured and is appended (with `remote_target`) to the host's results file, so a dropped
connection loses nothing already measured. Device facts, thermal samples and sustained
series are the target's own.

SSH is the user's own `ssh` client in batch mode, so their keys, agent and ~/.ssh/config
(aliases, jump hosts) apply, as with rsync and git; $EDGEBENCH_SSH_OPTIONS adds options
(e.g. "-F /path/ssh_config -i key").
"""

from __future__ import annotations

import dataclasses
import json
import os
import secrets
import shlex
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable
from urllib.parse import urlsplit

from bench import provenance
from bench.artifacts import bundle
from bench.data import models
from bench.errors import BenchError
from bench.records import ResultsWriter

SSH_OPTIONS_ENV = "EDGEBENCH_SSH_OPTIONS"
PHONE_SCHEME = "adb://"
RECORD_START = '{"schema_version"'
SSH_FAILED = 255  # ssh's own exit code: it could not connect, or the connection broke
Say = Callable[[str], None]


@dataclass(frozen=True)
class Target:
    spec: str  # as given: ssh://user@host:port
    destination: str  # user@host, or a ~/.ssh/config alias
    port: int | None
    edgebench: str  # the edgebench command on the target

    def ssh(self, command: list[str]) -> list[str]:
        """The ssh command line running `command` (quoted for the remote shell) there."""
        port = ["-p", str(self.port)] if self.port else []
        return [
            "ssh",
            "-o",
            "BatchMode=yes",
            "-o",
            "ConnectTimeout=15",
            "-o",
            "ServerAliveInterval=15",
            *shlex.split(os.environ.get(SSH_OPTIONS_ENV, "")),
            *port,
            self.destination,
            shlex.join(command),
        ]

    def edgebench_command(self, *args: str) -> list[str]:
        return [*shlex.split(self.edgebench), *args]


def parse_target(spec: str, edgebench: str | None = None) -> Target:
    parts = urlsplit(spec)
    try:
        port = parts.port
    except ValueError:
        port = -1
    if (
        parts.scheme != "ssh"
        or not parts.hostname
        or port == -1
        or parts.path not in ("", "/")
        or parts.hostname.startswith("-")
    ):
        raise BenchError(
            f"--target '{spec}' is not ssh://[user@]host[:port] or adb://[SERIAL]",
            "e.g. --target ssh://pi@raspberrypi.local, or --target adb:// for the one phone attached",
            exit_code=2,
        )
    destination = f"{parts.username}@{parts.hostname}" if parts.username else parts.hostname
    return Target(spec, destination, port, edgebench or "edgebench")


def _ssh_error(target: Target, stderr: str) -> BenchError:
    """ssh's own failure (exit 255) in one line."""
    last = next((line for line in reversed(stderr.strip().splitlines()) if line.strip()), "no message")
    if "Permission denied" in stderr or "Too many authentication failures" in stderr:
        return BenchError(
            f"{target.spec} refused authentication: {last}",
            f"check `ssh {target.destination}` works without a prompt (key, agent, ~/.ssh/config)",
        )
    if "Host key verification failed" in stderr:
        return BenchError(
            f"{target.spec}: host key verification failed",
            f"connect once with `ssh {target.destination}` to accept its key",
        )
    return BenchError(f"cannot reach {target.spec}: {last}", "check the host name, port and network")


def _remote_error(target: Target, result_code: int, stderr: str) -> BenchError:
    """The target's edgebench failed: its own `Error:` line, or what its shell said."""
    lines = [line.strip() for line in stderr.strip().splitlines() if line.strip()]
    error = next((line for line in lines if line.startswith("Error:")), None)
    if error:
        hint = next((line.removeprefix("hint:").strip() for line in lines if line.startswith("hint:")), "")
        return BenchError(f"on {target.spec}: {error.removeprefix('Error:').strip()}", hint)
    if result_code == 127:
        return BenchError(
            f"edgebench not found on {target.spec} ('{target.edgebench}')",
            "set it up there (bash scripts/setup.sh), or give its path with --remote-edgebench",
        )
    if "No such command" in stderr or "No such option" in stderr:
        return BenchError(
            f"the edgebench on {target.spec} is another version (it lacks remote runs)",
            f"install edgebench {provenance.tool_version()} there",
        )
    return BenchError(
        f"edgebench on {target.spec} failed (exit {result_code}): {lines[-1] if lines else 'no message'}",
        "run the same command there by hand to see why",
    )


def _call(target: Target, args: list[str], data: bytes | None = None) -> str:
    """Run edgebench there and return its stdout; any failure is a one-line error."""
    done = subprocess.run(target.ssh(target.edgebench_command(*args)), input=data, capture_output=True)
    stderr = done.stderr.decode(errors="replace")
    if done.returncode == SSH_FAILED:
        raise _ssh_error(target, stderr)
    if done.returncode != 0:
        raise _remote_error(target, done.returncode, stderr)
    return done.stdout.decode(errors="replace")


# The target side -------------------------------------------------------------------------


def describe_here(cache: Path | None) -> dict:
    """What `edgebench remote-info` tells a host: version, commit, cache and its units, free
    space, and which runners are available here."""
    import shutil

    from bench.artifacts.cache import cache_root
    from runners import load_class, registrations

    root = cache_root(cache)
    existing = next(p for p in (root, *root.parents) if p.exists())
    runners = {}
    for name, reg in registrations().items():
        probe = load_class(reg.target).probe()
        runners[name] = "" if probe.available else probe.reason
    return {
        "edgebench_version": provenance.tool_version(),
        "git_commit": provenance.git_commit(),
        "cache": str(root.resolve()),
        "runs": str(root.resolve().parent / "remote-runs"),
        "units": bundle.cached_units(root) if root.is_dir() else {},
        "free_bytes": shutil.disk_usage(existing).free,
        "runners": runners,
    }


def streaming(on_record: Callable[[dict], None]) -> Callable[[dict], None]:
    """`--stream-records`: each record also goes to stdout as one JSON line for the host.
    When the host is gone the run stops as if interrupted; the results file here keeps all."""

    def forward(record: dict) -> None:
        on_record(record)
        try:
            sys.stdout.write(json.dumps(record, ensure_ascii=False) + "\n")
            sys.stdout.flush()
        except OSError:
            raise KeyboardInterrupt from None

    return forward


# The host side ---------------------------------------------------------------------------


def check_target(target: Target, runner_names: list[str]) -> dict:
    """The target's description, once its edgebench matches ours and has the runners."""
    info = json.loads(_call(target, ["remote-info"]))
    mine, theirs = (provenance.tool_version(), provenance.git_commit()), (info["edgebench_version"], info["git_commit"])
    if mine[0] != theirs[0] or (mine[1] and theirs[1] and mine[1] != theirs[1]):
        raise BenchError(
            f"{target.spec} has edgebench {theirs[0]} ({theirs[1] or 'no git commit'}); "
            f"this host has {mine[0]} ({mine[1] or 'no git commit'})",
            "install the same version on both, so their records are comparable",
        )
    for name in runner_names:
        reason = info["runners"].get(name, "not registered there")
        if reason:
            raise BenchError(
                f"runner {name} is not available on {target.spec}: {reason}",
                "set it up there, or leave it out with --runner",
            )
    return info


def copy_missing(target: Target, units: list[bundle.Unit], info: dict, say: Say) -> None:
    """Send the units the target lacks (by sha256) as a bundle into its cache."""
    unique = {u.rel: u for u in units}
    missing = [u for u in unique.values() if info["units"].get(u.rel) != u.manifest["sha256"]]
    needed = sum(u.manifest["bytes"] for u in missing)
    if needed > info["free_bytes"]:
        raise BenchError(
            f"disk full on {target.spec}: the artifacts need {bundle.human_bytes(needed)}, "
            f"{info['cache']} has {bundle.human_bytes(info['free_bytes'])} free",
            "free space there, or point its EDGEBENCH_CACHE_DIR at a larger disk",
        )
    sent = 0
    if missing:
        proc = subprocess.Popen(
            target.ssh(target.edgebench_command("unbundle", "-", "--cache", info["cache"])),
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        tail = _collect(proc.stderr, lambda line: None)
        try:
            sent = bundle.write(missing, proc.stdin, stream=True)
            proc.stdin.close()
        except BrokenPipeError:
            pass  # the target stopped reading: its error says why
        code = proc.wait()
        tail.join()
        if code:
            raise _ssh_error(target, tail.text) if code == SSH_FAILED else _remote_error(target, code, tail.text)
    say(
        f"{target.spec}: copied {len(missing)} artifacts ({bundle.human_bytes(sent)}); "
        f"{len(unique) - len(missing)} already there"
    )


class _Tail(threading.Thread):
    """Reads a stream to its end in the background, passing each line on and keeping all."""

    def __init__(self, stream, on_line: Say) -> None:
        super().__init__(daemon=True)
        self.stream, self.on_line, self.lines = stream, on_line, []

    def run(self) -> None:
        for raw in self.stream:
            line = raw.decode(errors="replace").rstrip()
            self.lines.append(line)
            self.on_line(line)

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


def _collect(stream, on_line: Say) -> _Tail:
    tail = _Tail(stream, on_line)
    tail.start()
    return tail


def put_file(target: Target, data: bytes, path: str) -> None:
    """Write `data` to `path` there, atomically (a partial file is renamed into place)."""
    folder = str(Path(path).parent)
    partial = f"{shlex.quote(path)}.partial"
    script = f"mkdir -p {shlex.quote(folder)} && cat > {partial} && mv {partial} {shlex.quote(path)}"
    done = subprocess.run(target.ssh(["sh", "-c", script]), input=data, capture_output=True)
    if done.returncode:
        stderr = done.stderr.decode(errors="replace")
        raise (
            _ssh_error(target, stderr)
            if done.returncode == SSH_FAILED
            else BenchError(
                f"cannot write {path} on {target.spec}: {stderr.strip().splitlines()[-1:]}", "check its disk"
            )
        )


def get_file(target: Target, path: str) -> bytes | None:
    done = subprocess.run(target.ssh(["cat", path]), capture_output=True)
    return done.stdout if done.returncode == 0 else None


@dataclass
class RemoteRun:
    """One run on one target, as the host sees it."""

    target: Target
    out: Path  # the host's results folder
    remote_folder: str  # the target's folder for this run
    run_id: str | None = None
    records: int = 0

    @property
    def results_path(self) -> Path:
        return self.out / f"{self.run_id}.jsonl"

    @property
    def remote_results(self) -> str:
        return f"{self.remote_folder}/{self.run_id}.jsonl"

    def save(self) -> None:
        """RUN_ID.remote.json: where the run lives on the target, for --resume."""
        payload = {
            "target": self.target.spec,
            "remote_edgebench": getattr(self.target, "edgebench", None),  # a phone has none
            "remote_folder": self.remote_folder,
            "run_id": self.run_id,
        }
        remote_sidecar(self.results_path).write_text(json.dumps(payload, indent=2))


def remote_sidecar(results_path: Path) -> Path:
    return results_path.with_suffix(".remote.json")


def stream_run(run: RemoteRun, args: list[str], on_record: Callable[[dict], None], say: Say) -> int:
    """Run edgebench there, appending each streamed record to the host's results file as it
    comes; returns the target's exit code (0, or 1 when a generation failed)."""
    proc = subprocess.Popen(
        run.target.ssh(run.target.edgebench_command(*args, "--stream-records", "--json")),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    tail = _collect(proc.stderr, lambda line: say(f"[{run.target.destination}] {line}") if line else None)
    writer = None
    try:
        for raw in proc.stdout:
            if not raw.startswith(RECORD_START.encode()):
                continue
            record = json.loads(raw) | {"remote_target": run.target.spec}
            if writer is None:
                if run.run_id is None:
                    run.run_id = record["run_id"]
                    run.save()
                writer = ResultsWriter(run.results_path)
            writer.append(record)
            run.records += 1
            on_record(record)
    finally:
        if writer:
            writer.close()
        code = proc.wait()
        tail.join(timeout=5)
    if code in (0, 1) and "Error:" not in tail.text:
        return code
    if code == 130:
        raise KeyboardInterrupt
    if run.run_id and (code == SSH_FAILED or code < 0):
        raise BenchError(
            f"connection to {run.target.spec} dropped mid-run: {run.records} records kept in {run.results_path}",
            f"finish the run with: edgebench run --resume {run.run_id} --out {run.out}",
        )
    raise (
        _ssh_error(run.target, tail.text)
        if code == SSH_FAILED or code < 0
        else _remote_error(run.target, code, tail.text)
    )


def forwarded_options(
    options, remote_paths: dict[str, list[str]], model: models.Model, extra: list[str], upload: Callable[[str], str]
) -> list[str]:
    """The target's command line for the host's RunOptions: each plan's artifact as the
    target's copy, files given by path uploaded there."""
    if model.id not in models.catalogue():
        raise BenchError(
            f"remote runs take a catalogue model, not {options.model}",
            "bundle your own artifacts with --artifact RUNNER=PATH and --model of the catalogue",
        )
    args = ["--model", model.id]
    for name, paths in remote_paths.items():
        args += ["--runner", name] + [a for path in paths for a in ("--artifact", f"{name}={path}")]
    for option in dataclasses.fields(options):  # each as RunOptions declares it (bench.run.setup._option)
        value, flag, how = getattr(options, option.name), option.metadata["flag"], option.metadata["forward"]
        if how == "upload" and value:
            args += [flag, upload(value)]
        elif how == "value" and value is not None and value != 0:
            args += [flag, str(value)]
        elif how == "each":
            args += [a for item in value for a in (flag, item)]
        elif how == "switch" and value and not (options.sustained and flag == "--no-budget"):
            args += [flag]
    if not options.sustained:
        args += ["--no-quality"]  # quality needs the fp32 checkpoint and transformers, which stay on the host
    return args + extra


def uploader(target: Target, folder: str) -> Callable[[str], str]:
    """A suite, profile or device profile given as a file goes to the run's folder there."""

    def upload(value: str) -> str:
        path = Path(value)
        if not path.is_file():
            return value  # a packaged name: the target has the same files
        remote = f"{folder}/{path.name}"
        put_file(target, path.read_bytes(), remote)
        return remote

    return upload


def run_on_targets(
    options,
    targets: list[Target],
    plans: list,
    model: models.Model,
    command: str,
    extra: list[str],
    on_record: Callable[[dict], None],
    say: Say,
) -> list[RemoteRun]:
    """The same run on each target in turn (never two at once on one device)."""
    from bench.artifacts.cache import cache_root
    from bench.run.setup import writable_folder

    writable_folder(options.out)
    root = cache_root(options.cache)
    units = [(plan, bundle.unit_for(plan.name, plan.artifact, model.id, root)) for plan in plans]
    runs = []
    for target in targets:
        info = check_target(target, list(dict.fromkeys(p.name for p in plans)))
        copy_missing(target, [u for _, u in units], info, say)
        remote_paths: dict[str, list[str]] = {}
        for plan, unit in units:
            remote_paths.setdefault(plan.name, []).append(f"{info['cache']}/{unit.artifact}")
        run = RemoteRun(target, options.out, f"{info['runs']}/{secrets.token_hex(4)}")
        args = forwarded_options(options, remote_paths, model, extra, uploader(target, run.remote_folder))
        say(f"{target.spec}: {command} there; records stream to {options.out}")
        stream_run(run, [command, *args, "--out", run.remote_folder], on_record, say)
        runs.append(run)
    return runs


def fetch_series(run: RemoteRun) -> Path | None:
    """A sustained run's device time series, as the target recorded it."""
    if run.target.spec.startswith(PHONE_SCHEME):  # written here as the phone was sampled
        path = run.results_path.with_suffix(".device.jsonl")
        return path if path.is_file() else None
    data = get_file(run.target, f"{run.remote_folder}/{run.run_id}.device.jsonl")
    if data is None:
        return None
    path = run.results_path.with_suffix(".device.jsonl")
    path.write_bytes(data)
    return path


def find_resumable(resume: str, out: Path) -> Path | None:
    """The host's results file of a remote run to resume (by run id in `out`, or path)."""
    path = Path(resume) if resume.endswith(".jsonl") else out / f"{resume}.jsonl"
    return path if remote_sidecar(path).is_file() else None


def resume_run(results_path: Path, edgebench: str | None, on_record: Callable[[dict], None], say: Say) -> RemoteRun:
    """Finish a remote run: the host's records (the ones that count) replace the target's
    results file, and the target's `run --resume` does the rest, streaming as before."""
    saved = json.loads(remote_sidecar(results_path).read_text())
    if saved["target"].startswith(PHONE_SCHEME):
        from bench.run.phone_run import resume_on_phone

        return resume_on_phone(results_path, saved["target"], on_record, say)
    target = parse_target(saved["target"], edgebench or saved["remote_edgebench"])
    check_target(target, [])
    run = RemoteRun(target, results_path.parent, saved["remote_folder"], saved["run_id"])
    put_file(target, results_path.read_bytes() if results_path.exists() else b"", run.remote_results)
    say(f"{target.spec}: resuming {run.run_id} there")
    stream_run(run, ["run", "--resume", run.remote_results], on_record, say)
    return run


def host_plans(options, say: Say = lambda message: None) -> tuple[models.Model, list]:
    """Every input checked and every artifact found (or, with --prepare, exported) on the host,
    as a run here does before it loads a model."""
    from bench.run.execute import export_pending
    from bench.run.setup import PendingPlan, check_inputs

    inputs = check_inputs(options)
    return inputs.model, [export_pending(p, say) if isinstance(p, PendingPlan) else p for p in inputs.plans]


def run_command(
    options,
    specs: list[str],
    edgebench: str | None,
    command: str,
    extra: list[str],
    on_record: Callable[[dict], None],
    say: Say,
    cooldown=None,
) -> list[RemoteRun]:
    """`edgebench run|sustained --target …`: validate here, then each target in turn (the
    phones first: their runs are the host's own, cooled down here as `cooldown` asks; the
    other targets get it in `extra`)."""
    from bench.run.phone_run import run_on_phone

    runs = [run_on_phone(options, spec, on_record, say, cooldown) for spec in specs if spec.startswith(PHONE_SCHEME)]
    targets = [parse_target(spec, edgebench) for spec in specs if not spec.startswith(PHONE_SCHEME)]
    if targets:
        model, plans = host_plans(options, say)
        runs += run_on_targets(options, targets, plans, model, command, extra, on_record, say)
    return runs


def device_on_targets(
    specs: list[str], edgebench: str | None, args: list[str], device_profile: str | None
) -> list[tuple[str, str]]:
    """`edgebench device --target …`: each target's own facts and tier, as it prints them."""
    from bench.run.phone_run import describe_phone

    shown = [(spec, describe_phone(spec, device_profile)) for spec in specs if spec.startswith(PHONE_SCHEME)]
    for target in (parse_target(spec, edgebench) for spec in specs if not spec.startswith(PHONE_SCHEME)):
        info = check_target(target, [])
        profile = (
            ["--device-profile", uploader(target, f"{info['runs']}/device")(device_profile)] if device_profile else []
        )
        shown.append((target.spec, _call(target, ["device", *args, *profile])))
    return shown
