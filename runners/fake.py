"""FAKE runner, for tests only: scripted tokens on a scripted clock, no model, no runtime.

Its figures are exact by construction (so harness arithmetic can be tested to the
nanosecond) and mean nothing about any device. It is never picked by default, and every
record it makes says `synthetic: true` and backend "FAKE (scripted clock)".

The artifact is a JSON script:
  load_ms, prefill_ms_per_token, first_token_ms, decode_ms (a number or a list, cycled),
  decode_ms_from (a list of [generation, decode_ms]: from that generation on, counting from
  0 after load, warm-ups included, each decode step takes decode_ms; a scripted slowdown),
  eos_after (tokens before end of turn in chat/completion mode), setup_ms (per-request set-up,
  marked with SETUP_DONE), fixed_short_by (a fixed-length generation stops this many tokens
  early, as a runtime that drifts would), weights_bytes, kv_bytes_per_token and
  applied_threads and context_tokens (reported at load: what a runtime says it runs on,
  default the request), score_vocab (`score` returns uniform logits over that many tokens:
  FAKE logits whose perplexity is exactly score_vocab; without it, NoLogits), runs_on (the
  accelerator it reports at load, default "cpu": a scripted fallback when a run asks for the
  FAKE "gpu"), keeps_history (default true: a continued conversation turn prefills only what
  the previous turn did not hold; false: it prefills the whole history), and for fault tests
  refills_claiming_kept (a continued turn prefills the whole history but claims it kept it),
  crash_on / hang_on / raise_on / grow_on: a substring of the prompt that makes the worker
  die with SIGSEGV, sleep for real (to hit a timeout; with "hang_once": MARKER only the
  first time), raise an error, or really allocate `grow_mb` MB (default 2048) of memory;
  the prompt of `score` is "score". Depth sweeps (`fill`): fill_ms_per_token (the history's
  scripted rate), capacity (the cache's tokens: a fill past it raises ContextFull), and
  loses_history (a broken runtime: its count at the end leaves the history out, as one that
  re-prefilled from position 0 would).
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Iterator

from runners.base import (
    SETUP_DONE,
    ArtifactError,
    GenerationInfo,
    GenerationRequest,
    LoadInfo,
    NoLogits,
    Probe,
    Runner,
    RunnerOptions,
    TokenEvent,
    check_room,
)

_now_ns = [0]


def _fake_clock() -> int:
    return _now_ns[0]


def _advance(ms: float) -> None:
    _now_ns[0] += round(ms * 1e6)


class FakeRunner(Runner):
    name = "fake"
    artifact_kind = "fake-script"
    scoring = "batch"
    package = "runners"
    distribution = "edgebench"
    extra = ""
    scripted_clock = staticmethod(_fake_clock)
    defaults = {"accelerator": "auto"}

    @classmethod
    def accelerators(cls) -> dict[str, str]:
        return {"cpu": "FAKE", "gpu": "FAKE (scripted: the script's runs_on says where it ran)"}

    @classmethod
    def probe(cls) -> Probe:
        return Probe(True, "fake")

    def load(self, artifact: Path, options: RunnerOptions) -> LoadInfo:
        try:
            self.script = json.loads(artifact.read_text())
        except (OSError, ValueError) as exc:
            raise ArtifactError(f"{artifact} is not a fake-runner script (JSON): {exc}") from None
        _advance(self.script.get("load_ms", 0))
        self._generations = 0
        self._held = 0  # tokens the FAKE cache holds from the previous generation
        return LoadInfo(
            "fake",
            "FAKE (scripted clock)",
            "none",
            {},
            threads=self.script.get("applied_threads", options.threads),
            context_tokens=self.script.get("context_tokens", options.context_tokens),
            weights_bytes=self.script.get("weights_bytes"),
            kv_bytes_per_token=self.script.get("kv_bytes_per_token"),
            accelerator=self.script.get("runs_on", "cpu"),
            placement={"scripted": True},
        )

    def tokenize(self, text: str) -> list[int]:
        return [sum(map(ord, word)) % 1000 for word in text.split()]

    def fill(self, token_ids, room: int) -> int:
        check_room(len(token_ids), room, self.script.get("capacity", 10**9), "the FAKE script's capacity")
        _advance(len(token_ids) * self.script.get("fill_ms_per_token", 0))
        self._held = len(token_ids)
        return self._held

    def generate(self, request: GenerationRequest) -> Iterator[TokenEvent]:
        s = self.script
        prompt = self._prompt_text(request)
        self._fault(prompt)
        prompt_tokens = len(request.token_ids) if request.token_ids else len(self.tokenize(prompt))
        steps = s.get("decode_ms", 10)
        for start, step_ms in s.get("decode_ms_from", []):
            if self._generations >= start:
                steps = step_ms
        self._generations += 1
        steps = steps if isinstance(steps, list) else [steps]
        limit = request.max_new_tokens if request.ignore_eos else min(request.max_new_tokens, s.get("eos_after", 10**9))
        limit -= s.get("fixed_short_by", 0) if request.ignore_eos else 0
        if "setup_ms" in s:
            _advance(s["setup_ms"])
            yield SETUP_DONE
        held = min(self._held, prompt_tokens - 1) if request.continues else 0
        kept = held if s.get("keeps_history", True) and not s.get("refills_claiming_kept") else 0
        claimed = held if s.get("refills_claiming_kept") else kept
        prefilled = prompt_tokens - kept
        filled = 0 if request.history is None or s.get("loses_history") else self._held
        self._held = 0
        _advance(prefilled * s.get("prefill_ms_per_token", 0) + s.get("first_token_ms", 0))
        for i in range(limit):
            if i:
                _advance(steps[(i - 1) % len(steps)])
            yield TokenEvent(i, f" t{i}")
        reason = "length" if limit == request.max_new_tokens else "eos"
        self._held = prompt_tokens + max(limit - 1, 0)  # the last token is never fed back
        self._finished(
            GenerationInfo(
                prompt_tokens,
                reason,
                {"scripted": True},
                kept_tokens=claimed,
                prefilled_tokens=prefilled,
                prefill_counted_by="runner",
                runtime_context=filled + prompt_tokens + limit,
            )
        )

    def score(self, token_ids):
        """FAKE logits: all equal over the script's `score_vocab` tokens."""
        import numpy as np

        self._fault("score")
        if "score_vocab" not in self.script:
            raise NoLogits("the FAKE script has no score_vocab")
        return np.zeros((len(token_ids), self.script["score_vocab"]), np.float32)

    @staticmethod
    def _prompt_text(request: GenerationRequest) -> str:
        if request.messages:
            return " ".join(m["content"] for m in request.messages)
        return request.text or " ".join(map(str, request.token_ids))

    def _hung_before(self) -> bool:
        """With "hang_once": MARKER_PATH, only the first worker ever to get there hangs."""
        marker = self.script.get("hang_once")
        if not marker:
            return False
        if Path(marker).exists():
            return True
        Path(marker).touch()
        return False

    def _fault(self, prompt: str) -> None:
        s = self.script
        if s.get("crash_on") and s["crash_on"] in prompt:
            os.kill(os.getpid(), signal.SIGSEGV)
        if s.get("hang_on") and s["hang_on"] in prompt and not self._hung_before():
            time.sleep(3600)
        if s.get("raise_on") and s["raise_on"] in prompt:
            raise RuntimeError("scripted failure")
        if s.get("grow_on") and s["grow_on"] in prompt:
            self._ballast = [b"x" * 2**20 for _ in range(s.get("grow_mb", 2048))]  # written, so resident
            time.sleep(5)  # hold it while the parent samples
