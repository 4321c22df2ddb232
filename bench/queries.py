"""Operator queries at scale: the Jobs surface over a generated million-job ledger, SQLite and PostgreSQL,
and the same question asked of RQ's own registries.

Each query runs through ``Operations`` (capability check, filters, masking) as an operator would call it
from a notebook, warm (two runs first), ``--query-repeats`` times; p50 and p95 are reported. A query whose
answer is wrong (a total that does not match a direct count) stops the benchmark.
"""

from __future__ import annotations

import argparse
import contextlib
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
from sgen_ops.core.states import ALL_STATES
from sgen_ops.ledger import plans, query
from sgen_ops.ledger.store import Job

from . import ledger
from .common import check, flush, median, percentile

LIST_TARGET_MS = 20.0
THROUGHPUT_24H_TARGET_MS = 250.0
ACCOUNT = "acme"
EDITOR = "bench-acme-editor"


@dataclass
class Timing:
    name: str
    p50: float
    p95: float
    target: float | None
    note: str = ""
    plan: str = ""

    def row(self) -> str:
        verdict = "" if self.target is None else ("yes" if self.p95 <= self.target else "**no**")
        target = "" if self.target is None else f"{self.target:.0f}"
        return f"| {self.name} | {self.p50:.1f} | {self.p95:.1f} | {target} | {verdict} | {self.note} | {self.plan} |"


def measure(name: str, fn: Callable[[int], Any], repeats: int, target: float | None, note: str = "",
            engine: Any = None) -> Timing:
    for k in range(2):
        fn(k)
    times = []
    result = None
    for k in range(repeats):
        start = time.perf_counter()
        result = fn(k)
        times.append((time.perf_counter() - start) * 1000)
    if not note and result is not None and hasattr(result, "total_text"):
        note = f"total {result.total_text}"
    t = Timing(name, median(times), percentile(times, 95), target, note, explained(engine, fn) if engine else "")
    print(f"    {t.row()}", flush=True)
    return t


def explained(engine: Any, fn: Callable[[int], Any]) -> str:
    """The indexes the call's statements use, as the backend plans them on this ledger; a step that reads
    the history (a table scan, a sort of every match) stops the benchmark."""
    with plans.captured(engine) as seen:
        fn(0)
    used: set[str] = set()
    for statement in seen:
        steps = plans.explain(engine, statement)
        wrong = plans.history_reads(steps, engine.dialect.name, statement.sql)
        check(not wrong, f"reads the history: {wrong} in {statement.sql[:300]}")
        used |= plans.indexes_used(steps)
    return ", ".join(sorted(i.removeprefix("ix_jobs_") for i in used))


def _hub(url: str, redis_url: str, home: str) -> sgen_ops.Hub:
    return sgen_ops.connect(
        database_url=url,
        redis_url=redis_url,
        home=home,
        task_modules="worker.catalog",
        queue_prefix="qbench",
    )


def _deep(ops: Any, pages: int, **filters: Any) -> int:
    """The job a page ``pages`` pages deep is read after (walked there by keyset)."""
    page = ops.list_jobs(**filters)
    for _ in range(pages):
        following = ops.list_jobs(**filters, after_id=page.items[-1].id)
        if not following.items:
            break
        page = following
    return int(page.items[-1].id)


