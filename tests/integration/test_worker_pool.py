"""The worker pool (``sgen-ops worker --concurrency N``) wakes when one of its worker processes ends, instead of
looking at them once a second as RQ's pool does: a burst pool exits with its last worker. Run on the lowest and
the highest RQ that pyproject.toml allows (.ci/run), since the pool's loop is RQ's with its sleep replaced."""

from __future__ import annotations

import multiprocessing
import threading

import redis
from rq.worker_pool import WorkerData
from sqlalchemy import func, select

from sgen_ops.ledger.store.models import Job
from sgen_ops.transport.rq import PromptWorkerPool

from ..conftest import Stack
from ..helpers import start_worker

# Far above normal: the wait is woken by the process's end, and only its own timeout (600 s) is slower.
WOKEN_WITHIN = 60.0


def _hold(release: multiprocessing.synchronize.Event) -> None:
    release.wait(600)


def test_the_pool_wakes_when_a_worker_process_ends(stack: Stack) -> None:
    ctx = multiprocessing.get_context("fork")
    release = ctx.Event()
    child = ctx.Process(target=_hold, args=(release,))
    child.start()
    client = redis.Redis.from_url(stack.redis_url)
    pool = PromptWorkerPool(["sgen-pool-test"], connection=client, num_workers=1)
    pool.worker_dict["held"] = WorkerData(name="held", pid=child.pid or 0, process=child)
    waiting = threading.Thread(target=pool.until_a_worker_ends, args=(600.0,), daemon=True)
    try:
        waiting.start()
        waiting.join(0.5)
        assert waiting.is_alive(), "the pool stopped waiting while its worker process was still running"
        release.set()
        waiting.join(WOKEN_WITHIN)
        assert not waiting.is_alive(), "the pool slept on after its worker process ended"
        child.join(10)  # the sentinel closes as the process ends, a moment before it can be reaped
        assert child.exitcode == 0
    finally:
        release.set()
        child.join(10)
        client.close()


def test_a_burst_pool_runs_every_job_and_exits(stack: Stack) -> None:
    hub = stack.hub()
    ids = [hub.enqueue("test.ok", {"i": i}) for i in range(6)]
    worker = start_worker(stack, "--burst", "--concurrency", "2")
    try:
        assert worker.wait(120) == 0, worker.output()
    finally:
        worker.stop()
    with hub.ledger.read() as session:
        done = session.scalar(select(func.count()).where(Job.id.in_(ids), Job.state == "succeeded"))
    assert done == len(ids), worker.output()
