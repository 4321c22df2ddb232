"""Operator queries at scale: the Jobs surface over a generated million-job ledger, SQLite and PostgreSQL,
and the same question asked of RQ's own registries.

Each query runs through ``Operations`` (capability check, filters, masking) as an operator would call it
from a notebook, warm (two runs first), ``--query-repeats`` times; p50 and p95 are reported. A query whose
answer is wrong (a total that does not match a direct count) stops the benchmark.
"""

from __future__ import annotations

import argparse
import logging
import random
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import redis
from rq import Queue
from rq.job import Job as RQJob
from rq.job import JobStatus
from rq.registry import FailedJobRegistry
from rq.serializers import JSONSerializer
from sqlalchemy import Text, cast, func, select

import sgen_ops
from sgen_ops.ledger.store import Job

from . import ledger
from .common import check, flush, median, percentile

LIST_TARGET_MS = 50.0
THROUGHPUT_24H_TARGET_MS = 250.0


@dataclass
class Timing:
    name: str
    p50: float
    p95: float
    target: float | None
    note: str = ""

    def row(self) -> str:
        verdict = "" if self.target is None else ("yes" if self.p95 <= self.target else "**no**")
        target = "" if self.target is None else f"{self.target:.0f}"
        return f"| {self.name} | {self.p50:.1f} | {self.p95:.1f} | {target} | {verdict} | {self.note} |"


def measure(name: str, fn: Callable[[int], Any], repeats: int, target: float | None, note: str = "") -> Timing:
    for k in range(2):
        fn(k)
    times = []
    for k in range(repeats):
        start = time.perf_counter()
        fn(k)
        times.append((time.perf_counter() - start) * 1000)
    t = Timing(name, median(times), percentile(times, 95), target, note)
    print(f"    {t.row()}", flush=True)
    return t


def _hub(url: str, redis_url: str, home: str) -> sgen_ops.Hub:
    return sgen_ops.connect(
        database_url=url,
        redis_url=redis_url,
        home=home,
        task_modules="worker.catalog",
        queue_prefix="qbench",
    )


