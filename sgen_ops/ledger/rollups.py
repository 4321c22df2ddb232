"""Rollups of the statistics: event counts and attempt histograms per hour and per day, task and account.

Rolled up by id, not by time (see docs/archive.md): ``rollup_marks`` says up to which event and attempt id
everything is counted; the rows after the marks are the open part, read raw. ``roll`` advances the marks
to a safe point (no lower id can still commit), so nothing is missed and nothing counted twice; the
archiver folds the open rows it moves in through ``fold``, under the same lock (the marks row).

Histograms bin values as DDSketch does, within a relative error of ``ALPHA``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import ColumnElement, and_, delete, func, insert, or_, select, text, tuple_, update
from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import Session

from ..core.states import State
from ..core.times import as_utc, utcnow
from .store import (
    ArchivedHour,
    Attempt,
    AttemptHistogram,
    EventCount,
    Job,
    JobEvent,
    Ledger,
    RollupMark,
    RollupPendingAttempt,
)

log = logging.getLogger(__name__)

HOUR = 3600
DAY = 86400
SPANS = (HOUR, DAY)
MARK = "rollups"
# Event target states the throughput counts.
COUNTED_STATES = (State.SUCCEEDED.value, State.FAILED.value, State.DEAD_LETTER.value, State.CANCELLED.value)
KINDS = ("run", "wait")
# Relative error of a value read back from a histogram bin.
ALPHA = 0.01
GAMMA = (1 + ALPHA) / (1 - ALPHA)
_LOG_GAMMA = math.log(GAMMA)
# Values below this (zero, and negative waits from skewed clocks) go to the zero bin, read back as 0.
MIN_VALUE = 1e-6
ZERO_BIN = -(2**31)
_BINS = np.dtype([("bin", "<i4"), ("count", "<i8")])
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Ids per roll-up transaction.
BATCH = 50_000
# PostgreSQL: how long a pass waits for the writers in flight before it gives up until the next one.
LOCK_TIMEOUT = "2s"


# -- histograms -------------------------------------------------------------------------------------
def bins_of(values: np.ndarray) -> np.ndarray:
    """The bin of each value (seconds): ``ceil(log_gamma(v))``, or ZERO_BIN below MIN_VALUE."""
    values = np.asarray(values, dtype="float64")
    out = np.full(values.shape, ZERO_BIN, dtype="int64")
    big = values >= MIN_VALUE
    out[big] = np.ceil(np.log(values[big]) / _LOG_GAMMA)
    return out.astype("int32")


def values_of(bins: np.ndarray) -> np.ndarray:
    """The value each bin stands for: within ALPHA of every value in it (0 for the zero bin)."""
    bins = np.asarray(bins, dtype="int64")
    out = np.zeros(bins.shape, dtype="float64")
    real = bins != ZERO_BIN
    out[real] = 2.0 * np.power(GAMMA, bins[real].astype("float64")) / (GAMMA + 1.0)
    return out


def pack(bins: np.ndarray, counts: np.ndarray) -> bytes:
    packed = np.empty(len(bins), dtype=_BINS)
    packed["bin"], packed["count"] = bins, counts
    return packed.tobytes()


def unpack(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    packed = np.frombuffer(data, dtype=_BINS)
    return packed["bin"], packed["count"]


def merge(parts: Iterable[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Histograms added up: sorted bins and their counts."""
    parts = list(parts)
    if not parts:
        return np.zeros(0, dtype="int32"), np.zeros(0, dtype="int64")
    bins = np.concatenate([b for b, _ in parts]).astype("int64")
    counts = np.concatenate([c for _, c in parts]).astype("int64")
    unique, inverse = np.unique(bins, return_inverse=True)
    return unique.astype("int32"), np.bincount(inverse, weights=counts, minlength=len(unique)).astype("int64")


