"""One attempt: claim it on the ledger, run the task's handler, record the outcome, decide what next.

``perform`` is the function RQ calls with a ledger job id. The claim is a compare-and-set on the
ledger row (state waiting *and* the RQ delivery id current), so a duplicate or stale delivery never
runs an attempt twice; the outcome is written only if the attempt still owns the row.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import os
import signal
import socket
import sqlite3
import sys
import tempfile
import threading
import time
import traceback
import weakref
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any, TypeVar, cast

from rq import get_current_job
from rq.timeouts import JobTimeoutException
from sqlalchemy import Engine, bindparam, event, insert, select, update
from sqlalchemy.exc import InterfaceError, OperationalError

from ..core.states import WAITING, WAITING_VALUES, State
from ..core.tasks import find_task
from ..core.times import utcnow
from ..errors import JobCancelled, TaskError
from ..ledger.jobs import touch_lease
from ..ledger.pauses import PAUSED_SQL, paused_condition
from ..ledger.store import ATTEMPTS, JOBS, Job, Ledger
from ..ledger.store.db import driver_error
from ..ledger.store.types import UTCDateTime
from ..transport.queue import PERFORMS

if TYPE_CHECKING:
    from ..ledger.stack import Stack

log = logging.getLogger(__name__)


def bind_hub(hub: Stack) -> None:
    """Make ``hub`` the one that ``perform`` uses in this process."""
    RUNTIME.bind(hub)


def current_hub() -> Stack:
    """The hub of this process's worker runtime (see ``WorkerRuntime.hub``)."""
    return RUNTIME.hub()


class _Heartbeat:
    """One daemon thread per process renewing the leases of the attempts it is running.

    It beats every third of the shortest lease it holds; an attempt with a shorter lease than any
    before it wakes the thread, so the first renewal is never a longer lease's interval away.
    """

    def __init__(self) -> None:
        self._running: dict[int, tuple[Ledger, float]] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._pid = 0
        self._interval = float("inf")

    @staticmethod
    def interval(lease_seconds: float) -> float:
        return max(0.2, lease_seconds / 3)

    def add(self, job_id: int, ledger: Ledger, lease_seconds: float) -> None:
        with self._lock:
            self._running[job_id] = (ledger, lease_seconds)
            if self._thread is None or not self._thread.is_alive() or self._pid != os.getpid():
                self._pid = os.getpid()
                self._wake = threading.Event()
                self._interval = self.interval(lease_seconds)
                self._thread = threading.Thread(target=self._loop, name="sgen-ops-heartbeat", daemon=True)
                self._thread.start()
            elif self.interval(lease_seconds) < self._interval:
                self._wake.set()

    def discard(self, job_id: int) -> None:
        with self._lock:
            self._running.pop(job_id, None)

    def _loop(self) -> None:
        last = time.monotonic()
        while True:
            with self._lock:
                lease = min((s for _, s in self._running.values()), default=30.0)
                self._interval = self.interval(lease)
                wake = self._wake
            remaining = last + self._interval - time.monotonic()
            if remaining > 0:
                wake.wait(remaining)
                wake.clear()
                continue
            last = time.monotonic()
            by_ledger: dict[int, tuple[Ledger, list[int], float]] = {}
            with self._lock:
                for job_id, (ledger, seconds) in self._running.items():
                    entry = by_ledger.setdefault(id(ledger), (ledger, [], seconds))
                    entry[1].append(job_id)
            for ledger, ids, seconds in by_ledger.values():
                # A missed renewal is retried on the next beat.
                with contextlib.suppress(Exception):
                    touch_lease(ledger, ids, utcnow() + timedelta(seconds=seconds))


@dataclass
class TaskContext:
    """What a handler gets besides its payload."""

    job_id: int
    task: str
    attempt: int
    run: int
    max_attempts: int
    account: str | None
    schedule_id: int | None
    payload: Any
    _ledger: Ledger = field(repr=False)

    def checkpoint(self) -> None:
        """A safe stop point: raises JobCancelled if an operator cancelled this job."""
        with self._ledger.read() as session:
            flagged = session.scalar(select(Job.cancel_requested).where(Job.id == self.job_id))
        if flagged:
            raise JobCancelled(f"job {self.job_id} was cancelled by an operator")


