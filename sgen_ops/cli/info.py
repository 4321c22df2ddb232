"""``sgen-ops info``: the stack at a glance, read-only, as ``rq info`` shows it: the live RQ workers of this
stack's queues (host, pid, state, current job, last heartbeat, jobs done and failed; stale ones flagged), each
priority queue's depth and oldest waiting job, and the scheduler's last tick. Ledger counts are scoped to
the operator's account."""

from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ..core.states import WAITING_VALUES, State
from ..core.tasks import PRIORITIES
from ..core.times import as_utc, utcnow
from . import table
from .base import add_json, add_operator, hub, operator_from_env, print_json

if TYPE_CHECKING:
    from ..hub import Hub
    from ..ledger import archive
    from ..runtime import workers_info
    from ..surface.operations import Operations


@dataclass(frozen=True)
class QueueInfo:
    priority: str
    waiting: int  # due now, in the ledger
    delayed: int  # waiting for a later time
    running: int
    in_redis: int  # deliveries on the RQ queue
    oldest_due: datetime | None  # the earliest due time among the waiting jobs


@dataclass(frozen=True)
class StackInfo:
    workers: list[workers_info.WorkerInfo]
    queues: list[QueueInfo]
    last_tick: datetime | None
    enabled_schedules: int
    at: datetime
    # The archive's last run and totals: stack-wide, so shown to operators of every account only.
    archive: archive.Summary | None = None


def gather(args: argparse.Namespace) -> StackInfo:
    """What ``info`` shows, read from RQ and the ledger as the command's operator."""
    with hub() as h:
        return _gather(h, h.as_operator(args.operator or operator_from_env()))


def _gather(h: Hub, ops: Operations) -> StackInfo:
    # Read here, not at import: the ledger's modules (and the schedules module, pandas) that `sgen-ops worker`,
    # `--version` and `--help` never need.
    from sqlalchemy import func, select

    from ..ledger.store import Job, Schedule
    from ..runtime import workers_info

    ops.resolver.check("list_jobs")
    now = utcnow()
    workers = list(workers_info.live_workers(h, now))
    scope = ops.resolver.scope(Job)
    waiting = Job.state.in_(WAITING_VALUES)
    schedule_scope = ops.resolver.scope(Schedule)
    with h.ledger.read() as session:
        carrying = [w.current_job for w in workers if w.current_job is not None]
        visible = set(session.scalars(select(Job.id).where(Job.id.in_(carrying), *scope))) if carrying else set()
        # Another account's job is not named to an operator bound to one account.
        workers = [w if w.current_job in visible else replace(w, current_job=None, current_task=None)
                   for w in workers]
        per_priority = workers_info.per_priority
        due = per_priority(session, workers_info.due_now(now), *scope)
        oldest = per_priority(session, workers_info.due_now(now), *scope, value=func.min(Job.scheduled_for))
        later = per_priority(session, waiting, Job.scheduled_for > now, *scope)
        running = per_priority(session, Job.state == State.RUNNING.value, *scope)
        last_tick = workers_info.last_schedule_tick(session, *schedule_scope)
        enabled = session.scalar(
            select(func.count()).select_from(Schedule).where(Schedule.enabled.is_(True), *schedule_scope))
    queues = [
        QueueInfo(p, int(due.get(p, 0)), int(later.get(p, 0)), int(running.get(p, 0)), h.transport.queues[p].count,
                  as_utc(oldest[p]) if oldest.get(p) is not None else None)
        for p in PRIORITIES
    ]
    from ..ledger import archive

    summary = archive.summary(h.ledger) if ops.account is None else None
    return StackInfo(workers, queues, last_tick, int(enabled or 0), now, summary)


WORKER_COLUMNS = (
    table.Column("NAME", "name", cut=True),
    table.Column("HOST", "host"),
    table.Column("PID", "pid", right=True),
    table.Column("STATE", "state"),
    table.Column("JOB", "current_job", right=True),
    table.Column("HEARTBEAT", "last_heartbeat", when=True),
    table.Column("DONE", "succeeded", right=True),
    table.Column("FAILED", "failed", right=True),
    table.Column("STALE", lambda w: f"STALE: {w['stale_reason']}" if w["stale"] else ""),
)
QUEUE_COLUMNS = (
    table.Column("PRIORITY", "priority"),
    table.Column("WAITING", "waiting", right=True),
    table.Column("DELAYED", "delayed", right=True),
    table.Column("RUNNING", "running", right=True),
    table.Column("IN REDIS", "in_redis", right=True),
    table.Column("OLDEST WAITING", lambda q: table.relative(q["oldest_due"]).removesuffix(" ago") if q["oldest_due"]
                 else ""),
)


def cmd_info(args: argparse.Namespace) -> int:
    info = gather(args)
    if args.json:
        print_json(info)
        return 0
    stale = sum(1 for w in info.workers if w.stale)
    print(f"workers: {len(info.workers)}" + (f" ({stale} stale)" if stale else ""))
    if info.workers:
        print(table.render([asdict(w) for w in info.workers], WORKER_COLUMNS, now=info.at))
    print()
    print("queues:")
    print(table.render([asdict(q) for q in info.queues], QUEUE_COLUMNS, now=info.at))
    print()
    tick = "none yet"
    if info.last_tick:
        tick = f"{table.relative(info.last_tick, info.at)} ({table.text(info.last_tick)} UTC)"
    print(f"scheduler: last tick {tick}; {info.enabled_schedules} enabled schedule(s)")
    if info.archive is not None:
        print(archive_line(info.archive, info.at))
    return 0


def archive_line(summary: archive.Summary, now: datetime) -> str:
    """The archive at a glance: its last run (when, state, the range it moved, how many jobs and files, its
    checksum) and what the archive holds."""
    held = f"{summary.archived_jobs} job(s) archived in {summary.files} file(s), {summary.bytes} bytes"
    run = summary.last_run
    if run is None:
        return f"archive: no run yet; {held}"
    moved = ""
    if run["oldest"] is not None:
        moved = f" (last changes {run['oldest']:%Y-%m-%d %H:%M} .. {run['newest']:%Y-%m-%d %H:%M} UTC)"
    checksum = f", sha256 {run['checksum'][:16]}…" if run["checksum"] else ""
    return (f"archive: last run {run['id']} {run['state']} {table.relative(as_utc(run['started_at']), now)}: "
            f"{run['jobs']} job(s){moved} in {run['files']} file(s){checksum}; {held}")


def register(sub: Any) -> None:
    p = sub.add_parser("info", help="workers, queue depths and the scheduler at a glance (read-only)")
    add_operator(p)
    add_json(p)
    p.set_defaults(func=cmd_info)

