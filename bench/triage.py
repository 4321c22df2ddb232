"""Bulk triage at scale: replay 10,000 dead letters by filter, and dismiss 10,000, in a million-job ledger.

Both run through ``Operations.replay_dead_letters`` / ``dismiss_dead_letters`` as an administrator would
call them from the dead-letter notebook: the filter is counted, then the matching jobs are changed in
batches (default 500), each with its Activity Log entry, and their RQ deliveries sent or withdrawn after
each batch commits. Afterwards the ledger, the Activity Log and Redis are checked.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from pathlib import Path

from sqlalchemy import func, select

import sgen_ops
from sgen_ops.ledger.store import ActivityEntry, Attempt, Job

from . import ledger
from .common import check, flush, timed

TARGET_S = 5.0


def _count(hub: sgen_ops.Hub, *conds: object) -> int:
    with hub.ledger.read() as session:
        return int(session.scalar(select(func.count()).select_from(Job).where(*conds)) or 0)  # type: ignore[arg-type]


def triage(url: str, info: ledger.Generated, redis_url: str, backend: str) -> list[str]:
    replay, dismiss = ledger.REPLAY_FILTER, ledger.DISMISS_FILTER
    rows = []
    flush(redis_url)
    with tempfile.TemporaryDirectory(prefix="sgen-bench-t-") as home, ledger.clock(info.anchor):
        hub = sgen_ops.connect(
            database_url=url, redis_url=redis_url, home=home, task_modules="worker.catalog", queue_prefix="tbench"
        )
        admin = hub.as_operator("bench-admin")
        dead = (Job.state == "dead-letter",)
        want = info.replay_ids
        check(admin.replay_dead_letters(dry_run=True, **replay) == want, "replay filter does not match the ledger")
        before_jobs = _count(hub)
        result: list[int] = []
        seconds = timed(lambda: result.append(admin.replay_dead_letters(**replay)))
        check(result == [want], f"replay_dead_letters returned {result}, expected {want}")
        check(
            _count(hub, *dead, Job.task == replay["task"], Job.last_error_code == replay["error_code"]) == 0,
            "dead letters left after replay",
        )
        requeued = _count(
            hub,
            Job.state == "queued",
            Job.run == 2,
            Job.task == replay["task"],
            Job.last_error_code == replay["error_code"],
        )
        check(requeued == want, f"{requeued} jobs requeued on a fresh run, expected {want}")
        check(hub.transport.waiting() == want, f"Redis holds {hub.transport.waiting()} deliveries, expected {want}")
        check(_log(hub, "replay_dead_letters") == want, "Activity Log entries of the replay are off")
        rows.append(_row(backend, f"replay_dead_letters(task=, error_code=) of {want:,}", seconds))

        want = info.dismiss_ids
        ids = _ids(hub, *dead, Job.task == dismiss["task"], Job.last_error_code == dismiss["error_code"])
        check(len(ids) == want, "dismiss filter does not match the ledger")
        result.clear()
        seconds = timed(lambda: result.append(admin.dismiss_dead_letters(**dismiss)))
        check(result == [want], f"dismiss_dead_letters returned {result}, expected {want}")
        check(_count(hub, Job.id.in_(ids[:30000])) == 0, "dismissed jobs are still in the ledger")
        check(_count(hub) == before_jobs - want, "the ledger lost or kept the wrong jobs")
        with hub.ledger.read() as session:
            left = session.scalar(select(func.count()).select_from(Attempt).where(Attempt.job_id.in_(ids[:30000])))
        check(left == 0, f"{left} attempts of dismissed jobs are left")
        check(_log(hub, "dismiss_dead_letters") == want, "Activity Log entries of the dismissal are off")
        check(admin.verify_audit().ok, "the Activity Log chain does not verify after bulk triage")
        rows.append(_row(backend, f"dismiss_dead_letters(task=, error_code=) of {want:,}", seconds))
        hub.close()
    return rows


def _ids(hub: sgen_ops.Hub, *conds: object) -> list[int]:
    with hub.ledger.read() as session:
        return list(session.scalars(select(Job.id).where(*conds)))  # type: ignore[arg-type]


def _log(hub: sgen_ops.Hub, action: str) -> int:
    with hub.ledger.read() as session:
        return int(
            session.scalar(select(func.count()).select_from(ActivityEntry).where(ActivityEntry.action == action)) or 0
        )


def _row(backend: str, what: str, seconds: float) -> str:
    row = f"| {backend} | {what} | {seconds:.2f} | {TARGET_S:.0f} | {'yes' if seconds <= TARGET_S else '**no**'} |"
    print(row, flush=True)
    return row


def run(redis_url: str, args: argparse.Namespace) -> str:
    logging.getLogger("rq").setLevel(logging.WARNING)
    n = args.ledger_jobs
    lines = [
        f"### Bulk triage in a {n:,}-job ledger (batches of 500, one Activity Log entry per job)",
        "",
        "| ledger | operation | seconds | target s | met |",
        "|---|---|---|---|---|",
    ]
    with tempfile.TemporaryDirectory(prefix="sgen-bench-ledger-") as tmp:
        url, info, _ = ledger.sqlite_ledger(n, Path(tmp))
        lines += triage(url, info, redis_url, "SQLite")
    if args.postgres:
        url, info, _ = ledger.postgres_ledger(args.postgres, n, copy="sgen_bench_triage")
        try:
            lines += triage(url, info, redis_url, "PostgreSQL")
        finally:
            ledger.drop_database(args.postgres, "sgen_bench_triage")
    return "\n".join(lines)
