"""`edgebench quality` and a run's quality step: each runner's quality against the fp32
reference, one `mode: "quality"` record per (runner, quantization), in the run's JSONL.

In `run` (profiles with `quality = true`, or `--quality`) a runner is scored right after its
suite (QualityStep), unless its estimate from its own rates in this run overruns the
profile's `quality_budget`: then its record is `skipped` and says why.

The parent never imports a runtime or torch: the reference is computed in its own process
(bench.quality.reference) and each runner scores in its own (bench.quality.worker), both
through bench.workers. A worker that crashes, hangs or outgrows the run's memory limit becomes
a record with status crashed/timeout/oom (bench.run.record builds it); the next runner goes on.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from bench import selection
from bench.artifacts import prepare
from bench.artifacts.cache import artifact_stage, cache_root
from bench.data.suite import Suite
from bench.device.facts import load_average_1m
from bench.device.sensors import DeviceReader
from bench.errors import BenchError
from bench.quality import metrics as quality
from bench.quality import reference as quality_reference
from bench.records import ResultsWriter, read_records
from bench.run import resume
from bench.run import setup as run_setup
from bench.run.record import build_record, error_status, runner_fields
from bench.run.supervisor import RunnerPlan, load_orders
from bench.run.time_budget import CHARS_PER_TOKEN, Pace, QualityWork, Skip, quality_skip
from bench.run.worker import build_request
from bench.workers.protocol import (
    Failed,
    Finished,
    Generated,
    Loaded,
    LoadFailed,
    Message,
    Orders,
    Scored,
    Step,
    Work,
)
from bench.workers.session import Exit, Limits, Session
from runners import load_class, registrations


def chat_prompts(suite: Suite) -> list[dict]:
    """The suite's chat prompts as the worker sends them to a runner: [{"id", "messages"}]."""
    found = []
    for p in suite.prompts:
        if p.kind == "chat":
            request = build_request(None, {"kind": "chat", "system": p.system, "user": p.user, "max_new_tokens": 1}, {})
            found.append({"id": p.id, "messages": list(request.messages)})
    return found


def prepared_quants(
    names: list[str], model_id: str | None, cache: Path | None, given: tuple[str, ...], artifacts: tuple[str, ...]
) -> tuple[str, ...]:
    """--quant for `edgebench quality`: what the user gave, else every quantization prepared in
    the cache for each runner that has an exporter (its default one when none is)."""
    from bench.data import models

    model = models.get_model(model_id or models.default_model_id())
    chosen = set(selection.parse_pairs("--quant", given, "onnxruntime=fp32")) | set(
        selection.parse_pairs("--artifact", artifacts, "llama.cpp=model.gguf")
    )
    root, regs, found = cache_root(cache), registrations(), list(given)
    for name in names:
        exporter = load_class(regs[name].target).exporter
        if name in chosen or exporter is None:
            continue
        stage = artifact_stage(name, exporter)
        found += [f"{name}={q}" for q in exporter.quantizations if prepare.find_artifact(model, stage, q, root)]
    return tuple(found)


def setup_quality(options: run_setup.RunOptions) -> run_setup.RunSetup:
    """`edgebench quality`'s run: the same checks, artifacts and provenance as `run` (one
    call to run_setup.setup_run), every prepared quantization by default."""
    names = selection.select_runners(options.runners)
    quants = prepared_quants(names, options.model, options.cache, options.quants, options.artifacts)
    setup = run_setup.setup_run(dataclasses.replace(options, quants=quants))
    resume.sidecar(setup.results_path).unlink(missing_ok=True)  # a quality run is not a resumable suite run
    return setup


@dataclass(frozen=True)
class Shared:
    """What every runner's session uses: the text, the prompts and the whole-text reference."""

    setup: run_setup.RunSetup
    root: Path
    text: quality_reference.EvalText
    prompts: list[dict]
    whole: quality_reference.Reference
    threads: int
    say: Callable[[str], None]

    def reference_for(self, context: int) -> quality_reference.Reference:
        """The whole-text reference, or one scored in windows of `context` tokens."""
        if self.whole.manifest["tokens"] <= context:
            return self.whole
        return quality_reference.ensure(
            self.setup.model,
            self.root,
            self.text,
            self.prompts,
            context,
            self.threads,
            on_compute=lambda: self.say(f"computing the fp32 reference in windows of {context} tokens"),
        )


def run_quality(
    setup: run_setup.RunSetup,
    cache: Path | None,
    on_record: Callable[[dict], None] = lambda r: None,
    say: Callable[[str], None] = lambda message: None,
) -> list[dict]:
    """One quality record per plan of `setup`, appended to its results file."""
    shared = shared_for(setup, cache, say)
    writer, records = ResultsWriter(setup.results_path), []
    try:
        for plan in setup.plans:
            say(f"quality: {plan.name} {plan.artifact.quantization or ''}")
            record = score_plan(shared, plan)
            writer.append(record)
            records.append(record)
            on_record(record)
    finally:
        writer.close()
    return records


