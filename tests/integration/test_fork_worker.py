"""The forking worker: it claims, renews and records each attempt itself, its work horse runs only the
handler and hands the outcome back, and a horse that dies is recorded as worker-lost at once."""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import sgen_ops
from sgen_ops.runtime import execution
from sgen_ops.transport.queue import PERFORM

from ..conftest import Stack
from ..helpers import attempts_of, job_row, start_worker


def test_a_killed_horse_is_recorded_as_worker_lost_at_once_and_retried(hub: sgen_ops.Hub, stack: Stack) -> None:
    # The lease outlives the burst: only the worker seeing its horse die can record the loss in it.
    assert hub.settings.worker_lost_after >= 30
    job_id = hub.enqueue("test.die", {"test_pid": os.getpid()})
    hub.work(worker_class="fork")
    job = job_row(hub, job_id)
    assert (job.state, job.attempts) == ("succeeded", 2)
    first, second = attempts_of(hub, job_id)
    assert (first.exit, first.error_code) == ("worker-lost", "worker-lost")
    assert "killed by signal 9" in (first.error or "")
    assert second.exit == "succeeded"
    assert stack.runs() == [f"{job_id}:1:1", f"{job_id}:1:2"]


def test_an_outcome_bigger_than_a_pipe_buffer_reaches_the_worker_whole(hub: sgen_ops.Hub) -> None:
    size = 300_000
    job_id = hub.enqueue("test.verbose", {"size": size})
    hub.work(worker_class="fork")
    job = job_row(hub, job_id)
    assert (job.state, job.last_error_code) == ("dead-letter", "verbose")
    # The detail keeps its start; the error log, the whole traceback's last 64 KiB, ends with the message's end.
    assert job.last_error_detail == ("x" * size)[:4000]
    assert job.error_log is not None and job.error_log.rstrip().endswith("x" * 1000 + "END")
    [attempt] = attempts_of(hub, job_id)
    assert attempt.exit == "failed" and attempt.worker


def test_a_checkpoint_in_a_horse_sees_a_cancel(hub: sgen_ops.Hub) -> None:
    """The horse's checkpoint reads the ledger on a connection of its own (never its worker's)."""
    job_id = hub.enqueue("test.slow", {"seconds": 60})
    hub.add_operator("fork-admin", "administrator")
    ops = hub.as_operator("fork-admin")
    seen: dict[str, Any] = {}

    def cancel_when_running() -> None:
        deadline = time.monotonic() + 60
        while job_row(hub, job_id).state != "running" and time.monotonic() < deadline:
            time.sleep(0.05)
        seen["state"] = job_row(hub, job_id).state
        ops.cancel(job_id)

    thread = threading.Thread(target=cancel_when_running, daemon=True)
    thread.start()
    hub.work(worker_class="fork")
    thread.join(10)
    assert seen == {"state": "running"}
    job = job_row(hub, job_id)
    assert job.state == "cancelled"
    # A task that never saw the flag would end "succeeded" and only then be marked cancelled.
    assert [a.exit for a in attempts_of(hub, job_id)] == ["cancelled"]


def test_the_worker_renews_the_lease_while_its_horse_runs(make_hub: Any) -> None:
    hub = make_hub(worker_lost_after=1.5)
    job_id = hub.enqueue("test.slow", {"seconds": 4, "checkpoints": False})
    leases: list[Any] = []

    def watch() -> None:
        deadline = time.monotonic() + 60
        while job_row(hub, job_id).state != "running" and time.monotonic() < deadline:
            time.sleep(0.02)
        leases.append(job_row(hub, job_id).lease_until)
        time.sleep(2.0)
        leases.append(job_row(hub, job_id).lease_until)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    hub.work(worker_class="fork")
    thread.join(10)
    first, later = leases
    assert first is not None and later is not None and later > first
    assert job_row(hub, job_id).state == "succeeded"
    assert [a.exit for a in attempts_of(hub, job_id)] == ["succeeded"]


