"""Throughput and timing over a window, counted in SQL from the state-change events and attempts.

Throughput counts ``job_events`` (indexed on at, to_state, task), so a job that failed once and then
succeeded counts once in each column, and a dismissed job still counts. ``account`` None means every
account; an account-bound operator passes theirs.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pandas as pd
from sqlalchemy import ColumnElement, Float, Integer, cast, func, literal_column, select

from ..core.schedule_timing import parse_interval
from ..core.states import State
from ..core.times import utcnow
from ..core.validate import describe
from ..errors import ValidationError
from .query import epoch_seconds
from .store import Attempt, Job, JobEvent, Ledger

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



def parse_window(window: str | float | timedelta, name: str = "window") -> timedelta:
    """'15m', '1h', '24h', '7d', '1h30m' (the units of schedule intervals), seconds, or a timedelta; from
    1 second up to 3650 days."""
    return timedelta(seconds=parse_interval(window, name))


def _counted_events(start: datetime, end: datetime, account: str | None) -> list[ColumnElement[bool]]:
    conds = [JobEvent.at >= start, JobEvent.at <= end, JobEvent.to_state.in_(tuple(COUNTED))]
    return [*conds, JobEvent.account == account] if account is not None else conds


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
    end = now or utcnow()
    start = end - parse_window(window)
    key = JobEvent.task if by == "task" else JobEvent.account
    stmt = select(key, JobEvent.to_state, func.count()).where(*_counted_events(start, end, account))
    with ledger.read() as session:
        counts = session.execute(stmt.group_by(key, JobEvent.to_state)).all()
    table: dict[Any, dict[str, int]] = {}
    for name, state, n in counts:
        table.setdefault(name, dict.fromkeys(THROUGHPUT_COLUMNS, 0))[COUNTED[state]] = int(n)
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
    step = int(parse_window(interval, "interval").total_seconds())
    if step < 1:
        raise ValidationError(f"interval={describe(interval)} must be at least one second")
    end = now or utcnow()
    start = end - parse_window(window)
    dialect = ledger.engine.dialect.name
    # Integer division buckets the events in SQL; the literal keeps GROUP BY and SELECT identical.
    bucket = cast(epoch_seconds(JobEvent.at, dialect), Integer) // literal_column(str(step), Integer)
    stmt = select(bucket, JobEvent.task, JobEvent.to_state, func.count()).where(
        *_counted_events(start, end, account)
    )
    with ledger.read() as session:
        rows = session.execute(
            stmt.group_by(bucket, JobEvent.task, JobEvent.to_state).order_by(bucket, JobEvent.task)
        ).all()
    frame = pd.DataFrame(
        [{"at": int(b) * step, "task": t, "state": s, "count": int(n)} for b, t, s, n in rows],
        columns=["at", "task", "state", "count"],
    )
    frame["at"] = pd.to_datetime(frame["at"], unit="s", utc=True)
    return frame.astype({"count": "int64"})


def _seconds_between(later: Any, earlier: Any, dialect: str) -> Any:
    return cast(epoch_seconds(later, dialect) - epoch_seconds(earlier, dialect), Float)


def run_time_percentiles(
    ledger: Ledger,
    window: str | timedelta = "24h",
    *,
    account: str | None = None,
    now: datetime | None = None,
) -> pd.DataFrame:
    """Per task, of the finished attempts started inside the window: p50/p95/p99 of run time
    (finished - started) and of queue wait (started - ready), in seconds."""
    end = now or utcnow()
    start = end - parse_window(window)
    dialect = ledger.engine.dialect.name
    run = _seconds_between(Attempt.finished_at, Attempt.started_at, dialect)
    wait = _seconds_between(Attempt.started_at, Attempt.ready_at, dialect)
    conds = [Attempt.started_at >= start, Attempt.started_at <= end, Attempt.finished_at.is_not(None)]
    if account is not None:
        conds.append(Attempt.job_id.in_(select(Job.id).where(Job.account == account)))
    with ledger.read() as session:
        if dialect == "postgresql":
            # PostgreSQL computes the percentiles itself; percentile_cont interpolates as pandas does.
            aggregates: list[ColumnElement[Any]] = [func.count()]
            for expr in (run, wait):
                aggregates += [func.percentile_cont(q).within_group(expr) for q in PERCENTILES]
            rows = session.execute(
                select(Attempt.task, *aggregates).where(*conds).group_by(Attempt.task).order_by(Attempt.task)
            ).all()
            frame = pd.DataFrame([tuple(r) for r in rows], columns=list(TIMING_COLUMNS))
        else:
            raw = pd.DataFrame(
                session.execute(select(Attempt.task, run, wait).where(*conds)).all(), columns=["task", "run", "wait"]
            )
            frame = _percentiles(raw)
    return frame.astype({"attempts": "int64", **dict.fromkeys(TIMING_COLUMNS[2:], "float64")})


def _percentiles(raw: pd.DataFrame) -> pd.DataFrame:
    if raw.empty:
        return pd.DataFrame(columns=list(TIMING_COLUMNS))
    raw = raw.astype({"run": "float64", "wait": "float64"})
    grouped = raw.groupby("task", sort=True)
    out = pd.DataFrame({"attempts": grouped.size()})
    for column in ("run", "wait"):
        for q in PERCENTILES:
            out[f"{column}_p{round(q * 100)}"] = grouped[column].quantile(q)
    return out.reset_index()[list(TIMING_COLUMNS)]
