"""Runs a runner's jobs: one worker process at a time, records written the moment they arrive.

The parent never imports a runtime. It starts `python -m bench.run.worker`, sends it the jobs,
answers its "ready" before each generation when the run has a time budget (bench.run.time_budget:
go, or skip with a `skipped` record; the worker is never killed for the budget), samples it with ProcessMonitor and the device with DeviceMonitor, enforces the load and
per-generation timeouts, and turns a worker that dies or hangs into a record with status
crashed/timeout before going on with the remaining jobs in a fresh worker.

In sustained mode one measured job repeats for a duration (see bench.run.worker); the device
samples of that time go to `on_sample` on the loop's time axis, and a crash ends the series.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Callable

from bench.data.models import Artifact
from bench.data.run_profiles import RunProfile, SustainedSettings
from bench.data.suite import Suite
from bench.device import accelerators
from bench.device.facts import load_average_1m
from bench.device.monitor import DeviceMonitor, ProcessMonitor
from bench.device.roofline import roofline_fields
from bench.device.sensors import DeviceReader
from bench.records import ResultsWriter, is_failed, make_record, utc_now
from bench.run.time_budget import PromptBudget
from bench.run.worker_process import WorkerProcess, describe_exit, kill_worker, load_orders, start_worker


@dataclass(frozen=True)
class RunnerPlan:
    name: str
    target: str
    artifact: Artifact
    threads: int
    synthetic: bool = False
    memory_limit_mb: float | None = None  # the worker is killed above this RSS: status "oom"
    settings: dict = field(default_factory=dict)  # the runner's defaults with the user's overrides
    allow_fallback: bool = False  # a runtime that ran elsewhere than its "accelerator" setting asked is not an error


@dataclass(frozen=True)
class Job:
    index: int
    prompt_id: str
    warmup: bool
    repeat: int
    payload: dict  # what the worker needs to build the request


@dataclass
class RunnerOutcome:
    """What one runner's generations came to: failures, and skips for the time budget."""

    failed: int = 0
    skipped: int = 0  # over the time budget: reported, not a failure


def _payload(suite: Suite, prompt) -> dict:
    payload = {
        "kind": prompt.kind,
        "max_new_tokens": prompt.max_new_tokens,
        "user": prompt.user,
        "system": prompt.system,
        "text": prompt.text,
    }
    if prompt.kind == "fixed":
        payload |= {"prompt_tokens": prompt.prompt_tokens, "fill_text": suite.fill_text(prompt)}
    return payload


def jobs_for(suite: Suite, profile: RunProfile) -> list[Job]:
    """Per selected prompt: its warm-ups, then its measured repetitions."""
    jobs: list[Job] = []
    for prompt in suite.prompts:
        if not profile.selects(prompt.tags):
            continue
        payload = _payload(suite, prompt)
        runs = [(True, i) for i in range(profile.warmups)] + [(False, i) for i in range(profile.repetitions)]
        for warmup, repeat in runs:
            jobs.append(Job(len(jobs), prompt.id, warmup, repeat, payload | {"job": len(jobs)}))
    return jobs


def sustained_jobs(suite: Suite, prompt_id: str, warmups: int) -> list[Job]:
    """The warm-ups, then the one job the worker repeats for the sustained duration."""
    payload = _payload(suite, suite.by_id(prompt_id))
    return [Job(i, prompt_id, i < warmups, i if i < warmups else 0, payload | {"job": i}) for i in range(warmups + 1)]


class Supervisor:
    def __init__(
        self,
        *,
        run_fields: dict,
        suite: Suite,
        profile: RunProfile,
        jobs: list[Job],
        writer: ResultsWriter,
        on_record: Callable[[dict], None] = lambda r: None,
        sustained: SustainedSettings | None = None,
        device: DeviceReader | None = None,
        on_sample: Callable[[str, dict], None] = lambda runner, sample: None,
        on_wait: Callable[[str, Job | None, float], None] = lambda runner, job, seconds: None,
        budget_s: float | None = None,
    ) -> None:
        self.run_fields = run_fields
        self.suite = suite
        self.profile = profile
        self.jobs = jobs
        self.writer = writer
        self.on_record = on_record
        self.sustained = sustained  # None: a suite run
        self.device = device or DeviceReader()
        self.on_sample = on_sample
        self.on_wait = on_wait  # (runner, job in flight or None while loading, seconds it has taken): ~2 per second
        self.budget_s = budget_s

    def run_runner(self, plan: RunnerPlan, jobs: list[Job] | None = None) -> RunnerOutcome:
        """Run `jobs` (default: all of the run's) on one runner, in as many workers as it takes."""
        outcome = RunnerOutcome()
        budget = (
            PromptBudget(self.budget_s, self.profile.warmups, self.profile.repetitions)
            if self.budget_s and not self.sustained
            else None
        )
        pending, fatal, previous = list(self.jobs if jobs is None else jobs), False, None
        # Each failed session uses up the job it died on, so this loop ends; a failure
        # before the first job (a load that crashes or hangs) ends the runner.
        while pending and not fatal:
            session = _WorkerSession(self, plan, pending, outcome, budget, previous)
            pending, fatal = session.run()
            fatal = fatal or self.sustained is not None  # a broken sustained series is not restarted
            previous = session
        return outcome

    def emit(self, outcome: RunnerOutcome, record: dict) -> None:
        self.writer.append(record)
        if record["status"] == "skipped":
            outcome.skipped += 1
        elif is_failed(record):
            outcome.failed += 1
        self.on_record(record)