def perform(job_id: int) -> dict[str, Any]:
    """The function a delivery names: run the next attempt of ledger job ``job_id`` if this delivery owns
    it. sgen-ops' own workers run deliveries without RQ's job machinery (``sgen_ops.runtime.workers``); this is
    what a stock RQ worker on the same queues calls."""
    rq_job = get_current_job()
    return run_attempt(RUNTIME.hub(), int(job_id), rq_job.id if rq_job else None)


# The hot path's statements are built once: constructing them per attempt costs more than running them.
_CLAIM_READ = (
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
_CLAIM = (
    update(JOBS)
    .where(JOBS.c.id == bindparam("p_id"), JOBS.c.state == bindparam("p_state"), JOBS.c.rq_job_id == bindparam("p_rq"))
    .values(
        state=State.RUNNING.value,
        attempts=bindparam("p_attempts"),
        worker=bindparam("p_worker"),
        updated_at=bindparam("p_now", type_=UTCDateTime),
        lease_until=bindparam("p_lease", type_=UTCDateTime),
    )
)
_STOP_READ = (
    select(JOBS.c.state, JOBS.c.run, JOBS.c.attempts, JOBS.c.cancel_requested)
    .where(JOBS.c.id == bindparam("p_id"))
    .with_for_update()
)
_STOP = (
    update(JOBS)
    .where(JOBS.c.id == bindparam("p_id"))
    .values(state=bindparam("p_state"), lease_until=None, updated_at=bindparam("p_now", type_=UTCDateTime))
)
_FINISH_ATTEMPT = (
    update(ATTEMPTS)
    .where(
        ATTEMPTS.c.job_id == bindparam("p_id"),
        ATTEMPTS.c.run == bindparam("p_run"),
        ATTEMPTS.c.number == bindparam("p_number"),
    )
    .values(finished_at=bindparam("p_now", type_=UTCDateTime), exit=bindparam("p_exit"))
)
_ADD_ATTEMPT = insert(ATTEMPTS)


def claim(hub: Stack, job_id: int, rq_job_id: str | None) -> TaskContext | None:
    """Take the next attempt of a job if this delivery owns it (one short transaction)."""
    fast = RUNTIME.hot_path(hub.ledger)
    if fast is not None:
        return fast.claim(hub, job_id, rq_job_id)
    return _claim_core(hub, job_id, rq_job_id)


def _claim_core(hub: Stack, job_id: int, rq_job_id: str | None) -> TaskContext | None:
    """``claim`` on any SQLAlchemy backend, through Core."""
    now = utcnow()
    with hub.ledger.write_conn() as conn:
        row = conn.execute(_CLAIM_READ, {"p_id": job_id}).first()
        if row is None or row.state not in WAITING or row.rq_job_id != rq_job_id or row.cancel_requested:
            return None
        if row.paused:
            # Its task or queue is paused: it stays waiting, no attempt counted; resuming re-sends it.
            return None
        number = row.attempts + 1
        lease = now + timedelta(seconds=hub.settings.worker_lost_after)
        claimed = conn.execute(
            _CLAIM,
            {
                "p_id": job_id,
                "p_state": row.state,
                "p_rq": rq_job_id,
                "p_attempts": number,
                "p_worker": RUNTIME.name,
                "p_now": now,
                "p_lease": lease,
            },
        )
        if claimed.rowcount != 1:
            return None
        conn.execute(
            _ADD_ATTEMPT,
            {
                "job_id": job_id,
                "task": row.task,
                "run": row.run,
                "number": number,
                "ready_at": row.scheduled_for,
                "started_at": now,
                "worker": RUNTIME.name,
            },
        )
    return TaskContext(
        job_id=job_id,
        task=row.task,
        attempt=number,
        run=row.run,
        max_attempts=row.max_attempts,
        account=row.account,
        schedule_id=row.schedule_id,
        payload=row.payload,
        _ledger=hub.ledger,
    )


def ledger_job_id(rq_job: Any) -> int | None:
    """The ledger job id an RQ delivery carries, or None if it is not a delivery of ``perform``."""
    if rq_job.func_name not in PERFORMS or len(rq_job.args) != 1:
        return None
    try:
        return int(rq_job.args[0])
    except (TypeError, ValueError):
        return None


def run_attempt(
    hub: Stack, job_id: int, rq_job_id: str | None, time_limit: AbstractContextManager[Any] | None = None
) -> dict[str, Any]:
    """Claim, run and record one attempt in this process; ``time_limit`` bounds the handler alone."""
    ctx = riding_out(lambda: claim(hub, job_id, rq_job_id))
    if ctx is None:
        return {"job_id": job_id, "outcome": "skipped"}
    RUNTIME.heartbeat.add(job_id, hub.ledger, hub.settings.worker_lost_after)
    try:
        outcome = run_handler(ctx, time_limit)
    finally:
        RUNTIME.heartbeat.discard(job_id)
    return riding_out(lambda: record_outcome(hub, ctx, *outcome))


# How long a worker keeps trying to record an outcome while the database is unreachable. Past it the
# attempt is left to its lease: upkeep records it as worker-lost.
RECORD_PATIENCE = 60.0
T = TypeVar("T")


def riding_out(write: Callable[[], T], patience: float = RECORD_PATIENCE) -> T:
    """Run ``write``, trying again with bounded backoff while the database is unreachable (an outage, a
    restart, a terminated backend): an outcome the handler produced is not given up at the first error.
    A write that did commit before its connection dropped is a no-op the second time (compare-and-set)."""
    deadline = time.monotonic() + patience
    delay = 0.2
    while True:
        try:
            return write()
        except (OperationalError, InterfaceError) as exc:
            if time.monotonic() + delay > deadline:
                raise
            log.warning("the ledger is unreachable (%s); trying again in %.1fs", exc.orig or exc, delay)
            time.sleep(delay)
            delay = min(delay * 2, 5.0)


Outcome = tuple[str, str, str, str | None]


def run_handler(ctx: TaskContext, time_limit: AbstractContextManager[Any] | None = None) -> Outcome:
    """Run the task's handler for a claimed attempt: (outcome, error code, detail, traceback).
    ``time_limit`` (the worker's death penalty) is entered around the handler alone, so that a timeout
    firing as the handler returns is still the handler's timeout."""
    spec = find_task(ctx.task)
    try:
        with time_limit if time_limit is not None else contextlib.nullcontext():
            if spec is None:
                raise TaskError("unknown_task", f"no handler is registered for task {ctx.task!r} in this worker")
            spec.handler(ctx, ctx.payload)
    except JobCancelled:
        return "cancelled", "", "", None
    except TaskError as exc:
        return "failed", exc.code, exc.detail or exc.code, traceback.format_exc()
    except JobTimeoutException as exc:
        return "timeout", "timeout", str(exc), traceback.format_exc()
    except Exception as exc:  # noqa: BLE001 - any handler error fails the attempt, never the worker
        return "failed", type(exc).__name__, str(exc) or type(exc).__name__, traceback.format_exc()
    return "succeeded", "", "", None


# -- a forking worker: the worker claims and records, its work horse runs the handler ----------------
class Handover:
    """One attempt handed from a forking worker to its work horse.

    The worker claims the attempt and renews its lease on its own warm ledger connection; the horse,
    forked with this object in memory, runs only the handler and writes the outcome to a file the two
    share (a file, not a pipe, so a long traceback never blocks the horse); the worker then records it.
    A horse that ends without writing an outcome (killed, out of memory, crashed interpreter) is
    recorded as worker-lost at once instead of after the lease runs out.
    """

    def __init__(self, rq_job_id: str, ctx: TaskContext | None) -> None:
        self.rq_job_id = rq_job_id
        self.ctx = ctx
        self.fd = RUNTIME.outcome_file()
        os.ftruncate(self.fd, 0)
        os.lseek(self.fd, 0, os.SEEK_SET)

    def run_in_horse(self, job_id: int, time_limit: AbstractContextManager[Any] | None = None) -> dict[str, Any]:
        ctx = self.ctx
        if ctx is None or ctx.job_id != job_id:
            return {"job_id": job_id, "outcome": "skipped"}
        outcome = run_handler(ctx, time_limit)
        write_all(self.fd, json.dumps(outcome).encode())
        return {"job_id": job_id, "outcome": outcome[0]}

    def message(self, timeout: float) -> bytes:
        """The attempt, with its time limit in seconds, as a message to a horse that is already running
        (``from_message`` reads it)."""
        ctx = self.ctx
        assert ctx is not None
        fields = {
            "job_id": ctx.job_id, "task": ctx.task, "attempt": ctx.attempt, "run": ctx.run,
            "max_attempts": ctx.max_attempts, "account": ctx.account, "schedule_id": ctx.schedule_id,
            "payload": ctx.payload,
        }
        return json.dumps({"rq_job_id": self.rq_job_id, "timeout": timeout, "ctx": fields}).encode()

    @classmethod
    def from_message(cls, data: bytes, ledger: Ledger, fd: int) -> tuple[Handover, float]:
        """In a running horse: the attempt its worker sent, its outcome to go to ``fd``; and its time limit."""
        found = json.loads(data)
        handover = cls.__new__(cls)
        handover.rq_job_id = str(found["rq_job_id"])
        handover.ctx = TaskContext(**found["ctx"], _ledger=ledger)
        handover.fd = fd
        return handover, float(found["timeout"])

    def outcome(self) -> Outcome | None:
        """What the horse wrote, or None if it wrote nothing whole."""
        size = os.fstat(self.fd).st_size
        if not size:
            return None
        try:
            outcome, code, detail, log_text = json.loads(os.pread(self.fd, size, 0))
        except ValueError:
            return None
        return str(outcome), str(code), str(detail), log_text


def write_all(fd: int, data: bytes) -> None:
    """Write all of ``data`` to ``fd``."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


_PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int) -> None:
    """In a work horse: die when the worker that forked it dies, so that a killed worker never leaves a
    horse running its attempt beside the retry (Linux: PR_SET_PDEATHSIG; elsewhere the check below)."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    # The worker may have died before the signal was armed.
    if os.getppid() != parent_pid:
        os._exit(1)


@contextlib.contextmanager
def handed_over(hub: Stack, rq_job_id: str, ctx: TaskContext | None) -> Iterator[Handover]:
    """Make ``ctx`` the attempt the next forked horse runs, with its lease renewed from this process."""
    handover = Handover(rq_job_id, ctx)
    if ctx is not None:
        RUNTIME.heartbeat.add(ctx.job_id, hub.ledger, hub.settings.worker_lost_after)
    RUNTIME.handover = handover
    try:
        yield handover
    finally:
        RUNTIME.handover = None
        if ctx is not None:
            RUNTIME.heartbeat.discard(ctx.job_id)


def record_handed(hub: Stack, handover: Handover, horse_exit: str) -> dict[str, Any] | None:
    """Record what the horse reported; a horse that reported nothing lost its attempt."""
    ctx = handover.ctx
    if ctx is None:
        return None
    outcome = handover.outcome()
    if outcome is None:
        detail = f"the work horse of worker {RUNTIME.name} ended without an outcome ({horse_exit})"
        lost = hub.book.record_lost(ctx.job_id, ctx.run, ctx.attempt, detail)
        return {"job_id": ctx.job_id, "outcome": "worker-lost" if lost else "superseded"}
    return record_outcome(hub, ctx, *outcome)


def record_outcome(
    hub: Stack, ctx: TaskContext, outcome: str, code: str, detail: str, log_text: str | None
) -> dict[str, Any]:
    """Write the attempt's outcome if the attempt still owns the job; decide what comes next."""
    if outcome in ("succeeded", "cancelled"):
        return _record_stop(hub, ctx, outcome)
    book = hub.book
    now = utcnow()
    with hub.ledger.write() as session:
        job = session.get(Job, ctx.job_id, with_for_update=True)
        if job is None or job.state != State.RUNNING or job.run != ctx.run or job.attempts != ctx.attempt:
            # The attempt lost its lease and was recorded as worker-lost meanwhile.
            return {"job_id": ctx.job_id, "outcome": "superseded"}
        delivery = book.fail_attempt(session, job, now, outcome, code, detail, log_text)
        state = job.state
    if delivery:
        book.send([delivery])
    return {"job_id": ctx.job_id, "outcome": outcome, "state": state}


def _record_stop(hub: Stack, ctx: TaskContext, outcome: str) -> dict[str, Any]:
    """The common case, kept to one short transaction: the attempt ended without error."""
    fast = RUNTIME.hot_path(hub.ledger)
    if fast is not None:
        return fast.record_stop(ctx, outcome)
    return _record_stop_core(hub, ctx, outcome)


def _record_stop_core(hub: Stack, ctx: TaskContext, outcome: str) -> dict[str, Any]:
    """``_record_stop`` on any SQLAlchemy backend, through Core."""
    now = utcnow()
    with hub.ledger.write_conn() as conn:
        row = conn.execute(_STOP_READ, {"p_id": ctx.job_id}).first()
        if row is None or row.state != State.RUNNING or row.run != ctx.run or row.attempts != ctx.attempt:
            return {"job_id": ctx.job_id, "outcome": "superseded"}
        # A task without checkpoints runs to completion and is then marked cancelled.
        target = State.CANCELLED if outcome == "cancelled" or row.cancel_requested else State.SUCCEEDED
        conn.execute(_STOP, {"p_id": ctx.job_id, "p_state": target.value, "p_now": now})
        conn.execute(
            _FINISH_ATTEMPT,
            {"p_id": ctx.job_id, "p_run": ctx.run, "p_number": ctx.attempt, "p_now": now, "p_exit": outcome},
        )
    return {"job_id": ctx.job_id, "outcome": outcome, "state": target.value}


# -- the hot path on SQLite and PostgreSQL ---------------------------------------------------------
# Per attempt the worker writes two short transactions (claim, record). Through SQLAlchemy each
# statement costs more in Python (execution context, events, result set-up) than in the database, and
# a pooled checkout on PostgreSQL adds a pre-ping round trip. On the two tested backends the hot path
# therefore runs fixed SQL on one DBAPI connection per process, kept for the hot path alone:
#
# * SQLite: BEGIN IMMEDIATE, the same compare-and-set statements as the Core path (the record is one
#   UPDATE ... RETURNING where SQLite >= 3.35), COMMIT; the connection gets the engine's PRAGMAs.
# * PostgreSQL: each transaction is ONE statement in autocommit mode, its writes chained as
#   data-modifying CTEs (lock and compare-and-set the job row, insert its attempt): one
#   round trip instead of six.
#
# Other backends use the Core statements above. Both paths write the same rows; the state-change events
# are the ledger trigger's (migration 0007) on every path.

_RUN, _OK, _CANCELLED = State.RUNNING.value, State.SUCCEEDED.value, State.CANCELLED.value
_WAITING_SQL = ", ".join(f"'{v}'" for v in WAITING_VALUES)

_SQLITE_CLAIM_READ = (
    "SELECT state, task, payload, attempts, run, max_attempts, account, schedule_id, scheduled_for, rq_job_id, "
    f"cancel_requested, {PAUSED_SQL} FROM jobs WHERE id = ?"
)
_SQLITE_CLAIM = (
    f"UPDATE jobs SET state = '{_RUN}', attempts = ?, worker = ?, updated_at = ?, lease_until = ? "
    "WHERE id = ? AND state = ? AND rq_job_id = ?"
)
_SQLITE_ATTEMPT = (
    "INSERT INTO attempts (job_id, task, run, number, ready_at, started_at, worker) VALUES (?, ?, ?, ?, ?, ?, ?)"
)
_SQLITE_STOP_RETURNING = (
    f"UPDATE jobs SET state = CASE WHEN ? OR cancel_requested THEN '{_CANCELLED}' ELSE '{_OK}' END, "
    f"lease_until = NULL, updated_at = ? WHERE id = ? AND state = '{_RUN}' AND run = ? AND attempts = ? "
    "RETURNING state"
)
_SQLITE_STOP_READ = "SELECT state, run, attempts, cancel_requested FROM jobs WHERE id = ?"
_SQLITE_STOP = "UPDATE jobs SET state = ?, lease_until = NULL, updated_at = ? WHERE id = ?"
_SQLITE_FINISH = "UPDATE attempts SET finished_at = ?, exit = ? WHERE job_id = ? AND run = ? AND number = ?"

_PG_CLAIM = f"""
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
_PG_STOP = f"""
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


class HotPath:
    """The worker's claim and record on one DBAPI connection of this process, held across attempts.

    The connection comes from the engine's pool (so it gets the engine's connect-time set-up) and is
    given back closed when the engine is disposed. After a fork the child leaves the parent's connection
    alone and opens its own. A lock keeps threads of one process (tests run attempts in threads) from
    sharing the connection at the same time. A dropped connection is replaced and the transaction tried
    once more: nothing of it was committed, and if the commit itself was lost, the compare-and-set
    makes the second try a no-op.
    """

    def __init__(self, engine: Engine) -> None:
        # Weakly: the registry below is keyed by the engine, which must stay collectable.
        self._engine = weakref.ref(engine)
        self.dialect = engine.dialect
        self.postgres = self.dialect.name == "postgresql"
        self.returning = not self.postgres and sqlite3.sqlite_version_info >= (3, 35, 0)
        processor = UTCDateTime().dialect_impl(self.dialect).bind_processor(self.dialect)
        self._time: Callable[[Any], Any] = processor if processor is not None else (lambda v: v)
        payload_type = JOBS.c.payload.type.dialect_impl(self.dialect)
        loads = payload_type.result_processor(self.dialect, None)
        self._payload: Callable[[Any], Any] = loads if loads is not None else (lambda v: v)
        self._fairy: Any = None
        self._pid = os.getpid()
        self._lock = threading.Lock()
        event.listen(engine, "engine_disposed", self._disposed)

    # -- the connection ---------------------------------------------------------------------
    def _connection(self) -> Any:
        if self._pid != os.getpid():
            self._forked()
        if self._fairy is None:
            engine = self._engine()
            if engine is None:
                raise RuntimeError("the ledger's engine is gone")
            fairy = engine.raw_connection()
            if self.postgres:
                cast(Any, fairy.dbapi_connection).autocommit = True
            self._fairy = fairy
        return self._fairy

    def _forked(self) -> None:
        # The parent's connection is the parent's: keep a reference so that it is never reset or
        # returned to a pool from here, and start afresh.
        if self._fairy is not None:
            _INHERITED.append(self._fairy)
        self._fairy, self._pid, self._lock = None, os.getpid(), threading.Lock()

    def _drop(self, *, close: bool) -> None:
        fairy, self._fairy = self._fairy, None
        if fairy is None:
            return
        if not close:
            _INHERITED.append(fairy)
            return
        with contextlib.suppress(Exception):
            fairy.dbapi_connection.rollback()
        with contextlib.suppress(Exception):
            fairy.invalidate()

    def _disposed(self, engine: Engine) -> None:
        if self._pid != os.getpid():
            self._forked()
        else:
            self._drop(close=True)

    def _run(self, work: Callable[[Any], Any]) -> Any:
        if self._pid != os.getpid():
            self._forked()
        with self._lock:
            for attempt in (1, 2):
                fairy = self._connection()
                dbapi = fairy.dbapi_connection
                try:
                    return work(dbapi)
                except self.dialect.loaded_dbapi.Error as exc:
                    lost = self.dialect.is_disconnect(exc, dbapi, None)
                    self._drop(close=True)
                    if lost and attempt == 1:
                        continue
                    raise driver_error(self.dialect, exc) from exc
                except BaseException:
                    self._drop(close=True)
                    raise
        raise AssertionError("unreachable")

    # -- claim --------------------------------------------------------------------------------
    def claim(self, hub: Stack, job_id: int, rq_job_id: str | None) -> TaskContext | None:
        now = utcnow()
        lease = now + timedelta(seconds=hub.settings.worker_lost_after)
        worker = RUNTIME.name
        if self.postgres:
            params = {"id": job_id, "rq": rq_job_id, "worker": worker, "now": self._time(now),
                      "lease": self._time(lease)}

            def pg(dbapi: Any) -> Any:
                with dbapi.cursor() as cur:
                    cur.execute(_PG_CLAIM, params)
                    return cur.fetchone()

            row = self._run(pg)
            if row is None:
                return None
            task, payload, number, run, max_attempts, account, schedule_id = row
        else:
            found: list[Any] = []

            def lite(dbapi: Any) -> bool:
                cur = dbapi.cursor()
                try:
                    cur.execute("BEGIN IMMEDIATE")
                    r = cur.execute(_SQLITE_CLAIM_READ, (job_id,)).fetchone()
                    if r is None or r[0] not in WAITING or r[9] != rq_job_id or r[10] or r[11]:
                        dbapi.rollback()
                        return False
                    _state, task, _p, attempts, _run, _m, _a, _s, ready_at = r[:9]
                    at = self._time(now)
                    cur.execute(_SQLITE_CLAIM, (attempts + 1, worker, at, self._time(lease), job_id, r[0], rq_job_id))
                    if cur.rowcount != 1:
                        dbapi.rollback()
                        return False
                    cur.execute(_SQLITE_ATTEMPT, (job_id, task, _run, attempts + 1, ready_at, at, worker))
                    dbapi.commit()
                    found.append(r)
                    return True
                except BaseException:
                    dbapi.rollback()
                    raise
                finally:
                    cur.close()

            if not self._run(lite):
                return None
            r = found[0]
            task, payload, number, run, max_attempts, account, schedule_id = (
                r[1], r[2], r[3] + 1, r[4], r[5], r[6], r[7])
        return TaskContext(
            job_id=job_id,
            task=task,
            attempt=number,
            run=run,
            max_attempts=max_attempts,
            account=account,
            schedule_id=schedule_id,
            payload=self._payload(payload),
            _ledger=hub.ledger,
        )

    # -- record -------------------------------------------------------------------------------
    def record_stop(self, ctx: TaskContext, outcome: str) -> dict[str, Any]:
        now = self._time(utcnow())
        cancelled = outcome == "cancelled"
        if self.postgres:
            params = {"id": ctx.job_id, "run": ctx.run, "number": ctx.attempt, "now": now, "exit": outcome,
                      "cancelled": cancelled}

            def pg(dbapi: Any) -> str | None:
                with dbapi.cursor() as cur:
                    cur.execute(_PG_STOP, params)
                    row = cur.fetchone()
                return None if row is None else str(row[0])

            target = self._run(pg)
        else:

            def lite(dbapi: Any) -> str | None:
                cur = dbapi.cursor()
                try:
                    cur.execute("BEGIN IMMEDIATE")
                    if self.returning:
                        row = cur.execute(
                            _SQLITE_STOP_RETURNING, (int(cancelled), now, ctx.job_id, ctx.run, ctx.attempt)
                        ).fetchone()
                        if row is None:
                            dbapi.rollback()
                            return None
                        state = str(row[0])
                    else:
                        row = cur.execute(_SQLITE_STOP_READ, (ctx.job_id,)).fetchone()
                        if row is None or row[0] != _RUN or row[1] != ctx.run or row[2] != ctx.attempt:
                            dbapi.rollback()
                            return None
                        state = _CANCELLED if cancelled or row[3] else _OK
                        cur.execute(_SQLITE_STOP, (state, now, ctx.job_id))
                    cur.execute(_SQLITE_FINISH, (now, outcome, ctx.job_id, ctx.run, ctx.attempt))
                    dbapi.commit()
                    return state
                except BaseException:
                    dbapi.rollback()
                    raise
                finally:
                    cur.close()

            target = self._run(lite)
        if target is None:
            return {"job_id": ctx.job_id, "outcome": "superseded"}
        return {"job_id": ctx.job_id, "outcome": outcome, "state": target}


# Connections inherited from a parent process: referenced so that they are never reset from the child.
_INHERITED: list[Any] = []
_HOT_DRIVERS = {"sqlite": ("pysqlite",), "postgresql": ("psycopg", "psycopg2")}


def hot_path(ledger: Ledger) -> HotPath | None:
    """The fixed-SQL hot path for this ledger's engine, or None where the Core path is used."""
    return RUNTIME.hot_path(ledger)


class WorkerRuntime:
    """The state of a process that runs attempts, in one object: its hub, its worker's name, the heartbeat
    renewing its leases, the attempt handed to a work horse, the outcome file it shares with its horses, and
    the hot path per ledger engine. RQ calls ``perform`` as a plain function, so a process has one runtime
    (``RUNTIME``); the worker names it and binds its hub.

    ``connect`` makes a hub from the environment for a process that was given none (a pool's worker); the
    hub module hands it down, so nothing here imports the hub.
    """

    def __init__(self, connect: Callable[[], Stack] | None = None) -> None:
        self.connect = connect
        self.name = f"{socket.gethostname()}.{os.getpid()}"
        self.heartbeat = _Heartbeat()
        self.handover: Handover | None = None
        self._hub: Stack | None = None
        self._hub_pid: int | None = None
        self._outcome_fd: tuple[int, int] | None = None  # (pid, fd)
        self._hot: weakref.WeakKeyDictionary[Engine, HotPath | None] = weakref.WeakKeyDictionary()

    def bind(self, hub: Stack) -> None:
        self._hub, self._hub_pid = hub, os.getpid()

    def hub(self) -> Stack:
        """The bound hub; after a fork, the inherited one drops its parent's connections first."""
        if self._hub is None:
            if self.connect is None:
                raise RuntimeError("no hub is bound in this process: call sgen_ops.connect() first")
            self.bind(self.connect())
        elif self._hub_pid != os.getpid():
            self._hub.after_fork()
            self._hub_pid = os.getpid()
        assert self._hub is not None
        return self._hub

    def outcome_file(self) -> int:
        """This process's outcome file (anonymous, in memory where the platform allows), made once."""
        if self._outcome_fd is None or self._outcome_fd[0] != os.getpid():
            if hasattr(os, "memfd_create"):
                fd = os.memfd_create("sgen-ops-outcome", os.MFD_CLOEXEC)
            else:  # pragma: no cover - platforms without memfd
                with tempfile.TemporaryFile() as file:
                    fd = os.dup(file.fileno())
            self._outcome_fd = (os.getpid(), fd)
        return self._outcome_fd[1]

    def hot_path(self, ledger: Ledger) -> HotPath | None:
        """The fixed-SQL hot path for this ledger's engine, or None where the Core path is used."""
        engine = ledger.engine
        try:
            return self._hot[engine]
        except KeyError:
            pass
        dialect = engine.dialect
        fast = HotPath(engine) if dialect.driver in _HOT_DRIVERS.get(dialect.name, ()) else None
        self._hot[engine] = fast
        return fast


RUNTIME = WorkerRuntime()
