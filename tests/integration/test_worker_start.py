"""A worker process starts on only what it runs: its jobs find none of the notebook, HTTP or migration stacks
loaded in the process running them, on a ledger named by URL and on the embedded one."""

from __future__ import annotations

import json
import sys

import pytest
import redis

from ..conftest import Stack
from ..helpers import NOT_FOR_WORKERS, Process, job_row


def recorded_imports(stack: Stack) -> list[list[str]]:
    client = redis.Redis.from_url(stack.redis_url)
    try:
        return [json.loads(v) for v in client.lrange(f"{stack.prefix}:imports", 0, -1)]
    finally:
        client.close()


@pytest.mark.parametrize(
    ("ledger", "args"),
    [
        ("configured", ("--concurrency", "1")),
        ("configured", ("--concurrency", "2", "--fork")),
        ("embedded", ("--concurrency", "1")),
    ],
)
def test_a_worker_runs_its_jobs_without_the_notebook_or_http_stacks(
    stack: Stack, ledger: str, args: tuple[str, ...]
) -> None:
    env = stack.env()
    if ledger == "embedded":
        if not stack.database_url.startswith("sqlite"):
            pytest.skip("the embedded stack's ledger is SQLite")
        # No SGEN_OPS_DATABASE_URL: the worker opens its home's own ledger file.
        del env["SGEN_OPS_DATABASE_URL"]
        hub = stack.hub(database_url=None)
    else:
        hub = stack.hub()
    jobs = [hub.enqueue("test.imports", {"modules": list(NOT_FOR_WORKERS)}) for _ in range(2)]
    stack.home.mkdir(parents=True, exist_ok=True)
    worker = Process([sys.executable, "-m", "worker", "--burst", *args], env, stack.home / "worker.log")
    try:
        assert worker.wait(120) == 0, worker.output()
    finally:
        worker.stop()
    assert [job_row(hub, j).state for j in jobs] == ["succeeded", "succeeded"]
    assert recorded_imports(stack) == [[], []]
