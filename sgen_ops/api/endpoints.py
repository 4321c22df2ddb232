"""The endpoints: one small handler per operation, registered at the route ``api.routes.ROUTES`` declares
for it, calling the public ``Operations`` method of the same name. Capability, account scope, masking,
state checks and the Activity Log stay in the surface; here are only the admin gate (``caller``), the
account of the path (``Operations.within``), and the translation to and from JSON.
"""

# No ``from __future__ import annotations``: FastAPI reads these signatures at run time.

from collections.abc import Callable
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Header, Path, Query, Request
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from ..errors import NotFound
from ..ledger.audit import VerifyResult
from ..ledger.query import MAX_PER_PAGE, JobDetail, JobPage
from ..surface.operations import Operations
from . import idempotency, wire
from .problems import problem_responses
from .routes import ROUTES
from .schemas import (
    MAX_INT,
    MAX_PAGE,
    Account,
    Created,
    Deleted,
    Dismissed,
    Duration,
    FireTimes,
    Frame,
    IdempotencyKey,
    JobChanges,
    Me,
    Name,
    NewJob,
    NewPayload,
    NewSchedule,
    Note,
    Reason,
    Replayed,
    ScheduleChanges,
    Search,
    SearchDelete,
    StateName,
    Text,
    Time,
    Triage,
)

EVERY_ACCOUNT = "*"

# (path, handler, add_api_route's arguments) of every endpoint, in the order they are declared below.
_ENDPOINTS: list[tuple[str, Callable[..., Any], dict[str, Any]]] = []
bearer = HTTPBearer(auto_error=False, description="a token from `sgen-ops tokens create`, or a JupyterHub token")


async def caller(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
) -> Operations:
    """The admin gate: the operator the bearer token names, or 401 before anything else runs. A token checked
    within the last ``auth.TOKEN_CHECK_SECONDS`` is answered from memory, without a thread or a query."""
    gate = request.app.state.gate
    token = credentials.credentials if credentials else None
    known = gate.remembered(token) if token else None
    if known is not None:
        return known  # type: ignore[no-any-return]
    return await run_in_threadpool(gate.operations, token)


Ops = Annotated[Operations, Depends(caller)]
AccountId = Annotated[Account, Path(description="an account, or * for every account the operator may see")]
JobId = Annotated[int, Path(description="a job id")]
ScheduleId = Annotated[int, Path(description="a schedule id")]
TaskName = Annotated[Name, Path(description="a registered task")]
Priority = Annotated[Name, Path(description="a priority queue: high, normal or low")]
IdemKey = Annotated[IdempotencyKey | None, Header(alias="Idempotency-Key")]

_READ = (401, 403, 404, 422)
_WRITE = (401, 403, 404, 409, 422)


def served(action: str, n: int = 0, *, model: Any = None, errors: tuple[int, ...] = _WRITE,
           also: dict[int | str, dict[str, Any]] | None = None) -> Callable[[Any], Any]:
    """Register the handler at route ``n`` of ``action`` as the surface declares it (``also``: more OpenAPI
    responses, such as another media type)."""
    route = ROUTES[action][n]

    def register(handler: Callable[..., Any]) -> Callable[..., Any]:
        _ENDPOINTS.append((route.path, handler, {
            "methods": [route.method], "status_code": route.status, "response_model": model, "name": action,
            "operation_id": handler.__name__, "responses": {**problem_responses(*errors), **(also or {})},
            "summary": (handler.__doc__ or action).strip().splitlines()[0],
        }))
        return handler

    return register


def install(app: FastAPI) -> None:
    """Add every endpoint to ``app``."""
    for path, handler, options in _ENDPOINTS:
        app.add_api_route(path, handler, **options)


def held(ops: Operations, action: str, target: str, ident: int) -> int:
    """An id the ledger's integer columns can hold; any other names no record. It is answered 404 here,
    as the surface answers a missing one, because PostgreSQL refuses to compare it ("integer out of
    range"); the capability is checked first, as the surface does (its refusal needs no lookup)."""
    if not 1 <= ident <= MAX_INT and ops.can(action):
        raise NotFound(f"{target} {ident} not found")
    return ident


def within(ops: Operations, account_id: str) -> Operations:
    return ops.within(None if account_id == EVERY_ACCOUNT else account_id)


def answer(value: Any) -> JSONResponse:
    """A dataclass answer as JSON straight away: the hot reads skip re-validating what the surface built
    (its shape is the declared model's, which the schemathesis run checks)."""
    return JSONResponse(wire.encode(value))


def _given(body: Any) -> dict[str, Any]:
    """The fields the request body set (a field left out is not changed)."""
    return {name: getattr(body, name) for name in body.model_fields_set}