def ledger_queries(url: str, info: ledger.Generated, redis_url: str, repeats: int) -> list[Timing]:
    """Every operator query of the issue on one generated ledger (as the administrator; text search also as
    a viewer, who searches the masked copy)."""
    with tempfile.TemporaryDirectory(prefix="sgen-bench-q-") as home, ledger.clock(info.anchor) as now:
        hub = _hub(url, redis_url, home)
        admin = hub.as_operator("bench-admin")
        viewer = hub.as_operator("bench-viewer")
        with hub.ledger.read() as session:
            ids = list(session.scalars(select(Job.id).order_by(func.random()).limit(200)))
        day_start, day_end = now - timedelta(days=3), now - timedelta(days=2)
        reference = Reference(hub, now)
        default_total = reference.visible()
        dl_webhook = reference.count(Job.state == "dead-letter", Job.task == "webhook.dispatch")
        ok_email = reference.count(Job.state == "succeeded", Job.task == "email.digest")
        by_day = reference.visible(Job.created_at >= day_start, Job.created_at <= day_end)
        by_code = reference.visible(Job.last_error_code == "provider_timeout")
        common = reference.visible(
            Job.last_error_detail.contains("timed out") | _payload_text(hub).contains("timed out")
        )
        masked = reference.visible(Job.search_masked.contains("mailbox unavailable"))
        check(min(dl_webhook, ok_email, by_day, by_code, common, masked) > 0, "the ledger lacks what is queried")

        def expect(page: Any, expected: int | None, what: str) -> Any:
            if expected is not None:
                check(page.total == expected, f"{what}: list_jobs says {page.total}, the ledger holds {expected}")
                check(len(page.items) == min(50, expected), f"{what}: the page has {len(page.items)} rows")
            return page

        timings = [
            measure(
                "list_jobs() first page, unfiltered (default view)",
                lambda k: expect(admin.list_jobs(), default_total, "default view"),
                repeats,
                LIST_TARGET_MS,
                f"total {default_total:,}",
            ),
            measure(
                "list_jobs(state='dead-letter', task='webhook.dispatch')",
                lambda k: expect(
                    admin.list_jobs(state="dead-letter", task="webhook.dispatch"), dl_webhook, "state+task"
                ),
                repeats,
                LIST_TARGET_MS,
                f"total {dl_webhook:,}",
            ),
            measure(
                "list_jobs(state='succeeded', task='email.digest')",
                lambda k: expect(admin.list_jobs(state="succeeded", task="email.digest"), ok_email, "state+task"),
                repeats,
                LIST_TARGET_MS,
                f"total {ok_email:,}",
            ),
            measure(
                "list_jobs(since=3 days ago, until=2 days ago)",
                lambda k: expect(admin.list_jobs(since=day_start, until=day_end), by_day, "date range"),
                repeats,
                LIST_TARGET_MS,
                f"total {by_day:,}",
            ),
            measure(
                "list_jobs(error_code='provider_timeout')",
                lambda k: expect(admin.list_jobs(error_code="provider_timeout"), by_code, "error code"),
                repeats,
                LIST_TARGET_MS,
                f"total {by_code:,}",
            ),
            measure(
                "list_jobs(text=<an event id>) (rare, administrator)",
                lambda k: check_found(admin.list_jobs(text=info.rare_terms[k % len(info.rare_terms)])),
                repeats,
                LIST_TARGET_MS,
                f"{len(info.rare_terms)} different ids",
            ),
            measure(
                "list_jobs(text='timed out') (common, administrator)",
                lambda k: expect(admin.list_jobs(text="timed out"), common, "text"),
                repeats,
                LIST_TARGET_MS,
                f"total {common:,}",
            ),
            measure(
                "list_jobs(text='mailbox unavailable') (viewer: masked text)",
                lambda k: expect(viewer.list_jobs(text="mailbox unavailable"), masked, "masked text"),
                repeats,
                LIST_TARGET_MS,
                f"total {masked:,}",
            ),
            measure(
                "get_job(id) (administrator)",
                lambda k: admin.get_job(ids[k % len(ids)]),
                max(repeats, 100),
                LIST_TARGET_MS,
                "random ids",
            ),
            measure(
                "get_job(id) (viewer: masked, logged)",
                lambda k: viewer.get_job(ids[k % len(ids)]),
                max(repeats, 100),
                LIST_TARGET_MS,
                "writes an Activity Log entry",
            ),
            measure("throughput('1h')", lambda k: admin.throughput("1h"), repeats, None),
            measure("throughput('24h')", lambda k: admin.throughput("24h"), repeats, THROUGHPUT_24H_TARGET_MS),
            measure("throughput('7d')", lambda k: admin.throughput("7d"), repeats, None),
        ]
        hub.close()
    return timings


class Reference:
    """The right totals, counted in plain SQL written here (not through sgen_ops.ledger.query), outside the timing:
    the default view is every job that did not succeed plus the succeeded ones inside their retention."""

    def __init__(self, hub: sgen_ops.Hub, now: datetime) -> None:
        self.hub = hub
        self.now = now
        self.cutoff = now - timedelta(seconds=hub.settings.retention_seconds)

    def count(self, *conds: Any) -> int:
        with self.hub.ledger.read() as session:
            return int(session.scalar(select(func.count()).select_from(Job).where(*conds)) or 0)

    def visible(self, *conds: Any) -> int:
        total = self.count(*conds, Job.state != "succeeded")
        total += self.count(
            *conds, Job.state == "succeeded", Job.retention_days.is_(None), Job.updated_at >= self.cutoff
        )
        with self.hub.ledger.read() as session:
            rows = session.execute(
                select(Job.updated_at, Job.retention_days).where(
                    *conds, Job.state == "succeeded", Job.retention_days.is_not(None)
                )
            ).all()
        total += sum(1 for updated, days in rows if updated + timedelta(days=days) >= self.now)
        return total


def _payload_text(hub: sgen_ops.Hub) -> Any:
    return cast(Job.payload, Text)


def check_found(page: Any) -> Any:
    check(page.total >= 1, "a rare search term was not found")
    return page


# -- RQ's own answer ----------------------------------------------------------------------------
TASK_FUNCS = (
    "catalog.webhook_dispatch",
    "catalog.email_digest",
    "catalog.import_products",
    "catalog.cache_warm",
    "catalog.report_weekly",
)


