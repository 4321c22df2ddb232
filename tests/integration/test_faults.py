"""Nothing lost, nothing run twice, under real faults: each finding of the chaos soak, pinned."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from rq.job import Job as RQJob
from rq.serializers import JSONSerializer
from rq.utils import utcformat
from sqlalchemy import Connection, func, select, text

import sgen_ops
from sgen_ops.core.times import utcnow
from sgen_ops.embedded import ensure_redis, start_redis_server, stop_process, stop_redis
from sgen_ops.ledger.store import Attempt, JobEvent
from sgen_ops.runtime import execution
from sgen_ops.runtime.workers import SgenWorker
from sgen_ops.transport import queue as queue_module

from ..conftest import Stack, cleanup_redis
from ..helpers import Process, attempts_of, job_row, start_worker, wait_for


def _running_attempt(hub: sgen_ops.Hub) -> int:
    """A job whose attempt was claimed and then left alone, as by a worker that vanished."""
    job_id = hub.enqueue("test.ok")
    rq_job_id = job_row(hub, job_id).rq_job_id
    assert execution.claim(hub, job_id, rq_job_id) is not None
    return job_id


def _events(hub: sgen_ops.Hub, job_id: int) -> list[tuple[str | None, str]]:
    with hub.ledger.read() as session:
        rows = session.execute(
            select(JobEvent.from_state, JobEvent.to_state).where(JobEvent.job_id == job_id).order_by(JobEvent.id)
        ).all()
    return [(r.from_state, r.to_state) for r in rows]


@contextmanager
def _row_held(hub: sgen_ops.Hub, job_id: int) -> Iterator[Connection]:
    """A write transaction holding job ``job_id``'s row (the whole database on SQLite), as a worker
    recording an outcome does; committed when the block ends."""
    engine = hub.ledger.engine
    if engine.dialect.name == "sqlite":
        engine = engine.execution_options(sqlite_begin="IMMEDIATE")
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT id FROM jobs WHERE id = :id FOR UPDATE"), {"id": job_id})
        yield conn


def _wait_until_blocked(hub: sgen_ops.Hub, n: int) -> None:
    """Wait until ``n`` other transactions wait for a lock (PostgreSQL); SQLite's waiters cannot be
    seen, so there the threads are given a moment to reach the lock."""
    if hub.ledger.engine.dialect.name != "postgresql":
        time.sleep(1.0)
        return
    probe = text(
        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()"
    )

    def blocked() -> bool:
        with hub.ledger.engine.connect() as conn:
            return int(conn.execute(probe).scalar() or 0) >= n

    wait_for(blocked, what=f"{n} transactions to wait on the job's row")


def _in_threads(*calls: Callable[[], Any]) -> tuple[list[threading.Thread], list[Any]]:
    results: list[Any] = [None] * len(calls)

    def run(i: int) -> None:
        try:
            results[i] = calls[i]()
        except Exception as exc:  # noqa: BLE001 - the outcome under test
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(len(calls))]
    for t in threads:
        t.start()
    return threads, results


# -- 2. recovery locks what it changes -----------------------------------------------------------
def test_two_concurrent_recoveries_record_one_loss(stack: Stack) -> None:
    hub = stack.hub()
    job_id = _running_attempt(hub)
    later = utcnow() + timedelta(hours=1)
    a, b = stack.hub(), stack.hub()
    with _row_held(hub, job_id):
        # Both passes have seen the expired lease before either may write.
        threads, results = _in_threads(lambda: a.recover_lost(later), lambda: b.recover_lost(later))
        _wait_until_blocked(hub, 2)
    for t in threads:
        t.join(60)
    assert sorted(results) == [0, 1]
    [attempt] = attempts_of(hub, job_id)
    assert attempt.exit == "worker-lost"
    assert _events(hub, job_id).count(("running", "failed")) == 1
    assert job_row(hub, job_id).state == "retrying"


def test_an_outcome_recorded_during_recovery_is_never_overwritten(stack: Stack) -> None:
    hub = stack.hub()
    job_id = _running_attempt(hub)
    later = utcnow() + timedelta(hours=1)
    other = stack.hub()
    with _row_held(hub, job_id) as conn:
        threads, results = _in_threads(lambda: other.recover_lost(later))
        _wait_until_blocked(hub, 1)
        # The attempt's worker records its success while recovery waits for the row.
        conn.execute(
            text("UPDATE jobs SET state = 'succeeded', lease_until = NULL WHERE id = :id"), {"id": job_id}
        )
    for t in threads:
        t.join(60)
    assert results == [0]
    assert job_row(hub, job_id).state == "succeeded"
    with hub.ledger.read() as session:
        lost = session.scalar(select(func.count()).select_from(Attempt).where(Attempt.exit == "worker-lost"))
    assert lost == 0


# -- 1. a delivery taken but never claimed is re-sent --------------------------------------------
def test_a_delivery_whose_worker_died_before_claiming_is_sent_again(stack: Stack) -> None:
    hub = stack.hub()
    execution.bind_hub(hub)
    job_id = hub.enqueue("test.ok")
    # A worker takes the delivery as RQ does (off the queue, marked started by it) and dies before the claim.
    taker = SgenWorker(hub.transport.ordered_queues, connection=hub.redis, name=f"{stack.prefix}-taker")
    taker.register_birth()
    dequeued = taker.dequeue_job_and_maintain_ttl(None)
    assert dequeued is not None
    rq_job, _queue = dequeued
    assert rq_job.get_status(refresh=True) == "started"
    assert hub.redis.hget(rq_job.key, "worker_name") == taker.name.encode()
    assert hub.reconcile() == 0  # its worker is alive: the delivery is on its way
    hub.redis.delete(taker.key)  # the killed worker's heartbeat key runs out
    assert job_row(hub, job_id).state == "queued"
    assert hub.reconcile() == 1
    assert hub.reconcile() == 0
    hub.work()
    assert job_row(hub, job_id).state == "succeeded"
    assert stack.runs() == [f"{job_id}:1:1"]


def test_a_delivery_popped_by_a_worker_that_died_before_marking_it_is_sent_again(stack: Stack) -> None:
    """A blocking pop took the delivery off its queue and the worker died before marking it: its hash still
    says queued, on no queue. Once it is older than the grace, reconcile sends it again, once."""
    hub = stack.hub()
    execution.bind_hub(hub)
    job_id = hub.enqueue("test.ok")
    other = hub.enqueue("test.ok")  # still on its queue: held
    rq_id = job_row(hub, job_id).rq_job_id
    queue = hub.transport.queues["normal"]
    assert hub.redis.lpop(queue.key).decode() == rq_id  # what BLPOP did before the worker was killed
    assert hub.reconcile() == 0  # pushed moments ago: not judged yet
    pushed = datetime.now(UTC) - timedelta(seconds=queue_module.POP_GRACE + 5)
    hub.redis.hset(RQJob.key_for(rq_id), "enqueued_at", utcformat(pushed))
    hub.redis.hset(RQJob.key_for(job_row(hub, other).rq_job_id), "enqueued_at", utcformat(pushed))
    assert hub.reconcile() == 1
    assert job_row(hub, job_id).rq_job_id != rq_id
    assert hub.reconcile() == 0
    hub.work()
    assert job_row(hub, job_id).state == job_row(hub, other).state == "succeeded"
    assert sorted(stack.runs()) == sorted([f"{job_id}:1:1", f"{other}:1:1"])


def test_a_popped_delivery_is_judged_only_where_its_queue_is_read_whole(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past SNAPSHOT_DEPTH waiting deliveries a queue is not read whole: a hash saying queued may be deep in
    it, so it is left alone until the queue is short again."""
    hub = stack.hub()
    execution.bind_hub(hub)
    job_id, *_rest = [hub.enqueue("test.ok", {"n": n}) for n in range(3)]
    rq_id = job_row(hub, job_id).rq_job_id
    assert hub.redis.lpop(hub.transport.queues["normal"].key).decode() == rq_id
    hub.redis.hset(RQJob.key_for(rq_id), "enqueued_at", utcformat(datetime.now(UTC) - timedelta(minutes=5)))
    monkeypatch.setattr(queue_module, "SNAPSHOT_DEPTH", 1)  # two deliveries still wait: too long
    assert hub.reconcile() == 0
    monkeypatch.setattr(queue_module, "SNAPSHOT_DEPTH", 2)
    assert hub.reconcile() == 1
    hub.work()
    assert job_row(hub, job_id).state == "succeeded"


