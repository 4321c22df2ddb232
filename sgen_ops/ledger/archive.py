"""The archive: terminal jobs older than ``archive_after_days`` move, with their attempts and events, from the
live ledger to Parquet files under ``archive_url``, exactly once however a run ends (docs/archive.md).

``run`` is one archive run; ``find`` and ``history`` read the archive back (pyarrow for one job, DuckDB for a
history); ``delete`` removes an archived job (``compact`` drops it from its file); ``runs`` lists the runs.
The ledger's catalogue (``archive_runs``, ``archive_files``, ``archive_deletions``) says what is archived:
a job is in the archive exactly when its file's row is in ``archive_files``.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import pandas as pd
from sqlalchemy import Connection, delete, func, make_url, or_, select, text, update
from sqlalchemy.orm import Session

from ..config import Settings
from ..core.states import State
from ..core.times import as_utc, utcnow
from . import query, rollups
from .store import (
    ATTEMPTS,
    EVENTS,
    JOBS,
    ArchiveDeletion,
    ArchiveFile,
    ArchiveRun,
    Attempt,
    Job,
    JobEvent,
    Ledger,
    RollupPendingAttempt,
)

log = logging.getLogger(__name__)

TERMINAL = (State.SUCCEEDED.value, State.CANCELLED.value, State.RESOLVED.value)
# Jobs per batch: one file per day of the batch, and one delete transaction.
BATCH = 5_000
# SQLite has one writer at a time: after each delete transaction a run waits this many times as long as the
# transaction took, so that workers get the ledger at least half of the time while a run catches up.
SQLITE_PACE = 1.0
DATASET = "jobs"
RUNNING, DONE, INTERRUPTED = "running", "done", "interrupted"
# The worker's bookkeeping stays behind; everything else of a job row is archived.
_LEFT_OUT = frozenset({"rq_job_id", "enqueue_seq", "lease_until", "search_masked"})
JOB_COLUMNS = tuple(c.name for c in JOBS.columns if c.name not in _LEFT_OUT)
ATTEMPT_COLUMNS = ("run", "number", "ready_at", "started_at", "finished_at", "exit", "error_code", "error", "worker")
EVENT_COLUMNS = ("from_state", "to_state", "at")
# What ``history`` returns of each job, ledger and archive alike.
HISTORY_COLUMNS = (
    "id", "task", "state", "account", "priority", "attempts", "max_attempts", "created_at", "updated_at",
    "scheduled_for", "last_error_code", "payload", "archived",
)
_PG_LOCK_CLASS = 0x53474F41  # "SGOA": the archive's advisory lock, per schema
_LOCAL_LOCKS: dict[str, threading.Lock] = {}


# -- where the files go -------------------------------------------------------------------------------
class Store:
    """The archive's files under ``archive_url``: a local directory (owner-only) or any fsspec filesystem."""

    def __init__(self, url: str) -> None:
        import fsspec

        self.url = url
        self.fs, self.root = fsspec.core.url_to_fs(url)
        self.local = "file" in _protocols(self.fs)
        if self.local:
            self.root = os.path.abspath(os.path.expanduser(self.root))

    def path(self, relative: str) -> str:
        return f"{self.root.rstrip('/')}/{relative}"

    def location(self, relative: str) -> str:
        """What DuckDB and pyarrow are given: a local path, or the filesystem's URL."""
        full = self.path(relative)
        return full if self.local else str(self.fs.unstrip_protocol(full))

    def write(self, relative: str, data: bytes) -> None:
        full = self.path(relative)
        if not self.local:
            self.fs.makedirs(full.rsplit("/", 1)[0], exist_ok=True)
            self.fs.pipe_file(full, data)
            return
        directory = os.path.dirname(full)
        _private_dirs(directory, self.root)
        fd = os.open(full, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)  # on disk before the transaction that lists it commits
        finally:
            os.close(fd)
        os.chmod(full, 0o600)

    def read(self, relative: str) -> bytes:
        return bytes(self.fs.cat_file(self.path(relative)))

    def remove(self, relative: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm_file(self.path(relative))

    def listing(self) -> list[str]:
        """Every Parquet file under the dataset, relative to the root."""
        base = self.path(DATASET)
        if not self.fs.exists(base):
            return []
        prefix = self.root.rstrip("/") + "/"
        found = [str(p) for p in self.fs.find(base) if str(p).endswith(".parquet")]
        return [p[len(prefix):] if p.startswith(prefix) else p.lstrip("/")[len(prefix.lstrip("/")):] for p in found]

    def duckdb(self) -> Any:
        import duckdb

        con = duckdb.connect()
        if not self.local:
            con.register_filesystem(self.fs)
        return con


def _protocols(fs: Any) -> set[str]:
    protocol = fs.protocol
    return set(protocol) if isinstance(protocol, tuple | list) else {protocol}


def _private_dirs(directory: str, root: str) -> None:
    """Make ``directory`` (and its parents up to and including ``root``) owner-only."""
    os.makedirs(directory, mode=0o700, exist_ok=True)
    path = directory
    while True:
        os.chmod(path, 0o700)
        if os.path.abspath(path) == os.path.abspath(root) or os.path.dirname(path) == path:
            break
        path = os.path.dirname(path)


# -- one archiver at a time -----------------------------------------------------------------------------
@contextlib.contextmanager
def archive_lock(ledger: Ledger, *, wait: bool = True) -> Iterator[bool]:
    """Held for a whole run: a PostgreSQL session advisory lock (per schema), or an ``flock`` beside the SQLite
    file; both end with the process. Yields False if ``wait`` is False and another archiver holds it."""
    if ledger.engine.dialect.name == "postgresql":
        with ledger.engine.connect() as conn:
            fn = "pg_advisory_lock" if wait else "pg_try_advisory_lock"
            got = conn.execute(text(f"SELECT {fn}(:c, hashtext(current_schema()))"), {"c": _PG_LOCK_CLASS}).scalar()
            conn.commit()
            held = got is not False
            try:
                yield held
            finally:
                if held:
                    conn.execute(text("SELECT pg_advisory_unlock(:c, hashtext(current_schema()))"),
                                 {"c": _PG_LOCK_CLASS})
                    conn.commit()
        return
    database = make_url(ledger.url).database
    if not database or database == ":memory:":
        lock = _LOCAL_LOCKS.setdefault(ledger.url, threading.Lock())
        got = lock.acquire(blocking=wait)
        try:
            yield got
        finally:
            if got:
                lock.release()
        return
    path = f"{database}.archive.lock"
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


# -- which jobs --------------------------------------------------------------------------------------
def cutoff_of(settings: Settings, now: datetime) -> datetime | None:
    """Jobs whose last change is before this are due; None: archiving is off (archive_after_days 0)."""
    after = settings.archive_after_seconds
    return as_utc(now) - timedelta(seconds=after) if after > 0 else None


def due(settings: Settings, now: datetime, dialect: str) -> list[Any]:
    """The conditions of a job due for the archive at ``now``: terminal, last changed before the cutoff, and past
    its own retention (a schedule's) if that is longer."""
    cutoff = cutoff_of(settings, now)
    assert cutoff is not None
    days = settings.archive_after_seconds / 86400.0
    own = or_(Job.retention_days.is_(None), Job.retention_days <= days, ~query.expiry_reached(now, dialect))
    return [Job.state.in_(TERMINAL), Job.updated_at < cutoff, own]


# -- an archive run -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class RunResult:
    """What a run did (or, dry, would do)."""

    run_id: int | None
    jobs: int
    files: int
    cutoff: datetime | None
    dry_run: bool = False


class _Changed(Exception):
    """The batch's jobs changed between reading and deleting them: its files are dropped."""


def run(ledger: Ledger, settings: Settings, *, now: datetime | None = None, dry_run: bool = False,
        batch: int = BATCH, wait: bool = True, stop: threading.Event | None = None) -> RunResult:
    """One archive run: move every due job (see ``due``) to the archive; returns what moved. ``now`` moves the
    horizon (tests, backfills), not the clock of what is recorded. ``wait`` False: skip if another run holds the
    lock; ``stop`` set: end the run after the batch in hand."""
    now = as_utc(now) if now is not None else utcnow()
    cutoff = cutoff_of(settings, now)
    if cutoff is None:
        return RunResult(None, 0, 0, None, dry_run)
    conds = due(settings, now, ledger.engine.dialect.name)
    if dry_run:
        with ledger.read() as session:
            count = int(session.scalar(select(func.count()).select_from(Job).where(*conds)) or 0)
        return RunResult(None, count, 0, cutoff, True)
    store = Store(settings.effective_archive_url)
    with archive_lock(ledger, wait=wait) as held:
        if not held:
            log.info("archive: another run holds the lock; skipped")
            return RunResult(None, 0, 0, cutoff)
        recover(ledger, store)
        compact(ledger, store)
        rollups.roll(ledger)
        with ledger.read() as session:
            if session.scalar(select(Job.id).where(*conds).limit(1)) is None:
                return RunResult(None, 0, 0, cutoff)  # nothing due: no run to record
        jobs_before, bytes_before = ledger_size(ledger)
        with ledger.write() as session:
            record = ArchiveRun(started_at=utcnow(), state=RUNNING, cutoff=cutoff, jobs=0, files=0, bytes=0,
                                ledger_jobs_before=jobs_before, ledger_bytes_before=bytes_before,
                                host=socket.gethostname()[:200], pid=os.getpid())
            session.add(record)
            session.flush()
            run_id = record.id
        moved = files = 0
        skip: set[int] = set()
        number = tries = 0
        while stop is None or not stop.is_set():
            with ledger.read() as session:
                stmt = select(Job.id).where(*conds)
                if skip:
                    stmt = stmt.where(Job.id.not_in(skip))
                ids = list(session.scalars(stmt.order_by(Job.updated_at, Job.id).limit(batch)))
            if not ids:
                break
            number += 1
            try:
                began = time.monotonic()
                done = _move_batch(ledger, store, run_id, number, ids, conds)
                if ledger.is_sqlite and SQLITE_PACE:
                    time.sleep(min(time.monotonic() - began, 10.0) * SQLITE_PACE)
            except _Changed:
                # Changed under us (a re-run, say): the batch's files are gone; what is still due is read again,
                # and a batch that keeps changing is left for the next run.
                tries += 1
                with ledger.read() as session:
                    still = set(session.scalars(select(Job.id).where(Job.id.in_(ids), *conds)))
                skip |= set(ids) - still if tries < 3 else set(ids)
                tries = tries if tries < 3 else 0
                continue
            tries = 0
            moved += done[0]
            files += done[1]
        _finish(ledger, run_id, DONE)
    log.info("archive run %d: %d job(s) before %s in %d file(s)", run_id, moved, cutoff.isoformat(), files)
    return RunResult(run_id, moved, files, cutoff)


def _move_batch(ledger: Ledger, store: Store, run_id: int, number: int, ids: Sequence[int],
                conds: list[Any]) -> tuple[int, int]:
    """Write one batch's files, then delete its jobs and list its files in one transaction."""
    with ledger.read() as session:
        jobs = [dict(r._mapping) for r in session.execute(select(JOBS).where(JOBS.c.id.in_(ids)))]
        attempts = session.execute(select(ATTEMPTS).where(ATTEMPTS.c.job_id.in_(ids))
                                   .order_by(ATTEMPTS.c.job_id, ATTEMPTS.c.run, ATTEMPTS.c.number)).all()
        events = session.execute(select(EVENTS).where(EVENTS.c.job_id.in_(ids)).order_by(EVENTS.c.id)).all()
    if not jobs:
        return 0, 0  # another archiver moved the whole batch after it was chosen
    by_job: dict[int, list[Any]] = defaultdict(list)
    for a in attempts:
        by_job[a.job_id].append(a)
    events_of: dict[int, list[Any]] = defaultdict(list)
    for e in events:
        events_of[e.job_id].append(e)
    by_day: dict[date, list[dict[str, Any]]] = defaultdict(list)
    for job in jobs:
        by_day[as_utc(job["updated_at"]).date()].append(job)
    written: list[ArchiveFile] = []
    try:
        for day, day_jobs in sorted(by_day.items()):
            relative = f"{DATASET}/day={day.isoformat()}/run-{run_id:010d}-{number:05d}.parquet"
            data = _parquet(day_jobs, by_job, events_of)
            store.write(relative, data)
            written.append(ArchiveFile(
                run_id=run_id, path=relative, day=day, jobs=len(day_jobs), bytes=len(data),
                sha256=hashlib.sha256(data).hexdigest(), min_id=min(j["id"] for j in day_jobs),
                max_id=max(j["id"] for j in day_jobs), created_at=utcnow(),
            ))
        expected = {j["id"]: (j["state"], j["run"], j["attempts"], as_utc(j["updated_at"])) for j in jobs}
        with ledger.write() as session:
            marks = rollups.lock_marks(session)
            current = session.execute(
                select(Job.id, Job.state, Job.run, Job.attempts, Job.updated_at)
                .where(Job.id.in_(ids), *conds).with_for_update()
            ).all()
            if {r.id: (r.state, r.run, r.attempts, as_utc(r.updated_at)) for r in current} != expected:
                raise _Changed
            _fold(session, marks, jobs, attempts, events)
            for chunk in _chunks(list(ids)):
                session.execute(delete(Attempt).where(Attempt.job_id.in_(chunk)))
                session.execute(delete(JobEvent).where(JobEvent.job_id.in_(chunk)))
                session.execute(delete(Job).where(Job.id.in_(chunk)), execution_options={"synchronize_session": False})
            session.add_all(written)
            changed = [as_utc(j["updated_at"]) for j in jobs]
            record = session.get(ArchiveRun, run_id, with_for_update=True)
            assert record is not None
            record.jobs += len(jobs)
            record.files += len(written)
            record.bytes += sum(f.bytes for f in written)
            record.oldest = min(as_utc(record.oldest), min(changed)) if record.oldest else min(changed)
            record.newest = max(as_utc(record.newest), max(changed)) if record.newest else max(changed)
    except BaseException:
        for f in written:
            store.remove(f.path)
        raise
    return len(jobs), len(written)


def _fold(session: Session, marks: Any, jobs: list[dict[str, Any]], attempts: Sequence[Any],
          events: Sequence[Any]) -> None:
    """Count the batch's rows that the rollups have not counted yet, and note the hours they leave."""
    through_events, through_attempts = int(marks.events_through), int(marks.attempts_through)
    counted = [e for e in events if e.to_state in rollups.COUNTED_STATES]
    rollups.add_counts(session, rollups.event_counts(
        (e.at, e.task, e.account, e.to_state) for e in counted if e.id > through_events))
    rollups.mark_archived(session, "event", ((e.at, e.account) for e in counted))
    account_of = {j["id"]: j["account"] for j in jobs}
    finished = [a for a in attempts if a.finished_at is not None]
    pending = set(session.scalars(select(RollupPendingAttempt.attempt_id).where(
        RollupPendingAttempt.attempt_id.in_([a.id for a in finished])))) if finished else set()
    rollups.add_histograms(session, rollups.attempt_histograms(
        (a.task, account_of[a.job_id], a.started_at, a.ready_at, a.finished_at)
        for a in finished if a.id > through_attempts or a.id in pending))
    rollups.mark_archived(session, "attempt", ((a.started_at, account_of[a.job_id]) for a in finished))
    rollups.forget_pending(session, sorted(pending))


def _finish(ledger: Ledger, run_id: int, state: str) -> None:
    jobs_after, bytes_after = ledger_size(ledger)
    with ledger.write() as session:
        record = session.get(ArchiveRun, run_id, with_for_update=True)
        assert record is not None
        files = session.execute(select(ArchiveFile.path, ArchiveFile.sha256).where(ArchiveFile.run_id == run_id)
                                .order_by(ArchiveFile.path)).all()
        digest = hashlib.sha256()
        for path, sha in files:
            digest.update(f"{path} {sha}\n".encode())
        record.checksum = digest.hexdigest()
        record.state = state
        record.finished_at = utcnow()
        record.ledger_jobs_after, record.ledger_bytes_after = jobs_after, bytes_after


def recover(ledger: Ledger, store: Store) -> int:
    """After a killed run (callers hold the archive lock): remove every file the catalogue does not list (a
    killed batch's, or a killed rewrite's) and mark unfinished runs interrupted. Returns the files removed."""
    with ledger.read() as session:
        listed = set(session.scalars(select(ArchiveFile.path)))
        unfinished = list(session.scalars(select(ArchiveRun.id).where(ArchiveRun.state == RUNNING)))
    orphans = [p for p in store.listing() if p not in listed]
    for path in orphans:
        store.remove(path)
    for run_id in unfinished:
        _finish(ledger, run_id, INTERRUPTED)
    if orphans or unfinished:
        log.warning("archive: removed %d unlisted file(s), closed %d interrupted run(s)", len(orphans), len(unfinished))
    return len(orphans)


# -- the Parquet files ------------------------------------------------------------------------------
def _schema() -> Any:
    import pyarrow as pa

    moment = pa.timestamp("us", tz="UTC")
    types: dict[str, Any] = {
        "id": pa.int64(), "task": pa.string(), "payload": pa.string(), "state": pa.string(), "attempts": pa.int32(),
        "max_attempts": pa.int32(), "scheduled_for": moment, "priority": pa.string(), "schedule_id": pa.int64(),
        "originating_user_id": pa.int64(), "account": pa.string(), "created_at": moment, "updated_at": moment,
        "last_error_code": pa.string(), "last_error_detail": pa.string(), "error_log": pa.string(),
        "worker": pa.string(), "cancel_requested": pa.bool_(), "run": pa.int32(), "retention_days": pa.float64(),
        "replayed_from_id": pa.int64(), "replayed_as_id": pa.int64(), "dead_letter_reason": pa.string(),
        "resolution_note": pa.string(),
    }
    attempt = pa.struct([
        ("run", pa.int32()), ("number", pa.int32()), ("ready_at", moment), ("started_at", moment),
        ("finished_at", moment), ("exit", pa.string()), ("error_code", pa.string()), ("error", pa.string()),
        ("worker", pa.string()),
    ])
    event = pa.struct([("from_state", pa.string()), ("to_state", pa.string()), ("at", moment)])
    fields = [pa.field(name, types[name]) for name in JOB_COLUMNS]
    fields += [pa.field("attempt_history", pa.list_(attempt)), pa.field("events", pa.list_(event))]
    return pa.schema(fields)


def _parquet(jobs: list[dict[str, Any]], attempts: dict[int, list[Any]], events: dict[int, list[Any]]) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = []
    for job in sorted(jobs, key=lambda j: j["id"]):
        row = {name: job[name] for name in JOB_COLUMNS}
        row["payload"] = json.dumps(job["payload"], ensure_ascii=False, separators=(",", ":"))
        row["attempt_history"] = [{c: getattr(a, c) for c in ATTEMPT_COLUMNS} for a in attempts.get(job["id"], [])]
        row["events"] = [{c: getattr(e, c) for c in EVENT_COLUMNS} for e in events.get(job["id"], [])]
        rows.append(row)
    table = pa.Table.from_pylist(rows, schema=_schema())
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd")
    return sink.getvalue()


# -- reading the archive back -----------------------------------------------------------------------
def find(ledger: Ledger, settings: Settings, job_id: int) -> dict[str, Any] | None:
    """The archived record of one job (payload parsed, ``attempt_history`` and ``events`` as lists of dicts),
    or None if it is not in the archive (or was deleted from it)."""
    import pyarrow.parquet as pq

    store = Store(settings.effective_archive_url)
    for _ in range(3):  # a file rewritten meanwhile: read the catalogue again
        with ledger.read() as session:
            if session.get(ArchiveDeletion, job_id) is not None:
                return None
            paths = list(session.scalars(select(ArchiveFile.path).where(
                ArchiveFile.min_id <= job_id, ArchiveFile.max_id >= job_id)))
        try:
            for path in paths:
                table = pq.read_table(store.path(path), filesystem=store.fs, filters=[("id", "=", job_id)])
                if table.num_rows:
                    record: dict[str, Any] = table.to_pylist()[0]
                    record["payload"] = json.loads(record["payload"]) if record["payload"] is not None else None
                    return record
            return None
        except FileNotFoundError:
            continue
    return None


def history(ledger: Ledger, settings: Settings, *, since: datetime | None, until: datetime | None,
            tasks: Sequence[str] | None, states: Sequence[str] | None, account: str | None) -> pd.DataFrame:
    """One row per job, ledger and archive together (``HISTORY_COLUMNS``, payload parsed), ``since``/``until``
    bounding created_at, oldest first. The archive is read through DuckDB over its Parquet files."""
    conds: list[Any] = []
    if since is not None:
        conds.append(Job.created_at >= since)
    if until is not None:
        conds.append(Job.created_at <= until)
    if tasks:
        conds.append(Job.task.in_(tasks))
    if states:
        conds.append(Job.state.in_(states))
    if account is not None:
        conds.append(Job.account == account)
    live_columns = [getattr(Job, c) for c in HISTORY_COLUMNS if c != "archived"]
    with ledger.read() as session:
        live = pd.DataFrame(session.execute(select(*live_columns).where(*conds)).all(),
                            columns=list(HISTORY_COLUMNS[:-1]))
        files = select(ArchiveFile.path)
        if since is not None:
            # A job's last change is at or after its creation: older days hold none created since.
            files = files.where(ArchiveFile.day >= as_utc(since).date())
        paths = list(session.scalars(files.order_by(ArchiveFile.day, ArchiveFile.path)))
        deleted = list(session.scalars(select(ArchiveDeletion.job_id)))
    live["archived"] = False
    archived = _archived_frame(Store(settings.effective_archive_url), paths, deleted, since=since, until=until,
                               tasks=tasks, states=states, account=account)
    frames = [f for f in (live, archived) if not f.empty]
    if not frames:
        return _typed(live)
    out = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    return _typed(out.sort_values(["created_at", "id"], kind="stable").reset_index(drop=True))


def _archived_frame(store: Store, paths: Sequence[str], deleted: Sequence[int], **filters: Any) -> pd.DataFrame:
    if not paths:
        return pd.DataFrame(columns=list(HISTORY_COLUMNS))
    where: list[str] = ["id NOT IN (SELECT unnest(?::BIGINT[]))"]
    params: list[Any] = [list(deleted)]
    for name, column, op in (("since", "created_at", ">="), ("until", "created_at", "<=")):
        if filters[name] is not None:
            where.append(f"{column} {op} ?")
            params.append(as_utc(filters[name]))
    for name, column in (("tasks", "task"), ("states", "state")):
        if filters[name]:
            where.append(f"{column} IN (SELECT unnest(?::VARCHAR[]))")
            params.append(list(filters[name]))
    if filters["account"] is not None:
        where.append("account = ?")
        params.append(filters["account"])
    columns = ", ".join(c for c in HISTORY_COLUMNS if c != "archived")
    sql = f"SELECT {columns}, TRUE AS archived FROM read_parquet(?) WHERE {' AND '.join(where)}"
    con = store.duckdb()
    try:
        con.execute("SET TimeZone = 'UTC'")
        frame: pd.DataFrame = con.execute(sql, [[store.location(p) for p in paths], *params]).df()
    finally:
        con.close()
    frame["payload"] = [json.loads(p) if p is not None else None for p in frame["payload"]]
    return frame


def _typed(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.copy()
    for column in ("created_at", "updated_at", "scheduled_for"):
        frame[column] = pd.to_datetime(frame[column], utc=True)
    return frame.astype({"id": "int64", "attempts": "int64", "max_attempts": "int64", "archived": "bool"})[
        list(HISTORY_COLUMNS)]


# -- deleting from the archive ----------------------------------------------------------------------
def owner_file(ledger: Ledger, settings: Settings, job_id: int) -> int | None:
    """The catalogue id of the file holding ``job_id`` (None: not archived)."""
    import pyarrow.parquet as pq

    store = Store(settings.effective_archive_url)
    with ledger.read() as session:
        files = session.execute(select(ArchiveFile.id, ArchiveFile.path).where(
            ArchiveFile.min_id <= job_id, ArchiveFile.max_id >= job_id)).all()
    for file_id, path in files:
        with contextlib.suppress(FileNotFoundError):
            if pq.read_table(store.path(path), filesystem=store.fs, columns=["id"],
                             filters=[("id", "=", job_id)]).num_rows:
                return int(file_id)
    return None


def compact(ledger: Ledger, store: Store) -> int:
    """Rewrite each file holding deleted jobs without them (callers hold the archive lock); returns how many
    jobs left the files. The catalogue row is swapped in one transaction; the old file is removed after."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    with ledger.read() as session:
        file_ids = list(session.scalars(select(ArchiveDeletion.file_id).distinct()))
    dropped = 0
    for file_id in file_ids:
        with ledger.read() as session:
            old = session.get(ArchiveFile, file_id)
            gone = set(session.scalars(select(ArchiveDeletion.job_id).where(ArchiveDeletion.file_id == file_id)))
        if old is None:
            continue
        table = pq.read_table(store.path(old.path), filesystem=store.fs)
        kept = table.filter(pc.invert(pc.is_in(table["id"], value_set=_id_array(gone))))
        new_path, data = None, b""
        if kept.num_rows:
            new_path = old.path.removesuffix(".parquet") + f"-c{uuid.uuid4().hex[:8]}.parquet"
            sink = io.BytesIO()
            pq.write_table(kept, sink, compression="zstd")
            data = sink.getvalue()
            store.write(new_path, data)
        with ledger.write() as session:
            later = set(session.scalars(select(ArchiveDeletion.job_id).where(
                ArchiveDeletion.file_id == file_id).with_for_update())) - gone
            if new_path is not None:
                ids = kept["id"].to_pylist()
                fresh = ArchiveFile(run_id=old.run_id, path=new_path, day=old.day, jobs=kept.num_rows,
                                    bytes=len(data), sha256=hashlib.sha256(data).hexdigest(), min_id=min(ids),
                                    max_id=max(ids), created_at=utcnow())
                session.add(fresh)
                session.flush()
                # Deleted while this ran: they move to the new file, to be dropped next time.
                session.execute(update(ArchiveDeletion).where(ArchiveDeletion.job_id.in_(later))
                                .values(file_id=fresh.id))
            elif later:
                raise RuntimeError("deleted jobs of an emptied file")  # cannot be: the file held only ``gone``
            session.execute(delete(ArchiveDeletion).where(ArchiveDeletion.file_id == file_id))
            session.execute(delete(ArchiveFile).where(ArchiveFile.id == file_id))
        store.remove(old.path)
        dropped += len(gone)
    return dropped


def _id_array(ids: set[int]) -> Any:
    import pyarrow as pa

    return pa.array(sorted(ids), type=pa.int64())


# -- the runs and the ledger's size -------------------------------------------------------------------
RUN_COLUMNS = (
    "id", "started_at", "finished_at", "state", "cutoff", "oldest", "newest", "jobs", "files", "bytes", "checksum",
    "ledger_jobs_before", "ledger_jobs_after", "ledger_bytes_before", "ledger_bytes_after",
)


def runs(ledger: Ledger, since: datetime | None = None) -> pd.DataFrame:
    """The archive runs, newest first (``RUN_COLUMNS``)."""
    stmt = select(*(getattr(ArchiveRun, c) for c in RUN_COLUMNS))
    if since is not None:
        stmt = stmt.where(ArchiveRun.started_at >= since)
    with ledger.read() as session:
        rows = session.execute(stmt.order_by(ArchiveRun.id.desc())).all()
    frame = pd.DataFrame([tuple(r) for r in rows], columns=list(RUN_COLUMNS))
    for column in ("started_at", "finished_at", "cutoff", "oldest", "newest"):
        frame[column] = pd.to_datetime(frame[column], utc=True)
    return frame


@dataclass(frozen=True)
class Summary:
    """What ``sgen-ops info`` shows of the archive."""

    last_run: dict[str, Any] | None
    archived_jobs: int
    files: int
    bytes: int


def summary(ledger: Ledger) -> Summary:
    with ledger.read() as session:
        last = session.scalars(select(ArchiveRun).order_by(ArchiveRun.id.desc()).limit(1)).first()
        jobs, files, size = session.execute(select(
            func.coalesce(func.sum(ArchiveFile.jobs), 0), func.count(), func.coalesce(func.sum(ArchiveFile.bytes), 0),
        )).one()
        deleted = int(session.scalar(select(func.count()).select_from(ArchiveDeletion)) or 0)
    record = {c: getattr(last, c) for c in RUN_COLUMNS} if last is not None else None
    return Summary(record, int(jobs) - deleted, int(files), int(size))


def ledger_size(ledger: Ledger) -> tuple[int, int]:
    """(jobs, bytes in use) of the live ledger: SQLite's pages in use, or PostgreSQL's tables with their indexes
    and TOAST in this schema."""
    with ledger.engine.connect() as conn:
        jobs = int(conn.scalar(select(func.count()).select_from(Job)) or 0)
        return jobs, _bytes(conn)


def _bytes(conn: Connection) -> int:
    if conn.dialect.name == "sqlite":
        pages = int(conn.exec_driver_sql("PRAGMA page_count").scalar() or 0)
        free = int(conn.exec_driver_sql("PRAGMA freelist_count").scalar() or 0)
        size = int(conn.exec_driver_sql("PRAGMA page_size").scalar() or 0)
        return (pages - free) * size
    if conn.dialect.name == "postgresql":
        return int(conn.execute(text(
            "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = current_schema() AND c.relkind = 'r'"
        )).scalar() or 0)
    return 0


def _chunks(ids: list[int], size: int = 500) -> Iterator[list[int]]:
    for start in range(0, len(ids), size):
        yield ids[start:start + size]




def claim_deletion(session: Session, job_id: int, file_id: int, now: datetime) -> bool:
    """Delete an archived job held by file ``file_id`` (``owner_file``), in the caller's transaction: reads
    leave it out from the commit on, and the next ``compact`` drops it from its file. False if it is already
    deleted (or its file was rewritten without it meanwhile)."""
    # The file's row, locked: deletions of its jobs and its rewrite take turns.
    if session.scalars(select(ArchiveFile.id).where(ArchiveFile.id == file_id).with_for_update()).first() is None:
        return False
    if session.get(ArchiveDeletion, job_id) is not None:
        return False
    session.add(ArchiveDeletion(job_id=job_id, file_id=file_id, deleted_at=now))
    return True


def compact_now(ledger: Ledger, settings: Settings) -> int:
    """``compact`` at once if no archive run holds the lock (else the next run does it)."""
    store = Store(settings.effective_archive_url)
    with archive_lock(ledger, wait=False) as held:
        return compact(ledger, store) if held else 0
