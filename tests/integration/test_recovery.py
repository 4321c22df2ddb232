"""Nothing lost: a SIGKILLed worker, Redis losing its data, several workers on one ledger."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import redis

import sgen_ops
from sgen_ops.embedded import start_redis_server, stop_process

from ..conftest import Stack, cleanup_redis
from ..helpers import attempts_of, job_row, start_worker, wait_for


@pytest.mark.slow
def test_sigkilled_worker_attempt_is_recorded_lost_and_retried(stack: Stack) -> None:
    hub = stack.hub(worker_lost_after=1.5)
    job_id = hub.enqueue("test.slow", {"seconds": 60, "only_first_attempt": True})
    worker = start_worker(stack, "--concurrency", "1", worker_lost_after=1.5)
    try:
        wait_for(lambda: hub.redis.get(f"{stack.prefix}:started:{job_id}"), what="the worker to start the job")
        assert job_row(hub, job_id).state == "running"
    finally:
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(10)
    # The lease lapses within worker_lost_after; recovery then records the attempt and retries it.
    wait_for(lambda: hub.recover_lost() == 1, what="the lost attempt to be recovered")
    job = job_row(hub, job_id)
    assert job.state == "retrying" and job.last_error_code == "worker-lost"
    hub.work()
    job = job_row(hub, job_id)
    assert (job.state, job.attempts) == ("succeeded", 2)
    assert [a.exit for a in attempts_of(hub, job_id)] == ["worker-lost", "succeeded"]
    assert stack.runs() == [f"{job_id}:1:1", f"{job_id}:1:2"]


def test_a_live_lease_is_not_recovered(hub: sgen_ops.Hub) -> None:
    job_id = hub.enqueue("test.ok")
    hub.work()
    assert hub.recover_lost() == 0
    assert job_row(hub, job_id).state == "succeeded"


@pytest.fixture
def private_redis(tmp_path: Path):  # type: ignore[no-untyped-def]
    """A Redis server of this test's own, so FLUSHALL touches nothing else."""
    url, pid = start_redis_server(tmp_path / "private-redis")
    yield url
    stop_process(pid)


def test_flushall_then_reconcile_loses_nothing_and_runs_nothing_twice(stack: Stack, private_redis: str) -> None:
    hub = stack.hub(redis_url=private_redis)
    due = [hub.enqueue("test.ok", {"i": i}) for i in range(4)]
    later = hub.enqueue("test.ok", delay=3600)
    retrying = hub.enqueue("test.backoff")
    hub.work(burst=True)  # runs the four, leaves the delayed one and the retry scheduled
    assert hub.reconcile() == 0  # nothing lost yet: nothing re-sent
    fresh = [hub.enqueue("test.ok", {"i": i}) for i in range(3)]

    client = redis.Redis.from_url(private_redis, decode_responses=True)
    client.flushall()
    assert hub.reconcile() == 5  # three queued, one delayed, one retrying
    assert hub.reconcile() == 0  # and only once
    hub.work()
    ran = sorted(int(r.split(":")[0]) for r in client.lrange(f"{stack.prefix}:runs", 0, -1))
    client.close()
    assert ran == sorted(fresh)  # the earlier four ran before the flush (which wiped their record) and not again
    assert all(job_row(hub, j).state == "succeeded" for j in due + fresh)
    assert job_row(hub, later).state == "queued" and hub.transport.scheduled() == 2
    assert job_row(hub, retrying).state == "retrying"


@pytest.mark.slow
def test_two_worker_processes_run_a_thousand_jobs_exactly_once(stack: Stack) -> None:
    hub = stack.hub()
    ids = hub.enqueue_many("test.ok", [{"i": i} for i in range(1000)])
    workers = [start_worker(stack, "--concurrency", "1", "--burst") for _ in range(2)]
    for w in workers:
        assert w.wait(300) == 0, w.output()
    runs = stack.runs()
    assert len(runs) == 1000
    assert sorted(int(r.split(":")[0]) for r in runs) == sorted(ids)
    assert {r.split(":", 1)[1] for r in runs} == {"1:1"}
    with hub.ledger.read() as session:
        from sqlalchemy import func, select

        from sgen_ops.ledger.store import Attempt, Job

        states = dict(session.execute(select(Job.state, func.count()).group_by(Job.state)).all())
        workers_seen = session.scalar(select(func.count(func.distinct(Attempt.worker))))
    assert states == {"succeeded": 1000}
    assert workers_seen == 2  # both processes took a share


@pytest.mark.slow
def test_worker_pool_concurrency(stack: Stack) -> None:
    hub = stack.hub()
    ids = hub.enqueue_many("test.ok", [{"i": i} for i in range(200)])
    pool = start_worker(stack, "--concurrency", "2", "--burst")
    assert pool.wait(300) == 0, pool.output()
    runs = stack.runs()
    assert sorted(int(r.split(":")[0]) for r in runs) == sorted(ids)
    assert all(job_row(hub, i).state == "succeeded" for i in ids[:5] + ids[-5:])


def test_embedded_stack_is_shared_by_every_process_of_a_home(tmp_path: Path) -> None:
    home = tmp_path / "home"
    hub = sgen_ops.connect(home=home, task_modules="worker.catalog,tests.tasks", queue_prefix="embtest")
    try:
        assert (home / "ledger.db").exists()
        url = (home / "redis.url").read_text()
        again = sgen_ops.connect(home=home, task_modules="worker.catalog,tests.tasks", queue_prefix="embtest")
        assert (home / "redis.url").read_text() == url
        job_id = hub.enqueue("cache.warm", {"keys": ["a"]})
        again.work()
        assert job_row(hub, job_id).state == "succeeded"
        again.close()
        env = dict(os.environ, SGEN_OPS_HOME=str(home), SGEN_OPS_QUEUE_PREFIX="embtest")
        out = subprocess.run(
            [sys.executable, "-m", "sgen_ops.cli", "jobs", "list", "--help"], env=env, capture_output=True, text=True
        )
        assert out.returncode == 0
        out = subprocess.run(
            [sys.executable, "-m", "sgen_ops.cli", "reconcile"], env=env, capture_output=True, text=True
        )
        assert out.returncode == 0, out.stderr
        assert "re-enqueued 0 job(s)" in out.stdout
        assert (home / "redis.url").read_text() == url  # the CLI found the running server
    finally:
        hub.close()
        from sgen_ops.embedded import stop_redis

        cleanup_redis((home / "redis.url").read_text(), "embtest")
        assert stop_redis(home)
