"""Throughput and timing over a window: from the rollups of what is counted (``rollups``), plus the raw
state-change events and attempts of the rest (the window's partial end hours, and the rows after the
rollups' marks), so that archived jobs still count and months answer as fast as hours.

Throughput counts state-change events, so a job that failed once and then succeeded counts once in each
column, and a dismissed or archived job still counts. ``account`` None means every account; an
account-bound operator passes theirs. See docs/archive.md for how a window is split.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import BigInteger, ColumnElement, cast, func, literal_column, select
from sqlalchemy.orm import Session

from ..core.durations import as_timedelta
from ..core.states import State
from ..core.times import as_utc, utcnow
from ..core.validate import describe
from ..errors import ValidationError
from . import rollups
from .rollups import HOUR, Plan
from .store import Attempt, AttemptHistogram, EventCount, Job, JobEvent, Ledger

# Event target state -> throughput column.
COUNTED = {
    State.SUCCEEDED.value: "succeeded",
    State.FAILED.value: "failed",
    State.DEAD_LETTER.value: "dead_lettered",
    State.CANCELLED.value: "cancelled",
}
THROUGHPUT_COLUMNS = ("succeeded", "failed", "dead_lettered", "cancelled")
GROUPINGS = ("task", "account")
PERCENTILES = (0.5, 0.95, 0.99)
TIMING_COLUMNS = ("task", "attempts", "run_p50", "run_p95", "run_p99", "wait_p50", "wait_p95", "wait_p99")


def _window(window: str | timedelta, now: datetime | None) -> tuple[datetime, datetime]:
    end = as_utc(now) if now is not None else utcnow()
    return end - as_timedelta(window, "window"), end


def _event_scope(account: str | None) -> list[ColumnElement[bool]]:
    conds: list[ColumnElement[bool]] = [JobEvent.to_state.in_(tuple(COUNTED))]
    return [*conds, JobEvent.account == account] if account is not None else conds


def _raw_event_ranges(p: Plan, through: int) -> list[list[ColumnElement[bool]]]:
    """The WHERE clauses of the raw parts of ``p``: each raw range whole, and the open rows of the rolled range
    (one query each, so that each is served by its index)."""
    parts = [[rollups.in_range(JobEvent.at, lo, hi, inclusive)] for lo, hi, inclusive in p.raw]
    opened = p.open_range()
    if opened is not None:
        parts.append([JobEvent.id > through, rollups.in_range(JobEvent.at, *opened)])
    return parts


def _event_counts(
    session: Session, start: datetime, end: datetime, account: str | None, key: str, step: int | None,
) -> list[tuple[Any, Any, str, int]]:
    """(time bucket or None, key value, state, count) for the events inside the window: from the rollups and the
    raw rows, not yet added up. ``step`` (seconds, a whole number of hours) buckets by time."""
    p = rollups.plan(session, EventCount, start, end, account, use_days=step is None or step % rollups.DAY == 0)
    through = rollups.read_marks(session).events_through
    out: list[tuple[Any, Any, str, int]] = []
    raw_key = getattr(JobEvent, key)
    grouped: list[Any] = [raw_key, JobEvent.to_state]
    if step is not None:
        grouped.insert(0, _step_bucket(JobEvent.at, step, session))
    for where in _raw_event_ranges(p, through):
        stmt = select(*grouped, func.count()).where(*_event_scope(account), *where).group_by(*grouped)
        for row in session.execute(stmt):
            values = tuple(row) if step is not None else (None, *row)
            out.append((values[0], values[1], values[2], int(values[3])))
    if p.rolled is not None:
        rolled_key = getattr(EventCount, key)
        conds = [rollups.rolled_rows(EventCount, p)]
        if account is not None:
            conds.append(EventCount.account == rollups.stored_account(account))
        stmt = (select(EventCount.bucket, rolled_key, EventCount.state, func.sum(EventCount.count))
                .where(*conds).group_by(EventCount.bucket, rolled_key, EventCount.state))
        for row in session.execute(stmt):
            b, k, s, n = tuple(row)
            moment = _epoch(as_utc(b)) // step * step if step is not None else None
            value = rollups.shown_account(k) if key == "account" else k
            out.append((moment, value, s, int(n)))
    return out


def _epoch(moment: datetime) -> int:
    return int((moment - rollups.EPOCH) // timedelta(seconds=1))


def _step_bucket(column: Any, step: int, session: Session) -> Any:
    """The start (epoch seconds) of the ``step``-second bucket holding ``column``, floored exactly."""
    if session.get_bind().dialect.name == "sqlite":
        seconds: Any = cast(func.strftime("%s", column), BigInteger)
    else:
        seconds = cast(func.floor(func.extract("epoch", column)), BigInteger)
    return seconds // literal_column(str(step), BigInteger) * literal_column(str(step), BigInteger)


def throughput(
    ledger: Ledger,
    window: str | timedelta = "1h",
    by: str = "task",
    *,
    account: str | None = None,
    now: datetime | None = None,
) -> pd.DataFrame:
    """Per task (or account): succeeded, failed, dead-lettered and cancelled counts inside the window."""
    if not isinstance(by, str) or by not in GROUPINGS:
        raise ValidationError(f"by={describe(by)} is not valid; group by one of: {', '.join(GROUPINGS)}")
    start, end = _window(window, now)
    with ledger.read() as session:
        counts = _event_counts(session, start, end, account, by, None)
    table: dict[Any, dict[str, int]] = {}
    for _, name, state, n in counts:
        row = table.setdefault(name, dict.fromkeys(THROUGHPUT_COLUMNS, 0))
        row[COUNTED[state]] += n
    rows = [{by: name, **table[name]} for name in sorted(table, key=lambda k: (k is None, k or ""))]
    frame = pd.DataFrame(rows, columns=[by, *THROUGHPUT_COLUMNS])
    return frame.astype(dict.fromkeys(THROUGHPUT_COLUMNS, "int64"))


def throughput_series(
    ledger: Ledger,
    window: str | timedelta = "24h",
    interval: str | timedelta = "1h",
    *,
    account: str | None = None,
    now: datetime | None = None,
) -> pd.DataFrame:
    """Long form for charts: one row per (interval start, task, state) with the count of events."""
    step = int(as_timedelta(interval, "interval").total_seconds())
    if step < 1:
        raise ValidationError(f"interval={describe(interval)} must be at least one second")
    start, end = _window(window, now)
    with ledger.read() as session:
        if step % HOUR == 0:
            counts = _event_counts(session, start, end, account, "task", step)
        else:
            counts = _fine_counts(session, start, end, account, step)
    totals: dict[tuple[int, str, str], int] = {}
    for b, t, s, n in counts:
        totals[(int(b), t, s)] = totals.get((int(b), t, s), 0) + n
    frame = pd.DataFrame(
        [{"at": b, "task": t, "state": s, "count": n} for (b, t, s), n in sorted(totals.items()) if n],
        columns=["at", "task", "state", "count"],
    )
    frame["at"] = pd.to_datetime(frame["at"], unit="s", utc=True)
    return frame.astype({"count": "int64"})


def _fine_counts(session: Session, start: datetime, end: datetime, account: str | None, step: int) -> (
    list[tuple[Any, Any, str, int]]
):
    """An interval shorter than the rollups' hour: the raw events of the window by interval, but for the hours
    some events left for the archive, which count whole at the interval holding the hour's start (from the
    rollups, and the rows after their marks)."""
    hours = sorted(rollups.archived_hours(session, "event", rollups.floor_to(start, HOUR), end, account))
    spans = _runs(hours)
    bucket = _step_bucket(JobEvent.at, step, session)
    outside = [~rollups.in_range(JobEvent.at, lo, hi, False) for lo, hi in spans]
    stmt = (select(bucket, JobEvent.task, JobEvent.to_state, func.count())
            .where(*_event_scope(account), rollups.in_range(JobEvent.at, start, end, True), *outside)
            .group_by(bucket, JobEvent.task, JobEvent.to_state))
    out = [(int(b), t, s, int(n)) for b, t, s, n in session.execute(stmt)]
    if not spans:
        return out
    through = rollups.read_marks(session).events_through
    for lo, hi in spans:
        # The hour's start stands for every event of it: its rows after the marks, then its rollups.
        hour = _step_bucket(JobEvent.at, HOUR, session)
        for where in _raw_event_ranges(rollups.Plan(lo, hi, (lo, hi), None, ()), through):
            stmt = (select(hour, JobEvent.task, JobEvent.to_state, func.count())
                    .where(*_event_scope(account), *where).group_by(hour, JobEvent.task, JobEvent.to_state))
            for row in session.execute(stmt):
                h, t, s, n = tuple(row)
                out.append((max(int(h), _epoch(start)) // step * step, t, s, int(n)))
        conds = [EventCount.span == HOUR, EventCount.bucket >= lo, EventCount.bucket < hi]
        if account is not None:
            conds.append(EventCount.account == rollups.stored_account(account))
        rolled = (select(EventCount.bucket, EventCount.task, EventCount.state, func.sum(EventCount.count))
                  .where(*conds).group_by(EventCount.bucket, EventCount.task, EventCount.state))
        for b, t, s, n in session.execute(rolled):
            out.append((max(_epoch(as_utc(b)), _epoch(start)) // step * step, t, s, int(n or 0)))
    return out


def _runs(hours: list[datetime]) -> list[tuple[datetime, datetime]]:
    """Hour starts as half-open ranges of consecutive hours."""
    spans: list[tuple[datetime, datetime]] = []
    for h in hours:
        if spans and spans[-1][1] == h:
            spans[-1] = (spans[-1][0], h + timedelta(seconds=HOUR))
        else:
            spans.append((h, h + timedelta(seconds=HOUR)))
    return spans


def run_time_percentiles(
    ledger: Ledger,
    window: str | timedelta = "24h",
    *,
    account: str | None = None,
    now: datetime | None = None,
) -> pd.DataFrame:
    """Per task, of the finished attempts started inside the window: p50/p95/p99 of run time
    (finished - started) and of queue wait (started - ready), in seconds. Exact while the window is read
    from raw rows alone; from the rollups' histograms within ``rollups.ALPHA`` (see docs/archive.md)."""
    start, end = _window(window, now)
    with ledger.read() as session:
        p = rollups.plan(session, AttemptHistogram, start, end, account)
        marks = rollups.read_marks(session)
        raw = _raw_attempts(session, p, marks.attempts_through, account)
        hist: list[Any] = []
        if p.rolled is not None:
            # Every account's histograms are kept added up too: an unscoped read takes those.
            scope = rollups.stored_account(account) if account is not None else rollups.ALL_ACCOUNTS
            hist = list(session.execute(
                select(AttemptHistogram.task, AttemptHistogram.kind, AttemptHistogram.count, AttemptHistogram.bins)
                .where(rollups.rolled_rows(AttemptHistogram, p), AttemptHistogram.account == scope)))
    if not any(count for _, _, count, _ in hist):
        return _exact_percentiles(raw)
    return _histogram_percentiles(raw, hist)


