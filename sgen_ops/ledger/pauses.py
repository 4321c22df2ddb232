"""Paused tasks and priority queues: what a worker's claim checks, and what the views show.

A pause is a row of ``pauses`` (migration 0008). Every claim path (the Core statements and the hot path's
fixed SQL in ``execution``) refuses a waiting job whose task or priority is paused, so the job stays
waiting with no attempt counted; ``reconcile`` leaves such jobs alone, and resuming sends each waiting job
of the task or queue a fresh delivery.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Table, and_, exists, or_, select
from sqlalchemy.orm import Session

from .store import JOBS, PAUSES, Ledger

TASK, QUEUE = "task", "queue"
KINDS = (TASK, QUEUE)
# The target's state as the surface's state check reads it.
ACTIVE, PAUSED = "active", "paused"
COLUMNS = ("kind", "name", "paused_at", "paused_by")

# The same condition as fixed SQL, for the hot path (``jobs`` is the claimed row's table).
PAUSED_SQL = (
    f"EXISTS (SELECT 1 FROM pauses WHERE (kind = '{TASK}' AND name = jobs.task) "
    f"OR (kind = '{QUEUE}' AND name = jobs.priority))"
)


def paused_condition(jobs: Table = JOBS) -> ColumnElement[bool]:
    """True for a job whose task or priority queue is paused."""
    return exists().where(
        or_(
            and_(PAUSES.c.kind == TASK, PAUSES.c.name == jobs.c.task),
            and_(PAUSES.c.kind == QUEUE, PAUSES.c.name == jobs.c.priority),
        )
    )


@dataclass
class PauseTarget:
    """A task or a priority queue as the surface's request path loads a target: its state is ``paused`` or
    ``active``; it has no id or account (a pause holds for every account)."""

    kind: str
    name: str
    state: str
    id: None = None
    account: None = None
    payload: None = None

    @property
    def task(self) -> str | None:
        return self.name if self.kind == TASK else None


def load(session: Session, kind: str, name: str, *, lock: bool) -> PauseTarget:
    stmt = select(PAUSES.c.name).where(PAUSES.c.kind == kind, PAUSES.c.name == name)
    if lock:
        stmt = stmt.with_for_update()
    found = session.execute(stmt).first()
    return PauseTarget(kind, name, PAUSED if found is not None else ACTIVE)


def rows(ledger: Ledger) -> list[tuple[str, str, datetime, str]]:
    """Every pause, tasks first, then by name."""
    with ledger.read() as session:
        found = session.execute(
            select(PAUSES.c.kind, PAUSES.c.name, PAUSES.c.paused_at, PAUSES.c.paused_by).order_by(
                PAUSES.c.kind.desc(), PAUSES.c.name
            )
        ).all()
    return [(r.kind, r.name, r.paused_at, r.paused_by) for r in found]


def paused_names(found: Sequence[Sequence[Any]], kind: str) -> set[str]:
    """The names of one kind in ``rows``' answer (or a ``paused()`` frame's records)."""
    return {str(r[1]) for r in found if r[0] == kind}