def _once(request: Request, ops: Operations, key: str | None, body: Any,
          write: Callable[[], tuple[int, Any]]) -> JSONResponse:
    fp = idempotency.fingerprint(request.method, request.url.path, body.model_dump(mode="json"))
    status, answer, replayed = idempotency.run_once(ops.hub.ledger, ops.operator.id, key, fp, write)
    return JSONResponse(answer, status_code=status, headers={"Idempotent-Replayed": "true"} if replayed else None)


# -- the queue ----------------------------------------------------------------------------------------
@served("list_jobs", 0, model=JobPage, errors=_READ)
def list_jobs(
    ops: Ops,
    account_id: AccountId,
    state: Annotated[list[StateName] | None, Query()] = None,
    task: Annotated[list[Name] | None, Query()] = None,
    since: Annotated[Time | None, Query()] = None,
    until: Annotated[Time | None, Query()] = None,
    error_code: Annotated[list[Name] | None, Query()] = None,
    text: Annotated[Text | None, Query()] = None,
    include_old_succeeded: bool = False,
    page: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 1,
    per_page: Annotated[int, Query(ge=1, le=MAX_PER_PAGE)] = 50,
    after_id: Annotated[int | None, Query(ge=1, le=MAX_INT)] = None,
) -> Any:
    """List jobs: the account's queue, newest first, one page at a time (or after ``after_id``)."""
    search = Search(state=state, task=task, since=since, until=until, error_code=error_code, text=text,
                    include_old_succeeded=include_old_succeeded, page=page, per_page=per_page, after_id=after_id)
    return answer(within(ops, account_id).list_jobs(**search.model_dump(exclude_none=True)))


@served("list_jobs", 1, model=JobPage, errors=_READ)
def search_jobs(ops: Ops, account_id: AccountId, body: Search) -> Any:
    """Search jobs: the same list, filters as JSON."""
    return answer(within(ops, account_id).list_jobs(**body.model_dump(exclude_none=True)))


@served("delete_jobs", model=Deleted)
def delete_jobs(ops: Ops, account_id: AccountId, body: SearchDelete, request: Request, key: IdemKey = None) -> Any:
    """Delete jobs by search: what the filters match (running jobs excepted); ``dry_run`` only counts.
    An empty filter is refused unless ``all`` is true."""
    scoped = within(ops, account_id)
    filters = body.model_dump(exclude_none=True, exclude={"dry_run", "all"})

    def write() -> tuple[int, Any]:
        matched = scoped.delete_jobs(dry_run=True, all=body.all, **filters)
        deleted = scoped.delete_jobs(all=body.all, **filters) if matched and not body.dry_run else 0
        return 200, {"matched": matched, "deleted": deleted}

    return _once(request, ops, key, body, write)


@served("enqueue", model=Created)
def enqueue(ops: Ops, account_id: AccountId, body: NewJob, request: Request, key: IdemKey = None) -> Any:
    """Enqueue a job in the account, as an integration does."""
    scoped = within(ops, account_id)
    return _once(request, ops, key, body, lambda: (201, {"id": scoped.enqueue(**_given(body))}))


@served("dead_letter_groups", model=Frame, errors=_READ)
def dead_letter_groups(
    ops: Ops,
    account_id: AccountId,
    task: Annotated[list[Name] | None, Query()] = None,
    since: Annotated[Time | None, Query()] = None,
    until: Annotated[Time | None, Query()] = None,
) -> Any:
    """Dead letters counted per task and error code."""
    return wire.encode_frame(within(ops, account_id).dead_letter_groups(task=task, since=since, until=until))


def _triage(action: Literal["replay_dead_letters", "dismiss_dead_letters"], done: str, ops: Operations,
            account_id: str, body: Triage, request: Request, key: str | None) -> JSONResponse:
    scoped = within(ops, account_id)
    run = getattr(scoped, action)
    filters = body.model_dump(exclude_none=True, exclude={"dry_run"})

    def write() -> tuple[int, Any]:
        matched = run(dry_run=True, **filters)
        changed = run(**filters) if matched and not body.dry_run else 0
        return 200, {"matched": matched, done: changed}

    return _once(request, ops, key, body, write)


@served("replay_dead_letters", model=Replayed)
def replay_dead_letters(ops: Ops, account_id: AccountId, body: Triage, request: Request, key: IdemKey = None) -> Any:
    """Replay every dead letter the filters match; ``dry_run`` only counts."""
    return _triage("replay_dead_letters", "replayed", ops, account_id, body, request, key)


@served("dismiss_dead_letters", model=Dismissed)
def dismiss_dead_letters(ops: Ops, account_id: AccountId, body: Triage, request: Request, key: IdemKey = None) -> Any:
    """Dismiss (purge) every dead letter the filters match; ``dry_run`` only counts."""
    return _triage("dismiss_dead_letters", "dismissed", ops, account_id, body, request, key)


