"""``sgen-ops info``: the stack at a glance, read-only, as ``rq info`` shows it: the live RQ workers of this
stack's queues (host, pid, state, current job, last heartbeat, jobs done and failed; stale ones flagged), each
priority queue's depth and oldest waiting job, and the scheduler's last tick: ``Operations.workers``, the
ledger's or, with SGEN_OPS_API_URL set, the server's (``GET /api/workers``). Ledger counts are scoped to the
operator's account."""

from __future__ import annotations

import argparse
from dataclasses import asdict
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ..core.times import as_utc
from . import table
from .base import add_json, add_operator, operations, print_json

if TYPE_CHECKING:
    from ..ledger import archive


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
    table.Column("IN REDIS", "ready", right=True),
    table.Column("OLDEST WAITING", lambda q: table.relative(q["oldest_due"]).removesuffix(" ago") if q["oldest_due"]
                 else ""),
)


def cmd_info(args: argparse.Namespace) -> int:
    info = operations(args).workers()
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
    if info.last_schedule_tick:
        tick = f"{table.relative(info.last_schedule_tick, info.at)} ({table.text(info.last_schedule_tick)} UTC)"
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

