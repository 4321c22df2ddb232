"""The surface's declarations: each operator operation once, with what it accepts and what it audits.

A write (``OPERATIONS``) names its action (the capability, the Activity Log's action and the method name),
the states it accepts, the fields whose before/after it audits, an argument check, and the small function
that makes the change on a ``write.Write``. A read or a creation with no existing target is in ``READS``.
The HTTP routes of each are in ``sgen_ops.api.routes``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, select

from ..config import Settings
from ..core import validate
from ..core.states import ALL_STATES, WAITING_VALUES, State
from ..core.times import as_utc, utcnow
from ..errors import InvalidTransition, ValidationError
from ..ledger import pauses, query, schedules
from ..ledger.jobs import check_max_attempts, check_priority, encode_payload, parse_delay
from ..ledger.store import Job, Pause, Schedule
from .write import Write, snapshot

if TYPE_CHECKING:
    pass


# -- declarations ---------------------------------------------------------------------------------

# ``audits`` value of operations that purge the record: the whole record is kept as the "before".
SNAPSHOT: tuple[str, ...] = ("*",)
MUTABLE_FIELDS = ("priority", "scheduled_for", "max_attempts", "payload")
_REQUEUED = ("attempts", "run", "scheduled_for")
# What the Activity Log keeps of a job created by an operation (edit_and_replay).
CREATED = ("task", "payload", "priority", "max_attempts", "scheduled_for", "replayed_from_id")

_QUEUED, _RUNNING, _RETRYING = State.QUEUED.value, State.RUNNING.value, State.RETRYING.value
_FAILED, _SUCCEEDED, _DEAD = State.FAILED.value, State.SUCCEEDED.value, State.DEAD_LETTER.value
_WAITING = frozenset(WAITING_VALUES)
_REWINDABLE = frozenset({_FAILED, _SUCCEEDED, _DEAD})
_NOT_RUNNING = frozenset(ALL_STATES) - {_RUNNING}


@dataclass(frozen=True)
class Operation:
    """One write on the request path, declared rather than hand-written."""

    action: str  # capability, Activity Log action and method name
    apply: Callable[..., Any]  # apply(write, target, **args) makes the change; returns the result
    accepts: frozenset[str] | None = None  # states the target must be in (None: any)
    audits: tuple[str, ...] = ()  # fields whose before/after are logged ('state' always is); SNAPSHOT
    target_type: str = "job"  # or "schedule", or "task" / "queue" (a pause: ``pauses.PauseTarget``)
    reason: str | None = None  # the argument holding operator-written text, kept as a note (``notes``)
    result_key: str | None = None  # logs the operation's result under this key of "after"
    check: Callable[[Settings, dict[str, Any]], dict[str, Any]] | None = None  # validates args first
    # Whether it also takes an edited-and-replayed original: that dead letter is kept for audit, out of the live
    # dead letter, and only deleting it is allowed (see ``replaced``).
    takes_replaced: bool = False

    def admits(self, state: str, replaced: bool) -> bool:
        """Whether a target in ``state`` (``replaced``: an edited-and-replayed original) may take it."""
        return (self.accepts is None or state in self.accepts) and (self.takes_replaced or not replaced)

    @property
    def purges(self) -> bool:
        return self.audits == SNAPSHOT



# -- the changes ----------------------------------------------------------------------------------
def _requeue_fresh(w: Write, job: Job) -> None:
    w.requeue(job, fresh_run=True)


def _cancel(w: Write, job: Job) -> None:
    if job.state == _RUNNING:
        if job.cancel_requested:
            raise InvalidTransition(
                f"job {job.id} is running and its cancellation was already requested; "
                "the worker stops it at its next checkpoint"
            )
        # Best effort: the worker honours the flag at its next checkpoint, or marks it cancelled after.
        job.cancel_requested = True
        job.updated_at = w.now
        return
    w.withdraw(job)
    w.move(job, State.CANCELLED)


def _retry_now(w: Write, job: Job) -> None:
    if as_utc(job.scheduled_for) <= w.now:
        raise InvalidTransition(
            f"job {job.id} is already due (scheduled for {as_utc(job.scheduled_for).isoformat()}); retry_now "
            "brings forward only a retry scheduled in the future"
        )
    job.scheduled_for = w.now
    w.redeliver(job)


def _send_to_dead_letter(w: Write, job: Job, reason: str | None = None) -> None:
    w.withdraw(job)
    w.move(job, State.DEAD_LETTER)
    job.dead_letter_reason = reason


def replaced(target: Any) -> bool:
    """Whether ``target`` is a dead letter that edit_and_replay replaced by a new job (``replayed_as_id``):
    kept for audit, linked both ways, out of the live dead letter (lists and bulk triage leave it out)."""
    return getattr(target, "replayed_as_id", None) is not None


def _edit_and_replay(w: Write, job: Job, payload: Any) -> int:
    payload = w.book.masking_rule(job.task).restore(payload, job.payload, has_stored=True)
    new = w.book.prepare(
        job.task, payload, account=job.account, priority=job.priority, max_attempts=job.max_attempts,
        originating_user_id=w.ops.operator.id, retention_days=job.retention_days, now=w.now,
    )
    new.replayed_from_id = job.id
    w.insert(new)
    # Only the link changes: the original keeps its dead-lettered time (updated_at), for the audit.
    job.replayed_as_id = new.id
    w.record("edit_and_replay", "job", new, None, {"state": new.state, **snapshot(new, CREATED)})
    return new.id


def _purge(w: Write, job: Job) -> None:
    w.purge(job)


def _resolve(w: Write, job: Job, note: str) -> None:
    w.withdraw(job)
    w.move(job, State.RESOLVED)
    job.resolution_note = note


def _trigger(w: Write, job: Job) -> None:
    job.scheduled_for = w.now
    w.redeliver(job)


def _update_job(w: Write, job: Job, **fields: Any) -> None:
    if "payload" in fields and not (job.state == _QUEUED and job.attempts == 0 and job.run == 1):
        raise InvalidTransition(
            f"job {job.id}'s payload can change only before its first attempt; it is {job.state} after "
            f"{job.attempts} attempt(s) of run {job.run} (edit_and_replay makes a new job from a dead letter)"
        )
    if "payload" in fields:
        fields["payload"] = w.book.masking_rule(job.task).restore(fields["payload"], job.payload, has_stored=True)
    moved = False
    for name, value in fields.items():
        if getattr(job, name) != value:
            setattr(job, name, value)
            moved |= name in ("priority", "scheduled_for")
    if "payload" in fields:
        job.search_masked = w.book.search_masked(job.task, job.payload, job.last_error_detail)
    job.updated_at = w.now
    if moved:
        w.redeliver(job)


def _edit_schedule(w: Write, schedule: Schedule, **changes: Any) -> None:
    if "payload" in changes:
        rule = w.book.masking_rule(schedule.task)
        changes["payload"] = rule.restore(changes["payload"], schedule.payload_template, has_stored=True,
                                          what="payload template")
    schedules.edit(w.ops.hub, w.session, schedule, changes, now=w.now)


def _pause_schedule(w: Write, schedule: Schedule) -> None:
    if not schedule.enabled:
        raise InvalidTransition(f"schedule {schedule.id} is already paused; resume_schedule starts it again")
    schedules.edit(w.ops.hub, w.session, schedule, {"enabled": False}, now=w.now)


def _resume_schedule(w: Write, schedule: Schedule) -> None:
    if schedule.enabled:
        raise InvalidTransition(f"schedule {schedule.id} is not paused; pause_schedule stops its ticks")
    schedules.edit(w.ops.hub, w.session, schedule, {"enabled": True}, now=w.now)


def _pause(w: Write, target: pauses.PauseTarget) -> None:
    w.session.add(Pause(kind=target.kind, name=target.name, paused_at=w.now, paused_by=w.ops.name))
    target.state = pauses.PAUSED


def _resume(w: Write, target: pauses.PauseTarget) -> None:
    """Lift the pause and send each waiting job it held a fresh delivery (a claim refused while paused
    consumed the old one); jobs still held by another pause (their queue, or their task) stay waiting."""
    w.session.execute(delete(Pause).where(Pause.kind == target.kind, Pause.name == target.name))
    target.state = pauses.ACTIVE
    held_by = Job.task if target.kind == pauses.TASK else Job.priority
    waiting = select(Job).where(Job.state.in_(_WAITING), held_by == target.name, ~pauses.paused_condition())
    for job in w.session.scalars(waiting.order_by(Job.id).with_for_update()):
        w.withdraw(job)
        w.deliveries.append(w.book.next_delivery(job))


def _run_schedule_now(w: Write, schedule: Schedule) -> int:
    job, deliveries = schedules.run_now(
        w.ops.hub, w.session, schedule, now=w.now, originating_user_id=w.ops.operator.id
    )
    w.deliveries.extend(deliveries)
    return int(job.id)


# -- argument checks, before anything is read ------------------------------------------------------
def _check_reason(settings: Settings, args: dict[str, Any]) -> dict[str, Any]:
    reason = args.get("reason")
    if reason is None:
        return {"reason": None}
    reason = validate.text(reason, "reason", max_chars=validate.NOTE_CHARS,
                           allowed="a sentence saying why, or nothing", empty=True)
    return {"reason": reason.strip() or None}


def _check_note(settings: Settings, args: dict[str, Any]) -> dict[str, Any]:
    note = args.get("note")
    if isinstance(note, str) and not note.strip():
        raise ValidationError("resolve needs a non-empty note saying how the failure was handled")
    note = validate.text(note, "note", max_chars=validate.NOTE_CHARS,
                         allowed="a non-empty note saying how the failure was handled")
    return {"note": note.strip()}


def _check_payload(settings: Settings, args: dict[str, Any]) -> dict[str, Any]:
    encode_payload(args["payload"], settings.payload_max_bytes, depth=settings.payload_max_depth)
    return args


def _check_update(settings: Settings, args: dict[str, Any]) -> dict[str, Any]:
    allowed = ", ".join(MUTABLE_FIELDS)
    if not args:
        raise ValidationError(f"update_job needs at least one field to change; mutable fields: {allowed}")
    unknown = sorted(set(args) - set(MUTABLE_FIELDS))
    if unknown:
        raise ValidationError(
            f"job field(s) {', '.join(unknown)} cannot be changed; update_job changes only: {allowed} "
            "(payload only before the job's first attempt)"
        )
    out = dict(args)
    if "priority" in out:
        out["priority"] = check_priority(out["priority"])
    if "max_attempts" in out:
        out["max_attempts"] = check_max_attempts(out["max_attempts"])
    if "payload" in out:
        encode_payload(out["payload"], settings.payload_max_bytes, depth=settings.payload_max_depth)
    if "scheduled_for" in out:
        when = out["scheduled_for"]
        now = utcnow()
        # A timedelta means that long from now, the way enqueue's delay does.
        out["scheduled_for"] = (
            now + timedelta(seconds=parse_delay(when)) if isinstance(when, timedelta)
            else query.parse_time(when, "scheduled_for", now)
        )
    return out


# The operations on one job (and, for bulk triage, on many: one entry per job under the bulk action).
OPERATIONS: Mapping[str, Operation] = {
    op.action: op
    for op in (
        Operation("rerun", _requeue_fresh, accepts=_REWINDABLE, audits=_REQUEUED),
        Operation("cancel", _cancel, accepts=_WAITING | {_RUNNING}, audits=("cancel_requested",)),
        Operation("retry_now", _retry_now, accepts=frozenset({_RETRYING}), audits=("scheduled_for",)),
        Operation(
            "send_to_dead_letter", _send_to_dead_letter, accepts=frozenset({_QUEUED, _RETRYING, _FAILED}),
            audits=("dead_letter_reason",), reason="reason", check=_check_reason,
        ),
        Operation("replay", _requeue_fresh, accepts=frozenset({_DEAD}), audits=_REQUEUED),
        Operation(
            "edit_and_replay", _edit_and_replay, accepts=frozenset({_DEAD}), audits=("replayed_as_id",),
            check=_check_payload,
        ),
        Operation("dismiss", _purge, accepts=frozenset({_DEAD}), audits=SNAPSHOT),
        Operation(
            "resolve", _resolve, accepts=frozenset({_FAILED, _RETRYING, _DEAD}), audits=("resolution_note",),
            reason="note", check=_check_note,
        ),
        Operation("trigger", _trigger, accepts=_WAITING, audits=("scheduled_for",)),
        Operation("update_job", _update_job, accepts=_WAITING, audits=MUTABLE_FIELDS, check=_check_update),
        Operation("delete_job", _purge, accepts=_NOT_RUNNING, audits=SNAPSHOT, takes_replaced=True),
        Operation("delete_jobs", _purge, accepts=_NOT_RUNNING, audits=SNAPSHOT, takes_replaced=True),
        Operation("replay_dead_letters", _requeue_fresh, accepts=frozenset({_DEAD}), audits=_REQUEUED),
        Operation("dismiss_dead_letters", _purge, accepts=frozenset({_DEAD}), audits=SNAPSHOT),
        Operation("edit_schedule", _edit_schedule, target_type="schedule"),
        Operation("pause_schedule", _pause_schedule, target_type="schedule"),
        Operation("resume_schedule", _resume_schedule, target_type="schedule"),
        Operation("run_schedule_now", _run_schedule_now, target_type="schedule", result_key="job_id"),
        Operation("pause_task", _pause, accepts=frozenset({pauses.ACTIVE}), target_type=pauses.TASK),
        Operation("resume_task", _resume, accepts=frozenset({pauses.PAUSED}), target_type=pauses.TASK),
        Operation("pause_queue", _pause, accepts=frozenset({pauses.ACTIVE}), target_type=pauses.QUEUE),
        Operation("resume_queue", _resume, accepts=frozenset({pauses.PAUSED}), target_type=pauses.QUEUE),
    )
}


# -- the operations that have no target record: reads, and the two creations -------------------------------
@dataclass(frozen=True)
class Read:
    """A read, or a creation with no existing target (``enqueue``, ``create_schedule``): the method checks its
    own action's capability (``core.permissions.PERMISSIONS``), unless ``checked`` is False (an answer about
    the operator themselves)."""

    action: str  # the method name, and the action whose capability it checks
    checked: bool = True

    @property
    def capability(self) -> str | None:
        return self.action if self.checked else None


READS: Mapping[str, Read] = {
    r.action: r
    for r in (
        Read("list_jobs"),
        Read("get_job"),
        Read("history"),
        Read("archive_runs"),
        Read("dead_letter_groups"),
        Read("throughput"),
        Read("throughput_series"),
        Read("run_time_percentiles"),
        Read("activity_log"),
        Read("verify_audit"),
        Read("list_schedules"),
        Read("preview_schedule"),
        Read("enqueue"),
        Read("create_schedule"),
        Read("paused"),
        Read("workers"),
        Read("can", checked=False),
    )
}