def shared_for(setup: run_setup.RunSetup, cache: Path | None, say: Callable[[str], None]) -> Shared:
    """What scoring any plan of `setup` needs (score_plan): the whole-text reference computed
    (once; cached) if it is not yet."""
    prompts = chat_prompts(setup.suite)
    if not prompts:
        raise BenchError(f"suite '{setup.suite.id}' has no chat prompt for greedy agreement", "use --suite default")
    root, text = cache_root(cache), quality_reference.eval_text()
    threads = setup.plans[0].threads
    whole = quality_reference.ensure(
        setup.model,
        root,
        text,
        prompts,
        None,
        threads,
        on_compute=lambda: say("computing the fp32 reference (once; cached)"),
    )
    return Shared(setup, root, text, prompts, whole, threads, say)


def score_plan(shared: Shared, plan: RunnerPlan) -> dict:
    """One plan's quality record: its runner loaded, scored and generating in a worker of its own."""
    return _Scoring(shared, plan).run()


class QualityStep:
    """A run's quality step, called after each runner's suite: that runner's quality record
    (bench.run.execute appends it), a `skipped` one when the estimate of its scoring, from
    its own rates in this run, overruns the profile's quality budget, or none when the
    runner measured nothing (or a resumed run has its record). The reference is computed
    when the first runner is scored; with `make_checkpoint` (run --prepare) the fp32
    checkpoint it needs is exported first if missing."""

    def __init__(
        self, setup: run_setup.RunSetup, cache: Path | None, make_checkpoint: bool, say: Callable[[str], None]
    ) -> None:
        self.setup, self.cache, self.make_checkpoint, self.say = setup, cache, make_checkpoint, say
        self.shared: Shared | None = None
        self.unavailable: Skip | None = None  # why no runner can be scored (no checkpoint for the reference)

    def __call__(self, plan: RunnerPlan) -> list[dict]:
        mine = [
            r
            for r in read_records([self.setup.results_path])
            if r["runner"] == plan.name and r.get("artifact_sha256") == plan.artifact.sha256
        ]
        suite = [r for r in mine if r.get("mode") == "suite"]
        if any(r.get("mode") == "quality" for r in mine) or not any(r["status"] == "ok" for r in suite):
            return []
        skip = self._skip(plan, suite)
        if skip:
            return [skipped_record(self.setup, plan, skip, suite[-1])]
        if self.shared is None and self.unavailable is None:
            try:
                if self.make_checkpoint:
                    prepare.checkpoint(self.setup.model, cache_root(self.cache))
                self.shared = shared_for(self.setup, self.cache, self.say)
            except BenchError as exc:  # no reference to score against: said once, in each runner's record
                self.unavailable = Skip(f"no fp32 reference: {exc.message}; {exc.hint}", None)
        if self.unavailable:
            return [skipped_record(self.setup, plan, self.unavailable, suite[-1])]
        self.say(f"quality: {plan.name} {plan.artifact.quantization or ''}")
        return [score_plan(self.shared, plan)]

    def _skip(self, plan: RunnerPlan, suite: list[dict]) -> Skip | None:
        limit = self.setup.profile.quality_budget_s
        if limit is None or self.setup.budget_s is None:  # no budget, or --no-budget
            return None
        pace = Pace()
        for record in suite:
            pace.learn(record)
        prompts = chat_prompts(self.setup.suite)
        work = QualityWork(
            load_s=max((r.get("load_ms") or 0.0) for r in suite) / 1e3,
            text_tokens=round(len(quality_reference.eval_text().text) / CHARS_PER_TOKEN),
            scoring=load_class(plan.target).scoring,
            prompt_tokens=tuple(
                round(sum(len(m["content"]) for m in p["messages"]) / CHARS_PER_TOKEN) for p in prompts
            ),
            new_tokens=quality_reference.GREEDY_TOKENS,
        )
        return quality_skip(pace, limit, work)


def skipped_record(setup: run_setup.RunSetup, plan: RunnerPlan, skip: Skip, measured: dict) -> dict:
    """A runner's quality record when its scoring was not run: what it says of its runner and
    artifact is what the runner's suite record `measured` says (the same load of the same artifact)."""
    record = build_record(
        setup.run_fields,
        setup.suite,
        setup.profile,
        plan,
        {},
        mode="quality",
        status="skipped",
        prompt_id="quality",
        skip_reason=skip.reason,
        estimated_s=skip.estimated_s,
    )
    record.update({name: measured.get(name) for name in runner_fields(plan, {}, setup.profile.context_tokens)})
    return record


