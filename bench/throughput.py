"""Worker throughput: N no-op jobs through sgen-ops' worker versus bare RQ, same worker class and Redis."""

from __future__ import annotations

import argparse
import logging
import tempfile
from pathlib import Path

import redis
from rq import Queue, SimpleWorker, Worker
from rq.registry import FailedJobRegistry, StartedJobRegistry
from rq.serializers import JSONSerializer
from sqlalchemy import func, select

import sgen_ops
from sgen_ops.ledger.store import Job

from .common import bench_hub, check, flush, median, timed
from .ledger import create_database, drop_database


class _Counting:
    """Counts successes in the worker process (a work horse reports back through Redis status)."""

    succeeded = 0

    def handle_job_success(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        type(self).succeeded += 1
        return super().handle_job_success(*args, **kwargs)  # type: ignore[misc]


class CountingSimple(_Counting, SimpleWorker):
    pass


class CountingFork(_Counting, Worker):
    pass


RQ_CLASSES: dict[str, type] = {"simple": CountingSimple, "fork": CountingFork}


def bare_rq(redis_url: str, n: int, worker_class: str) -> float:
    flush(redis_url)
    conn = redis.Redis.from_url(redis_url)
    # The same queue settings as sgen-ops: three priority queues served in order, JSON, results not kept.
    queues = [Queue(f"rqbench-{p}", connection=conn, serializer=JSONSerializer) for p in ("high", "normal", "low")]
    queue = queues[1]
    queue.enqueue_many([Queue.prepare_data("bench.tasks.noop", args=(i,), result_ttl=0) for i in range(n)])
    cls = RQ_CLASSES[worker_class]
    cls.succeeded = 0
    worker = cls(queues, connection=conn, serializer=JSONSerializer)
    seconds = timed(lambda: worker.work(burst=True, logging_level="WARNING"))
    check(queue.count == 0, f"bare RQ left {queue.count} jobs on the queue")
    check(FailedJobRegistry(queue=queue).count == 0, "bare RQ failed jobs")
    if worker_class == "simple":
        check(cls.succeeded == n, f"bare RQ recorded {cls.succeeded} successes of {n}")
    else:
        # Work horses count in their own process; an empty queue with nothing failed or started is the proof.
        check(StartedJobRegistry(queue=queue).count == 0, "bare RQ left started jobs")
    conn.close()
    return seconds


def sgen(redis_url: str, database_url: str | None, n: int, worker_class: str) -> float:
    flush(redis_url)
    with tempfile.TemporaryDirectory(prefix="sgen-bench-") as tmp:
        url = database_url or f"sqlite:///{Path(tmp) / 'ledger.db'}"
        hub = bench_hub(redis_url, url, tmp)
        if database_url:
            _truncate(hub)
        hub.enqueue_many("bench.noop", [{"i": i} for i in range(n)])
        seconds = timed(lambda: hub.work(burst=True, worker_class=worker_class))
        with hub.ledger.read() as session:
            done = session.scalar(select(func.count()).select_from(Job).where(Job.state == "succeeded"))
        check(done == n, f"sgen-ops: {done} of {n} jobs succeeded")
        hub.close()
    return seconds


def _truncate(hub: sgen_ops.Hub) -> None:
    from sqlalchemy import text

    with hub.ledger.engine.begin() as conn:
        conn.execute(text("TRUNCATE jobs, attempts, job_events RESTART IDENTITY CASCADE"))


def compare(
    redis_url: str,
    *,
    n: int = 5000,
    repeats: int = 3,
    database_url: str | None = None,
    classes: tuple[str, ...] = ("simple", "fork"),
) -> str:
    """sgen-ops against bare RQ, interleaved, per worker class; ``database_url`` None: a fresh SQLite file."""
    logging.getLogger("rq").setLevel(logging.WARNING)
    backend = "PostgreSQL" if database_url else "SQLite"
    lines = [
        f"### Worker throughput: {n} no-op jobs, ledger on {backend}, median of {repeats} (interleaved)",
        "",
        "| worker class | bare RQ jobs/s | sgen-ops jobs/s | ratio (target >= 0.9) | sgen-ops ms/job over RQ |",
        "|---|---|---|---|---|",
    ]
    for cls in classes:
        rq_times, sgen_times = [], []
        for _ in range(repeats):
            rq_times.append(bare_rq(redis_url, n, cls))
            sgen_times.append(sgen(redis_url, database_url, n, cls))
        rq_s, sgen_s = median(rq_times), median(sgen_times)
        rq_rate, sgen_rate = n / rq_s, n / sgen_s
        lines.append(
            f"| {cls} | {rq_rate:,.0f} | {sgen_rate:,.0f} | {sgen_rate / rq_rate:.2f}x | "
            f"{(sgen_s - rq_s) / n * 1000:+.2f} |"
        )
        print(lines[-1], flush=True)
    return "\n".join(lines)


def run(redis_url: str, args: argparse.Namespace) -> str:
    classes = tuple(c for c in args.classes.split(",") if c)
    parts = [compare(redis_url, n=args.n, repeats=args.repeats, classes=classes)]
    if args.postgres:
        url = create_database(args.postgres, "sgen_bench_throughput")
        try:
            parts.append(compare(redis_url, n=args.n, repeats=args.repeats, database_url=url, classes=classes))
        finally:
            drop_database(args.postgres, "sgen_bench_throughput")
    return "\n\n".join(parts)
