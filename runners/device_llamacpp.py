"""llama.cpp on a phone: the host side of the native device runner.

A phone has no Python, so this runner (in the host's worker process) drives
runners/device/llama_device_runner, pushed to the phone, through `adb shell`: it hands it
the worker's load orders and each GenerationRequest as JSON lines, and reads back its
events. The device runner stamps the request's receipt (t0) and every token on the
phone's own monotonic clock, so the harness's figures are the phone's, not adb's:
`scripted_clock` is that clock, as the device reports it (DeviceClock). It is not
registered as a runner: `--target adb://` puts it in llama.cpp's plans
(bench.run.phone_run), which hand it the phone in the setting "device".
"""

from __future__ import annotations

import codecs
import dataclasses
import json
import os
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Iterator

from runners.base import ArtifactError, GenerationInfo, GenerationRequest, LoadInfo, Runner, RunnerOptions, TokenEvent
from runners.llamacpp import (
    DEVICE_KINDS,
    FILE_TYPES,
    KV_CACHE_LOG,
    LOAD_MODE_LOG,
    LlamaCppRunner,
    _flash_attn_resolved,
    _not_applied,
    _placement,
    perf_figures,
    weights_bytes,
)
from runners.weights import Tensor

# How a shell says a binary is for another machine (Linux: exit 126; Android's toybox too).
CANNOT_EXECUTE = ("Exec format error", "not executable", "cannot execute")


class DeviceClock:
    """The phone's CLOCK_MONOTONIC as the device runner reports it, re-anchored where a
    timed span starts (a load, a request's receipt) to what the harness last read: spans
    are the phone's own, and the time adb takes between spans is not counted."""

    def __init__(self) -> None:
        self.now, self.offset = 0, 0

    def __call__(self) -> int:
        return self.now

    def anchor(self, device_ns: int) -> None:
        """`device_ns` is where the span the harness just started began on the phone."""
        self.offset = self.now - device_ns

    def at(self, device_ns: int) -> None:
        self.now = max(self.now, device_ns + self.offset)


class PhoneGone(Exception):
    """The adb connection dropped while the device runner was working."""


