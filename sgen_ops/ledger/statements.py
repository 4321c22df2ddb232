"""The ledger's statements that have dialect variants, side by side, each named once.

For each statement: its Core form (``*_CORE``, any SQLAlchemy backend: the reference path), then its fixed SQL
for SQLite (``SQLITE_*``, the same compare-and-set statements with ``?`` parameters) and for PostgreSQL (``PG_*``,
one statement per transaction, its writes chained as data-modifying CTEs: one round trip). The worker's hot path
(``sgen_ops.runtime.execution.HotPath``) runs the fixed SQL on psycopg and sqlite3; every other backend runs the
Core forms. ``tests/integration/test_hot_path.py`` and ``test_statements.py`` hold each variant to its reference:
the same rows, the same events (the ledger's state-change trigger writes them on every path).

Every write an attempt makes after its claim names the attempt, ``(job, run, attempt)``: its fencing token (see
``docs/fencing.md``). The row must still hold that attempt (``state = 'running'``, same ``run``, same
``attempts``), so an attempt the ledger has recorded lost renews nothing, reads itself fenced at a checkpoint,
and records no outcome.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Select, Update, bindparam, insert, select, tuple_, update

from ..core.states import WAITING_VALUES, State
from .pauses import PAUSED_SQL, paused_condition
from .store import ATTEMPTS, JOBS
from .store.types import UTCDateTime

_RUN, _OK, _CANCELLED = State.RUNNING.value, State.SUCCEEDED.value, State.CANCELLED.value
_WAITING_SQL = ", ".join(f"'{v}'" for v in WAITING_VALUES)

# -- claim: the next attempt of a job, if this delivery owns it ----------------------------------------------
# The row is locked and read, then moved to running only if it is still waiting for this delivery (state
# waiting, rq_job_id current, no cancel asked, its task and queue not paused), with its lease; the attempt is
# inserted. The attempt number (``attempts`` + 1) and ``run`` are the new attempt's fencing token.
CLAIM_READ_CORE = (
    select(
        JOBS.c.state,
        JOBS.c.task,
        JOBS.c.payload,
        JOBS.c.attempts,
        JOBS.c.run,
        JOBS.c.max_attempts,
        JOBS.c.account,
        JOBS.c.schedule_id,
        JOBS.c.scheduled_for,
        JOBS.c.rq_job_id,
        JOBS.c.cancel_requested,
        paused_condition().label("paused"),
    )
    .where(JOBS.c.id == bindparam("p_id"))
    .with_for_update()
)
CLAIM_CORE = (
    update(JOBS)
    .where(JOBS.c.id == bindparam("p_id"), JOBS.c.state == bindparam("p_state"), JOBS.c.rq_job_id == bindparam("p_rq"))
    .values(
        state=_RUN,
        attempts=bindparam("p_attempts"),
        worker=bindparam("p_worker"),
        updated_at=bindparam("p_now", type_=UTCDateTime),
        lease_until=bindparam("p_lease", type_=UTCDateTime),
    )
)
ADD_ATTEMPT_CORE = insert(ATTEMPTS)

SQLITE_CLAIM_READ = (
    "SELECT state, task, payload, attempts, run, max_attempts, account, schedule_id, scheduled_for, rq_job_id, "
    f"cancel_requested, {PAUSED_SQL} FROM jobs WHERE id = ?"
)
SQLITE_CLAIM = (
    f"UPDATE jobs SET state = '{_RUN}', attempts = ?, worker = ?, updated_at = ?, lease_until = ? "
    "WHERE id = ? AND state = ? AND rq_job_id = ?"
)
SQLITE_ADD_ATTEMPT = (
    "INSERT INTO attempts (job_id, task, run, number, ready_at, started_at, worker) VALUES (?, ?, ?, ?, ?, ?, ?)"
)

PG_CLAIM = f"""
WITH cur AS (
    SELECT id, state FROM jobs
    WHERE id = %(id)s AND state IN ({_WAITING_SQL}) AND rq_job_id = %(rq)s AND NOT cancel_requested
        AND NOT {PAUSED_SQL}
    FOR UPDATE
), claimed AS (
    UPDATE jobs AS j SET state = '{_RUN}', attempts = j.attempts + 1, worker = %(worker)s,
        updated_at = %(now)s, lease_until = %(lease)s
    FROM cur WHERE j.id = cur.id
    RETURNING j.task, j.payload, j.attempts, j.run, j.max_attempts, j.account, j.schedule_id, j.scheduled_for
), attempt AS (
    INSERT INTO attempts (job_id, task, run, number, ready_at, started_at, worker)
    SELECT %(id)s, c.task, c.run, c.attempts, c.scheduled_for, %(now)s, %(worker)s FROM claimed AS c
)
SELECT task, payload, attempts, run, max_attempts, account, schedule_id FROM claimed
"""

# -- record a stop: the attempt ended without error (succeeded, or cancelled at a checkpoint) ----------------
# Fenced by (job, run, attempt); a job an operator asked to cancel ends cancelled whatever its handler did.
STOP_READ_CORE = (
    select(JOBS.c.state, JOBS.c.run, JOBS.c.attempts, JOBS.c.cancel_requested)
    .where(JOBS.c.id == bindparam("p_id"))
    .with_for_update()
)
STOP_CORE = (
    update(JOBS)
    .where(JOBS.c.id == bindparam("p_id"))
    .values(state=bindparam("p_state"), lease_until=None, updated_at=bindparam("p_now", type_=UTCDateTime))
)
FINISH_ATTEMPT_CORE = (
    update(ATTEMPTS)
    .where(
        ATTEMPTS.c.job_id == bindparam("p_id"),
        ATTEMPTS.c.run == bindparam("p_run"),
        ATTEMPTS.c.number == bindparam("p_number"),
    )
    .values(finished_at=bindparam("p_now", type_=UTCDateTime), exit=bindparam("p_exit"))
)

SQLITE_STOP_RETURNING = (
    f"UPDATE jobs SET state = CASE WHEN ? OR cancel_requested THEN '{_CANCELLED}' ELSE '{_OK}' END, "
    f"lease_until = NULL, updated_at = ? WHERE id = ? AND state = '{_RUN}' AND run = ? AND attempts = ? "
    "RETURNING state"
)
SQLITE_STOP_READ = "SELECT state, run, attempts, cancel_requested FROM jobs WHERE id = ?"
SQLITE_STOP = "UPDATE jobs SET state = ?, lease_until = NULL, updated_at = ? WHERE id = ?"
SQLITE_FINISH = "UPDATE attempts SET finished_at = ?, exit = ? WHERE job_id = ? AND run = ? AND number = ?"

PG_STOP = f"""
WITH done AS (
    UPDATE jobs SET state = CASE WHEN %(cancelled)s OR cancel_requested THEN '{_CANCELLED}' ELSE '{_OK}' END,
        lease_until = NULL, updated_at = %(now)s
    WHERE id = %(id)s AND state = '{_RUN}' AND run = %(run)s AND attempts = %(number)s
    RETURNING state
), attempt AS (
    UPDATE attempts SET finished_at = %(now)s, exit = %(exit)s
    WHERE job_id = %(id)s AND run = %(run)s AND number = %(number)s AND EXISTS (SELECT 1 FROM done)
)
SELECT state FROM done
"""

# A failure, a timeout, or a loss is recorded through the JobBook (``fail_attempt``), which decides retry,
# dead letter or failed; it locks the row and checks the same token first.


# -- renew leases: one statement for every attempt a process runs on one ledger -------------------------------
def renew_core(attempts: Sequence[tuple[int, int, int]], until: datetime) -> Update:
    """Extend the lease of each (job, run, attempt) the ledger still holds as running; returns the job ids it
    renewed (an attempt missing from them has been recorded lost, or has ended). One variant: UPDATE ...
    RETURNING is the same on SQLite (3.35 and later) and PostgreSQL, and renewals are not on the hot path."""
    return (
        update(JOBS)
        .where(JOBS.c.state == _RUN, tuple_(JOBS.c.id, JOBS.c.run, JOBS.c.attempts).in_(list(attempts)))
        .values(lease_until=until)
        .returning(JOBS.c.id)
    )


def renew_sqlite_without_returning(attempts: Sequence[tuple[int, int, int]], until: datetime) -> Update:
    """``renew_core`` for SQLite before 3.35 (no RETURNING): the caller reads which rows hold the attempts."""
    return (
        update(JOBS)
        .where(JOBS.c.state == _RUN, tuple_(JOBS.c.id, JOBS.c.run, JOBS.c.attempts).in_(list(attempts)))
        .values(lease_until=until)
    )


def holding_core(attempts: Sequence[tuple[int, int, int]]) -> Select[Any]:
    """The job ids whose row still holds one of ``attempts`` as running."""
    return select(JOBS.c.id).where(
        JOBS.c.state == _RUN, tuple_(JOBS.c.id, JOBS.c.run, JOBS.c.attempts).in_(list(attempts))
    )


# -- checkpoint: does the row still hold this attempt, and did an operator ask to cancel it ------------------
CHECKPOINT_CORE = select(JOBS.c.state, JOBS.c.run, JOBS.c.attempts, JOBS.c.cancel_requested).where(
    JOBS.c.id == bindparam("p_id")
)


# -- recover: attempts whose lease ran out -----------------------------------------------------------------
def expired_core(now: datetime) -> Select[Any]:
    """Running attempts whose lease ended before ``now`` (each is then locked and checked again)."""
    return select(JOBS.c.id).where(JOBS.c.state == _RUN, JOBS.c.lease_until < now)


# PostgreSQL: seconds the server has been up. Recovery waits until a restarted server has been up for a whole
# lease, so that the workers that lived through the outage renew their leases first (docs/fencing.md).
PG_UPTIME = "SELECT EXTRACT(EPOCH FROM (now() - pg_postmaster_start_time()))"


# -- enqueue one job (PostgreSQL): the id from the sequence, the delivery id made from it, the row -----------
def pg_enqueue_one(columns: Sequence[str], shared: int, synchronous_commit: bool) -> str:
    """One job in one statement (PostgreSQL): the id from the sequence, the RQ job id made from it, the row (its
    first event is the ledger's trigger's), the id returned. Run outside a transaction block it is its own
    transaction, so an enqueue costs one round trip. ``columns`` are the insert's columns: id, payload,
    rq_job_id, search_masked, then ``shared`` more. Parameters: payload, the RQ job id's text before and after
    the ledger id, search_masked, then the shared columns' values.

    ``synchronous_commit`` False lets this one transaction commit without waiting for its WAL flush
    (``set_config(..., true)`` is transaction-local; see ``Settings.enqueue_synchronous_commit``). The Core
    reference of an enqueue is ``JobBook.create`` (the ORM's insert).
    """
    relax = ", set_config('synchronous_commit', 'off', true)" if not synchronous_commit else ""
    values = ", ".join(["%s"] * shared)
    return (
        f"WITH n AS (SELECT nextval(pg_get_serial_sequence('jobs', 'id')) AS id{relax}), "
        f"job AS (INSERT INTO jobs ({', '.join(columns)}) VALUES ((SELECT id FROM n), %s, "
        f"CAST(%s AS TEXT) || (SELECT id FROM n) || CAST(%s AS TEXT), %s, {values})) "
        "SELECT id FROM n"
    )