# -- one job ------------------------------------------------------------------------------------------
@served("get_job", model=JobDetail, errors=_READ)
def get_job(ops: Ops, job_id: JobId) -> Any:
    """Get job: the full record, masked for non-administrators."""
    return answer(ops.get_job(held(ops, "get_job", "job", job_id)))


@served("update_job")
def update_job(ops: Ops, job_id: JobId, body: JobChanges) -> None:
    """Update job: priority, scheduled_for, max_attempts, or payload while not yet run."""
    ops.update_job(held(ops, "update_job", "job", job_id), **_given(body))


@served("delete_job")
def delete_job(ops: Ops, job_id: JobId) -> None:
    """Delete job (any state but running); the Activity Log keeps a snapshot."""
    ops.delete_job(held(ops, "delete_job", "job", job_id))


@served("rerun")
def rerun(ops: Ops, job_id: JobId) -> None:
    """Retry job: a failed, succeeded or dead-letter job queued again with a fresh attempt counter."""
    ops.rerun(held(ops, "rerun", "job", job_id))


@served("resolve")
def resolve(ops: Ops, job_id: JobId, body: Note) -> None:
    """Resolve job: mark a failure handled, with a note saying how."""
    ops.resolve(held(ops, "resolve", "job", job_id), body.note)


@served("trigger")
def trigger(ops: Ops, job_id: JobId) -> None:
    """Trigger job: run a queued or retrying job now."""
    ops.trigger(held(ops, "trigger", "job", job_id))


@served("cancel")
def cancel(ops: Ops, job_id: JobId) -> None:
    """Cancel job (a running one stops at its next checkpoint)."""
    ops.cancel(held(ops, "cancel", "job", job_id))


@served("retry_now")
def retry_now(ops: Ops, job_id: JobId) -> None:
    """Retry now: bring a retrying job's future retry forward."""
    ops.retry_now(held(ops, "retry_now", "job", job_id))


@served("send_to_dead_letter")
def send_to_dead_letter(ops: Ops, job_id: JobId, body: Reason | None = None) -> None:
    """Send to dead letter, with an optional reason."""
    ops.send_to_dead_letter(held(ops, "send_to_dead_letter", "job", job_id), body.reason if body else None)


@served("replay")
def replay(ops: Ops, job_id: JobId) -> None:
    """Replay from dead letter with a fresh attempt counter."""
    ops.replay(held(ops, "replay", "job", job_id))


@served("dismiss")
def dismiss(ops: Ops, job_id: JobId) -> None:
    """Dismiss: purge a dead letter (the Activity Log keeps it)."""
    ops.dismiss(held(ops, "dismiss", "job", job_id))


@served("edit_and_replay", model=Created)
def edit_and_replay(ops: Ops, job_id: JobId, body: NewPayload) -> Any:
    """Edit and replay: a new job from a dead letter with an edited payload."""
    return {"id": ops.edit_and_replay(held(ops, "edit_and_replay", "job", job_id), body.payload)}


# -- schedules ----------------------------------------------------------------------------------------
@served("list_schedules", model=Frame, errors=_READ)
def list_schedules(ops: Ops, account_id: AccountId) -> Any:
    """The account's schedules with next and last run."""
    return wire.encode_frame(within(ops, account_id).list_schedules())


@served("create_schedule", model=Created)
def create_schedule(ops: Ops, account_id: AccountId, body: NewSchedule) -> Any:
    """Create schedule: a cron expression or an interval, a payload template, a retry budget."""
    fields = _given(body)
    return {"id": within(ops, account_id).create_schedule(fields.pop("task"), **fields)}


@served("preview_schedule", model=FireTimes, errors=_READ)
def preview_schedule(
    ops: Ops,
    cron: Annotated[Text | None, Query(max_length=200)] = None,
    every: Annotated[Text | None, Query(max_length=64)] = None,
    timezone: Annotated[Text | None, Query(max_length=64)] = None,
    count: Annotated[int, Query(ge=1, le=100)] = 5,
) -> Any:
    """The next fire times of a timing, before it is saved."""
    return {"fire_times": ops.preview_schedule(cron=cron, every=every, timezone=timezone, count=count)}


@served("edit_schedule")
def edit_schedule(ops: Ops, schedule_id: ScheduleId, body: ScheduleChanges) -> None:
    """Edit schedule (``enabled`` false pauses it)."""
    ops.edit_schedule(held(ops, "edit_schedule", "schedule", schedule_id), **_given(body))


@served("pause_schedule")
def pause_schedule(ops: Ops, schedule_id: ScheduleId) -> None:
    """Pause a schedule: it emits nothing until resumed."""
    ops.pause_schedule(held(ops, "pause_schedule", "schedule", schedule_id))