class _Scoring:
    """One worker process: load, score, generate; whatever happens, one record."""

    def __init__(self, shared: Shared, plan: RunnerPlan) -> None:
        self.shared, self.plan = shared, plan
        self.loaded: dict = {}
        self.load_ms: float | None = None
        self.reference = shared.whole
        self.scored: Scored | None = None
        self.generated: dict[str, Generated] = {}

    def run(self) -> dict:
        profile = self.shared.setup.profile
        orders = Orders("bench.quality.worker:score", {}, load_orders(self.plan, profile.context_tokens))
        limits = Limits(profile.load_timeout_s, profile.generation_timeout_s, self.plan.memory_limit_mb)
        with Session(orders, limits, device=DeviceReader()) as self.session:
            start, load_avg = self.session.device_state(), load_average_1m()
            ended = self.session.follow(self._on_message)
            if isinstance(ended, Exit):
                during = f"during {self.session.step}: " if ended.status == "crashed" else ""
                ended = ended.status, during + ended.error
            window = self.session.window()
        status, error = ended
        setup = self.shared.setup
        return build_record(
            setup.run_fields,
            setup.suite,
            setup.profile,
            self.plan,
            self.loaded,
            mode="quality",
            status=status,
            start=start,
            load_avg_1m_start=load_avg,
            prompt_id="quality",
            load_ms=self.load_ms,
            peak_rss_mb=window.peak_rss_mb,
            cpu_percent=window.cpu_percent,
            busy_threads=window.busy_threads,
            error=error,
            **self._figures(),
        )

    def _on_message(self, message: Message) -> tuple[str, str | None] | None:
        """One message of the worker; (status, error) when it ends the session."""
        session = self.session
        if isinstance(message, LoadFailed):
            return error_status(message.error), message.error
        if isinstance(message, Failed):
            return "error", f"during {session.step}: {message.error}"
        if isinstance(message, Finished):
            return "ok", None
        if isinstance(message, Loaded):
            self.load_ms, self.loaded = message.load_ms, message.info
            context = self.loaded.get("context_tokens") or self.shared.setup.profile.context_tokens
            self.reference = self.shared.reference_for(context)
            work = {
                "reference": str(self.reference.folder),
                "prompts": self.shared.prompts,
                "greedy_tokens": self.reference.manifest["greedy_tokens"],
                "tokenizer": self.reference.manifest["checkpoint"],
            }
            session.child.send(Work(work))
            session.child.end_input()
        elif isinstance(message, Scored):
            self.scored = message
        elif isinstance(message, Generated):
            self.generated[message.prompt] = message
        # Each message restarts the time the worker has (its step, when it names a new one).
        session.begin(message.name if isinstance(message, Step) else session.step)
        return None

    def _figures(self) -> dict:
        """The record's quality figures from what the worker sent (None where it sent nothing)."""
        ref, figures, scored = self.reference, {}, self.scored
        if scored and scored.nll is not None:
            figures = quality.summary(
                quality.PositionFigures(np.asarray(scored.nll), np.asarray(scored.kld), np.asarray(scored.top1, bool))
            )
        by_prompt = self._greedy_by_prompt()
        firsts = [g["first_divergence"] for g in by_prompt.values() if g["first_divergence"] is not None]
        compared = {g.compared_by for g in self.generated.values()}
        detail = {
            "eval_text": self.shared.text.path.name,
            "eval_sha256": self.shared.text.sha256,
            "tokens": ref.manifest["tokens"],
            "windows": ref.manifest["windows"],
            "n_ctx": ref.manifest["n_ctx"],
            "reference_key": ref.manifest["key"],
            "top_k": ref.manifest["top_k"],
            "kld_bound": f"lower bound: top-{ref.manifest['top_k']} tokens + one rest bucket",
            "reference_rest_mass_mean": ref.manifest["rest_mass_mean"],
            "greedy_tokens": ref.manifest["greedy_tokens"],
            "greedy_by_prompt": by_prompt,
            "scoring_s": scored and scored.seconds,
            "greedy_s": sum(g.seconds for g in self.generated.values()) if self.generated else None,
            "no_logits": scored and scored.no_logits,
            "compared_by": compared.pop() if len(compared) == 1 else None,
        }
        return {
            "perplexity": None,
            "kld_mean": None,
            "kld_p99": None,
            "top1_agreement": None,
            "tokens_scored": None,
            **figures,
            "reference_perplexity": ref.manifest["perplexity"],
            "greedy_agreement": float(np.mean([g["agreement"] for g in by_prompt.values()])) if by_prompt else None,
            "greedy_first_divergence": min(firsts) if firsts else None,
            "quality_detail": detail,
        }

    def _greedy_by_prompt(self) -> dict:
        reference, n = self.reference.greedy(), self.reference.manifest["greedy_tokens"]
        found = {}
        for prompt_id, got in self.generated.items():
            expected = reference[prompt_id]
            agreement, first = quality.greedy_agreement(
                quality.greedy_sequence(expected["tokens"], expected["stopped_at_end_of_turn"]),
                quality.greedy_sequence(got.tokens, got.stopped_at_end_of_turn),
                n,
            )
            found[prompt_id] = {
                "agreement": agreement,
                "first_divergence": first,
                "compared_by": got.compared_by,
                "seconds": got.seconds,
            }
        return found