def test_a_failed_delivery_of_a_waiting_job_is_sent_again(stack: Stack) -> None:
    """RQ's own upkeep fails a delivery its worker abandoned; the hash stays, the job must not."""
    hub = stack.hub()
    job_id = hub.enqueue("test.ok")
    rq_job = RQJob.fetch(job_row(hub, job_id).rq_job_id, connection=hub.redis, serializer=JSONSerializer)
    for queue in hub.transport.ordered_queues:
        queue.remove(rq_job)
    rq_job.set_status("failed")
    assert hub.reconcile() == 1
    hub.work()
    assert job_row(hub, job_id).state == "succeeded"
    assert stack.runs() == [f"{job_id}:1:1"]


# -- 3. a work horse dies with its worker ------------------------------------------------------------
def _children(pid: int) -> list[int]:
    path = f"/proc/{pid}/task/{pid}/children"
    with open(path) as fh:
        return [int(p) for p in fh.read().split()]


def _gone(pid: int) -> bool:
    """The process has ended (a zombie waiting for its new parent to reap it has ended too)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_killed_fork_worker_takes_its_horse_with_it(stack: Stack) -> None:
    hub = stack.hub(worker_lost_after=1.5)
    job_id = hub.enqueue("test.slow", {"seconds": 60, "only_first_attempt": True})
    worker = start_worker(stack, "--concurrency", "1", "--fork", worker_lost_after=1.5)
    try:
        wait_for(lambda: hub.redis.get(f"{stack.prefix}:started:{job_id}"), what="the horse to start the job")
        children = _children(worker.pid)
        # The horse leads a process group of its own; the other child is RQ's scheduler.
        [_horse] = [pid for pid in children if os.getpgid(pid) == pid]
        assert job_row(hub, job_id).state == "running"
    finally:
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(10)
    # The horse, and RQ's scheduler process the worker forked too, die with it.
    for pid in children:
        wait_for(lambda pid=pid: _gone(pid), what=f"child {pid} of the worker to die with it")
    wait_for(lambda: hub.recover_lost() == 1, what="the lost attempt to be recovered")
    hub.work()
    job = job_row(hub, job_id)
    assert (job.state, job.attempts) == ("succeeded", 2)
    assert [a.exit for a in attempts_of(hub, job_id)] == ["worker-lost", "succeeded"]
    assert stack.runs() == [f"{job_id}:1:1", f"{job_id}:1:2"]


# -- 4. an idle worker keeps up its upkeep ---------------------------------------------------------
def _idle_worker(hub: sgen_ops.Hub, prefix: str) -> bool:
    return any(hub.redis.hget(key, "state") == b"idle" for key in hub.redis.scan_iter(match=f"rq:worker:{prefix}-*"))


def test_an_idle_worker_recovers_a_lost_attempt_with_no_new_work(stack: Stack) -> None:
    hub = stack.hub(worker_lost_after=1.5)
    worker = start_worker(stack, "--concurrency", "1", worker_lost_after=1.5, maintenance_interval=1)
    try:
        # Waiting on empty queues, its first upkeep done.
        wait_for(lambda: _idle_worker(hub, stack.prefix), what="the worker to wait for work")
        # An attempt claimed by a worker that then vanished; its delivery is not due for an hour, so
        # nothing reaches the queues until upkeep finds the lapsed lease.
        job_id = hub.enqueue("test.ok", delay=3600)
        assert execution.claim(hub, job_id, job_row(hub, job_id).rq_job_id) is not None
        wait_for(lambda: job_row(hub, job_id).state == "succeeded", what="upkeep to recover the attempt and retry it")
        assert worker.popen.poll() is None
    finally:
        worker.stop()
    assert [a.exit for a in attempts_of(hub, job_id)] == ["worker-lost", "succeeded"]
    assert stack.runs() == [f"{job_id}:1:2"]


# -- 5. a worker rides out a Redis outage -----------------------------------------------------------
@pytest.mark.parametrize("worker_class", ["simple", "fork"])
def test_a_worker_rides_out_a_redis_restart_mid_attempt(stack: Stack, tmp_path: Path, worker_class: str) -> None:
    directory = tmp_path / "restarting-redis"
    url, pid = start_redis_server(directory)
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    hub = stack.hub(redis_url=url)
    fork = ["--fork"] if worker_class == "fork" else []
    worker = start_worker(stack, "--concurrency", "1", *fork, redis_url=url, maintenance_interval=1)
    try:
        slow = hub.enqueue("test.slow", {"seconds": 3})
        wait_for(lambda: hub.redis.get(f"{stack.prefix}:started:{slow}"), what="the attempt to start")
        stop_process(pid)  # Redis goes, and everything it held with it
        time.sleep(1.5)
        url, pid = start_redis_server(directory, port)
        # The attempt that ran through the outage is recorded once, by its worker.
        wait_for(lambda: job_row(hub, slow).state == "succeeded", what="the attempt's outcome to be recorded")
        # And the worker carries on: a job sent after the restart runs (upkeep re-sends it if the send failed).
        after = hub.enqueue("test.ok")
        wait_for(lambda: job_row(hub, after).state == "succeeded", what="a new job to run after the restart")
        assert worker.popen.poll() is None, worker.output()
    finally:
        worker.stop()
        stop_process(pid)
    assert [a.exit for a in attempts_of(hub, slow)] == ["succeeded"]
    assert [a.exit for a in attempts_of(hub, after)] == ["succeeded"]


def test_a_worker_of_the_embedded_stack_follows_its_redis_to_a_new_address(stack: Stack) -> None:
    hub = stack.hub(redis_url=None)
    first_url = (stack.home / "redis.url").read_text()
    env = stack.env()
    del env["SGEN_OPS_REDIS_URL"]
    env["SGEN_OPS_MAINTENANCE_INTERVAL"] = "1"
    worker = Process([sys.executable, "-m", "worker", "--concurrency", "1"], env, stack.home / "embedded-worker.log")
    try:
        first = hub.enqueue("test.ok")
        wait_for(lambda: job_row(hub, first).state == "succeeded", what="the worker to run a job")
        stop_redis(stack.home)
        # The stack's Redis comes back on another port, as after `sgen-ops down` and a new start.
        ensure_redis(stack.home)
        again = stack.hub(redis_url=None)
        assert (stack.home / "redis.url").read_text() != first_url
        after = again.enqueue("test.ok")
        wait_for(lambda: job_row(hub, after).state == "succeeded", what="the worker to follow Redis to its new address")
        assert worker.popen.poll() is None, worker.output()
    finally:
        worker.stop()
        cleanup_redis((stack.home / "redis.url").read_text(), stack.prefix)
        stop_redis(stack.home)