class DeviceLlamaCppRunner(Runner):
    name = LlamaCppRunner.name
    artifact_kind = LlamaCppRunner.artifact_kind
    package = LlamaCppRunner.package
    distribution = LlamaCppRunner.distribution
    extra = LlamaCppRunner.extra
    defaults = {k: v for k, v in LlamaCppRunner.defaults.items() if k != "accelerator"}
    scripted_clock = DeviceClock()

    def load(self, artifact: Path, options: RunnerOptions) -> LoadInfo:
        settings = self.settings(options)
        self.device = settings.pop("device")
        settings.pop("accelerator", None)  # a CPU build: the phone's GPU is not used
        self.stderr = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            [*self.device["adb"], "shell", self.device["runner"]],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
        )
        orders = {"artifact": self.device["artifact"], "options": dataclasses.asdict(options) | {"settings": settings}}
        clock = self.scripted_clock
        self._send(orders)
        loaded = self._next()
        if loaded["event"] == "load_failed":
            raise ArtifactError(loaded["error"])
        self.chat_template, self.bos_text, self.eos_text = (
            loaded["chat_template"],
            loaded["bos_text"],
            loaded["eos_text"],
        )
        clock.anchor(loaded["t_start_ns"])
        clock.at(loaded["t_ns"])
        return self._load_info(loaded, options, settings)

    def _load_info(self, loaded: dict, options: RunnerOptions, settings: dict) -> LoadInfo:
        """What the context got: the C API's read-back, and llama.cpp's log for flash
        attention's resolution and the K/V cache types (as runners.llamacpp reads them)."""
        log = loaded["log"]
        kv, load_mode = KV_CACHE_LOG.search(log), LOAD_MODE_LOG.search(log)
        applied = loaded["applied"] | {
            "flash_attn": _flash_attn_resolved(log, settings["flash_attn"]),
            "type_k": kv.group(2) if kv else None,
            "type_v": kv.group(3) if kv else None,
            "kv_cells": int(kv.group(1)) if kv else None,
            "use_mmap": load_mode.group(1).startswith("mmap") if load_mode else None,
        }
        asked = {
            "n_threads": options.threads,
            "n_threads_batch": options.threads,
            "n_ctx": options.context_tokens,
            **settings,
        }
        file_type = loaded["file_type"]
        devices = {name: (DEVICE_KINDS.get(kind, "other"), about) for name, kind, about in loaded["devices"]}
        return LoadInfo(
            f"{loaded['runtime_version']} (device runner)",
            "cpu",
            FILE_TYPES.get(int(file_type)) if file_type.isdigit() else None,
            {**applied, "system_info": loaded["system_info"].strip(), "device_runner": self.device["runner"]},
            threads=applied["n_threads"],
            context_tokens=applied["n_ctx"],
            not_applied=_not_applied(asked, applied),
            weights_bytes=weights_bytes([Tensor(name, size) for name, size in loaded["tensors"]], loaded["n_vocab"]),
            kv_bytes_per_token=loaded["kv_bytes_per_token"],
            **_placement(log, devices, "cpu"),
        )

    def tokenize(self, text: str) -> list[int]:
        self._send({"tokenize": text})
        return self._expect("tokens")["ids"]

    def generate(self, request: GenerationRequest) -> Iterator[TokenEvent]:
        clock = self.scripted_clock
        message = dataclasses.asdict(request)
        if request.messages is not None:  # the GGUF's own Jinja template, as the host runner renders it
            message["chat_text"] = self._chat_text(list(message.pop("messages")))
        self._send(message)
        clock.anchor(self._expect("start")["t_ns"])
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        while (event := self._next())["event"] == "token":
            clock.at(event["t_ns"])
            yield TokenEvent(event["id"], decoder.decode(bytes.fromhex(event["hex"])))
        if event["event"] == "failed":
            raise ValueError(event["error"])
        clock.at(event["t_ns"])
        native = perf_figures(SimpleNamespace(**event["perf"]))
        self._finished(
            GenerationInfo(event["prompt_tokens"], event["stop"], native, runtime_new_tokens=event["new_tokens"])
        )

    def _chat_text(self, messages: list[dict[str, str]]) -> str:
        """The chat prompt as llama-cpp-python renders the GGUF's template (runners.llamacpp's
        formatter): rendered here, as llama.cpp's C API knows only a fixed list of templates."""
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        if self.chat_template is None:
            raise ArtifactError("this model has no chat template; use completion or fixed prompts")
        formatter = Jinja2ChatFormatter(self.chat_template, eos_token=self.eos_text, bos_token=self.bos_text)
        return formatter(messages=messages).prompt

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        self.proc.wait(timeout=60)

    def _send(self, message: dict) -> None:
        try:
            self.proc.stdin.write(json.dumps(message).encode() + b"\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            self._gone()

    def _next(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            self._gone()
        return json.loads(line)

    def _expect(self, kind: str) -> dict:
        event = self._next()
        if event["event"] == "failed":
            raise ValueError(event["error"])
        if event["event"] != kind:
            raise RuntimeError(f"the device runner said {event['event']!r}, expected {kind!r}")
        return event

    def _gone(self):
        """The device runner's stream ended: it could not run, or the phone went away. A
        phone that went away stops the run as Ctrl-C does (bench.run.phone_run says how to
        resume), so what was not measured is not recorded as failed."""
        code = self.proc.wait()
        self.stderr.seek(0)
        said = self.stderr.read().decode(errors="replace").strip()
        if any(words in said for words in CANNOT_EXECUTE) or code == 126:
            raise ArtifactError(f"the phone cannot execute {self.device['runner']}: {said.splitlines()[-1:]}")
        if self.device.get("interrupt_run"):
            os.kill(os.getppid(), signal.SIGINT)
            time.sleep(60)  # the run stops this worker meanwhile
        raise PhoneGone(f"the adb connection dropped (adb exit {code}): {said.splitlines()[-1:] or 'no message'}")
