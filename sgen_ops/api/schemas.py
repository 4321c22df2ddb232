"""Request and answer shapes of the HTTP API, checked at the boundary.

Answers reuse the surface's own dataclasses (``JobPage``, ``JobDetail``, ``VerifyResult``) so that a field
is defined once. Requests are checked here for what the ledger's drivers would refuse with raw errors
(NUL characters, lone surrogates, numbers past a column's range, times past year 9999); what the surface
checks itself (filters, states of jobs, crons, payload size) it checks, and its words come back as 422.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from ..core.durations import as_timedelta
from ..core.states import ALL_STATES
from ..errors import ValidationError
from ..ledger.query import MAX_PER_PAGE, parse_time

# PostgreSQL's integer: ids, attempt budgets.
MAX_INT = 2**31 - 1
# The ledger's account column.
MAX_ACCOUNT = 100
# Far enough for any delay or interval, near enough that a time stays inside year 9999.
MAX_SECONDS = 100 * 366 * 86400.0
MAX_PAGE = 10_000_000

StateName = Literal["queued", "running", "retrying", "succeeded", "failed", "dead-letter", "cancelled", "resolved"]
assert set(StateName.__args__) == set(ALL_STATES)  # type: ignore[attr-defined]
Priority = Literal["low", "normal", "high"]


def _clean(value: str) -> str:
    if "\x00" in value:
        raise ValueError("text may not contain NUL (\\u0000) characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("text must be valid Unicode (no lone surrogate escapes)") from None
    return value


def _clean_json(value: Any) -> Any:
    """JSON data whose strings and keys the ledger can store on every backend."""
    if isinstance(value, str):
        _clean(value)
    elif isinstance(value, dict):
        for k, v in value.items():
            _clean(k)
            _clean_json(v)
    elif isinstance(value, list):
        for v in value:
            _clean_json(v)
    elif isinstance(value, float) and not math.isfinite(value):
        raise ValueError("numbers must be finite")
    return value


def _time(value: str) -> str:
    """An ISO 8601 time the surface can place (checked here for times past the calendar's ends)."""
    _clean(value)
    try:
        moment = parse_time(value, "time", datetime.now(UTC))
        moment + timedelta(days=1)  # room for the comparisons the surface makes
    except ValidationError as exc:
        raise ValueError(str(exc)) from None
    except OverflowError:
        raise ValueError(f"{value!r} is outside the times the ledger can hold") from None
    return value


def _duration(value: str) -> str:
    """'15m', '1h', '7d' ...: checked as the surface parses it, and within a century."""
    _clean(value)
    try:
        span = as_timedelta(value, "duration")
    except ValidationError as exc:
        raise ValueError(str(exc)) from None
    except OverflowError:
        raise ValueError(f"{value!r} is longer than the ledger can hold") from None
    if span.total_seconds() > MAX_SECONDS:
        raise ValueError(f"{value!r} is longer than a century")
    return value


Text = Annotated[str, Field(max_length=10_000), AfterValidator(_clean)]
Name = Annotated[str, Field(min_length=1, max_length=200), AfterValidator(_clean)]
Names = Annotated[list[Name], Field(max_length=100)]
Time = Annotated[str, Field(max_length=64), AfterValidator(_time)]
Duration = Annotated[str, Field(max_length=32), AfterValidator(_duration)]
Seconds = Annotated[float, Field(ge=0, le=MAX_SECONDS)]
Payload = Annotated[Any, AfterValidator(_clean_json)]
Id = Annotated[int, Field(ge=1, le=MAX_INT)]
Budget = Annotated[int, Field(ge=1, le=MAX_INT)]
# A schedule's interval or retention: a number, or text the schedules module parses (and bounds) itself.
Interval = Annotated[float, Field(allow_inf_nan=False)] | Annotated[str, Field(max_length=64), AfterValidator(_clean)]
Account = Annotated[str, Field(min_length=1, max_length=MAX_ACCOUNT, pattern=r"^[^\x00-\x1f]+$")]
IdempotencyKey = Annotated[str, Field(min_length=1, max_length=255, pattern=r"^[\x21-\x7e]+$")]


class Body(BaseModel):
    """A request body: unknown fields are refused, as the surface refuses unknown arguments."""

    model_config = ConfigDict(extra="forbid")


class Params(BaseModel):
    """The query of a GET: parameters the operation does not take are ignored, as HTTP servers do."""


class JobsQuery(Params):
    """The queue list's filters and page, as query parameters."""

    state: list[StateName] | None = None
    task: Names | None = None
    since: Time | None = None
    until: Time | None = None
    error_code: Names | None = None
    text: Text | None = None
    include_old_succeeded: bool = False
    page: Annotated[int, Field(ge=1, le=MAX_PAGE)] = 1
    per_page: Annotated[int, Field(ge=1, le=MAX_PER_PAGE)] = 50
    after_id: Id | None = None


class GroupsQuery(Params):
    task: Names | None = None
    since: Time | None = None
    until: Time | None = None


class ThroughputQuery(Params):
    window: Duration = "1h"
    by: Literal["task", "account"] = "task"


class SeriesQuery(Params):
    window: Duration = "24h"
    interval: Duration = "1h"


class RunTimesQuery(Params):
    window: Duration = "24h"


class ActivityQuery(Params):
    since: Time | None = None
    until: Time | None = None
    operator: Name | None = None


class HistoryQuery(Params):
    since: Time | None = None
    until: Time | None = None
    task: Names | None = None
    state: list[StateName] | None = None


class ArchiveRunsQuery(Params):
    since: Time | None = None


class PreviewQuery(Params):
    cron: Annotated[Text, Field(max_length=200)] | None = None
    every: Annotated[Text, Field(max_length=64)] | None = None
    timezone: Annotated[Text, Field(max_length=64)] | None = None
    count: Annotated[int, Field(ge=1, le=100)] = 5


class Filters(Body):
    """The queue list's filters (seed 003's search)."""

    state: StateName | list[StateName] | None = None
    task: Name | Names | None = None
    since: Time | None = None
    until: Time | None = None
    error_code: Name | Names | None = None
    text: Text | None = None
    include_old_succeeded: bool = False


class Search(Filters):
    page: Annotated[int, Field(ge=1, le=MAX_PAGE)] = 1
    per_page: Annotated[int, Field(ge=1, le=MAX_PER_PAGE)] = 50
    after_id: Id | None = None


class SearchDelete(Filters):
    dry_run: bool = False
    all: bool = Field(False, description="delete every job in view although no filter narrows it")


class Triage(Body):
    task: Name | Names | None = None
    error_code: Name | Names | None = None
    since: Time | None = None
    until: Time | None = None
    dry_run: bool = False
    batch_size: Annotated[int, Field(ge=1, le=10_000)] = 500


class Note(Body):
    note: Text


class Reason(Body):
    reason: Text | None = None


class NewPayload(Body):
    payload: Payload


class JobChanges(Body):
    """The fields to change; fields left out stay as they are."""

    priority: Priority | None = None
    scheduled_for: Time | None = None
    max_attempts: Budget | None = None
    payload: Payload = None


class NewJob(Body):
    task: Name
    payload: Payload = None
    priority: Priority | None = None
    delay: Seconds | None = None
    max_attempts: Budget | None = None


class NewSchedule(Body):
    task: Name
    cron: Annotated[str, Field(max_length=200), AfterValidator(_clean)] | None = None
    every: Interval | None = None
    timezone: Annotated[str, Field(max_length=64), AfterValidator(_clean)] | None = None
    payload: Payload = None
    max_attempts: Budget | None = None
    retention: Interval | None = None
    priority: Priority | None = None


class ScheduleChanges(Body):
    """The schedule fields to change; fields left out stay as they are (``enabled`` false pauses)."""

    task: Name | None = None
    cron: Annotated[str, Field(max_length=200), AfterValidator(_clean)] | None = None
    every: Interval | None = None
    timezone: Annotated[str, Field(max_length=64), AfterValidator(_clean)] | None = None
    payload: Payload = None
    max_attempts: Budget | None = None
    retention: Interval | None = None
    priority: Priority | None = None
    enabled: bool | None = None


# -- answers ---------------------------------------------------------------------------------------
class Created(BaseModel):
    """The id of the job or schedule made."""

    id: int


class Frame(BaseModel):
    """A table: one object per row, each column's pandas dtype, and where times and tuples sit in cells."""

    columns: list[str]
    dtypes: dict[str, str]
    items: list[dict[str, Any]]
    datetimes: dict[str, list[list[str | int]]] = {}
    tuples: dict[str, list[list[str | int]]] = {}


class Me(BaseModel):
    """The calling operator, and every role's capabilities on this server."""

    operator: str
    role: str
    account: str | None
    capabilities: dict[str, list[str]]


class FireTimes(BaseModel):
    fire_times: list[datetime]


class Health(BaseModel):
    status: str
    ledger: str
    redis: str