@served("resume_schedule")
def resume_schedule(ops: Ops, schedule_id: ScheduleId) -> None:
    """Resume a paused schedule."""
    ops.resume_schedule(held(ops, "resume_schedule", "schedule", schedule_id))


@served("run_schedule_now", model=Created)
def run_schedule_now(ops: Ops, schedule_id: ScheduleId) -> Any:
    """Run schedule now: one job out of band; answers its id."""
    return {"id": ops.run_schedule_now(held(ops, "run_schedule_now", "schedule", schedule_id))}


# -- pauses -------------------------------------------------------------------------------------------
@served("paused", model=Frame, errors=_READ)
def paused(ops: Ops) -> Any:
    """The paused tasks and priority queues."""
    return wire.encode_frame(ops.paused())


@served("pause_task")
def pause_task(ops: Ops, task: TaskName) -> None:
    """Pause a task: its waiting jobs stay queued until resumed."""
    ops.pause_task(task)


@served("resume_task")
def resume_task(ops: Ops, task: TaskName) -> None:
    """Resume a paused task: its waiting jobs are delivered again."""
    ops.resume_task(task)


@served("pause_queue")
def pause_queue(ops: Ops, priority: Priority) -> None:
    """Pause a priority queue: its waiting jobs stay queued until resumed."""
    ops.pause_queue(priority)


@served("resume_queue")
def resume_queue(ops: Ops, priority: Priority) -> None:
    """Resume a paused priority queue: its waiting jobs are delivered again."""
    ops.resume_queue(priority)


# -- statistics and the Activity Log ------------------------------------------------------------------
@served("throughput", model=Frame, errors=_READ)
def throughput(ops: Ops, account_id: AccountId, window: Duration = "1h",
               by: Literal["task", "account"] = "task") -> Any:
    """Succeeded, failed, dead-lettered and cancelled counts per task inside the window."""
    return wire.encode_frame(within(ops, account_id).throughput(window=window, by=by))


@served("throughput_series", model=Frame, errors=_READ)
def throughput_series(ops: Ops, account_id: AccountId, window: Duration = "24h", interval: Duration = "1h") -> Any:
    """Event counts per interval, task and state."""
    return wire.encode_frame(within(ops, account_id).throughput_series(window=window, interval=interval))


@served("run_time_percentiles", model=Frame, errors=_READ)
def run_time_percentiles(ops: Ops, account_id: AccountId, window: Duration = "24h") -> Any:
    """Per task, p50/p95/p99 of run time and queue wait."""
    return wire.encode_frame(within(ops, account_id).run_time_percentiles(window=window))


@served("activity_log", model=Frame, errors=_READ)
def activity_log(
    ops: Ops,
    account_id: AccountId,
    since: Annotated[Time | None, Query()] = None,
    until: Annotated[Time | None, Query()] = None,
    operator: Annotated[Name | None, Query()] = None,
) -> Any:
    """The Activity Log, oldest first."""
    return wire.encode_frame(within(ops, account_id).activity_log(since=since, until=until, operator=operator))


@served("history", model=Frame, errors=_READ, also={200: {"content": {wire.PARQUET: {
    "schema": {"type": "string", "format": "binary"}}}}})
def history(
    ops: Ops,
    account_id: AccountId,
    request: Request,
    since: Annotated[Time | None, Query()] = None,
    until: Annotated[Time | None, Query()] = None,
    task: Annotated[list[Name] | None, Query()] = None,
    state: Annotated[list[StateName] | None, Query()] = None,
) -> Any:
    """History: every job of the account, ledger and archive together, masked; as JSON, or as Parquet for
    ``Accept: application/vnd.apache.parquet`` (payloads as JSON text)."""
    states = [str(s) for s in state] if state else None
    frame = within(ops, account_id).history(since=since, until=until, task=task, state=states)
    if wire.PARQUET in request.headers.get("accept", ""):
        return Response(wire.encode_parquet(frame), media_type=wire.PARQUET)
    return wire.encode_frame(frame)


@served("archive_runs", model=Frame, errors=_READ)
def archive_runs(ops: Ops, since: Annotated[Time | None, Query()] = None) -> Any:
    """The archive's runs, newest first, with the ledger's size before and after each."""
    return wire.encode_frame(ops.archive_runs(since=since))


@served("verify_audit", model=VerifyResult, errors=_READ)
def verify_audit(ops: Ops) -> Any:
    """Check the Activity Log's hash chain."""
    return ops.verify_audit()


@served("can", model=Me, errors=(401,))
def me(ops: Ops) -> Any:
    """The calling operator, their role and account, and what each role may do."""
    return {
        "operator": ops.name,
        "role": ops.role,
        "account": ops.account,
        "capabilities": {role: sorted(ops.policy.actions_for(role)) for role in ("administrator", "editor", "viewer")},
    }
