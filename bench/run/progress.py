"""What `run` and `sustained` show while they run.

On a terminal: rich's live bar, with what is running and the last figures (a sustained run:
a bar per runner, seconds generated of its duration). Anywhere else (a log file, CI): plain
lines, one per finished generation, and while a load or a long generation runs, a heartbeat
line saying what runs and for how long at least every `heartbeat_s()` seconds, so a log is
never silent long enough to look hung.
"""

from __future__ import annotations

import os
import threading
import time
from contextlib import contextmanager
from typing import Callable, Iterator

from bench.errors import BenchError

# The parent polls its worker twice a second, so lines are at most this + 0.5 s apart: under 10 s.
HEARTBEAT_S = 8.0
HEARTBEAT_ENV = "EDGEBENCH_HEARTBEAT_S"  # another interval (tests use a short one)


def heartbeat_s() -> float:
    text = os.environ.get(HEARTBEAT_ENV)
    if text is None:
        return HEARTBEAT_S
    try:
        seconds = float(text)
    except ValueError:
        seconds = 0.0
    if seconds <= 0:
        raise BenchError(
            f"${HEARTBEAT_ENV} must be a positive number of seconds, got '{text}'",
            f"e.g. {HEARTBEAT_ENV}=5, or unset it",
        )
    return seconds


def activity(runner: str, job) -> str:
    """What is running: a runner loading, a step named in words, or a prompt's warm-up or repetition."""
    if job is None:
        return f"{runner}: loading"
    if isinstance(job, str):
        return f"{runner}: {job}"
    return f"{runner}: {job.prompt_id} " + ("warm-up" if job.warmup else f"rep {job.repeat}")


@contextmanager
def ticking(wait: Callable[[str, str, float], None], runner: str, step: str) -> Iterator[None]:
    """Tell `wait` (a view's) twice a second, from a thread, that `step` runs and for how long:
    for steps that send no events of their own while they work (quality scoring, the fp32
    reference), so a log keeps its heartbeat."""
    done, start = threading.Event(), time.monotonic()

    def tick() -> None:
        while not done.wait(0.5):
            wait(runner, step, time.monotonic() - start)

    thread = threading.Thread(target=tick, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


def quality_line(record: dict) -> str:
    """A runner's quality record in one line."""
    head = f"{record['runner']} {record['quantization'] or ''} · quality"
    if record["status"] == "skipped":
        return f"{head}: skipped: {record['skip_reason']}"
    if record["status"] != "ok":
        return f"{head}: {record['status']}: {record['error']}"
    kld = "–" if record["kld_mean"] is None else f"{record['kld_mean']:.3g}"
    greedy = "–" if record["greedy_agreement"] is None else f"{100 * record['greedy_agreement']:.0f}%"
    return f"{head}: KLD {kld}, greedy agreement {greedy}"


def figures(record: dict) -> str:
    ttft = "–" if record["ttft_ms"] is None else f"{record['ttft_ms']:,.0f} ms"
    decode = "–" if record["decode_tok_s"] is None else f"{record['decode_tok_s']:.1f} tok/s"
    return f"TTFT {ttft}, decode {decode}"


def generation_line(record: dict) -> str:
    """One finished generation (or a runner that failed before its first, or its quality) in one line."""
    if record.get("mode") == "quality":
        return quality_line(record)
    if record["prompt_id"] is None:
        return f"{record['runner']}: {record['status']}: {record['error']}"
    what = "warm-up" if record["warmup"] else f"rep {record['repeat']}"
    head = f"{record['runner']} {record['quantization'] or ''} · {record['prompt_id']} {what}"
    if record["status"] == "ok":
        return f"{head}: {figures(record)}"
    if record["status"] == "skipped":
        return f"{head}: skipped: {record['skip_reason']}"
    return f"{head}: {record['status']}: {record['error']}"


class PlainProgress:
    """Progress as plain lines. `record_gap`: at least this many seconds between lines of
    successful generations (a sustained run makes one a second); failures always print."""

    def __init__(
        self,
        say: Callable[[str], None],
        interval: float,
        record_gap: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._say, self.interval, self.record_gap, self.clock = say, interval, record_gap, clock
        self.last = clock()

    def __enter__(self) -> PlainProgress:
        return self

    def __exit__(self, *exc) -> None:
        return None

    def say(self, text: str) -> None:
        self._say(text)
        self.last = self.clock()

    def record(self, record: dict) -> None:
        if record["status"] != "ok" or self.clock() - self.last >= self.record_gap:
            self.say(generation_line(record))

    def wait(self, runner: str, job, seconds: float) -> None:
        if self.clock() - self.last >= self.interval:
            self.say(f"... {activity(runner, job)}: running for {seconds:.0f} s")


class _Bars:
    """Rich progress bars on a terminal, shown from entering to leaving."""

    def __init__(self, console, bars) -> None:
        self.console, self.bars = console, bars

    def __enter__(self) -> _Bars:
        self.bars.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.bars.__exit__(*exc)


class LiveProgress(_Bars):
    """The run's live bar on a terminal: generations done of all, what runs and for how
    long, the last figures; failures and skips printed above it."""

    def __init__(self, console, total: int, jobs_per_runner: int) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        super().__init__(
            console,
            Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TextColumn("{task.fields[last]}"),
                console=console,
                transient=False,
            ),
        )
        self.jobs_per_runner = jobs_per_runner
        self.task = self.bars.add_task("starting", total=total, last="")

    def say(self, text: str) -> None:
        self.console.print(text, highlight=False)

    def record(self, record: dict) -> None:
        if record.get("mode") == "quality":  # not one of the generations the bar counts
            self.console.print(generation_line(record), highlight=False)
            return
        if record["prompt_id"] is None:  # the runner failed before its first job: its jobs are done with
            self.bars.update(self.task, advance=self.jobs_per_runner)
        else:
            self.bars.update(self.task, advance=1)
        self.bars.update(self.task, description=record["runner"])
        if record["status"] == "ok":
            self.bars.update(self.task, last=f"last: {record['prompt_id']} {figures(record)}")
        else:
            self.console.print(
                generation_line(record), style="yellow" if record["status"] == "skipped" else "red", highlight=False
            )

    def wait(self, runner: str, job, seconds: float) -> None:
        self.bars.update(self.task, description=f"{activity(runner, job)} ({seconds:.0f} s)")


class SustainedBars(_Bars):
    """A sustained run's bars on a terminal: one per runner, seconds generated of its
    duration and its last decode rate; failures printed above them."""

    def __init__(self, console, runners: list[str], duration_s: float) -> None:
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        super().__init__(
            console,
            Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                TextColumn("{task.completed:.0f}/{task.total:.0f} s"),
                TimeElapsedColumn(),
                console=console,
                transient=False,
            ),
        )
        self.duration_s = duration_s
        self.tasks = {name: self.bars.add_task(name, total=duration_s) for name in runners}

    def say(self, text: str) -> None:
        self.console.print(text)

    def record(self, record: dict) -> None:
        from rich.text import Text

        task = self.tasks[record["runner"]]
        if record["status"] != "ok":
            self.console.print(Text(f"{record['runner']}: {record['status']}: {record['error']}", style="red"))
        elif record["elapsed_s"] is not None:
            rate = f"{record['decode_tok_s']:.1f} tok/s" if record["decode_tok_s"] else "no decode rate"
            self.bars.update(
                task,
                completed=min(self.duration_s, record["elapsed_s"] + record["e2e_ms"] / 1000),
                description=f"{record['runner']}: {rate}",
            )

    def wait(self, runner: str, job, seconds: float) -> None:
        return None
