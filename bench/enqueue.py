"""Enqueue: single enqueues and bulk, sgen-ops against bare RQ on the same Redis and queue settings.

Single: ``N`` calls of ``Queue.enqueue`` versus ``hub.enqueue`` (a ledger row, its event, and the RQ
delivery). Bulk: one ``Queue.enqueue_many`` of ``Queue.prepare_data`` versus one ``hub.enqueue_many``.
After each run the queue and the ledger are counted: a run that lost a job reports no time.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from pathlib import Path

import redis
from rq import Queue
from rq.serializers import JSONSerializer
from sqlalchemy import func, select

import sgen_ops
from sgen_ops.ledger.store import Job, JobEvent

from .common import bench_hub, check, flush, median, sqlalchemy_url, timed
from .ledger import create_database, drop_database

SINGLE_TARGET = 0.5
BULK_TARGET = 20_000


def _rq_queue(conn: redis.Redis) -> Queue:
    # The same settings as sgen-ops' normal-priority queue: JSON, results not kept.
    return Queue("rqbench-normal", connection=conn, serializer=JSONSerializer)


def rq_single(redis_url: str, n: int) -> float:
    flush(redis_url)
    conn = redis.Redis.from_url(redis_url)
    queue = _rq_queue(conn)
    seconds = timed(lambda: [queue.enqueue("bench.tasks.noop", i, result_ttl=0) for i in range(n)])
    check(queue.count == n, f"bare RQ queued {queue.count} of {n}")
    conn.close()
    return seconds


def rq_bulk(redis_url: str, n: int) -> float:
    flush(redis_url)
    conn = redis.Redis.from_url(redis_url)
    queue = _rq_queue(conn)
    seconds = timed(
        lambda: queue.enqueue_many([Queue.prepare_data("bench.tasks.noop", args=(i,), result_ttl=0) for i in range(n)])
    )
    check(queue.count == n, f"bare RQ queued {queue.count} of {n}")
    conn.close()
    return seconds


class SgenRun:
    """A fresh ledger (SQLite file, or a private PostgreSQL database) and a hub on it."""

    def __init__(self, redis_url: str, postgres: str | None) -> None:
        self.redis_url = redis_url
        self.postgres = postgres
        self.tmp = tempfile.TemporaryDirectory(prefix="sgen-bench-enq-")
        if postgres:
            self.url = create_database(postgres, "sgen_bench_enqueue")
        else:
            self.url = f"sqlite:///{Path(self.tmp.name) / 'ledger.db'}"
        self.hub: sgen_ops.Hub | None = None

    def __enter__(self) -> sgen_ops.Hub:
        flush(self.redis_url)
        self.hub = bench_hub(self.redis_url, self.url, self.tmp.name)
        return self.hub

    def check(self, n: int) -> None:
        hub = self.hub
        assert hub is not None
        with hub.ledger.read() as session:
            jobs = session.scalar(select(func.count()).select_from(Job).where(Job.state == "queued"))
            events = session.scalar(select(func.count()).select_from(JobEvent))
        check(jobs == n and events == n, f"sgen-ops: ledger holds {jobs} queued jobs, {events} events of {n}")
        check(hub.transport.waiting() == n, f"sgen-ops: Redis holds {hub.transport.waiting()} deliveries of {n}")

    def __exit__(self, *exc: object) -> None:
        if self.hub is not None:
            self.hub.close()
        if self.postgres:
            drop_database(self.postgres, "sgen_bench_enqueue")
        self.tmp.cleanup()


def sgen_single(redis_url: str, postgres: str | None, n: int) -> float:
    run = SgenRun(redis_url, postgres)
    with run as hub:
        seconds = timed(lambda: [hub.enqueue("bench.noop", {"i": i}) for i in range(n)])
        run.check(n)
    return seconds


def sgen_bulk(redis_url: str, postgres: str | None, n: int) -> float:
    run = SgenRun(redis_url, postgres)
    with run as hub:
        payloads = [{"i": i} for i in range(n)]
        seconds = timed(lambda: hub.enqueue_many("bench.noop", payloads))
        run.check(n)
    return seconds


def compare(redis_url: str, postgres: str | None, single_n: int, bulk_n: int, repeats: int) -> list[str]:
    backend = "PostgreSQL" if postgres else "SQLite"
    times: dict[str, list[float]] = {"rq1": [], "sg1": [], "rqb": [], "sgb": []}
    for _ in range(repeats):
        times["rq1"].append(rq_single(redis_url, single_n))
        times["sg1"].append(sgen_single(redis_url, postgres, single_n))
        times["rqb"].append(rq_bulk(redis_url, bulk_n))
        times["sgb"].append(sgen_bulk(redis_url, postgres, bulk_n))
    rq1, sg1 = single_n / median(times["rq1"]), single_n / median(times["sg1"])
    rqb, sgb = bulk_n / median(times["rqb"]), bulk_n / median(times["sgb"])
    rows = [
        f"| {backend} | single, {single_n:,} calls | {rq1:,.0f} | {sg1:,.0f} | {sg1 / rq1:.2f}x | >= {SINGLE_TARGET}x "
        f"| {'yes' if sg1 / rq1 >= SINGLE_TARGET else '**no**'} |",
        f"| {backend} | bulk, one call of {bulk_n:,} | {rqb:,.0f} | {sgb:,.0f} | {sgb / rqb:.2f}x | >= {BULK_TARGET:,} "
        f"jobs/s | {'yes' if sgb >= BULK_TARGET else '**no**'} |",
    ]
    for row in rows:
        print(row, flush=True)
    return rows


def run(redis_url: str, args: argparse.Namespace) -> str:
    logging.getLogger("rq").setLevel(logging.WARNING)
    postgres = sqlalchemy_url(args.postgres) if args.postgres else None
    single_n, bulk_n, repeats = args.enqueue_single, args.enqueue_bulk, args.repeats
    lines = [
        f"### Enqueue, median of {repeats} (interleaved)",
        "",
        "| ledger | enqueue | bare RQ jobs/s | sgen-ops jobs/s | ratio | target | met |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += compare(redis_url, None, single_n, bulk_n, repeats)
    if postgres:
        lines += compare(redis_url, postgres, single_n, bulk_n, repeats)
    return "\n".join(lines)
