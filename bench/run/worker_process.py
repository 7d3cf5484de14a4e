"""A worker process as its parent sees it (a run's bench.run.worker, quality's
bench.quality.worker): started in its own session with a pipe for its messages, one JSON
object a line (never its stdout, which a runtime's native code may print to), and a file
for its stderr; killed with everything it started; its end described in one line."""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING

if TYPE_CHECKING:
    from bench.run.supervisor import RunnerPlan


@dataclass
class WorkerProcess:
    proc: subprocess.Popen
    messages: Messages
    stderr: IO[bytes]  # what it printed there, for describe_exit

    def close(self) -> None:
        """Once it has ended (or been killed): wait for it, and close the pipe and the file."""
        os.close(self.messages.fd)
        self.proc.wait()
        self.stderr.close()


def start_worker(module: str) -> WorkerProcess:
    """`python -m MODULE FD`: the worker writes its messages to FD and reads its orders on stdin."""
    read_fd, write_fd = os.pipe()
    stderr = tempfile.TemporaryFile()
    proc = subprocess.Popen(
        [sys.executable, "-m", module, str(write_fd)],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=stderr,
        pass_fds=(write_fd,),
        start_new_session=True,
    )
    os.close(write_fd)
    return WorkerProcess(proc, Messages(read_fd), stderr)


def load_orders(plan: RunnerPlan, context_tokens: int) -> dict:
    """What a worker needs to load the plan's runner and artifact."""
    return {
        "runner_target": plan.target,
        "artifact": str(plan.artifact.path),
        "options": {"threads": plan.threads, "context_tokens": context_tokens, "settings": plan.settings},
    }


class Messages:
    """The worker's messages, read from its pipe one line at a time."""

    def __init__(self, fd: int) -> None:
        self.fd, self.buffer = fd, b""
        self.selector = selectors.DefaultSelector()
        self.selector.register(fd, selectors.EVENT_READ)

    def next(self, timeout: float) -> dict | None:
        """The next message; None when the worker is gone; TimeoutError after `timeout` s."""
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not self.selector.select(timeout=remaining):
                raise TimeoutError
            chunk = os.read(self.fd, 65536)
            if not chunk:
                return None
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return json.loads(line)


def kill_worker(proc: subprocess.Popen) -> None:
    """Kill the worker and whatever it started (its session's process group)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def describe_exit(code: int, stderr) -> str:
    """How the worker ended, with the last lines it wrote to stderr."""
    if code < 0:
        try:
            what = f"worker killed by {signal.Signals(-code).name}"
        except ValueError:
            what = f"worker killed by signal {-code}"
    else:
        what = f"worker exited with code {code}"
    stderr.seek(0)
    tail = stderr.read().decode("utf-8", "replace").strip().splitlines()[-3:]
    return what + (": " + " | ".join(tail) if tail else "")