def _raw_attempts(session: Session, p: Plan, through: int, account: str | None) -> pd.DataFrame:
    """Run time and wait (seconds) of the raw finished attempts of ``p``'s raw ranges and open rows."""
    scope: list[ColumnElement[bool]] = [Attempt.finished_at.is_not(None)]
    if account is not None:
        scope.append(Attempt.job_id.in_(select(Job.id).where(Job.account == account)))
    parts = [[rollups.in_range(Attempt.started_at, lo, hi, inclusive)] for lo, hi, inclusive in p.raw]
    opened = p.open_range()
    if opened is not None:
        window = rollups.in_range(Attempt.started_at, *opened)
        parts.append([Attempt.id > through, window])
        parts.append([rollups.pending_ids(), window])
    rows: list[Any] = []
    for where in parts:
        rows += session.execute(
            select(Attempt.task, Attempt.started_at, Attempt.ready_at, Attempt.finished_at).where(*scope, *where)
        ).all()
    frame = pd.DataFrame(rows, columns=["task", "started_at", "ready_at", "finished_at"])
    if frame.empty:
        return pd.DataFrame({"task": pd.Series(dtype=object), "run": pd.Series(dtype="float64"),
                             "wait": pd.Series(dtype="float64")})
    started = pd.to_datetime(frame["started_at"], utc=True)
    return pd.DataFrame({
        "task": frame["task"],
        "run": (pd.to_datetime(frame["finished_at"], utc=True) - started).dt.total_seconds(),
        "wait": (started - pd.to_datetime(frame["ready_at"], utc=True)).dt.total_seconds(),
    })


