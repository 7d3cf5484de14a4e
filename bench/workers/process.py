"""A child process as its parent sees it: `python -m bench.workers.child FD`, started in its
own session with a pipe for its messages (bench.workers.protocol) and a file for what it
prints; killed with everything it started; its end described in one line."""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import sys
import tempfile
import time
from typing import IO

from bench.workers.protocol import Message, decode, encode


class ChildProcess:
    """A started child: its orders are on its stdin; read its messages with `next`."""

    def __init__(
        self, log: IO[bytes] | None = None, cwd: str | None = None, env: dict | None = None, merge_stdout: bool = False
    ) -> None:
        """`log`: where it prints (stderr, and stdout with `merge_stdout`; default a temporary
        file, stdout discarded)."""
        read_fd, write_fd = os.pipe()
        self.log = log or tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.workers.child", str(write_fd)],
            stdin=subprocess.PIPE,
            stdout=self.log if merge_stdout else subprocess.DEVNULL,
            stderr=self.log,
            pass_fds=(write_fd,),
            start_new_session=True,
            cwd=cwd,
            env=env,
        )
        os.close(write_fd)
        self.fd, self._buffer = read_fd, b""
        self._selector = selectors.DefaultSelector()
        self._selector.register(read_fd, selectors.EVENT_READ)
        self._owns_log = log is None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def send(self, message: Message) -> None:
        """Write a message to its stdin; a child that is gone meanwhile is not an error here:
        reading its pipe says how it ended."""
        try:
            self.proc.stdin.write(encode(message))
            self.proc.stdin.flush()
        except BrokenPipeError:
            pass

    def end_input(self) -> None:
        """Close its stdin: nothing more to say (a child reading it sees the end)."""
        try:
            self.proc.stdin.close()
        except BrokenPipeError:
            pass

    def next(self, timeout: float | None) -> Message | None:
        """The next message; None when the child has closed its end (exited); TimeoutError
        after `timeout` s (None: wait as long as it takes)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while b"\n" not in self._buffer:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0 or not self._selector.select(timeout=remaining):
                raise TimeoutError
            chunk = os.read(self.fd, 65536)
            if not chunk:
                return None
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return decode(line)

    def kill(self) -> None:
        """Kill the child and whatever it started (its session's process group)."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def wait(self, timeout: float | None = None) -> int:
        """Its exit code, killed first when it has not exited within `timeout` s."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return self.proc.wait()

    def close(self) -> None:
        """Once it has ended (or been killed): wait for it, and close the pipe (and the log it made)."""
        self._selector.close()
        os.close(self.fd)
        self.end_input()
        self.proc.wait()
        if self._owns_log:
            self.log.close()

    def tail(self, lines: int) -> list[str]:
        """The last lines it printed."""
        self.log.flush()
        self.log.seek(0)
        return self.log.read().decode("utf-8", "replace").strip().splitlines()[-lines:]

    def describe_exit(self) -> str:
        """How it ended, with the last lines it wrote to stderr."""
        code = self.proc.wait()
        if code < 0:
            try:
                what = f"worker killed by {signal.Signals(-code).name}"
            except ValueError:
                what = f"worker killed by signal {-code}"
        else:
            what = f"worker exited with code {code}"
        tail = self.tail(3)
        return what + (": " + " | ".join(tail) if tail else "")
