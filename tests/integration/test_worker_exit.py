"""`sgen-ops worker` stops at once: a burst ends with its last job at every concurrency and worker class (not
the 60 s hang of RQ's pubsub thread, docs/worker-exit.md), SIGTERM lets the running job finish and then exits,
SIGINT twice stops at once and leaves the attempt to recovery. Whole processes through the console script."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from redis.client import PubSub
from sqlalchemy import func, select

import sgen_ops
from sgen_ops.ledger.store.models import Job
from sgen_ops.runtime import execution
from sgen_ops.runtime.workers import SgenWorker

from ..conftest import ROOT, Stack
from ..helpers import attempts_of, job_row, wait_for

SGEN_OPS = Path(sys.executable).parent / "sgen-ops"
# Far above normal (a pool wakes when a worker process ends; its burst exits about 0.3 s after its last job):
# "not the 60 s hang".
EXIT_BOUND = 10.0
# Ten bursts per ledger (20 on the two): the pool of two and the single worker, each with the default and the
# forking worker class.
BURSTS = {("--concurrency", "2"): 4, ("--concurrency", "1"): 2, ("--concurrency", "2", "--fork"): 2,
          ("--concurrency", "1", "--fork"): 2}

class Worker:
    """``sgen-ops worker --burst`` in a session of its own (a terminal's Ctrl-C reaches the whole group)."""

    def __init__(self, stack: Stack, *args: str, **settings: object) -> None:
        stack.home.mkdir(parents=True, exist_ok=True)
        self.log = stack.home / f"worker-{time.monotonic_ns()}.log"
        with self.log.open("wb") as out:
            self.popen = subprocess.Popen(
                [str(SGEN_OPS), "worker", "--burst", *args], cwd=ROOT, env=stack.env(**settings), stdout=out,
                stderr=subprocess.STDOUT, start_new_session=True,
            )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def signal_group(self, signum: int) -> None:
        os.killpg(self.popen.pid, signum)

    def kill(self) -> None:
        """Whatever is left of the group, the work horses and pool children too."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        if self.popen.poll() is None:
            self.popen.wait(10)


def done(hub: sgen_ops.Hub, ids: list[int]) -> int:
    with hub.ledger.read() as session:
        return int(session.scalar(select(func.count()).where(Job.id.in_(ids), Job.state == "succeeded")) or 0)


def exit_after_last_job(stack: Stack, hub: sgen_ops.Hub, args: tuple[str, ...]) -> float:
    """Run a burst over five no-op jobs; the seconds between the ledger showing them all done and the exit."""
    ids = [hub.enqueue("test.ok", {"i": i}) for i in range(5)]
    worker = Worker(stack, *args)
    try:
        deadline = time.monotonic() + 120
        all_done = None
        while worker.popen.poll() is None and time.monotonic() < deadline:
            if all_done is None and done(hub, ids) == len(ids):
                all_done = time.monotonic()
            time.sleep(0.05)
        exited = time.monotonic()
        assert worker.popen.poll() == 0, worker.output()
    finally:
        worker.kill()
    assert done(hub, ids) == len(ids), worker.output()
    return exited - (all_done or exited)


@pytest.mark.slow
def test_a_burst_exits_with_its_last_job_at_every_concurrency_and_worker_class(stack: Stack) -> None:
    hub = stack.hub()
    lags = {args: max(exit_after_last_job(stack, hub, args) for _ in range(n)) for args, n in BURSTS.items()}
    assert all(lag < EXIT_BOUND for lag in lags.values()), lags


@pytest.mark.slow
@pytest.mark.parametrize("args", [("--concurrency", "1"), ("--concurrency", "2"), ("--concurrency", "1", "--fork")])
def test_sigterm_lets_the_running_job_finish_then_exits(stack: Stack, args: tuple[str, ...]) -> None:
    hub = stack.hub()
    job_id = hub.enqueue("test.slow", {"seconds": 2.0})
    worker = Worker(stack, *args)
    try:
        wait_for(lambda: hub.redis.get(f"{stack.prefix}:started:{job_id}"), what="the worker to start the job")
        sent = time.monotonic()
        worker.popen.send_signal(signal.SIGTERM)  # to the worker (or the pool) alone, as a service manager does
        assert worker.popen.wait(2.0 + EXIT_BOUND) == 0, worker.output()
        took = time.monotonic() - sent
    finally:
        worker.kill()
    assert job_row(hub, job_id).state == "succeeded", worker.output()
    assert took < 2.0 + EXIT_BOUND


@pytest.mark.slow
@pytest.mark.parametrize("args", [("--concurrency", "1"), ("--concurrency", "2"), ("--concurrency", "1", "--fork")])
def test_sigint_twice_stops_at_once_and_the_attempt_is_recovered(stack: Stack, args: tuple[str, ...]) -> None:
    hub = stack.hub(worker_lost_after=1.5)
    job_id = hub.enqueue("test.slow", {"seconds": 60, "only_first_attempt": True})
    worker = Worker(stack, *args, worker_lost_after=1.5)
    try:
        wait_for(lambda: hub.redis.get(f"{stack.prefix}:started:{job_id}"), what="the worker to start the job")
        worker.signal_group(signal.SIGINT)  # Ctrl-C: a warm shutdown, which would wait for the job
        time.sleep(1.5)  # RQ takes a second signal within a second for the same Ctrl-C
        worker.signal_group(signal.SIGINT)  # again: a cold shutdown
        worker.popen.wait(EXIT_BOUND)
    finally:
        worker.kill()
    assert worker.popen.returncode is not None, "still running after its second SIGINT"
    if "--fork" not in args:
        # The attempt's lease lapses; upkeep (here: reconcile's recover_lost) records it lost.
        assert job_row(hub, job_id).state == "running"
        wait_for(lambda: hub.recover_lost() == 1, what="the lost attempt to be recovered")
    # A forking worker takes its horse down with it and records the attempt lost on its way out.
    assert [a.exit for a in attempts_of(hub, job_id)] == ["worker-lost"], worker.output()
    assert job_row(hub, job_id).state == "retrying"
    hub.work()
    assert job_row(hub, job_id).state == "succeeded"


def test_unsubscribing_ends_the_pubsub_thread_at_once(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    """The case behind the hang: the thread reads UNSUBSCRIBE's reply before it is told to stop (forced here
    by a pause after the command, as a loaded machine does it) and goes back to waiting up to RQ's 60 s for a
    subscription. The worker tells it to stop first: the reply ends it, and nothing waits for it."""
    hub = stack.hub()
    execution.bind_hub(hub)
    unsubscribe = PubSub.unsubscribe

    def then_pause(self: PubSub, *args: Any, **kwargs: Any) -> Any:
        sent = unsubscribe(self, *args, **kwargs)
        time.sleep(0.05)
        return sent

    monkeypatch.setattr(PubSub, "unsubscribe", then_pause)
    for _ in range(5):
        worker = SgenWorker(hub.transport.ordered_queues, connection=hub.redis, name=f"{stack.prefix}-exit")
        worker.subscribe()
        thread = worker.pubsub_thread
        assert thread is not None
        started = time.monotonic()
        worker.unsubscribe()
        thread.join(EXIT_BOUND)
        assert not thread.is_alive() and time.monotonic() - started < EXIT_BOUND
