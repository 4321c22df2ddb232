"""The forking worker: it claims, renews and records each attempt itself, its work horse runs only the
handler and hands the outcome back, and a horse that dies is recorded as worker-lost at once."""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import sgen_ops
from sgen_ops import execution
from sgen_ops.queue import PERFORM

from ..conftest import Stack
from ..helpers import attempts_of, job_row


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
