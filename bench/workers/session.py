"""One child process followed from its orders to its end, the same way for every child (a
run's worker, quality's, an export, the fp32 reference).

The session sends the orders, hands each message to the caller's handler, and enforces the
limits: the load and each step the child begins (Session.begin) have a timeout, and a
memory limit kills the child once its RSS crosses it. An end the handler did not choose is
an Exit whose status and error are what the record of it says: `timeout` ("generation
exceeded 3 s"), `oom` ("worker reached 612 MB RSS, over the limit of 300 MB, and was
killed") or `crashed` ("worker killed by SIGSEGV: <its last lines>").
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import IO, Any, Callable, TypeVar

from bench.device.monitor import DeviceMonitor, ProcessMonitor, Window
from bench.device.sensors import DeviceReader
from bench.workers.process import ChildProcess
from bench.workers.protocol import Finished, Message, Orders, Step

Ending = TypeVar("Ending")


@dataclass(frozen=True)
class Limits:
    load_timeout_s: float | None = None  # None: no limit
    step_timeout_s: float | None = None
    memory_limit_mb: float | None = None  # needs a monitored session


@dataclass(frozen=True)
class Exit:
    """How a child ended without its handler ending the session: crashed, timeout or oom."""

    status: str
    error: str


class Session:
    """A started child, its memory and CPU watched when `monitored` (Session.window), and the
    device sampled with `device` (Session.device_state; every sample to `on_sample`, its
    time from 0 on the parent's monotonic clock)."""

    def __init__(
        self,
        orders: Orders,
        limits: Limits = Limits(),
        monitored: bool = True,
        log: IO[bytes] | None = None,
        merge_stdout: bool = False,
        cwd: str | None = None,
        env: dict | None = None,
        device: DeviceReader | None = None,
        on_sample: Callable[[dict], None] = lambda sample: None,
    ) -> None:
        self.limits = limits
        self.child = ChildProcess(log, cwd, env, merge_stdout)
        self.monitor = (
            ProcessMonitor(self.child.pid, limit_mb=limits.memory_limit_mb, on_exceed=self.child.kill)
            if monitored
            else None
        )
        self.device = DeviceMonitor(self.child.pid, device, origin=0.0, on_sample=on_sample) if device else None
        self.step, self.timeout_s = "load", limits.load_timeout_s
        self.since = time.monotonic()  # when the step in flight began
        self.deadline = None if self.timeout_s is None else self.since + self.timeout_s
        self.code: int | None = None  # its exit code, once closed
        self.child.send(orders)

    def begin(self, step: str) -> None:
        """The child began `step` ("generation", "scoring"): the step timeout runs from now."""
        self.step, self.timeout_s = step, self.limits.step_timeout_s
        self.since = time.monotonic()
        self.deadline = None if self.timeout_s is None else self.since + self.timeout_s

    def window(self) -> Window:
        """Peak RSS, CPU share and busy threads since the last call (bench.device.monitor)."""
        return self.monitor.window() if self.monitor else Window(None, None, None)

    def device_state(self) -> dict:
        """The device's latest sample (empty without a device to sample)."""
        return self.device.latest() if self.device else {}

    def follow(
        self,
        handle: Callable[[Message], Ending | None],
        on_wait: Callable[[float], None] | None = None,
        every_s: float = 0.5,
    ) -> Ending | Exit:
        """Hand each message to `handle` until it returns something (what this returns), or
        the child ends otherwise (an Exit). While waiting, `on_wait(seconds the step has
        taken)` about every `every_s`."""
        while True:
            remaining = None if self.deadline is None else self.deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                self.child.kill()
                return Exit("timeout", f"{self.step} exceeded {self.timeout_s:g} s")
            wait = remaining if on_wait is None else every_s if remaining is None else min(remaining, every_s)
            try:
                message = self.child.next(wait)
            except TimeoutError:
                if on_wait:
                    on_wait(time.monotonic() - self.since)
                continue
            if message is None:
                return self._gone()
            ended = handle(message)
            if ended is not None:
                return ended

    def _gone(self) -> Exit:
        """The child's end of the pipe closed before its handler was done: it died."""
        self.child.proc.wait()
        if self.monitor and self.monitor.exceeded_mb:
            return Exit(
                "oom",
                f"worker reached {self.monitor.exceeded_mb:.0f} MB RSS, over the "
                f"limit of {self.limits.memory_limit_mb:g} MB, and was killed",
            )
        return Exit("crashed", self.child.describe_exit())

    def kill(self) -> None:
        self.child.kill()

    def close(self) -> int:
        """Wait for the child's exit (killed when it overruns the step timeout doing so), stop
        watching it, release its pipe; its exit code. Closing again only returns the code."""
        if self.code is None:
            self.code = self.child.wait(self.limits.step_timeout_s)
            for monitor in (self.monitor, self.device):
                if monitor:
                    monitor.stop()
            self.child.close()
        return self.code

    def __enter__(self) -> Session:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:  # interrupted, or a bug here: the child goes too
            self.child.kill()
        self.close()


@dataclass(frozen=True)
class TaskEnd:
    """How a child that runs one task to its end (an export, the reference) ended."""

    finished: bool  # it said Finished
    result: Any  # what its task returned
    code: int  # its exit code
    tail: list[str]  # the last lines it printed

    @property
    def ok(self) -> bool:
        return self.finished and self.code == 0


def run_task(
    orders: Orders,
    log: IO[bytes],
    on_step: Callable[[str], None] = lambda name: None,
    on_wait: Callable[[float], None] | None = None,
    every_s: float = 0.5,
    tail_lines: int = 15,
    cwd: str | None = None,
    env: dict | None = None,
) -> TaskEnd:
    """Run a child's task with no time limit, everything it prints going to `log` (opened for
    reading and writing): each step it names to `on_step`, `on_wait` while it is quiet."""
    with Session(orders, monitored=False, log=log, merge_stdout=True, cwd=cwd, env=env) as session:
        session.child.end_input()

        def handle(message: Message) -> Finished | None:
            if isinstance(message, Step):
                on_step(message.name)
            return message if isinstance(message, Finished) else None

        ended = session.follow(handle, on_wait, every_s)
        code = session.close()
    finished = isinstance(ended, Finished)
    return TaskEnd(finished, ended.result if finished else None, code, session.child.tail(tail_lines))