# What a session's conversation with its worker ends with: the jobs still to do, and whether
# retrying this runner is pointless.
Ending = tuple[list[Job], bool]


class _WorkerSession:
    """One worker process working through `jobs` until done, dead or hung."""

    def __init__(
        self,
        supervisor: Supervisor,
        plan: RunnerPlan,
        jobs: list[Job],
        outcome: RunnerOutcome,
        budget: PromptBudget | None = None,
        previous: _WorkerSession | None = None,
    ):
        self.supervisor, self.plan, self.jobs, self.outcome, self.budget = supervisor, plan, jobs, outcome, budget
        self.profile = supervisor.profile
        # What the last worker of this runner loaded, for records made before this one loads.
        self.load_ms: float | None = previous.load_ms if previous else None
        self.loaded: dict = previous.loaded if previous else {}
        self.start_state = dict.fromkeys(("temp_c", "freq_mhz", "freq_max_mhz", "foreign_cpu_percent"))
        self.since = time.monotonic()  # when the load or the generation in flight began
        self.deadline = 0.0  # when the load or the generation in flight times out
        self.load_avg: float | None = None  # the 1-minute load when the generation in flight began
        self.by_index: dict[int, Job] = {}
        self.done: set[int] = set()
        self.current: Job | None = None  # the job in flight
        self.finished = False
        self.loop_origin: float | None = None  # parent's clock at the first sustained generation
        self.early_samples: list[dict] = []  # device samples taken before the loop began

    def run(self) -> Ending:
        """Start a worker on the jobs and follow it to its end."""
        worker = start_worker("bench.run.worker")
        proc = worker.proc
        monitor = ProcessMonitor(proc.pid, limit_mb=self.plan.memory_limit_mb, on_exceed=lambda: kill_worker(proc))
        self.device = DeviceMonitor(proc.pid, self.supervisor.device, origin=0.0, on_sample=self._sample)
        self.start_state = self.device.latest()
        self.since = time.monotonic()
        try:
            proc.stdin.write(json.dumps(self._worker_orders()).encode() + b"\n")
            proc.stdin.flush()
            if self.budget is None:  # nothing to ask: the worker runs every job
                proc.stdin.close()
            return self._converse(worker, monitor)
        except KeyboardInterrupt:  # Ctrl-C or SIGTERM: the generation in flight is recorded
            kill_worker(proc)
            self._failure(self.current, "interrupted", "stopped by the user before it finished", monitor)
            raise
        except BaseException:
            kill_worker(proc)
            raise
        finally:
            monitor.stop()
            self.device.stop()
            worker.close()

    def _worker_orders(self) -> dict:
        """What the worker reads on stdin (see bench.run.worker)."""
        sustained = self.supervisor.sustained
        return load_orders(self.plan, self.profile.context_tokens) | {
            "jobs": [j.payload for j in self.jobs],
            "sustain_s": sustained.duration_s if sustained else None,
            "ask": self.budget is not None,
        }

    def _converse(self, worker: WorkerProcess, monitor: ProcessMonitor) -> Ending:
        """Follow the worker's messages until it is done, dies or overruns its time; while
        waiting, tell `on_wait` about twice a second."""
        self.by_index = {j.index: j for j in self.jobs}
        self.deadline = time.monotonic() + self.profile.load_timeout_s
        self.load_avg = load_average_1m()
        while True:
            remaining = self.deadline - time.monotonic()
            if remaining <= 0:
                return self._timed_out(worker.proc, monitor)
            try:
                message = worker.messages.next(min(remaining, 0.5))
            except TimeoutError:
                self.supervisor.on_wait(self.plan.name, self.current, time.monotonic() - self.since)
                continue
            if message is None:
                return self._worker_gone(worker, monitor)
            ending = self._on_message(message, worker.proc, monitor)
            if ending is not None:
                return ending

    def _timed_out(self, proc, monitor: ProcessMonitor) -> Ending:
        kill_worker(proc)
        what = (
            f"generation exceeded {self.profile.generation_timeout_s:g} s"
            if self.current
            else f"load exceeded {self.profile.load_timeout_s:g} s"
        )
        self._failure(self.current, "timeout", what, monitor)
        return self._left(self.current), self.current is None

    def _worker_gone(self, worker: WorkerProcess, monitor: ProcessMonitor) -> Ending:
        """The worker's end of the pipe closed: it finished, or it died (out of memory, or crashed)."""
        code = worker.proc.wait()
        if self.finished or len(self.done) == len(self.jobs):
            return [], False
        if monitor.exceeded_mb:
            self._failure(
                self.current,
                "oom",
                f"worker reached {monitor.exceeded_mb:.0f} MB RSS, over the "
                f"limit of {self.plan.memory_limit_mb:g} MB, and was killed",
                monitor,
            )
        else:
            self._failure(self.current, "crashed", describe_exit(code, worker.stderr), monitor)
        return self._left(self.current), self.current is None

    def _on_message(self, message: dict, proc, monitor: ProcessMonitor) -> Ending | None:
        """One message of the worker; an Ending when it ends the session."""
        event = message["event"]
        if event == "loaded":
            self.load_ms = message["load_ms"]
            self.loaded = message["info"]
            self.since = time.monotonic()
            monitor.window()
        elif event == "load_failed":
            self._failure(None, _error_status(message["error"]), message["error"], monitor)
            return [], True
        elif event == "finished":
            self.finished = True
        elif event == "ready":
            self._answer(message["job"], proc)
        elif event == "start":
            self._started(message["job"], monitor)
        elif event in ("done", "failed"):
            self._ended(message, monitor)
        return None

    def _answer(self, index: int, proc) -> None:
        """The worker asks before a generation: "go", or "skip" with a skipped record saying why."""
        job = self.by_index[index]
        skip = self.budget.skip(job.prompt_id, job.warmup, job.repeat, job.payload)
        if skip:
            record = self._record(job, "skipped", None, None, None, load_average_1m(), {})
            record.update(skip_reason=skip.reason, estimated_s=skip.estimated_s)
            self.supervisor.emit(self.outcome, record)
            self.done.add(index)
        try:
            proc.stdin.write(b"skip\n" if skip else b"go\n")
            proc.stdin.flush()
        except BrokenPipeError:  # the worker died meanwhile: its end is read next
            pass

    def _started(self, index: int, monitor: ProcessMonitor) -> None:
        if self.supervisor.sustained and index >= self.jobs[-1].index:
            self.by_index[index] = self._repetition(index)
        self.current = self.by_index[index]
        self.since = time.monotonic()
        self.start_state = self.device.latest()
        self.deadline = time.monotonic() + self.profile.generation_timeout_s
        self.load_avg = load_average_1m()
        monitor.window()

    def _ended(self, message: dict, monitor: ProcessMonitor) -> None:
        """A generation finished ("done") or failed: its record goes out."""
        job = self.by_index[message["job"]]
        peak, cpu = monitor.window()
        if message["event"] == "done":
            record = self._record(job, "ok", None, peak, cpu, self.load_avg, message)
        else:
            record = self._record(job, _error_status(message["error"]), message["error"], peak, cpu, self.load_avg, {})
        self.supervisor.emit(self.outcome, record)
        if self.budget:
            self.budget.learn(record)
        self.done.add(job.index)
        self.current = None
        self.since = time.monotonic()
        self.deadline = time.monotonic() + self.profile.generation_timeout_s

    def _repetition(self, index: int) -> Job:
        """A sustained repetition of the last (measured) job, which the worker numbered."""
        measured = self.jobs[-1]
        if self.loop_origin is None:
            self.loop_origin = time.monotonic()
            for sample in self.early_samples:
                self._sample(sample)
        return Job(index, measured.prompt_id, False, index - measured.index, measured.payload | {"job": index})

    def _sample(self, sample: dict) -> None:
        """Device samples of a sustained run go out on the loop's time axis."""
        if not self.supervisor.sustained:
            return
        if self.loop_origin is None:
            self.early_samples.append(sample)
            return
        self.supervisor.on_sample(self.plan.name, sample | {"t_s": round(sample["t_s"] - self.loop_origin, 3)})

    def _left(self, current: Job | None) -> list[Job]:
        return [j for j in self.jobs if j.index not in self.done and j is not current]

    def _failure(self, job: Job | None, status: str, error: str, monitor: ProcessMonitor) -> None:
        peak, cpu = monitor.window()
        self.supervisor.emit(self.outcome, self._record(job, status, error, peak, cpu, load_average_1m(), {}))

    def _record(
        self, job: Job | None, status: str, error: str | None, peak_rss_mb, cpu_percent, load_avg, message: dict
    ) -> dict:
        plan, suite = self.plan, self.supervisor.suite
        prompt = suite.by_id(job.prompt_id) if job else None
        measured = message.get("measurement", {})
        record = make_record(
            **self.supervisor.run_fields,
            **runner_fields(plan, self.loaded, self.profile.context_tokens),
            **suite_fields(suite, self.profile),
            **{name: measured.get(name) for name in MEASURED},
            measured_at=utc_now(),
            load_avg_1m_start=load_avg,
            temp_c_start=self.start_state["temp_c"],
            cpu_freq_mhz_start=self.start_state["freq_mhz"],
            cpu_freq_max_mhz=self.start_state["freq_max_mhz"],
            foreign_cpu_percent_start=self.start_state["foreign_cpu_percent"],
            mode="sustained" if self.supervisor.sustained else "suite",
            elapsed_s=message.get("elapsed_s"),
            prompt_id=job.prompt_id if job else None,
            category=prompt.category if prompt else None,
            kind=prompt.kind if prompt else None,
            warmup=job.warmup if job else None,
            repeat=job.repeat if job else None,
            max_new_tokens=prompt.max_new_tokens if prompt else None,
            stop_reason=message.get("stop_reason"),
            load_ms=self.load_ms,
            itl_basis=message.get("itl_basis"),
            peak_rss_mb=peak_rss_mb,
            cpu_percent=cpu_percent,
            output_token_ids=measured.get("token_ids"),
            native=message.get("native"),
            status=status,
            error=error,
        )
        record.update(roofline_fields(record))
        record.update(
            accelerators.record_fields(
                plan.settings.get("accelerator"), self.loaded, plan.allow_fallback, record["status"]
            )
        )
        return record