def rq_failed_registry(redis_url: str, n: int, repeats: int) -> tuple[Timing, Timing]:
    """A FailedJobRegistry of ``n`` jobs: list the failed jobs of one task the way RQ allows it."""
    flush(redis_url)
    conn = redis.Redis.from_url(redis_url)
    queue = Queue("rqbench-failed", connection=conn, serializer=JSONSerializer)
    registry = FailedJobRegistry(queue=queue)
    rng = random.Random(7)
    expected = 0
    for lo in range(0, n, 2000):
        with conn.pipeline() as pipe:
            for i in range(lo, min(n, lo + 2000)):
                func_name = rng.choices(TASK_FUNCS, weights=[40, 20, 15, 15, 10])[0]
                expected += func_name == "catalog.import_products"
                job = queue.create_job(
                    func_name,
                    args=({"i": i, "source_url": "sftp://feeds.example.com/p.csv"},),
                    result_ttl=0,
                    failure_ttl=7 * 86400,
                    status=JobStatus.FAILED,
                )
                registry.add(
                    job,
                    ttl=7 * 86400,
                    pipeline=pipe,
                    exc_string="Traceback (most recent call last):\n  ...\nTaskError: provider_timeout",
                )
            pipe.execute()
    check(registry.count == n, f"RQ registry holds {registry.count} of {n}")

    def first_page(k: int) -> None:
        ids = registry.get_job_ids()
        jobs = RQJob.fetch_many(ids, connection=conn, serializer=JSONSerializer)
        mine = [j for j in jobs if j is not None and j.func_name == "catalog.import_products"]
        check(len(mine) == expected, f"RQ: {len(mine)} failed jobs of the task, expected {expected}")

    def count_only(k: int) -> None:
        check(registry.count == n, "RQ registry count changed")

    timings = (
        measure(
            f"RQ: failed jobs of one task from a FailedJobRegistry of {n:,} (ids, fetch_many, filter)",
            first_page,
            max(3, repeats // 10),
            LIST_TARGET_MS,
            f"{expected:,} found",
        ),
        measure(f"RQ: FailedJobRegistry.count ({n:,})", count_only, repeats, None, "no filter possible"),
    )
    flush(redis_url)
    conn.close()
    return timings


def table(title: str, timings: list[Timing]) -> str:
    lines = [title, "", "| query | p50 ms | p95 ms | target p95 ms | met |  |", "|---|---|---|---|---|---|"]
    lines += [t.row() for t in timings]
    return "\n".join(lines)


def run(redis_url: str, args: argparse.Namespace) -> str:
    logging.getLogger("rq").setLevel(logging.WARNING)
    n = args.ledger_jobs
    repeats = args.query_repeats
    parts = []
    with tempfile.TemporaryDirectory(prefix="sgen-bench-ledger-") as tmp:
        url, info, t = ledger.sqlite_ledger(n, Path(tmp))
        gen = (
            f"generated in {t['generate']:.0f} s this run"
            if "generate" in t
            else (f"generated in {info.seconds:.0f} s, cached; copied in {t['copy']:.1f} s")
        )
        parts.append(
            f"Ledger: {n:,} jobs, {info.attempts:,} attempts, {info.events:,} job_events over 30 days "
            f"({', '.join(f'{s} {c:,}' for s, c in sorted(info.states.items(), key=lambda x: -x[1]))}). "
            f"SQLite: {gen}; migrations to head on it: {t['migrate']:.1f} s."
        )
        print("  SQLite", flush=True)
        parts.append(
            table(
                f"### Operator queries, SQLite, {n:,} jobs (warm, {repeats} runs each)",
                ledger_queries(url, info, redis_url, repeats),
            )
        )
    if args.postgres:
        url, info, t = ledger.postgres_ledger(args.postgres, n)
        parts.append(
            f"PostgreSQL ledger: generated (COPY, indexes, VACUUM ANALYZE) in {t['generate']:.0f} s; "
            f"migrations to head on it: {t['migrate']:.1f} s."
        )
        print("  PostgreSQL", flush=True)
        parts.append(
            table(
                f"### Operator queries, PostgreSQL, {n:,} jobs (warm, {repeats} runs each)",
                ledger_queries(url, info, redis_url, repeats),
            )
        )
    print("  RQ registries", flush=True)
    parts.append(
        table(
            "### The same question through RQ's registries",
            list(rq_failed_registry(redis_url, args.rq_registry_jobs, repeats)),
        )
    )
    return "\n\n".join(parts)
