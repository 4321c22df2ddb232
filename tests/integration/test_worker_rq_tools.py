"""RQ's own tools see which job an sgen-ops worker runs: ``rq info`` and rq-dashboard list workers with
``Worker.all(connection=...)`` and ask each ``get_current_job_id()`` / ``get_current_job()``; read that way,
a worker process running a slow job names that job's delivery, then the next one, and is gone when it ends."""

from __future__ import annotations

import sys
import time

import pytest
import redis
from rq import Worker

from ..conftest import Stack
from ..helpers import Process, job_row


def _started(client: redis.Redis, prefix: str, job_id: int) -> bool:
    return client.get(f"{prefix}:started:{job_id}") is not None


def _wait_for(what: str, condition: object, worker: Process, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"{what}: not within {seconds} s\n{worker.output()}"
        time.sleep(0.05)


def _ours(client: redis.Redis, prefix: str) -> list[Worker]:
    """The workers RQ's tools list, those serving this stack's queues."""
    return [w for w in Worker.all(connection=client) if any(q.startswith(prefix) for q in w.queue_names())]


@pytest.mark.parametrize("args", [("--concurrency", "1"), ("--concurrency", "1", "--fork")], ids=["simple", "fork"])
def test_rq_tools_see_the_job_a_worker_runs(stack: Stack, args: tuple[str, ...]) -> None:
    hub = stack.hub()
    prefix = hub.settings.queue_prefix
    first = hub.enqueue("test.slow", {"seconds": 2.0})
    second = hub.enqueue("test.slow", {"seconds": 2.0})
    client = redis.Redis.from_url(stack.redis_url)
    stack.home.mkdir(parents=True, exist_ok=True)
    worker = Process([sys.executable, "-m", "worker", "--burst", *args], stack.env(), stack.home / "worker.log")
    try:
        for job_id in (first, second):
            _wait_for(f"job {job_id} started", lambda j=job_id: _started(client, prefix, j), worker)
            (seen,) = _ours(client, prefix)
            delivery = hub.transport.rq_job_id(job_id, 1)
            assert seen.get_current_job_id() == delivery
            current = seen.get_current_job()
            assert current is not None and current.id == delivery
            assert current.description == f"ledger job {job_id}"
            assert seen.get_state() == "busy"
        assert worker.wait(120) == 0, worker.output()
        assert _ours(client, prefix) == []
    finally:
        worker.stop()
        client.close()
    assert [job_row(hub, j).state for j in (first, second)] == ["succeeded", "succeeded"]
