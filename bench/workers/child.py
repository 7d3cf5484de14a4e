"""The entry of every child process: `python -m bench.workers.child FD`.

Reads its Orders (bench.workers.protocol) as the first line on stdin; with a runner to load,
loads it on the runner's clock and says Loaded (how long it took, what the runtime applied)
or LoadFailed; then runs the task ("module:function"), called as task(work, channel) or, with a
runner, task(runner, work, channel), and says Finished with what it returned. A task that
raises says Failed, prints its traceback and exits 1. Messages go to file descriptor FD, one a
line. Only this process imports a runtime.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Callable

from bench.workers.protocol import Failed, Finished, Loaded, LoadFailed, Message, Orders, decode, encode
from runners import load_class
from runners.base import ArtifactError, RunnerOptions


class Channel:
    """The child's side: messages out on FD, the parent's on stdin."""

    def __init__(self, fd: int) -> None:
        self._out = os.fdopen(fd, "wb", buffering=0)

    def send(self, message: Message) -> None:
        self._out.write(encode(message))

    def receive(self) -> Message | None:
        """The parent's next message; None once it has closed our stdin."""
        line = sys.stdin.readline()
        return decode(line) if line.strip() else None


def clock_of(runner) -> Callable[[], int]:
    """The clock a runner is timed on: the FAKE runner's scripted one, else perf_counter_ns."""
    return type(runner).scripted_clock or time.perf_counter_ns


def load_runner(load: dict, channel: Channel):
    """The loaded runner, with Loaded said; None (LoadFailed said) when it failed."""
    runner = load_class(load["runner_target"])()
    clock = clock_of(runner)
    t0 = clock()
    try:
        info = runner.load(Path(load["artifact"]), RunnerOptions(**load["options"]))
    except ArtifactError as exc:
        channel.send(LoadFailed(str(exc)))
        return None
    except Exception as exc:  # a runtime's own failure: reported, the run goes on
        channel.send(LoadFailed(f"{type(exc).__name__}: {exc}", traceback.format_exc(limit=5)))
        return None
    channel.send(Loaded((clock() - t0) / 1e6, dataclasses.asdict(info)))
    return runner


def _exit_with_parent() -> None:
    """Stop when the parent is gone (killed outright, so it could not kill us)."""
    parent = os.getppid()
    while os.getppid() == parent:
        time.sleep(1)
    os._exit(1)


def main() -> None:
    channel = Channel(int(sys.argv[1]))
    orders = channel.receive()
    assert isinstance(orders, Orders), orders
    if orders.exit_with_parent:
        threading.Thread(target=_exit_with_parent, daemon=True).start()
    task = load_class(orders.task)
    runner = None
    if orders.load is not None:
        runner = load_runner(orders.load, channel)
        if runner is None:
            return
    try:
        result = task(orders.work, channel) if runner is None else task(runner, orders.work, channel)
    except Exception as exc:
        channel.send(Failed(f"{type(exc).__name__}: {exc}"))
        raise  # its traceback goes to stderr, the exit code is 1
    channel.send(Finished(result))
    if runner is not None:
        runner.close()


if __name__ == "__main__":
    main()
