"""Schedules: recurring jobs registered with a task, a cron expression or an interval, and a payload template.

The schedule service, without permission or audit logic: ``sgen_ops.surface`` wraps these functions with the
capability check, account scoping and the Activity Log. Each function works in the caller's session (its
transaction), writes nothing when it raises, and returns what the wrapper needs: ``create`` the new row (its
logged shape is ``record(schedule)``), ``edit`` the before/after of the fields it changed, ``run_now`` and
``emit`` the job and the RQ deliveries to send once the caller has committed.

A schedule tick is one emission, recorded as a ``ScheduleTick`` row whose unique key
(schedule, kind, tick time) makes "never the same tick twice" a property of the data.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import pandas as pd
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ..core import validate
from ..core.durations import format_duration, parse_duration
from ..core.schedule_timing import Timing
from ..core.tasks import find_task, get_task
from ..core.times import as_utc, utcnow
from ..core.validate import describe
from ..errors import ValidationError
from ..transport.queue import Delivery
from .jobs import DEFAULT_DEPTH, check_max_attempts, check_priority, encode_payload, refuse_masks
from .store import Job, Schedule, ScheduleTick

if TYPE_CHECKING:
    from .stack import Stack

__all__ = [
    "COLUMNS",
    "EDITABLE_FIELDS",
    "check_template",
    "create",
    "edit",
    "emit",
    "parse_retention",
    "preview",
    "record",
    "render_payload",
    "rows",
    "run_now",
    "timing_of",
]

# The fields ``edit`` changes; ``enabled`` False is pause, True is resume.
EDITABLE_FIELDS = ("task", "cron", "every", "timezone", "payload", "max_attempts", "retention", "priority", "enabled")
# The columns of ``rows`` (list_schedules), in order.
COLUMNS = (
    "id",
    "task",
    "cron",
    "every",
    "timezone",
    "enabled",
    "next_run",
    "last_run",
    "max_attempts",
    "retention",
    "priority",
    "account",
    "payload",
    "description",
    "next_fires",
    "recent_runs",
)
TICK, MANUAL = "tick", "manual"
PREVIEW_COUNT = 5
RECENT_RUNS = 5
MAX_RETENTION_DAYS = 3650.0

_TIMING_FIELDS = frozenset({"cron", "every", "timezone"})
_RETENTION_FORMS = "a number of days (e.g. 30 or 0.5), a timedelta, or text such as '30d', '12h', '2w'; up to 3650 days"

# ----------------------------------------------------------------------------- payload templates

# {tick}, {tick:<strftime format>} and {schedule_id}; any other text in braces is left as it is.
_PLACEHOLDER = re.compile(r"\{(?:schedule_id|tick(?::([^{}]*))?)\}")
# strftime directives that mean the same on every platform (Python's documented set, ISO week included).
_DIRECTIVES = frozenset("aAwdbBmyYHIpMSfzZjUWcxXGuV%")
_FORMAT_HELP = (
    "placeholders are {tick} (ISO time in the schedule's zone), {tick:<strftime format>} such as "
    "{tick:%Y-%m-%d} or {tick:%G-W%V}, and {schedule_id}; format directives allowed: "
    + " ".join(f"%{d}" for d in sorted(_DIRECTIVES))
)


def _check_format(fmt: str, where: str) -> None:
    if not fmt:
        raise ValidationError(f"payload template {where}: '{{tick:}}' has an empty format; {_FORMAT_HELP}")
    i = 0
    while i < len(fmt):
        if fmt[i] == "%":
            directive = fmt[i + 1 : i + 2]
            if not directive:
                raise ValidationError(
                    f"payload template {where}: format {describe(fmt)} ends with a lone '%'; {_FORMAT_HELP}"
                )
            if directive not in _DIRECTIVES:
                raise ValidationError(
                    f"payload template {where}: format {describe(fmt)} has an unknown directive '%{directive}'; "
                    f"{_FORMAT_HELP}"
                )
            i += 2
        else:
            i += 1


def _strings(template: Any, path: str = "payload") -> list[tuple[str, str]]:
    """Every (path, string value) in the template, recursively through dicts and lists."""
    if isinstance(template, str):
        return [(path, template)]
    if isinstance(template, Mapping):
        return [s for key, value in template.items() for s in _strings(value, f"{path}.{key}")]
    if isinstance(template, list | tuple):
        return [s for i, value in enumerate(template) for s in _strings(value, f"{path}[{i}]")]
    return []


def render_payload(template: Any, *, tick_at: datetime, timezone: str, schedule_id: int | None) -> Any:
    """The payload for one tick: placeholders in every string value (recursively) replaced.

    ``{tick}`` is the tick's ISO time in ``timezone``, ``{tick:<format>}`` the tick formatted with strftime in
    that zone (``{tick:%G-W%V}`` gives the ISO week, e.g. ``2026-W14``), ``{schedule_id}`` the schedule's id.
    Other text in braces, dict keys and non-string values are left untouched.
    """
    local = as_utc(tick_at).astimezone(ZoneInfo(timezone))

    def substitute(match: re.Match[str]) -> str:
        if match.group(0) == "{schedule_id}":
            return str(schedule_id)
        fmt = match.group(1)
        return local.isoformat() if fmt is None else local.strftime(fmt)

    def walk(value: Any) -> Any:
        if isinstance(value, str):
            return _PLACEHOLDER.sub(substitute, value)
        if isinstance(value, Mapping):
            return {key: walk(item) for key, item in value.items()}
        if isinstance(value, list | tuple):
            return [walk(item) for item in value]
        return value

    return walk(template)


def check_template(
    template: Any, *, timezone: str, payload_max_bytes: int, sample_tick: datetime,
    payload_max_depth: int = DEFAULT_DEPTH,
) -> None:
    """``ValidationError`` unless the template is JSON, holds no mask (``surface`` restores an edited one's),
    its placeholders' formats are valid, and a rendered payload fits the payload size limit."""
    refuse_masks(template, encode_payload(template, payload_max_bytes, depth=payload_max_depth, name="payload"),
                 "payload template")
    for path, text in _strings(template):
        for match in _PLACEHOLDER.finditer(text):
            if match.group(1) is not None:
                _check_format(match.group(1), f"at {path}")
    rendered = render_payload(template, tick_at=sample_tick, timezone=timezone, schedule_id=2**31 - 1)
    encode_payload(rendered, payload_max_bytes, depth=payload_max_depth)


# ----------------------------------------------------------------------------- field checks


def parse_retention(value: int | float | timedelta | str | None) -> float | None:
    """Days of retention for the succeeded jobs a schedule emits; None: the settings' retention window."""
    if value is None:
        return None
    days: float
    bad = f"retention {describe(value)} is not valid"
    if isinstance(value, bool):
        raise ValidationError(f"{bad}: a bool is not a retention; give {_RETENTION_FORMS}")
    if isinstance(value, int | float):
        days = float(value) if not isinstance(value, int) or abs(value) < 10**300 else math.inf
    elif isinstance(value, timedelta):
        days = value.total_seconds() / 86400.0
    elif isinstance(value, str):
        text = value.strip()
        try:
            days = float(text)
        except ValueError:
            try:
                days = parse_duration(text, "retention") / 86400.0
            except ValidationError:
                raise ValidationError(f"{bad}; give {_RETENTION_FORMS}") from None
    else:
        raise ValidationError(f"{bad}: a {type(value).__name__}; give {_RETENTION_FORMS}")
    if not math.isfinite(days) or days <= 0:
        raise ValidationError(f"{bad}: it must be more than zero; give {_RETENTION_FORMS}")
    if days > MAX_RETENTION_DAYS:
        raise ValidationError(f"{bad}: it is over 3650 days; give {_RETENTION_FORMS}")
    return days


def _check_task(task: Any) -> str:
    return get_task(task).name


def _check_enabled(value: Any) -> bool:
    return validate.flag(value, "enabled", "True (resume) or False (pause)")


def _check_account(value: Any) -> str | None:
    return validate.account(value)


def _priority_for(task: str, priority: Any) -> str:
    return check_priority(priority) if priority is not None else get_task(task).priority


def _budget(value: Any) -> int | None:
    return None if value is None else check_max_attempts(value)


# ----------------------------------------------------------------------------- the record


def timing_of(schedule: Schedule) -> Timing:
    """When ``schedule`` fires: its cron in its zone, or its interval counted from its anchor."""
    return Timing(
        cron=schedule.cron,
        every=schedule.every_seconds,
        timezone=schedule.timezone or "UTC",
        anchor=schedule.anchor_at,
    )


def record(schedule: Schedule) -> dict[str, Any]:
    """The schedule as an operator sees and edits it: the shape logged by create and edit."""
    return {
        "task": schedule.task,
        "cron": schedule.cron,
        "every": format_duration(schedule.every_seconds) if schedule.every_seconds is not None else None,
        "timezone": schedule.timezone,
        "payload": schedule.payload_template,
        "max_attempts": schedule.max_attempts,
        "retention": schedule.retention_days,
        "priority": schedule.priority,
        "account": schedule.account,
        "enabled": schedule.enabled,
        "next_run": schedule.next_run,
    }


# ----------------------------------------------------------------------------- writes


def create(
    hub: Stack,
    session: Session,
    *,
    task: str,
    cron: str | None = None,
    every: int | float | timedelta | str | None = None,
    timezone: str | None = None,
    payload: Any = None,
    max_attempts: int | None = None,
    retention: int | float | timedelta | str | None = None,
    priority: str | None = None,
    account: str | None = None,
    enabled: bool = True,
    created_by: int | None = None,
    now: datetime | None = None,
) -> Schedule:
    """Register a schedule in ``session``'s transaction and return it (flushed, so it has its id).

    Exactly one of ``cron`` (evaluated in ``timezone``, UTC by default) or ``every`` (seconds, a timedelta or
    text like ``"15m"``; fires at creation + k*every). ``max_attempts`` None: the task's retry budget;
    ``retention`` (days) None: the settings' window; ``priority`` None: the task's. Bad input raises
    ``ValidationError`` saying why, before anything is added.
    """
    now = as_utc(now) if now is not None else utcnow()
    task = _check_task(task)
    timing = Timing.build(cron=cron, every=every, timezone=timezone, anchor=now)
    budget = _budget(max_attempts)
    retention_days = parse_retention(retention)
    chosen_priority = _priority_for(task, priority)
    account = _check_account(account)
    enabled = _check_enabled(enabled)
    check_template(
        payload,
        timezone=timing.timezone,
        payload_max_bytes=hub.settings.payload_max_bytes,
        payload_max_depth=hub.settings.payload_max_depth,
        sample_tick=timing.next_after(now),
    )
    schedule = Schedule(
        task=task,
        cron=timing.cron,
        timezone=timing.timezone,
        every_seconds=timing.every,
        payload_template=payload,
        max_attempts=budget,
        retention_days=retention_days,
        priority=chosen_priority,
        account=account,
        enabled=enabled,
        anchor_at=now,
        next_run=timing.next_after(now) if enabled else None,
        last_run=None,
        created_by=created_by,
        created_at=now,
        updated_at=now,
    )
    session.add(schedule)
    session.flush()
    return schedule


def edit(
    hub: Stack, session: Session, schedule: Schedule, changes: Mapping[str, Any], now: datetime | None = None
) -> dict[str, dict[str, Any]]:
    """Change the fields in ``changes`` (any of ``EDITABLE_FIELDS``); returns ``{"before": ..., "after": ...}``
    holding only the fields that changed (``next_run`` included when it moved).

    Giving ``cron`` switches an interval schedule to cron and ``every`` the other way round. A new cron or
    interval re-anchors the schedule at ``now`` and recomputes ``next_run``. ``enabled=False`` pauses (no
    ticks, ``next_run`` None); ``enabled=True`` resumes from the next fire time after ``now``, without the
    ticks missed while paused. Everything is validated before the schedule is touched.
    """
    now = as_utc(now) if now is not None else utcnow()
    allowed = ", ".join(EDITABLE_FIELDS)
    if not isinstance(changes, Mapping) or not changes:
        raise ValidationError(f"edit_schedule needs at least one field to change; editable fields: {allowed}")
    unknown = sorted(str(k) for k in changes if k not in EDITABLE_FIELDS)
    if unknown:
        raise ValidationError(f"schedule field(s) {', '.join(unknown)} cannot be edited; editable fields: {allowed}")

    new: dict[str, Any] = {}
    task = _check_task(changes["task"]) if "task" in changes else schedule.task
    new["task"] = task
    # Timing: naming one kind replaces the other; the result must still be exactly one of them.
    cron, every = schedule.cron, schedule.every_seconds
    if "cron" in changes:
        cron = changes["cron"]
        if cron is not None and "every" not in changes:
            every = None
    if "every" in changes:
        every = changes["every"]
        if every is not None and "cron" not in changes:
            cron = None
    zone = changes.get("timezone", schedule.timezone)
    timing = Timing.build(cron=cron, every=every, timezone=zone, anchor=schedule.anchor_at)
    new["cron"], new["every_seconds"], new["timezone"] = timing.cron, timing.every, timing.timezone
    if "max_attempts" in changes:
        new["max_attempts"] = _budget(changes["max_attempts"])
    if "retention" in changes:
        new["retention_days"] = parse_retention(changes["retention"])
    if "priority" in changes:
        new["priority"] = _priority_for(task, changes["priority"])
    enabled = _check_enabled(changes["enabled"]) if "enabled" in changes else schedule.enabled
    template = changes.get("payload", schedule.payload_template)
    if "payload" in changes or "timezone" in changes:
        check_template(
            template,
            timezone=timing.timezone,
            payload_max_bytes=hub.settings.payload_max_bytes,
            payload_max_depth=hub.settings.payload_max_depth,
            sample_tick=now,
        )
    if "payload" in changes:
        new["payload_template"] = template

    # Everything is valid: apply.
    before = record(schedule)
    reanchor = (timing.cron, timing.every) != (schedule.cron, schedule.every_seconds)
    retimed = reanchor or timing.timezone != schedule.timezone
    resumed = enabled and not schedule.enabled
    for name, value in new.items():
        if getattr(schedule, name) != value:
            setattr(schedule, name, value)
    if reanchor:
        schedule.anchor_at = now
    schedule.enabled = enabled
    if not enabled:
        schedule.next_run = None
    elif retimed or resumed or schedule.next_run is None:
        schedule.next_run = timing_of(schedule).next_after(now)
    after = record(schedule)
    keys = [k for k in before if before[k] != after[k]]
    if keys:
        schedule.updated_at = now
    return {"before": {k: before[k] for k in keys}, "after": {k: after[k] for k in keys}}


def emit(
    hub: Stack,
    session: Session,
    schedule: Schedule,
    *,
    tick_at: datetime,
    kind: str,
    now: datetime,
    originating_user_id: int | None = None,
) -> tuple[Job, list[Delivery]]:
    """Record the schedule tick and its job in ``session``'s transaction; returns the job and the deliveries
    to send after commit.

    The job carries ``schedule_id``, the schedule's retry budget, priority, retention and account, and the
    payload template rendered for ``tick_at``. The tick row is flushed first: if this (schedule, kind, tick)
    was already emitted, its unique key raises ``IntegrityError`` here and the caller rolls back.
    """
    if kind not in (TICK, MANUAL):
        raise ValidationError(f"schedule tick kind {describe(kind)} is not valid; allowed: {TICK}, {MANUAL}")
    tick_at, now = as_utc(tick_at), as_utc(now)
    payload = render_payload(
        schedule.payload_template, tick_at=tick_at, timezone=schedule.timezone or "UTC", schedule_id=schedule.id
    )
    job = hub.book.prepare(
        schedule.task,
        payload,
        account=schedule.account,
        priority=schedule.priority,
        max_attempts=schedule.max_attempts,
        schedule_id=schedule.id,
        originating_user_id=originating_user_id,
        retention_days=schedule.retention_days,
        now=now,
    )
    tick = ScheduleTick(schedule_id=schedule.id, kind=kind, tick_at=tick_at, emitted_at=now)
    session.add(tick)
    session.flush()
    deliveries = hub.book.insert(session, [job])
    tick.job_id = job.id
    return job, deliveries


def run_now(
    hub: Stack,
    session: Session,
    schedule: Schedule,
    *,
    now: datetime | None = None,
    originating_user_id: int | None = None,
) -> tuple[Job, list[Delivery]]:
    """Emit one job from the schedule out of band (a "manual" tick at ``now``), paused or not.

    The regular ticks are unaffected: ``next_run`` and ``last_run`` stay as they are.
    """
    now = as_utc(now) if now is not None else utcnow()
    return emit(hub, session, schedule, tick_at=now, kind=MANUAL, now=now, originating_user_id=originating_user_id)


# ----------------------------------------------------------------------------- reads


MAX_PREVIEW = 1000  # fire times one preview lists


def preview(
    cron: str | None = None,
    every: int | float | timedelta | str | None = None,
    timezone: str | None = None,
    count: int = PREVIEW_COUNT,
    now: datetime | None = None,
) -> list[datetime]:
    """The next ``count`` fire times (UTC) a schedule created at ``now`` with this timing would have."""
    count = validate.whole(count, "count", lo=0, hi=MAX_PREVIEW)
    now = as_utc(now) if now is not None else utcnow()
    return Timing.build(cron=cron, every=every, timezone=timezone, anchor=now).fire_times(now, count)


def _recent_runs(session: Session, ids: list[int]) -> dict[int, list[tuple[int | None, str | None, datetime, str]]]:
    """Per schedule, its last few emitted jobs, newest first: (job_id, state, tick_at, kind)."""
    out: dict[int, list[tuple[int | None, str | None, datetime, str]]] = {i: [] for i in ids}
    if not ids:
        return out
    rank = func.row_number().over(partition_by=ScheduleTick.schedule_id, order_by=ScheduleTick.id.desc())
    ranked = (
        select(
            ScheduleTick.schedule_id, ScheduleTick.job_id, ScheduleTick.tick_at, ScheduleTick.kind, rank.label("rank")
        )
        .where(ScheduleTick.schedule_id.in_(ids))
        .subquery()
    )
    stmt = (
        select(ranked.c.schedule_id, ranked.c.job_id, Job.state, ranked.c.tick_at, ranked.c.kind)
        .outerjoin(Job, Job.id == ranked.c.job_id)
        .where(ranked.c.rank <= RECENT_RUNS)
        .order_by(ranked.c.schedule_id, ranked.c.rank)
    )
    for schedule_id, job_id, state, tick_at, kind in session.execute(stmt):
        out[schedule_id].append((job_id, state, tick_at, kind))
    return out


def rows(
    hub: Stack,
    session: Session,
    account: str | None = None,
    now: datetime | None = None,
    mask: Callable[[str, Any], Any] | None = None,
) -> pd.DataFrame:
    """The schedule list (``list_schedules``), one row per schedule by id; ``account`` limits it to one account.

    ``every`` is text such as ``"5m"``; ``max_attempts`` and ``retention`` (days) are what emitted jobs get,
    defaults resolved; ``next_fires`` are the next five fire times after ``now`` (empty while paused);
    ``recent_runs`` the last emitted jobs, newest first, as (job_id, state, tick_at, kind); ``payload`` the
    template, passed through ``mask(task, template)`` when given (the surface masks it for non-administrators).
    """
    now = as_utc(now) if now is not None else utcnow()
    stmt = select(Schedule).order_by(Schedule.id)
    if account is not None:
        stmt = stmt.where(Schedule.account == account)
    schedules = list(session.scalars(stmt))
    recent = _recent_runs(session, [s.id for s in schedules])
    settings = hub.settings
    records = []
    for s in schedules:
        timing = timing_of(s)
        spec = find_task(s.task)
        budget = s.max_attempts or (spec.max_attempts if spec else None) or settings.default_max_attempts
        records.append(
            {
                "id": s.id,
                "task": s.task,
                "cron": s.cron,
                "every": format_duration(s.every_seconds) if s.every_seconds is not None else None,
                "timezone": s.timezone,
                "enabled": s.enabled,
                "next_run": s.next_run,
                "last_run": s.last_run,
                "max_attempts": budget,
                "retention": s.retention_days if s.retention_days is not None else settings.retention_days,
                "priority": s.priority,
                "account": s.account,
                "payload": mask(s.task, s.payload_template) if mask else s.payload_template,
                "description": timing.describe() + ("" if s.enabled else ", paused"),
                "next_fires": timing.fire_times(now, PREVIEW_COUNT) if s.enabled else [],
                "recent_runs": recent[s.id],
            }
        )
    return pd.DataFrame.from_records(records, columns=list(COLUMNS))
