"""Runs a runner's jobs: one worker process at a time, records written the moment they arrive.

The parent never imports a runtime. Each worker is a child session (bench.workers.session)
running bench.run.worker's task on the jobs: the session samples its memory and CPU and the
device, enforces the load and per-generation timeouts and the memory limit, and a worker that
dies or hangs becomes a record with status crashed/timeout/oom before the remaining jobs go
on in a fresh worker. When the run has a time budget (bench.run.time_budget) the worker asks
before each generation: go, or skip with a `skipped` record (the worker is never killed for
the budget). Every record is built by bench.run.record.

In sustained mode one measured job repeats for a duration (see bench.run.worker); the device
samples of that time go to `on_sample` on the loop's time axis, and a crash ends the series.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

from bench.data.models import Artifact
from bench.data.run_profiles import RunProfile, SustainedSettings
from bench.data.suite import Suite
from bench.device.energy import EnergyMeter, GenerationEnergy
from bench.device.facts import load_average_1m
from bench.device.monitor import Window
from bench.device.sensors import DeviceReader
from bench.records import ResultsWriter, is_failed
from bench.run.record import MEASURED, TURN_FIGURES, build_record, error_status
from bench.run.time_budget import PromptBudget, Skip, budget_unit
from bench.workers.protocol import (
    Answer,
    Done,
    Failed,
    Finished,
    Loaded,
    LoadFailed,
    Message,
    Orders,
    Ready,
    Skipped,
    Start,
)
from bench.workers.session import Exit, Limits, Session


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
    if prompt.kind in ("fixed", "depth"):
        payload |= {"prompt_tokens": prompt.prompt_tokens, "fill_text": suite.fill_text(prompt)}
    if prompt.kind == "conversation":
        payload |= {"turns": list(prompt.turns), "turn": prompt.turn}
    if prompt.kind == "depth":
        payload["depth"] = prompt.depth
    return payload


def jobs_for(suite: Suite, profile: RunProfile) -> list[Job]:
    """Per selected prompt: its warm-ups, then its measured repetitions. A conversation's
    turns run in order within each warm-up and repetition, which is one conversation."""
    jobs: list[Job] = []
    runs = [(True, i) for i in range(profile.warmups)] + [(False, i) for i in range(profile.repetitions)]
    for turns in _conversations(p for p in suite.prompts if profile.selects(p.tags)):
        for warmup, repeat in runs:
            for prompt in turns:
                payload = _payload(suite, prompt) | {"job": len(jobs)}
                if prompt.turn is not None:  # its conversation, and which run of it this turn continues
                    conversation = prompt.id.rsplit("/", 1)[0]
                    payload["conversation_id"] = conversation
                    payload["conversation"] = f"{conversation} {'warm-up' if warmup else 'run'} {repeat}"
                jobs.append(Job(len(jobs), prompt.id, warmup, repeat, payload))
    return jobs


def _conversations(prompts) -> list[list]:
    """The prompts in order, a conversation's turns together (every other prompt alone)."""
    groups: list[list] = []
    for prompt in prompts:
        if prompt.turn is not None and prompt.turn > 1 and groups and groups[-1][-1].turn == prompt.turn - 1:
            groups[-1].append(prompt)
        else:
            groups.append([prompt])
    return groups


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
        # Suite records' energy per token (a sustained run's comes from its series instead).
        self.meter = EnergyMeter(self.device) if sustained is None else None

    def run_runner(self, plan: RunnerPlan, jobs: list[Job] | None = None) -> RunnerOutcome:
        """Run `jobs` (default: all of the run's) on one runner, in as many workers as it takes."""
        outcome = RunnerOutcome()
        budget = (
            PromptBudget(
                self.budget_s,
                self.profile.warmups,
                self.profile.repetitions,
                self.suite.decode_probe(self.profile.selects),
            )
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
        self.start_state: dict = {}  # the device sample the generation in flight began in
        self.load_avg: float | None = None  # the 1-minute load when the generation in flight began
        self.by_index = {j.index: j for j in jobs}
        self.done: set[int] = set()
        self.unmeasured: set[int] = set()  # jobs skipped or failed: a conversation does not go on from them
        self.current: Job | None = None  # the job in flight
        self.loop_origin: float | None = None  # parent's clock at the first sustained generation
        self.early_samples: list[dict] = []  # device samples taken before the loop began
        meter = supervisor.meter
        # Energy is metered around each measured generation when the device has a counter;
        # otherwise every measured record says why not.
        self.energy_off: GenerationEnergy | None = meter.available() if meter else None
        self.meter = meter if meter and self.energy_off is None else None

    def run(self) -> Ending:
        """Start a worker on the jobs and follow it to its end."""
        limits = Limits(self.profile.load_timeout_s, self.profile.generation_timeout_s, self.plan.memory_limit_mb)
        with Session(self._orders(), limits, device=self.supervisor.device, on_sample=self._sample) as session:
            self.session = session
            self.start_state = session.device_state()
            self.load_avg = load_average_1m()
            if self.budget is None and self.meter is None:  # nothing to ask: the worker runs every job
                session.child.end_input()
            try:
                ended = session.follow(self._on_message, self._waiting)
            except KeyboardInterrupt:  # Ctrl-C or SIGTERM: the generation in flight is recorded
                session.kill()
                self._failure(self.current, "interrupted", "stopped by the user before it finished")
                raise
            if isinstance(ended, Exit):
                self._failure(self.current, ended.status, ended.error)
                return self._left(self.current), self.current is None
            return ended

    def _orders(self) -> Orders:
        """What the worker runs (bench.run.worker)."""
        sustained = self.supervisor.sustained
        work = {
            "jobs": [j.payload for j in self.jobs],
            "sustain_s": sustained.duration_s if sustained else None,
            "ask": self.budget is not None or self.meter is not None,
        }
        return Orders("bench.run.worker:run", work, load_orders(self.plan, self.profile.context_tokens))

    def _waiting(self, seconds: float) -> None:
        self.supervisor.on_wait(self.plan.name, self.current, seconds)

    def _on_message(self, message: Message) -> Ending | None:
        """One message of the worker; an Ending when it ends the session."""
        if isinstance(message, Loaded):
            self.load_ms, self.loaded = message.load_ms, message.info
            self.session.begin("generation")
            self.session.window()
        elif isinstance(message, LoadFailed):
            self._failure(None, error_status(message.error), message.error)
            return [], True
        elif isinstance(message, Finished):
            return [], False
        elif isinstance(message, Ready):
            self._answer(message.job)
        elif isinstance(message, Start):
            self._started(message.job)
        elif isinstance(message, (Done, Failed)) and message.job is not None:
            self._ended(message)
        elif isinstance(message, Skipped):
            self._ended(message)
        return None

    def _answer(self, index: int) -> None:
        """The worker asks before a generation: "go", or "skip" with a skipped record saying why."""
        job = self.by_index[index]
        skip = self._broken_conversation(job) or (
            self.budget.skip(job.prompt_id, job.warmup, job.repeat, job.payload) if self.budget else None
        )
        if skip:
            self.unmeasured.add(index)
            self.supervisor.emit(
                self.outcome,
                self._record(
                    job,
                    "skipped",
                    None,
                    None,
                    load_average_1m(),
                    skip_reason=skip.reason,
                    estimated_s=skip.estimated_s,
                ),
            )
            self.done.add(index)
        else:
            if self.meter and not job.warmup:
                self.meter.idle()  # the idle draw just before the generation
            self.current = job  # in flight once it may go (a stop before its Start message is its)
        self.session.child.send(Answer(go=not skip))

    def _broken_conversation(self, job: Job) -> Skip | None:
        """A conversation turn whose previous turn was not measured has no history to continue."""
        before = job.index - 1
        if (job.payload.get("turn") or 1) == 1 or (before in self.done and before not in self.unmeasured):
            return None
        self.unmeasured.add(job.index)
        return Skip(f"turn {job.payload['turn'] - 1} of this conversation was not measured", None)

    def _started(self, index: int) -> None:
        if self.supervisor.sustained and index >= self.jobs[-1].index:
            self.by_index[index] = self._repetition(index)
        self.current = self.by_index[index]
        self.session.begin("generation")
        self.start_state = self.session.device_state()
        self.load_avg = load_average_1m()
        self.session.window()
        if self.meter and not self.current.warmup:
            self.meter.start()

    def _ended(self, message: Done | Failed | Skipped) -> None:
        """A generation finished (Done), failed or was skipped by the runner: its record goes out."""
        job = self.by_index[message.job]
        window = self.session.window()
        tokens = message.measurement["new_tokens"] if isinstance(message, Done) else 0
        energy = self.meter.stop(tokens or 0) if self.meter and not job.warmup else self.energy_off
        if isinstance(message, Done):
            fields = energy.record_fields() if energy and not job.warmup else {}
            made = self._record(job, "ok", None, window, self.load_avg, done=message, **fields)
        elif isinstance(message, Skipped):
            made = self._record(job, "skipped", None, None, self.load_avg, skip_reason=message.reason)
        else:
            made = self._record(job, error_status(message.error), message.error, window, self.load_avg)
            self.unmeasured.add(job.index)
        self.supervisor.emit(self.outcome, made)
        if self.budget:
            self.budget.learn(made, budget_unit(job.prompt_id, job.payload))
        self.done.add(job.index)
        self.current = None
        self.session.begin("generation")

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

    def _failure(self, job: Job | None, status: str, error: str) -> None:
        self.supervisor.emit(self.outcome, self._record(job, status, error, self.session.window(), load_average_1m()))

    def _record(
        self,
        job: Job | None,
        status: str,
        error: str | None,
        window: Window | None,
        load_avg,
        done: Done | None = None,
        **values,
    ) -> dict:
        supervisor = self.supervisor
        prompt = supervisor.suite.by_id(job.prompt_id) if job else None
        measured = done.measurement if done else {}
        return build_record(
            supervisor.run_fields,
            supervisor.suite,
            self.profile,
            self.plan,
            self.loaded,
            mode="sustained" if supervisor.sustained else "suite",
            status=status,
            start=self.start_state,
            **{name: measured.get(name) for name in MEASURED + TURN_FIGURES},
            turn=prompt.turn if prompt else None,
            load_avg_1m_start=load_avg,
            elapsed_s=done and done.elapsed_s,
            prompt_id=job.prompt_id if job else None,
            depth=job.payload.get("depth") if job else None,
            category=prompt.category if prompt else None,
            kind=prompt.kind if prompt else None,
            warmup=job.warmup if job else None,
            repeat=job.repeat if job else None,
            max_new_tokens=prompt.max_new_tokens if prompt else None,
            stop_reason=done and done.stop_reason,
            load_ms=self.load_ms,
            itl_basis=done and done.itl_basis,
            peak_rss_mb=window and window.peak_rss_mb,
            cpu_percent=window and window.cpu_percent,
            busy_threads=window and window.busy_threads,
            output_token_ids=measured.get("token_ids"),
            native=done and done.native,
            error=error,
            **values,
        )


def load_orders(plan: RunnerPlan, context_tokens: int) -> dict:
    """What a worker needs to load the plan's runner and artifact (Orders.load)."""
    return {
        "runner_target": plan.target,
        "artifact": str(plan.artifact.path),
        "options": {"threads": plan.threads, "context_tokens": context_tokens, "settings": plan.settings},
    }
