"""One operator write in progress (``Write``): its session and time, its Activity Log entries, the jobs it
purges, and the RQ deliveries to withdraw and send once its transaction has committed; and the snapshots
of records that the Activity Log keeps."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import ColumnElement, Row, Select, delete, select
from sqlalchemy.orm import Session

from ..core.states import State
from ..ledger import audit, notes, pauses
from ..ledger.store import Attempt, Job, OperatorNote
from ..transport.queue import Delivery

if TYPE_CHECKING:
    from .operations import Operations


class Write:
    """One operator write in progress: its session and time, its Activity Log entries, and the RQ
    deliveries to withdraw and send once the transaction has committed."""

    def __init__(self, ops: Operations, session: Session, now: datetime) -> None:
        self.ops = ops
        self.session = session
        self.now = now
        self.book = ops.hub.book
        self.entries: list[audit.Entry] = []
        self.deliveries: list[Delivery] = []
        self.withdrawn: list[str | None] = []
        # Jobs purged in this write, deleted together (with their attempts) before it commits.
        self.purged: list[Job] = []
        # Attempt histories read for a batch at once (job id -> attempts), for the purge snapshots.
        self.histories: dict[int, list[Row[Any]]] | None = None
        # The newest note of each (job, note field) of a batch, read at once, for the snapshots.
        self.notes: dict[tuple[int, str], OperatorNote] | None = None

    def move(self, job: Job, state: State) -> None:
        self.book.move(job, state, self.now)

    def withdraw(self, job: Job) -> None:
        """Take the job's current delivery out of RQ after commit (a stale one could not claim anyway)."""
        self.withdrawn.append(job.rq_job_id)

    def requeue(self, job: Job, *, fresh_run: bool) -> None:
        self.withdraw(job)
        self.deliveries.append(self.book.requeue(job, self.now, fresh_run=fresh_run))

    def redeliver(self, job: Job) -> None:
        """Replace the job's delivery by one for its current priority and scheduled_for."""
        self.withdraw(job)
        job.updated_at = self.now
        self.deliveries.append(self.book.next_delivery(job))

    def insert(self, job: Job) -> None:
        self.deliveries.extend(self.book.insert(self.session, [job]))

    def purge(self, job: Job) -> None:
        """Delete the job and its attempts with the rest of this write's purges."""
        self.withdraw(job)
        self.purged.append(job)

    def read_histories(self, job_ids: Sequence[int]) -> None:
        """Read the attempts and notes of many jobs in one query each (plain rows, no ORM objects), for
        ``history`` and ``note_refs``."""
        found: dict[int, list[Row[Any]]] = {job_id: [] for job_id in job_ids}
        for chunk in chunks(job_ids):
            for a in self.session.execute(_history_of(Attempt.job_id.in_(chunk))):
                found[a.job_id].append(a)
        self.histories = found
        self.notes = notes.latest(self.session, "job", job_ids)

    def note_refs(self, target: Any, target_type: str, record: dict[str, Any]) -> dict[str, Any]:
        """``record`` with the text of each note field replaced by a reference to the note holding it: the
        Activity Log never holds operator-written text."""
        fields = [f for f in notes.NOTE_FIELDS if record.get(f) is not None]
        if not fields:
            return record
        latest = self.notes
        if latest is None or not any(k[0] == target.id for k in latest):
            latest = notes.latest(self.session, target_type, [target.id])
        out = dict(record)
        for name in fields:
            note = latest.get((target.id, name))
            out[name] = notes.ref(note.id if note is not None and note.text == record[name] else None)
        return out

    def add_note(self, target: Any, target_type: str, field: str, text: str) -> int:
        """Keep operator-written text as a note of ``target``, marked if it quotes one of its secrets."""
        rule = self.book.masking_rule(target.task)
        quotes = rule.mask_text(text, getattr(target, "payload", None)) != text
        return notes.add(
            self.session, target_type=target_type, target_id=target.id, field=field, operator=self.ops.name,
            role=self.ops.role, text=text, sensitive=quotes, at=self.now,
        )

    def history(self, job: Job) -> Sequence[Row[Any]]:
        """The job's attempts, oldest first."""
        if self.histories is not None and job.id in self.histories:
            return self.histories[job.id]
        return self.session.execute(_history_of(Attempt.job_id == job.id)).all()

    def finish(self) -> None:
        """Apply the purges: one DELETE of attempts and one of jobs per chunk of ids."""
        if not self.purged:
            return
        self.session.flush()
        for chunk in chunks([job.id for job in self.purged]):
            self.session.execute(delete(Attempt).where(Attempt.job_id.in_(chunk)))
            self.session.execute(delete(Job).where(Job.id.in_(chunk)), execution_options={"synchronize_session": False})
        for job in self.purged:
            self.session.expunge(job)
        self.purged.clear()

    def record(
        self,
        action: str,
        target_type: str,
        target: Any,
        before: dict[str, Any] | None,
        after: dict[str, Any] | None,
        note_id: int | None = None,
    ) -> None:
        """Log the change to one job or schedule (``audit.append`` masks it, whoever acts)."""
        change: dict[str, Any] = {"task": target.task, "before": before, "after": after}
        if target_type == pauses.QUEUE:
            change["priority"] = target.name
        if note_id is not None:
            change[notes.REF_KEY] = note_id
        self.entries.append(self.ops._entry(action, target_type, target, change))


def snapshot(target: Any, names: tuple[str, ...]) -> dict[str, Any]:
    """The named fields' values as they are now (``audit.append`` makes them JSON, once)."""
    return {name: getattr(target, name) for name in names}


# Internal bookkeeping left out of a purged record's snapshot.
_NOT_SNAPSHOTTED = frozenset({"rq_job_id", "enqueue_seq", "lease_until", "search_masked"})
_SNAPSHOTTED = tuple(c.key for c in Job.__mapper__.column_attrs if c.key not in _NOT_SNAPSHOTTED)
_ATTEMPT_FIELDS = ("run", "number", "started_at", "finished_at", "exit", "error_code", "error", "worker")


def _history_of(where: ColumnElement[bool]) -> Select[Any]:
    """The attempt fields a purge snapshot keeps, oldest first (with the job id, to file them by)."""
    fields = (getattr(Attempt, name) for name in _ATTEMPT_FIELDS)
    return select(Attempt.job_id, *fields).where(where).order_by(Attempt.job_id, Attempt.run, Attempt.number)


def full_snapshot(job: Job, attempts: Iterable[Any]) -> dict[str, Any]:
    """The whole job record with its attempt history: what a purge leaves in the Activity Log."""
    record = snapshot(job, _SNAPSHOTTED)
    record["attempt_history"] = [snapshot(a, _ATTEMPT_FIELDS) for a in attempts]
    return record


def chunks(ids: Sequence[int], size: int = 500) -> Iterator[Sequence[int]]:
    for start in range(0, len(ids), size):
        yield ids[start:start + size]


def changed(before: dict[str, Any], after: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Only the fields that changed, plus the state for context."""
    keys = [k for k in before if k == "state" or before[k] != after.get(k)]
    return {k: before[k] for k in keys}, {k: after.get(k) for k in keys}