def ledger_queries(url: str, info: ledger.Generated, redis_url: str, repeats: int) -> list[Timing]:
    """Every operator read of the views and the API on one generated ledger, as the administrator and as an
    editor bound to acme (the API narrows every request to one account), each checked against the ledger
    (totals exact up to the cap, flagged past it) and planned by the backend (indexes only)."""
    with tempfile.TemporaryDirectory(prefix="sgen-bench-q-") as home, ledger.clock(info.anchor) as now:
        hub = _hub(url, redis_url, home)
        engine = hub.ledger.engine
        with contextlib.suppress(sgen_ops.ValidationError):
            hub.add_operator(EDITOR, "editor", account=ACCOUNT)
        admin = hub.as_operator("bench-admin")
        editor = hub.as_operator(EDITOR)
        viewer = hub.as_operator("bench-viewer")
        with hub.ledger.read() as session:
            ids = list(session.scalars(select(Job.id).where(Job.account == ACCOUNT).order_by(func.random()).limit(200)))
        day_start, day_end = now - timedelta(days=3), now - timedelta(days=2)
        reference = Reference(hub, now)
        cap = query.COUNT_CAP

        def expect(page: Any, expected: int, what: str) -> Any:
            want = (expected, True) if expected <= cap else (cap, False)
            check((page.total, page.total_is_exact) == want,
                  f"{what}: list_jobs says {page.total_text}, the ledger holds {expected}")
            check(len(page.items) == min(50, expected), f"{what}: the page has {len(page.items)} rows")
            return page

        mine = Job.account == ACCOUNT
        totals = {
            "view": reference.visible(), "view_a": reference.visible(mine),
            "dl": reference.count(Job.state == "dead-letter", Job.replayed_as_id.is_(None)),
            "failed_a": reference.count(Job.state == "failed", mine),
            "task": reference.visible(Job.task == "report.weekly"),
            "task_a": reference.visible(Job.task == "report.weekly", mine),
            "code": reference.visible(Job.last_error_code == "provider_timeout"),
            "code_a": reference.visible(Job.last_error_code == "smtp_rejected", mine),
            "range": reference.visible(Job.created_at >= day_start, Job.created_at <= day_end),
            "range_a": reference.visible(Job.created_at >= day_start, Job.created_at <= day_end, mine),
        }
        check(min(totals.values()) > 0, "the ledger lacks what is queried")
        deep = {"view": _deep(admin, 200), "view_a": _deep(editor, 200),
                "dl": _deep(admin, 100, state="dead-letter")}
        reads: list[tuple[str, Callable[[int], Any], str | None]] = [
            ("list_jobs() first page, default view (administrator)",
             lambda k: expect(admin.list_jobs(), totals["view"], "view"), None),
            (f"the same, editor bound to {ACCOUNT}", lambda k: expect(editor.list_jobs(), totals["view_a"], "view a"),
             None),
            ("list_jobs(state='dead-letter')", lambda k: expect(admin.list_jobs(state="dead-letter"), totals["dl"],
                                                                "dead letters"), None),
            (f"list_jobs(state='failed'), editor bound to {ACCOUNT}",
             lambda k: expect(editor.list_jobs(state="failed"), totals["failed_a"], "failed a"), None),
            ("list_jobs(task='report.weekly')", lambda k: expect(admin.list_jobs(task="report.weekly"), totals["task"],
                                                                 "task"), None),
            (f"the same, editor bound to {ACCOUNT}",
             lambda k: expect(editor.list_jobs(task="report.weekly"), totals["task_a"], "task a"), None),
            ("list_jobs(error_code='provider_timeout')",
             lambda k: expect(admin.list_jobs(error_code="provider_timeout"), totals["code"], "code"), None),
            (f"list_jobs(error_code='smtp_rejected'), editor bound to {ACCOUNT}",
             lambda k: expect(editor.list_jobs(error_code="smtp_rejected"), totals["code_a"], "code a"), None),
            ("list_jobs(since=3 days ago, until=2 days ago)",
             lambda k: expect(admin.list_jobs(since=day_start, until=day_end), totals["range"], "range"), None),
            (f"the same, editor bound to {ACCOUNT}",
             lambda k: expect(editor.list_jobs(since=day_start, until=day_end), totals["range_a"], "range a"), None),
            ("default view, 200 pages deep by keyset (after_id)",
             lambda k: admin.list_jobs(after_id=deep["view"]), None),
            (f"the same, editor bound to {ACCOUNT}", lambda k: editor.list_jobs(after_id=deep["view_a"]), None),
            ("dead letters, 100 pages deep by keyset", lambda k: admin.list_jobs(state="dead-letter",
                                                                                 after_id=deep["dl"]), None),
            ("get_job(id) (administrator)", lambda k: admin.get_job(ids[k % len(ids)]), "random ids"),
            (f"get_job(id) (editor of {ACCOUNT}: masked, logged)", lambda k: editor.get_job(ids[k % len(ids)]),
             "its Activity Log entry goes in the next batch of views"),
            ("dead_letter_groups()", lambda k: admin.dead_letter_groups(), None),
            (f"dead_letter_groups(), editor bound to {ACCOUNT}", lambda k: editor.dead_letter_groups(), None),
            ("queue view's state chips: list_jobs(state=s, per_page=1) for one state (mean of the 8)",
             lambda k: admin.list_jobs(state=ALL_STATES[k % len(ALL_STATES)], per_page=1), "each state in turn"),
            (f"the same, editor bound to {ACCOUNT}",
             lambda k: editor.list_jobs(state=ALL_STATES[k % len(ALL_STATES)], per_page=1), "each state in turn"),
        ]
        timings = [measure(name, fn, max(repeats, 40), LIST_TARGET_MS, note or "", engine)
                   for name, fn, note in reads]
        timings += [
            measure(
                "list_jobs(text=<an event id>) (rare, administrator)",
                lambda k: check_found(admin.list_jobs(text=info.rare_terms[k % len(info.rare_terms)])),
                repeats,
                None,
                f"{len(info.rare_terms)} different ids",
            ),
            measure("list_jobs(text='timed out') (common, administrator)", lambda k: admin.list_jobs(text="timed out"),
                    repeats, None, "reads every match to sort it"),
            measure("list_jobs(text='mailbox unavailable') (viewer: masked text)",
                    lambda k: viewer.list_jobs(text="mailbox unavailable"), repeats, None),
            measure("throughput('24h')", lambda k: admin.throughput("24h"), repeats, THROUGHPUT_24H_TARGET_MS),
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
    lines = [title, "", "| query | p50 ms | p95 ms | target p95 ms | met |  | indexes (EXPLAIN on this ledger) |",
             "|---|---|---|---|---|---|---|"]
    lines += [t.row() for t in timings]
    return "\n".join(lines)


def run(redis_url: str, args: argparse.Namespace) -> str:
    logging.getLogger("rq").setLevel(logging.WARNING)
    repeats = args.query_repeats
    parts = []
    for backend in ("SQLite", "PostgreSQL"):
        if backend == "PostgreSQL" and not args.postgres:
            continue
        by_size: dict[int, list[Timing]] = {}
        for n in args.ledger_sizes:
            with tempfile.TemporaryDirectory(prefix="sgen-bench-ledger-") as tmp:
                if backend == "SQLite":
                    url, info, t = ledger.sqlite_ledger(n, Path(tmp))
                else:
                    url, info, t = ledger.postgres_ledger(args.postgres, n)
                made = (f"generated in {t['generate']:.0f} s this run" if "generate" in t and "reused" not in t
                        else f"generated in {info.seconds:.0f} s, kept")
                migrated = f"; migrations to head on it: {t['migrate']:.0f} s" if "migrate" in t else ""
                parts.append(
                    f"{backend} ledger: {n:,} jobs, {info.attempts:,} attempts, {info.events:,} job_events over 30 "
                    f"days ({', '.join(f'{s} {c:,}' for s, c in sorted(info.states.items(), key=lambda x: -x[1]))}); "
                    f"{made}{migrated}."
                )
                print(f"  {backend}, {n:,} jobs", flush=True)
                by_size[n] = ledger_queries(url, info, redis_url, repeats)
                parts.append(table(f"### Operator reads, {backend}, {n:,} jobs (warm, at least 40 runs each; "
                                   f"target p95 <= {LIST_TARGET_MS:.0f} ms)", by_size[n]))
        if len(by_size) > 1:
            parts.append(ratios(backend, by_size))
    print("  RQ registries", flush=True)
    parts.append(
        table(
            "### The same question through RQ's registries",
            list(rq_failed_registry(redis_url, args.rq_registry_jobs, repeats)),
        )
    )
    return "\n\n".join(parts)


def ratios(backend: str, by_size: dict[int, list[Timing]]) -> str:
    """Each read's p50 and p95 at the bigger ledgers as a ratio to the first (target <= 1.25)."""
    base, *rest = sorted(by_size)
    lines = [f"### {backend}: the reads at {', '.join(f'{n:,}' for n in rest)} jobs as ratios to {base:,} "
             "(target <= 1.25)", "",
             "| read | " + " | ".join(f"p50 {n:,} / {base:,} | p95" for n in rest) + " |",
             "|---|" + "---|---|" * len(rest)]
    for i, first in enumerate(by_size[base]):
        cells = []
        for n in rest:
            other = by_size[n][i]
            cells += [f"{other.p50 / first.p50:.2f}x", f"{other.p95 / first.p95:.2f}x"]
        lines.append(f"| {first.name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