def _exact_percentiles(raw: pd.DataFrame) -> pd.DataFrame:
    if raw.empty:
        return pd.DataFrame(columns=list(TIMING_COLUMNS)).astype(_TIMING_DTYPES)
    raw = raw.astype({"run": "float64", "wait": "float64"})
    grouped = raw.groupby("task", sort=True)
    out = pd.DataFrame({"attempts": grouped.size()})
    for column in ("run", "wait"):
        for q in PERCENTILES:
            out[f"{column}_p{round(q * 100)}"] = grouped[column].quantile(q)
    return out.reset_index()[list(TIMING_COLUMNS)].astype(_TIMING_DTYPES)


def _histogram_percentiles(raw: pd.DataFrame, hist: Iterable[Any]) -> pd.DataFrame:
    parts: dict[tuple[str, str], list[tuple[np.ndarray, np.ndarray]]] = {}
    for task, kind, count, bins in hist:
        if count:
            parts.setdefault((task, kind), []).append(rollups.unpack(bins))
    for task, group in raw.groupby("task", sort=False):
        for kind in rollups.KINDS:
            values = group[kind].dropna().to_numpy()
            if len(values):
                parts.setdefault((task, kind), []).append(rollups.histogram(values))
    rows = []
    for task in sorted({t for t, _ in parts}):
        run = rollups.merge(parts.get((task, "run"), []))
        wait = rollups.merge(parts.get((task, "wait"), []))
        row: dict[str, Any] = {"task": task, "attempts": int(run[1].sum())}
        for name, (bins, counts) in (("run", run), ("wait", wait)):
            for q in PERCENTILES:
                row[f"{name}_p{round(q * 100)}"] = rollups.quantile(bins, counts, q)
        rows.append(row)
    return pd.DataFrame(rows, columns=list(TIMING_COLUMNS)).astype(_TIMING_DTYPES)


_TIMING_DTYPES = {"attempts": "int64", **dict.fromkeys(TIMING_COLUMNS[2:], "float64")}