# The harness's figures (bench.run.harness.Measurement) that a record keeps under their own names.
MEASURED = (
    "prompt_tokens",
    "new_tokens",
    "setup_ms",
    "ttft_ms",
    "prefill_tok_s",
    "decode_tok_s",
    "itl_p50_ms",
    "itl_p90_ms",
    "itl_p99_ms",
    "e2e_ms",
    "token_times_ns",
    "output_text",
)


def runner_fields(plan: RunnerPlan, loaded: dict, context_tokens: int) -> dict:
    """What a record says of its runner and artifact: the settings asked for, beside what the
    runtime reported it applied when it loaded (`loaded`; empty before a load)."""
    return dict(
        runner=plan.name,
        synthetic=plan.synthetic,
        runtime_version=loaded.get("runtime_version"),
        backend=loaded.get("backend"),
        runner_settings=runner_settings_record(loaded),
        artifact_path=str(plan.artifact.path),
        artifact_sha256=plan.artifact.sha256,
        artifact_bytes=plan.artifact.bytes,
        quantization=plan.artifact.quantization or loaded.get("quantization"),
        threads=loaded.get("threads"),
        context_tokens=loaded.get("context_tokens"),
        threads_requested=plan.threads,
        context_tokens_requested=context_tokens,
        weights_bytes=loaded.get("weights_bytes"),
        kv_bytes_per_token=loaded.get("kv_bytes_per_token"),
    )


def suite_fields(suite: Suite, profile: RunProfile) -> dict:
    """What a record says of the suite and run profile it was measured with."""
    return dict(suite_id=suite.id, suite_sha256=suite.sha256, profile_name=profile.name, profile_sha256=profile.sha256)


def runner_settings_record(loaded: dict) -> dict | None:
    """The runner's settings as the runtime applied them, with what it did not apply and why."""
    if not loaded:
        return None
    not_applied = loaded.get("not_applied") or {}
    return {**(loaded.get("settings") or {}), **({"not_applied": not_applied} if not_applied else {})}


def _error_status(error: str) -> str:
    """A Python MemoryError inside the runtime is running out of memory, not a bug."""
    return "oom" if error.startswith("MemoryError") else "error"