def test_deliveries_that_are_not_the_ledgers_are_told_apart() -> None:
    class Delivered:
        def __init__(self, func_name: str, args: tuple[Any, ...]) -> None:
            self.func_name, self.args = func_name, args

    assert execution.ledger_job_id(Delivered(PERFORM, (42,))) == 42
    assert execution.ledger_job_id(Delivered(PERFORM, ("42",))) == 42
    assert execution.ledger_job_id(Delivered("other.module.func", (42,))) is None
    assert execution.ledger_job_id(Delivered(PERFORM, ("x",))) is None
    assert execution.ledger_job_id(Delivered(PERFORM, (1, 2))) is None


def _ran_where(hub: sgen_ops.Hub) -> list[tuple[int, int, int]]:
    found = hub.redis.lrange(f"{hub.settings.queue_prefix}:pids", 0, -1)
    return [tuple(int(part) for part in raw.decode().split(":")) for raw in found]  # type: ignore[misc]


def test_with_horse_attempts_a_horse_runs_several_attempts_then_is_replaced(make_hub: Any) -> None:
    hub = make_hub(horse_attempts=3)
    ids = [hub.enqueue("test.where", {"n": n}) for n in range(7)]
    hub.work(worker_class="fork")
    assert {job_row(hub, j).state for j in ids} == {"succeeded"}
    ran = _ran_where(hub)
    assert sorted(job for job, _attempt, _pid in ran) == sorted(ids)
    pids = [pid for _job, _attempt, pid in ran]
    # Taken in order: three horses, for 3, 3 and 1 attempts; none of them is this process.
    assert [pids.count(pid) for pid in dict.fromkeys(pids)] == [3, 3, 1]
    assert os.getpid() not in pids
    for pid in set(pids):  # every horse was waited for: none is left as a zombie of this process
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            continue
        raise AssertionError(f"horse {pid} was not reaped")


def test_with_horse_attempts_a_horse_that_dies_takes_only_its_attempt(make_hub: Any) -> None:
    hub = make_hub(horse_attempts=10)
    first = hub.enqueue("test.where", {})
    dying = hub.enqueue("test.where", {"die": True})
    last = hub.enqueue("test.where", {})
    hub.work(worker_class="fork")
    assert [job_row(hub, j).state for j in (first, dying, last)] == ["succeeded"] * 3
    assert [a.exit for a in attempts_of(hub, first)] == ["succeeded"]
    assert [a.exit for a in attempts_of(hub, last)] == ["succeeded"]
    lost, retried = attempts_of(hub, dying)
    assert (lost.exit, retried.exit) == ("worker-lost", "succeeded")
    assert "killed by signal 9" in (lost.error or "")
    by_job = {(job, attempt): pid for job, attempt, pid in _ran_where(hub)}
    # The first job's horse also took the dying attempt; a new horse ran the retry.
    assert by_job[(first, 1)] == by_job[(dying, 1)] != by_job[(dying, 2)]


def test_with_horse_attempts_each_attempt_keeps_its_own_timeout(make_hub: Any) -> None:
    hub = make_hub(horse_attempts=5)
    before = hub.enqueue("test.where", {})
    hanging = hub.enqueue("test.hang")  # timeout 1 s, sleeps 5 s: sent to the horse the first job started
    after = hub.enqueue("test.where", {})
    hub.work(worker_class="fork")
    assert [a.exit for a in attempts_of(hub, hanging)] == ["timeout"]
    assert job_row(hub, before).state == job_row(hub, after).state == "succeeded"
    by_job = {job: pid for job, _attempt, pid in _ran_where(hub)}
    assert by_job[before] == by_job[after]  # the horse's alarm ended the attempt, not the horse


def test_sgen_ops_worker_takes_horse_attempts_with_fork(stack: Stack) -> None:
    hub = stack.hub()
    ids = [hub.enqueue("test.where", {"n": n}) for n in range(4)]
    worker = start_worker(stack, "--burst", "--concurrency", "1", "--fork", "--horse-attempts", "2")
    try:
        assert worker.wait(120) == 0, worker.output()
    finally:
        worker.stop()
    assert {job_row(hub, j).state for j in ids} == {"succeeded"}
    pids = [pid for _job, _attempt, pid in _ran_where(hub)]
    assert [pids.count(pid) for pid in dict.fromkeys(pids)] == [2, 2]
    refused = start_worker(stack, "--burst", "--horse-attempts", "2")  # without --fork
    try:
        assert refused.wait(60) == 2
        assert "--horse-attempts" in refused.output()
    finally:
        refused.stop()
