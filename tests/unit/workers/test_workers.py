"""The one worker framework (bench.workers), in-process on the FAKE runner: a child that
crashes, hangs or outgrows its memory limit ends its session as the record will say, killed
with everything it started. No check depends on how fast an idle machine is: the limits that
must not fire (the load) are generous, and the ones that must fire are met by a child that
never finishes (a hang, a crash, memory held until it is killed)."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import time
import types

import psutil
import pytest

from bench.data.models import Artifact
from bench.data.run_profiles import RunProfile
from bench.data.suite import load_suite
from bench.run.supervisor import RunnerPlan, Supervisor, jobs_for
from bench.workers import protocol
from bench.workers.session import Exit, Limits, Session

RUN_TASK = "bench.run.worker:run"


def _orders(script, user: str) -> protocol.Orders:
    """The run's task on one chat job whose prompt is `user`, on the FAKE runner playing `script`."""
    job = {"job": 0, "kind": "chat", "system": None, "user": user, "max_new_tokens": 4}
    load = {
        "runner_target": "runners.fake:FakeRunner",
        "artifact": str(script),
        "options": {"threads": 1, "context_tokens": 256, "settings": {}},
    }
    return protocol.Orders(RUN_TASK, {"jobs": [job], "sustain_s": None, "ask": False}, load)


def _follow(orders: protocol.Orders, limits: Limits) -> tuple[list, object, int]:
    """(the messages, what ended the session, the child's exit code)."""
    seen = []

    def handle(message):
        seen.append(message)
        if isinstance(message, protocol.Loaded):
            session.begin("generation")
        return message if isinstance(message, (protocol.Finished, protocol.LoadFailed)) else None

    with Session(orders, limits) as session:
        session.child.end_input()
        ended = session.follow(handle)
        code = session.close()
    return seen, ended, code


def _types(messages) -> list[str]:
    return [type(m).__name__ for m in messages]


def test_a_child_that_finishes_says_loaded_start_done_finished_and_exits_0(fake_script):
    seen, ended, code = _follow(_orders(fake_script(eos_after=3), "hello"), Limits(60, 60))
    assert _types(seen) == ["Loaded", "Start", "Done", "Finished"] and ended == seen[-1] and code == 0
    assert seen[2].measurement["new_tokens"] == 3 and seen[0].info["backend"] == "FAKE (scripted clock)"


def test_a_crash_is_crashed_with_the_signal_and_the_step_it_was_in(fake_script):
    seen, ended, code = _follow(_orders(fake_script(crash_on="boom"), "boom"), Limits(60, 60))
    assert ended.status == "crashed" and ended.error.startswith("worker killed by SIGSEGV") and code == -11
    assert _types(seen) == ["Loaded", "Start"]


def test_a_hang_past_the_step_timeout_is_a_timeout_and_the_child_is_killed(fake_script):
    seen, ended, code = _follow(_orders(fake_script(hang_on="wait"), "wait"), Limits(60, 0.5))
    assert ended == Exit("timeout", "generation exceeded 0.5 s")
    assert code == -9 and _types(seen) == ["Loaded", "Start"]  # killed (SIGKILL), never finished


def test_a_child_over_its_memory_limit_is_killed_as_oom(fake_script):
    seen, ended, code = _follow(_orders(fake_script(grow_on="grow", grow_mb=400), "grow"), Limits(60, 60, 150))
    assert isinstance(ended, Exit) and ended.status == "oom", ended
    assert "over the limit of 150 MB, and was killed" in ended.error
    assert float(ended.error.split()[2]) > 150  # "worker reached N MB RSS": the RSS that crossed it
    assert code == -9 and _types(seen) == ["Loaded", "Start"]


def test_a_load_failure_is_said_not_crashed(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    seen, ended, code = _follow(_orders(bad, "hello"), Limits(60, 60))
    assert isinstance(ended, protocol.LoadFailed) and "not a fake-runner script" in ended.error
    assert code == 0 and _types(seen) == ["LoadFailed"]


def spawn_and_hang(work: dict, channel) -> None:
    """A task that starts a process of its own, names its pid, and hangs."""
    started = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    channel.send(protocol.Step(str(started.pid)))
    time.sleep(600)


def test_killing_a_session_kills_its_child_and_what_the_child_started():
    with Session(protocol.Orders("tests.unit.workers.test_workers:spawn_and_hang"), Limits()) as session:
        step = session.follow(lambda message: message if isinstance(message, protocol.Step) else None)
        grandchild = psutil.Process(int(step.name))
        session.kill()
        assert session.close() == -9
    assert psutil.wait_procs([grandchild], timeout=10)[1] == []  # gone with its parent's process group


@pytest.mark.parametrize("message", [m for m in protocol.Message.__args__])
def test_every_message_reads_back_as_it_was_sent(message):
    fields = {f.name: f"{f.name}-value" for f in dataclasses.fields(message)}
    sent = message(**fields)
    line = protocol.encode(sent)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert protocol.decode(line) == sent


# The supervisor on those sessions: a dead or hung worker is one record, and the run goes on.


def _supervise(script, **profile_changes) -> list[dict]:
    suite = load_suite("default")
    profile = dataclasses.replace(
        RunProfile("one", "", warmups=0, repetitions=1, tags=("short",), context_tokens=1024), **profile_changes
    )
    artifact = Artifact(script, "ab" * 32, script.stat().st_size, None, "user")
    plan = RunnerPlan("fake", "runners.fake:FakeRunner", artifact, 1, True)
    records: list[dict] = []
    writer = types.SimpleNamespace(append=records.append)
    Supervisor(run_fields={}, suite=suite, profile=profile, jobs=jobs_for(suite, profile), writer=writer).run_runner(
        plan
    )
    return records


def test_a_crashed_generation_is_one_record_and_the_rest_run_in_a_fresh_worker(fake_script):
    records = _supervise(fake_script(crash_on="capital of France"))
    statuses = {r["prompt_id"]: r["status"] for r in records}
    assert statuses.pop("chat-capital") == "crashed" and set(statuses.values()) == {"ok"} and len(statuses) == 5
    crashed = next(r for r in records if r["status"] == "crashed")
    assert crashed["error"].startswith("worker killed by SIGSEGV") and crashed["load_ms"] is not None


def test_a_hung_generation_is_a_timeout_record_and_the_rest_still_run(fake_script):
    records = _supervise(fake_script(hang_on="charged twice"), generation_timeout_s=5, load_timeout_s=60)
    statuses = {r["prompt_id"]: r["status"] for r in records}
    assert statuses.pop("classify-ticket") == "timeout" and set(statuses.values()) == {"ok"} and len(statuses) == 5
    assert next(r["error"] for r in records if r["status"] == "timeout") == "generation exceeded 5 s"
