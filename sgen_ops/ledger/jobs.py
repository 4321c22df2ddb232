"""Changes to job records: create, state moves, (re)delivery to RQ, recovery.

Every state change of a job is recorded with its time (``job_events``) by the ledger's trigger on
``jobs.state`` (migration 0007), which also refuses a change the state machine does not allow; ``JobBook.move``
checks the state machine first, for a clear error. Deliveries to RQ are returned by the
writing transaction and sent after it commits, so RQ never carries a job the ledger does not hold.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any, NamedTuple

import redis
from sqlalchemy import Connection, Dialect, Table, select, text, update
from sqlalchemy.orm import Session

from ..config import Settings
from ..core import validate
from ..core.durations import parse_duration
from ..core.masking import MASK, MaskingRule
from ..core.states import WAITING, WAITING_VALUES, State, check_transition
from ..core.tasks import PRIORITIES, find_task, get_task
from ..core.times import utcnow
from ..errors import ValidationError
from ..transport.queue import Delivery, Transport
from . import statements
from .pauses import paused_condition
from .rules import MaskingRules
from .store import ATTEMPTS, JOBS, Job, Ledger
from .store.db import driver_error

log = logging.getLogger(__name__)

ERROR_LOG_LIMIT = 64 * 1024
# The last error's detail as the ledger keeps it (masked, then cut); the full text is in the error log.
DETAIL_LIMIT = 4000
# The excerpt of that detail each attempt keeps.
ATTEMPT_ERROR_CHARS = 500
DEFAULT_DEPTH = 64
_MASK_ESCAPED = json.dumps(MASK)[1:-1]


def encode_payload(payload: Any, limit: int, *, depth: int = DEFAULT_DEPTH, name: str = "payload") -> str:
    """The payload as JSON, or a ValidationError saying why it cannot travel or be stored."""
    return validate.json_document(payload, name, max_depth=depth, max_bytes=limit)


def refuse_masks(payload: Any, encoded: str, name: str = "payload") -> None:
    """A new payload holding the mask (copied from a masked view) has no stored value to keep there."""
    if _MASK_ESCAPED in encoded:
        MaskingRule().restore(payload, what=name)


def parse_delay(delay: float | timedelta | str | None) -> float:
    """Seconds to wait before a job is due: a duration (``core.durations``) from 0 up to 3650 days."""
    if delay is None:
        return 0.0
    return parse_duration(delay, "delay", minimum=0)


def check_priority(priority: Any) -> str:
    if not isinstance(priority, str) or priority not in PRIORITIES:
        raise ValidationError(
            f"priority {validate.describe(priority)} is not valid; allowed: {', '.join(PRIORITIES)}"
        )
    return priority


def check_max_attempts(value: Any) -> int:
    return validate.whole(value, "max_attempts", lo=1, hi=validate.INT_MAX)


_PG_NEXT_IDS = text("SELECT nextval(pg_get_serial_sequence('jobs', 'id')) FROM generate_series(1, :n)")
# Per row only these differ; every other column is the same for a batch from prepare_rows.
_OWN = ("id", "payload", "rq_job_id", "search_masked")
_SHARED = (*(c.name for c in JOBS.columns if c.name not in _OWN and c.name != "enqueue_seq"), "enqueue_seq")
_JOB_COLUMNS = (*_OWN, *_SHARED)


_PG_ENQUEUE_ONE = {
    durable: statements.pg_enqueue_one(_JOB_COLUMNS, len(_SHARED), durable) for durable in (True, False)
}
_PG_ONE_DRIVERS = ("psycopg", "psycopg2")  # "%s" parameters; others take the batch path


class _Bound(NamedTuple):
    """A ``prepare_rows`` batch as the driver takes it."""

    own: list[tuple[Any, Any]]  # (payload, search_masked) per row
    shared: tuple[Any, ...]  # the values of _SHARED


# Rows per multi-row INSERT on SQLite: 500 x 28 columns stays below its limit of 32,766 parameters.
_ROWS_PER_INSERT = 500


class _Binder:
    """The enqueue path's columns bound through their SQLAlchemy types' own processors, as Core would;
    the processors are looked up once per dialect, and what a batch shares is processed once (that,
    more than the database, was the cost of a bulk insert)."""

    def __init__(self, dialect: Dialect) -> None:
        def processor(table: Table, name: str) -> Callable[[Any], Any]:
            bind = table.c[name].type.dialect_impl(dialect).bind_processor(dialect)
            return bind if bind is not None else _same

        self.shared = tuple(processor(JOBS, c) for c in _SHARED)
        self.payload = processor(JOBS, "payload")
        self.search_masked = processor(JOBS, "search_masked")
        self.mark = "?" if dialect.paramstyle == "qmark" else "%s"

    def bind(self, rows: Sequence[dict[str, Any]]) -> _Bound:
        first = rows[0]
        same = _SHARED[:-1]  # and enqueue_seq, 1 for every first delivery
        shared = tuple(map(first.get, same))
        for row in rows:
            if tuple(map(row.get, same)) != shared:
                raise ValueError("rows of one batch must share every column but payload and search_masked")
        payload, search_masked = self.payload, self.search_masked
        return _Bound(
            own=[(payload(row["payload"]), search_masked(row["search_masked"])) for row in rows],
            shared=tuple(p(v) for p, v in zip(self.shared, (*shared, 1), strict=True)),
        )

    def insert(self, conn: Connection, ids: Sequence[int], rq_ids: Sequence[str], bound: _Bound) -> None:
        """Insert a bound batch under ids already taken (their first events are the ledger trigger's)."""
        mark = self.mark
        rows = [
            (job_id, payload, rq_id, search_masked, *bound.shared)
            for job_id, rq_id, (payload, search_masked) in zip(ids, rq_ids, bound.own, strict=True)
        ]
        one = f"({', '.join([mark] * len(_JOB_COLUMNS))})"
        head = f"INSERT INTO jobs ({', '.join(_JOB_COLUMNS)}) VALUES "
        if conn.dialect.name == "sqlite" and len(rows) > 1:
            # Many rows per statement: SQLite's FTS5 index (migration 0003) writes a segment at the end of
            # every statement its trigger ran in, so one statement per row made bulk inserts half as fast.
            for start in range(0, len(rows), _ROWS_PER_INSERT):
                chunk = rows[start:start + _ROWS_PER_INSERT]
                conn.exec_driver_sql(head + ", ".join([one] * len(chunk)), tuple(v for row in chunk for v in row))
        else:
            conn.exec_driver_sql(head + one, rows)

    def copy(self, conn: Connection, ids: Sequence[int], rq_ids: Sequence[str], bound: _Bound) -> None:
        """``insert`` through COPY (psycopg 3 on PostgreSQL): one statement for the jobs instead of a statement
        per row, so that the ledger's statement-level triggers (text index, first events) run once.
        The values are the ones ``insert`` binds, dumped by the same psycopg adapters."""
        dbapi: Any = conn.connection.driver_connection
        shared = bound.shared
        try:
            with dbapi.cursor() as cur, cur.copy(f"COPY jobs ({', '.join(_JOB_COLUMNS)}) FROM STDIN") as copy:
                write = copy.write_row
                for job_id, rq_id, (payload, search_masked) in zip(ids, rq_ids, bound.own, strict=True):
                    write((job_id, payload, rq_id, search_masked, *shared))
        except conn.dialect.loaded_dbapi.Error as exc:
            # As SQLAlchemy reports a failed statement (the transaction is rolled back by the caller).
            raise driver_error(conn.dialect, exc, "COPY") from exc


def _same(value: Any) -> Any:
    return value


def _timeout_of(task: str) -> int | None:
    spec = find_task(task)
    return spec.timeout if spec else None


class JobBook:
    """The ledger's job records and their delivery through the transport."""

    def __init__(self, settings: Settings, ledger: Ledger, transport: Transport) -> None:
        self.settings = settings
        self.ledger = ledger
        self.transport = transport
        self.rules = MaskingRules(ledger, settings.sensitive_keys)
        self.masking_rule = self.rules.rule
        self._binder: _Binder | None = None

    @property
    def binder(self) -> _Binder:
        if self._binder is None:
            self._binder = _Binder(self.ledger.engine.dialect)
        return self._binder

    # -- masking ------------------------------------------------------------------------------
    def search_masked(self, task: str, payload: Any, error_detail: str | None) -> str:
        """Payload and error text as a non-administrator may search them."""
        return self.masking_rule(task).search_text(payload, error_detail)

    def scrub(self, task: str, payload: Any, text: str, limit: int | None = None, *, keep: str = "head") -> str:
        """Text a task produced, as the ledger may keep it: made storable, the job's secrets masked, and only
        then cut to ``limit`` characters (its start, or its end with ``keep="tail"``), so that a cut never
        leaves part of a secret behind."""
        masked = self.masking_rule(task).mask_text(validate.clean_text(text), payload)
        if limit is None or len(masked) <= limit:
            return masked
        return masked[:limit] if keep == "head" else masked[-limit:]

    # -- create -------------------------------------------------------------------------------
    def prepare(self, task: str, payload: Any = None, **options: Any) -> Job:
        """Validate everything and build the record, touching nothing: bad input loses nothing.
        ``options`` are those of ``prepare_rows``."""
        [row] = self.prepare_rows(task, [payload], **options)
        return Job(**row)

    def prepare_rows(
        self,
        task: str,
        payloads: Sequence[Any],
        *,
        account: str | None = None,
        priority: str | None = None,
        delay: float | timedelta | None = None,
        max_attempts: int | None = None,
        schedule_id: int | None = None,
        originating_user_id: int | None = None,
        retention_days: float | None = None,
        now: datetime | None = None,
    ) -> list[dict[str, Any]]:
        """``prepare`` for many payloads of one task, as plain column values (no ORM objects): every
        column but the payload and its masked search text is the same for the whole batch."""
        spec = get_task(task)
        self.rules.ensure_published(spec)
        account = validate.account(account)
        if not isinstance(payloads, list | tuple):
            raise ValidationError(
                f"payloads={validate.describe(payloads)} is not valid; give a list of payloads, one per job"
            )
        budget = check_max_attempts(
            max_attempts if max_attempts is not None else spec.max_attempts or self.settings.default_max_attempts
        )
        now = now or utcnow()
        scheduled_for = now + timedelta(seconds=parse_delay(delay))
        priority = check_priority(priority or spec.priority)
        limit, depth = self.settings.payload_max_bytes, self.settings.payload_max_depth
        rule = self.masking_rule(task)
        rows = []
        for payload in payloads:
            refuse_masks(payload, encode_payload(payload, limit, depth=depth))
            rows.append(
                {
                    "task": task,
                    "payload": payload,
                    "state": State.QUEUED.value,
                    "attempts": 0,
                    "max_attempts": budget,
                    "scheduled_for": scheduled_for,
                    "priority": priority,
                    "schedule_id": schedule_id,
                    "originating_user_id": originating_user_id,
                    "account": account,
                    "created_at": now,
                    "updated_at": now,
                    "cancel_requested": False,
                    "run": 1,
                    "enqueue_seq": 0,
                    "retention_days": retention_days,
                    "search_masked": rule.search_text(payload),
                }
            )
        return rows

    def insert(self, session: Session, jobs: Sequence[Job]) -> list[Delivery]:
        """Add prepared jobs in the caller's transaction; returns their deliveries to send after commit."""
        session.add_all(jobs)
        session.flush()
        return [self.next_delivery(job) for job in jobs]

    def create(self, jobs: Sequence[Job]) -> list[int]:
        with self.ledger.write() as session:
            deliveries = self.insert(session, jobs)
            ids = [job.id for job in jobs]
        self.send(deliveries)
        return ids

    def create_rows(self, rows: Sequence[dict[str, Any]]) -> list[int]:
        """Record rows from ``prepare_rows`` and send their deliveries: the enqueue path.

        On PostgreSQL one row is one statement outside a transaction block (``_pg_enqueue_one``): one
        round trip. A batch takes its ids before the insert (a sequence range on PostgreSQL; past the
        largest id under SQLite's write lock) so that each row goes in once, with its delivery id: by
        COPY on PostgreSQL through psycopg 3, otherwise one executemany. Deliveries go to Redis only
        after the ledger has committed.
        """
        if not rows:
            return []
        dialect = self.ledger.engine.dialect
        if dialect.name not in ("sqlite", "postgresql"):
            return self.create([Job(**row) for row in rows])
        bound = self.binder.bind(rows)
        if len(rows) == 1 and dialect.name == "postgresql" and dialect.driver in _PG_ONE_DRIVERS:
            ids = [self._insert_one_pg(bound)]
            rq_ids = [self.transport.rq_job_id(ids[0], 1)]
        else:
            ids, rq_ids = self._insert_batch(bound, len(rows))
        timeout = _timeout_of(rows[0]["task"])
        priority, at = rows[0]["priority"], rows[0]["scheduled_for"]  # shared by the batch
        self.send([Delivery(job_id, rq_id, priority, at, timeout) for job_id, rq_id in zip(ids, rq_ids, strict=True)])
        return ids

    def _insert_one_pg(self, bound: _Bound) -> int:
        head, tail = self.transport.rq_job_id_around(1)
        [(payload, search_masked)] = bound.own
        sql = _PG_ENQUEUE_ONE[self.settings.enqueue_synchronous_commit]
        with self.ledger.autocommit_dbapi() as dbapi, dbapi.cursor() as cur:
            cur.execute(sql, (payload, head, tail, search_masked, *bound.shared))
            [job_id] = cur.fetchone()
        return int(job_id)

    def _insert_batch(self, bound: _Bound, n: int) -> tuple[list[int], list[str]]:
        dialect = self.ledger.engine.dialect
        with self.ledger.write_conn() as conn:
            if dialect.name == "postgresql":
                if not self.settings.enqueue_synchronous_commit:
                    conn.exec_driver_sql("SET LOCAL synchronous_commit = off")
                ids = [int(i) for i in conn.scalars(_PG_NEXT_IDS, {"n": n})]
            else:
                start = int(conn.exec_driver_sql("SELECT max(id) FROM jobs").scalar() or 0) + 1
                ids = list(range(start, start + n))
            rq_ids = [self.transport.rq_job_id(job_id, 1) for job_id in ids]
            if dialect.name == "postgresql" and dialect.driver == "psycopg":
                self.binder.copy(conn, ids, rq_ids, bound)
            else:
                self.binder.insert(conn, ids, rq_ids, bound)
        return ids, rq_ids

    # -- state and delivery ---------------------------------------------------------------------
    @staticmethod
    def move(job: Job, target: State | str, now: datetime) -> None:
        """Change a job's state as the state machine allows. The ledger's state-change trigger records the
        change with its time (``updated_at``) when the row is written: no caller writes the event."""
        check_transition(job.state, target, job_id=job.id)
        job.state = str(target)
        job.updated_at = now

    def next_delivery(self, job: Job, at: datetime | None = None) -> Delivery:
        """Give the job a fresh RQ job id; only that delivery may claim its next attempt."""
        job.enqueue_seq = (job.enqueue_seq or 0) + 1
        job.rq_job_id = self.transport.rq_job_id(job.id, job.enqueue_seq)
        when = at if at is not None else job.scheduled_for
        return Delivery(job.id, job.rq_job_id, job.priority, when, _timeout_of(job.task))

    def send(self, deliveries: Sequence[Delivery]) -> None:
        """Hand deliveries to RQ; if Redis is down the ledger keeps them and reconcile sends them later."""
        if not deliveries:
            return
        try:
            self.transport.send_many(deliveries)
        except redis.RedisError as exc:
            log.warning("Redis refused %d deliveries (%s); reconcile will re-send them", len(deliveries), exc)

    def withdraw(self, rq_job_ids: Sequence[str | None]) -> None:
        try:
            self.transport.remove(rq_job_ids)
        except redis.RedisError as exc:
            log.warning("could not withdraw deliveries %s: %s", rq_job_ids, exc)

    def requeue(self, job: Job, now: datetime, *, fresh_run: bool) -> Delivery:
        """Move a job back to queued, due now; a fresh run clears the attempt counter."""
        self.move(job, State.QUEUED, now)
        if fresh_run:
            job.run = (job.run or 1) + 1
            job.attempts = 0
        job.scheduled_for = now
        job.cancel_requested = False
        job.lease_until = None
        return self.next_delivery(job)

    # -- failure and retry ----------------------------------------------------------------------
    def after_failed_attempt(
        self, session: Session, job: Job, now: datetime, code: str, detail: str, log_text: str | None
    ) -> Delivery | None:
        """Record a failed attempt's error on a running job and decide: cancelled, retrying, dead-letter or failed."""
        code = validate.clean_text(code)[: validate.ERROR_CODE_CHARS]
        job.last_error_code = code
        # Masked first, then cut: a cut through a secret would otherwise keep part of it.
        job.last_error_detail = self.scrub(job.task, job.payload, detail, DETAIL_LIMIT)
        if log_text:
            entry = f"--- run {job.run} attempt {job.attempts} at {now.isoformat()} [{code}]\n"
            entry += self.scrub(job.task, job.payload, log_text.rstrip(), ERROR_LOG_LIMIT, keep="tail") + "\n"
            job.error_log = ((job.error_log or "") + entry)[-ERROR_LOG_LIMIT:]
        job.search_masked = self.search_masked(job.task, job.payload, job.last_error_detail)
        job.lease_until = None
        if job.cancel_requested:
            # A cancelled job is not retried, whatever its last attempt did.
            self.move(job, State.CANCELLED, now)
            return None
        self.move(job, State.FAILED, now)
        spec = find_task(job.task)
        if job.attempts < job.max_attempts:
            self.move(job, State.RETRYING, now)
            wait = spec.backoff_seconds(job.attempts) if spec else 0.0
            job.scheduled_for = now + timedelta(seconds=wait)
            return self.next_delivery(job)
        if spec is None or spec.dead_letter:
            self.move(job, State.DEAD_LETTER, now)
        return None

    def recover_lost(self, now: datetime | None = None) -> int:
        """Record running attempts whose lease expired as worker-lost and retry them under budget.

        On PostgreSQL nothing is recovered until the server has been up for a whole lease (``worker_lost_after``):
        after a restart, the workers that lived through it renew their leases and write the outcomes they held
        first (docs/fencing.md)."""
        now = now or utcnow()
        with self.ledger.read() as session:
            if self.ledger.engine.dialect.name == "postgresql":
                uptime = session.execute(text(statements.PG_UPTIME)).scalar()
                if uptime is not None and float(uptime) < self.settings.worker_lost_after:
                    return 0
            ids = session.scalars(statements.expired_core(now)).all()
        recovered = 0
        for job_id in ids:
            delivery = None
            with self.ledger.write() as session:
                # Locked and checked again: another pass, or the attempt's own outcome, may have won meanwhile.
                job = session.get(Job, job_id, with_for_update=True, populate_existing=True)
                if job is None or job.state != State.RUNNING.value or job.lease_until is None or job.lease_until >= now:
                    continue
                detail = (
                    f"worker {job.worker or '?'} stopped renewing its lease "
                    f"(worker_lost_after={self.settings.worker_lost_after}s)"
                )
                delivery = self._lose_attempt(session, job, now, detail)
                recovered += 1
            if delivery:
                self.send([delivery])
        return recovered

    def record_lost(self, job_id: int, run: int, attempt: int, detail: str) -> bool:
        """Record attempt (``run``, ``attempt``) of a job as worker-lost now, if it still holds the job
        (its worker saw it die); False when it no longer does."""
        now = utcnow()
        with self.ledger.write() as session:
            job = session.get(Job, job_id, with_for_update=True)
            if job is None or job.state != State.RUNNING.value or job.run != run or job.attempts != attempt:
                return False
            delivery = self._lose_attempt(session, job, now, detail)
        if delivery:
            self.send([delivery])
        return True

    def record_failure(
        self, job_id: int, run: int, attempt: int, exit: str, code: str, detail: str, log_text: str | None
    ) -> str | None:
        """Record attempt (``run``, ``attempt``) of a job as ended by ``exit`` (failed, timeout) with its error, if
        it still holds the job, and send its retry; returns the job's new state, None when the attempt no longer
        holds the job (it was recorded lost meanwhile)."""
        now = utcnow()
        with self.ledger.write() as session:
            job = session.get(Job, job_id, with_for_update=True)
            if job is None or job.state != State.RUNNING.value or job.run != run or job.attempts != attempt:
                return None
            delivery = self.fail_attempt(session, job, now, exit, code, detail, log_text)
            state = job.state
        if delivery:
            self.send([delivery])
        return state

    def _lose_attempt(self, session: Session, job: Job, now: datetime, detail: str) -> Delivery | None:
        return self.fail_attempt(session, job, now, "worker-lost", "worker-lost", detail, detail)

    def fail_attempt(
        self, session: Session, job: Job, now: datetime, exit: str, code: str, detail: str, log_text: str | None
    ) -> Delivery | None:
        """Finish a running job's current attempt as ``exit`` with its error, and decide what comes next
        (``after_failed_attempt``); the attempt keeps the start of the job's masked error detail."""
        run, number = job.run, job.attempts
        delivery = self.after_failed_attempt(session, job, now, code, detail, log_text)
        session.execute(
            update(ATTEMPTS)
            .where(ATTEMPTS.c.job_id == job.id, ATTEMPTS.c.run == run, ATTEMPTS.c.number == number)
            .values(finished_at=now, exit=exit, error_code=job.last_error_code,
                    error=(job.last_error_detail or "")[:ATTEMPT_ERROR_CHARS])
        )
        return delivery

    def reconcile(self, batch: int = 2000) -> int:
        """Re-send every queued or retrying job whose delivery no longer leads to an attempt (Redis lost it,
        or the worker that took it died before claiming), unless its task or queue is paused; returns how
        many."""
        resent = 0
        last_id = 0
        while True:
            with self.ledger.read() as session:
                rows = session.execute(
                    select(Job.id, Job.rq_job_id)
                    # A paused task's or queue's jobs wait without a delivery; resuming sends them one.
                    .where(Job.state.in_(WAITING_VALUES), Job.id > last_id, ~paused_condition())
                    .order_by(Job.id)
                    .limit(batch)
                ).all()
            if not rows:
                return resent
            last_id = rows[-1].id
            present = self.transport.held([r.rq_job_id for r in rows])
            lost = [r for r, ok in zip(rows, present, strict=True) if not ok]
            deliveries = []
            with self.ledger.write() as session:
                for row in lost:
                    # Compare-and-set on the delivery id: of two reconcilers, one re-sends.
                    job = session.get(Job, row.id, with_for_update=True, populate_existing=True)
                    if job is None or job.state not in WAITING or job.rq_job_id != row.rq_job_id:
                        continue
                    deliveries.append(self.next_delivery(job))
            self.send(deliveries)
            resent += len(deliveries)


def renew_leases(ledger: Ledger, attempts: Sequence[tuple[int, int, int]], until: datetime) -> set[int]:
    """Renew the leases of the attempts (job, run, attempt) this process is running, each only while the ledger
    still holds it; returns the job ids renewed (a missing one has been recorded lost, or has ended)."""
    if not attempts:
        return set()
    with ledger.write_conn() as conn:
        if conn.dialect.name != "sqlite" or (conn.dialect.server_version_info or (0,)) >= (3, 35):
            return {int(i) for i in conn.execute(statements.renew_core(attempts, until)).scalars()}
        conn.execute(statements.renew_sqlite_without_returning(attempts, until))
        return {int(i) for i in conn.execute(statements.holding_core(attempts)).scalars()}