def histogram(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    unique, counts = np.unique(bins_of(values), return_counts=True)
    return unique.astype("int32"), counts.astype("int64")


def quantile(bins: np.ndarray, counts: np.ndarray, q: float) -> float:
    """The q-quantile as pandas computes it (linear between the order statistics around q(n-1)), each order
    statistic read from its bin: between the exact ones, widened by ALPHA. NaN for no values."""
    n = int(counts.sum())
    if n == 0:
        return math.nan
    position = q * (n - 1)
    low = math.floor(position)
    cumulative = np.cumsum(counts)
    below = values_of(bins[[int(np.searchsorted(cumulative, low, side="right")),
                            int(np.searchsorted(cumulative, min(low + 1, n - 1), side="right"))]])
    return float(below[0] + (position - low) * (below[1] - below[0]))


# -- buckets ---------------------------------------------------------------------------------------
def floor_to(moment: datetime, span: int) -> datetime:
    """The start of the ``span``-second bucket (aligned on 1970, so days start at midnight UTC) holding it."""
    steps = (as_utc(moment) - EPOCH) // timedelta(seconds=span)
    return EPOCH + steps * timedelta(seconds=span)


def ceil_to(moment: datetime, span: int) -> datetime:
    start = floor_to(moment, span)
    return start if start == as_utc(moment) else start + timedelta(seconds=span)


def stored_account(account: str | None) -> str:
    """Rollup keys cannot be NULL: no account is kept as ''."""
    return account or ""


def shown_account(account: str) -> str | None:
    return account or None


# -- the marks --------------------------------------------------------------------------------------
def lock_marks(session: Session) -> RollupMark:
    """The marks row, locked until the transaction ends: roll-ups and archive deletes take turns on it."""
    found = session.scalars(select(RollupMark).where(RollupMark.name == MARK).with_for_update()).first()
    if found is None:  # a ledger whose row was removed by hand: start counting again
        found = RollupMark(name=MARK, events_through=0, attempts_through=0)
        session.add(found)
        session.flush()
    return found


@dataclass(frozen=True)
class Marks:
    events_through: int
    attempts_through: int


def read_marks(session: Session) -> Marks:
    row = session.execute(
        select(RollupMark.events_through, RollupMark.attempts_through).where(RollupMark.name == MARK)
    ).first()
    return Marks(int(row[0]), int(row[1])) if row is not None else Marks(0, 0)


def pending_ids() -> ColumnElement[bool]:
    """Attempts rolled up while unfinished, still to be counted."""
    return Attempt.id.in_(select(RollupPendingAttempt.attempt_id))


def _safe_ids(ledger: Ledger) -> tuple[int, int] | None:
    """The highest event and attempt ids below which no row can still commit; None if the writers in flight
    did not finish within LOCK_TIMEOUT (PostgreSQL)."""
    newest = (select(func.coalesce(func.max(JobEvent.id), 0)), select(func.coalesce(func.max(Attempt.id), 0)))
    if ledger.engine.dialect.name != "postgresql":
        # SQLite's writers take turns: an id below the highest committed one is committed.
        with ledger.read() as session:
            return int(session.scalar(newest[0]) or 0), int(session.scalar(newest[1]) or 0)
    try:
        with ledger.engine.begin() as conn:
            conn.execute(text(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))
            # Waits for the writers in flight and holds new ones back a moment: no lower id commits later.
            conn.execute(text("LOCK TABLE job_events, attempts IN SHARE MODE"))
            return int(conn.scalar(newest[0]) or 0), int(conn.scalar(newest[1]) or 0)
    except sa_exc.OperationalError as exc:
        log.info("roll-up deferred: writers held job_events or attempts longer than %s (%s)", LOCK_TIMEOUT,
                 type(exc.orig).__name__)
        return None


# -- adding to the rollups -------------------------------------------------------------------------------
CountKey = tuple[int, datetime, str, str, str]  # span, bucket, task, account, state
HistKey = tuple[int, datetime, str, str, str]  # span, bucket, task, account, kind
Histogram = tuple[np.ndarray, np.ndarray]  # sorted bins, their counts
# Histogram rows over every account, which unscoped reads take (accounts are stripped: none begins with a space).
ALL_ACCOUNTS = " *"


def _epochs(moments: Sequence[datetime]) -> np.ndarray:
    """Whole seconds since 1970 (floored) of aware or naive-UTC datetimes."""
    stamps = pd.to_datetime(pd.Series(list(moments), dtype=object), utc=True, format="mixed")
    return _seconds(stamps)


def _seconds(stamps: pd.Series) -> np.ndarray:
    """Whole seconds since 1970, floored, whatever the Series' time unit."""
    out: np.ndarray = ((stamps - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)).to_numpy().astype("int64")
    return out


def _bucket(epochs: np.ndarray, span: int) -> list[datetime]:
    return [EPOCH + timedelta(seconds=int(e)) for e in epochs // span * span]


def event_counts(rows: Iterable[Any]) -> dict[CountKey, int]:
    """(at, task, account, to_state) rows as additions to ``event_counts``, per key."""
    rows = list(rows)
    if not rows:
        return {}
    at, tasks, accounts, states = zip(*rows, strict=True)
    epochs = _epochs(at)
    frame = pd.DataFrame({"task": tasks, "account": [stored_account(a) for a in accounts], "state": states})
    out: dict[CountKey, int] = {}
    for span in SPANS:
        frame["bucket"] = epochs // span * span
        for (bucket, task, account, state), n in frame.groupby(["bucket", "task", "account", "state"]).size().items():
            out[(span, EPOCH + timedelta(seconds=int(bucket)), task, account, state)] = int(n)
    return out


def add_counts(session: Session, additions: dict[CountKey, int]) -> None:
    """Add to ``event_counts`` (an upsert that adds)."""
    if not additions:
        return
    insert_ = _insert(session)
    rows = [{"span": k[0], "bucket": k[1], "task": k[2], "account": k[3], "state": k[4], "count": n}
            for k, n in additions.items()]
    for start in range(0, len(rows), 500):
        stmt = insert_(EventCount).values(rows[start:start + 500])
        session.execute(stmt.on_conflict_do_update(
            index_elements=["span", "bucket", "task", "account", "state"],
            set_={"count": EventCount.count + stmt.excluded.count},
        ))


def mark_archived(session: Session, kind: str, rows: Iterable[tuple[datetime, str | None]]) -> None:
    """Note the hours (and accounts) of events (``kind`` "event") or attempt starts ("attempt") leaving for the
    archive: a window's end hour among them is counted whole."""
    hours = {(floor_to(at, HOUR), stored_account(account)) for at, account in rows}
    values = [{"kind": kind, "bucket": b, "account": a} for b, a in sorted(hours)]
    for start in range(0, len(values), 500):
        session.execute(_insert(session)(ArchivedHour).values(values[start:start + 500]).on_conflict_do_nothing())


def _insert(session: Session) -> Any:
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert


def attempt_histograms(rows: Iterable[Any]) -> dict[HistKey, Histogram]:
    """(task, account, started_at, ready_at, finished_at) rows of finished attempts as the histograms of their run
    times and queue waits to add, per key: per hour and day of the start, task, and account (and every account)."""
    rows = list(rows)
    if not rows:
        return {}
    tasks, accounts, started, ready, finished = zip(*rows, strict=True)
    start = pd.to_datetime(pd.Series(list(started), dtype=object), utc=True, format="mixed")
    end = pd.to_datetime(pd.Series(list(finished), dtype=object), utc=True, format="mixed")
    due = pd.to_datetime(pd.Series(list(ready), dtype=object), utc=True, format="mixed")
    epochs = _seconds(start)
    own = np.array([stored_account(a) for a in accounts], dtype=object)
    task = np.array(tasks, dtype=object)
    columns: dict[str, list[np.ndarray]] = {"task": [], "account": [], "kind": [], "bin": [], "epoch": []}
    for kind, seconds in (("run", (end - start).dt.total_seconds()), ("wait", (start - due).dt.total_seconds())):
        known = seconds.notna().to_numpy()
        bins = bins_of(seconds[known].to_numpy())
        for account in (own[known], np.full(int(known.sum()), ALL_ACCOUNTS, dtype=object)):
            columns["task"].append(task[known])
            columns["account"].append(account)
            columns["kind"].append(np.full(int(known.sum()), kind, dtype=object))
            columns["bin"].append(bins)
            columns["epoch"].append(epochs[known])
    flat = {name: np.concatenate(parts) for name, parts in columns.items()}
    out: dict[HistKey, Histogram] = {}
    for span in SPANS:
        bucket = flat["epoch"] // span * span
        # One code per key, then per (key, bin): counted with numpy, split at the key boundaries.
        codes, uniques = pd.MultiIndex.from_arrays([bucket, flat["task"], flat["account"], flat["kind"]]).factorize()
        pairs, counts = np.unique(np.stack([codes.astype("int64"), flat["bin"].astype("int64")]), axis=1,
                                  return_counts=True)
        cuts = np.flatnonzero(np.diff(pairs[0])) + 1
        for code_bins, code_counts in zip(np.split(pairs, cuts, axis=1), np.split(counts, cuts), strict=True):
            b, t, a, k = uniques[int(code_bins[0, 0])]
            out[(span, EPOCH + timedelta(seconds=int(b)), t, a, k)] = (
                code_bins[1].astype("int32"), code_counts.astype("int64"))
    return out


def add_histograms(session: Session, adding: dict[HistKey, Histogram]) -> None:
    """Add histograms to ``attempt_histograms`` (read, merge, write: callers hold the marks row)."""
    keys = sorted(adding)
    if not keys:
        return
    columns = (AttemptHistogram.span, AttemptHistogram.bucket, AttemptHistogram.task, AttemptHistogram.account,
               AttemptHistogram.kind)
    found: dict[HistKey, tuple[int, bytes]] = {}
    for start in range(0, len(keys), 300):
        stmt = select(*columns, AttemptHistogram.count, AttemptHistogram.bins).where(
            tuple_(*columns).in_(keys[start:start + 300]))
        for span, bucket, task, account, kind, n, packed in session.execute(stmt):
            found[(span, as_utc(bucket), task, account, kind)] = (int(n), packed)
    inserts: list[dict[str, Any]] = []
    updates: list[dict[str, Any]] = []
    for key in keys:
        new = adding[key]
        old = found.get(key)
        bins, counts = merge([new, unpack(old[1])]) if old is not None else new
        values = {"span": key[0], "bucket": key[1], "task": key[2], "account": key[3], "kind": key[4],
                  "count": int(new[1].sum()) + (old[0] if old is not None else 0), "bins": pack(bins, counts)}
        (updates if old is not None else inserts).append(values)
    if inserts:
        session.execute(insert(AttemptHistogram), inserts)
    if updates:
        session.execute(update(AttemptHistogram), updates)


# -- the roll-up pass ----------------------------------------------------------------------------------
def roll(ledger: Ledger, *, batch: int = BATCH, now: datetime | None = None) -> int:
    """Count the events and attempts committed since the last pass into the rollups; returns how many rows it
    counted. Safe to run from any number of processes at once."""
    safe = _safe_ids(ledger)
    if safe is None:
        return 0
    with ledger.read() as session:
        seen = read_marks(session)
        waiting = session.scalar(select(RollupPendingAttempt.attempt_id).limit(1)) is not None
    if seen.events_through >= safe[0] and seen.attempts_through >= safe[1] and not waiting:
        return 0  # nothing new: no write transaction (on SQLite, none to wait for)
    now = now or utcnow()
    rolled = 0
    while True:
        with ledger.write() as session:
            marks = lock_marks(session)
            low = int(marks.events_through)
            if low >= safe[0]:
                break
            high = min(low + batch, safe[0])
            rows = session.execute(
                select(JobEvent.at, JobEvent.task, JobEvent.account, JobEvent.to_state)
                .where(JobEvent.id > low, JobEvent.id <= high, JobEvent.to_state.in_(COUNTED_STATES))
            ).all()
            add_counts(session, event_counts(rows))
            marks.events_through, marks.rolled_at = high, now
            rolled += len(rows)
    while True:
        with ledger.write() as session:
            marks = lock_marks(session)
            low = int(marks.attempts_through)
            if low >= safe[1]:
                break
            high = min(low + batch, safe[1])
            rows = session.execute(_attempt_rows(Attempt.id > low, Attempt.id <= high)).all()
            unfinished = [r.id for r in rows if r.finished_at is None]
            if unfinished:
                session.execute(_insert(session)(RollupPendingAttempt).values(
                    [{"attempt_id": i} for i in unfinished]).on_conflict_do_nothing())
            add_histograms(session, attempt_histograms(_finished(rows)))
            marks.attempts_through, marks.rolled_at = high, now
            rolled += len(rows) - len(unfinished)
    with ledger.write() as session:
        lock_marks(session)
        rows = session.execute(_attempt_rows(pending_ids(), Attempt.finished_at.is_not(None))).all()
        if rows:
            add_histograms(session, attempt_histograms(_finished(rows)))
            forget_pending(session, [r.id for r in rows])
            rolled += len(rows)
        # Attempts of jobs purged meanwhile are gone: nothing left to count of them.
        session.execute(delete(RollupPendingAttempt).where(
            ~RollupPendingAttempt.attempt_id.in_(select(Attempt.id))))
    return rolled


def _attempt_rows(*where: ColumnElement[bool]) -> Any:
    return (
        select(Attempt.id, Attempt.task, Job.account, Attempt.started_at, Attempt.ready_at, Attempt.finished_at)
        .join(Job, Job.id == Attempt.job_id).where(*where)
    )


def _finished(rows: Sequence[Any]) -> list[tuple[Any, ...]]:
    return [(r.task, r.account, r.started_at, r.ready_at, r.finished_at) for r in rows if r.finished_at is not None]


def forget_pending(session: Session, attempt_ids: Sequence[int]) -> None:
    for start in range(0, len(attempt_ids), 500):
        session.execute(delete(RollupPendingAttempt).where(
            RollupPendingAttempt.attempt_id.in_(attempt_ids[start:start + 500])))


# -- reading: a window as rollup ranges and raw ranges ---------------------------------------------------
@dataclass(frozen=True)
class Plan:
    """How a window ``[start, end]`` is answered.

    ``rolled`` (hour-aligned, half-open) is read from the rollups -- whole days from day rows when
    ``days`` is set, the rest from hour rows -- plus the open rows (id after the marks) inside it;
    ``raw`` (closed ranges) from every raw row. An end hour from which something was archived is read
    whole from the rollups (the window widened to that hour)."""

    start: datetime
    end: datetime
    rolled: tuple[datetime, datetime] | None
    days: tuple[datetime, datetime] | None
    raw: tuple[tuple[datetime, datetime, bool], ...]  # (from, to, to inclusive)

    def hour_ranges(self) -> list[tuple[datetime, datetime]]:
        if self.rolled is None:
            return []
        lo, hi = self.rolled
        if self.days is None:
            return [(lo, hi)]
        return [r for r in ((lo, self.days[0]), (self.days[1], hi)) if r[0] < r[1]]

    def open_range(self) -> tuple[datetime, datetime, bool] | None:
        """The part of the window inside ``rolled``, where rows after the marks are read raw."""
        if self.rolled is None:
            return None
        lo, hi = max(self.rolled[0], self.start), self.rolled[1]
        return (lo, self.end, True) if hi > self.end else (lo, hi, False)


def plan(session: Session, model: Any, start: datetime, end: datetime, account: str | None, *,
         use_days: bool = True) -> Plan:
    """Split ``[start, end]`` for ``model`` (EventCount or AttemptHistogram) as ``Plan`` says."""
    start, end = as_utc(start), as_utc(end)
    hour = timedelta(seconds=HOUR)
    head, tail = floor_to(start, HOUR), floor_to(end, HOUR)
    kind = "event" if model is EventCount else "attempt"
    conds = [ArchivedHour.kind == kind, ArchivedHour.bucket.in_({head, tail})]
    if account is not None:
        conds.append(ArchivedHour.account == stored_account(account))
    archived = {as_utc(b) for b in session.scalars(select(ArchivedHour.bucket).where(*conds).distinct())}
    whole_head, whole_tail = head in archived, tail in archived
    if head == tail:
        if not whole_head:
            return Plan(start, end, None, None, ((start, end, True),))
        lo, hi = head, head + hour
    else:
        lo = head if whole_head else head + hour
        hi = tail + hour if whole_tail else tail
    raw: list[tuple[datetime, datetime, bool]] = []
    if start < lo:
        raw.append((start, lo, False))
    if hi <= end:
        raw.append((hi, end, True))
    if lo >= hi:
        return Plan(start, end, None, None, ((start, end, True),))
    days = None
    if use_days:
        dlo, dhi = ceil_to(lo, DAY), floor_to(hi, DAY)
        if dlo < dhi:
            days = (dlo, dhi)
    return Plan(start, end, (lo, hi), days, tuple(raw))


def archived_hours(session: Session, kind: str, first: datetime, last: datetime, account: str | None) -> (
    set[datetime]
):
    """The hours from ``first`` to ``last`` (hour starts) that some archived events or attempt starts (of
    ``account``, or of any) fell in."""
    conds = [ArchivedHour.kind == kind, ArchivedHour.bucket >= first, ArchivedHour.bucket <= last]
    if account is not None:
        conds.append(ArchivedHour.account == stored_account(account))
    return {as_utc(b) for b in session.scalars(select(ArchivedHour.bucket).where(*conds).distinct())}


def in_range(column: Any, lo: datetime, hi: datetime, inclusive: bool) -> ColumnElement[bool]:
    return and_(column >= lo, column <= hi if inclusive else column < hi)


def rolled_rows(model: Any, p: Plan) -> ColumnElement[bool]:
    """The rollup rows of ``p``: hour rows of its hour ranges, day rows of its days."""
    parts = [and_(model.span == HOUR, model.bucket >= lo, model.bucket < hi) for lo, hi in p.hour_ranges()]
    if p.days is not None:
        parts.append(and_(model.span == DAY, model.bucket >= p.days[0], model.bucket < p.days[1]))
    return or_(*parts) if parts else and_(model.span == -1)
