"""The remote client: ``sgen_ops.remote(url, token)`` is the Jobs surface of an ``sgen-ops serve`` server,
with the methods, arguments, return types (``JobPage``, ``JobDetail``, DataFrames) and errors of a local
``hub.as_operator(name)``, so notebooks, views and runbooks run unchanged against a server they cannot
bypass. Each call is one request to the route ``api.routes.ROUTES`` declares for the operation.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import httpx
import pandas as pd

from ..core import validate
from ..core.permissions import DEFAULT_CAPABILITIES, Policy
from ..errors import AccessDenied, InvalidTransition, NotFound, SgenOpsError, Unavailable, ValidationError
from ..ledger.jobs import encode_payload
from ..ledger.query import JobPage, JobRow, parse_job_id
from . import wire
from .routes import ROUTES

TOKEN_VARIABLES = ("SGEN_OPS_API_TOKEN", "JUPYTERHUB_API_TOKEN")
EVERY_ACCOUNT = "*"
# Problem ``error`` -> the error raised here (the admin gate's refusal is AccessDenied, as locally).
_ERRORS: dict[str, type[SgenOpsError]] = {
    "AccessDenied": AccessDenied,
    "Unauthenticated": AccessDenied,
    "NotFound": NotFound,
    "InvalidTransition": InvalidTransition,
    "ValidationError": ValidationError,
    "Unavailable": Unavailable,
}
_BY_STATUS: dict[int, type[SgenOpsError]] = {401: AccessDenied, 403: AccessDenied, 404: NotFound,
                                             409: InvalidTransition, 422: ValidationError, 503: Unavailable}
ProgressFn = Callable[[int, int], Any]


class ServerError(SgenOpsError):
    """The server failed to answer (5xx), or answered something that is not the API's."""


def _time(value: Any, *, ahead: bool = False) -> Any:
    """A time argument as the API takes it: ISO text; a timedelta means that long ago (or ahead)."""
    if isinstance(value, timedelta):
        now = datetime.now(UTC)
        return wire.timestamp(now + value if ahead else now - value)
    if isinstance(value, datetime):
        return wire.timestamp(value)
    return value


def _span(value: Any) -> Any:
    """A window or interval: a timedelta as seconds ('90s'), text as it is."""
    return f"{value.total_seconds():g}s" if isinstance(value, timedelta) else value


def _seconds(value: Any) -> Any:
    """A delay, interval or retention: a timedelta as seconds, anything else as it is."""
    return value.total_seconds() if isinstance(value, timedelta) else value


def _payload(value: Any) -> Any:
    encode_payload(value, sys.maxsize)  # the local surface's check and words: JSON or ValidationError
    return value


def _body(**fields: Any) -> dict[str, Any]:
    return {k: v for k, v in fields.items() if v is not None}


class RemoteOperations:
    """The Jobs surface of a server, as one operator (the token's)."""

    def __init__(self, http: httpx.Client, me: dict[str, Any], account: str | None = None) -> None:
        self._http = http
        self._me = me
        self._scope = account
        overrides = {role: [a for a in actions if a in DEFAULT_CAPABILITIES]
                     for role, actions in me["capabilities"].items()}
        self.policy = Policy(overrides)

    # -- who ------------------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return str(self._me["operator"])

    @property
    def role(self) -> str:
        return str(self._me["role"])

    @property
    def account(self) -> str | None:
        """The account this operator is bound to (or acts within); None: every account."""
        return self._scope if self._scope is not None else self._me.get("account")

    @property
    def url(self) -> str:
        return str(self._http.base_url)

    def can(self, action: str) -> bool:
        """Whether this operator's role may perform ``action`` (a method name), as the server's policy says."""
        return self.policy.allows(self.role, action)

    def within(self, account: str | None) -> RemoteOperations:
        """This operator acting inside one account, as ``Operations.within``."""
        if account is None or account == self.account:
            return self
        account = validate.account(account)
        if account == self.account:
            return self
        if self.account is not None:
            raise NotFound(f"account {validate.describe(account)} not found")
        return RemoteOperations(self._http, self._me, account)

    def __repr__(self) -> str:
        scope = f", account={self.account!r}" if self.account is not None else ""
        return f"<RemoteOperations as {self.name!r} ({self.role}{scope}) at {self.url}>"

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> RemoteOperations:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- one request ----------------------------------------------------------------------------------
    def _call(self, action: str, n: int = 0, *, job_id: Any = None, schedule_id: Any = None, account: str | None = None,
              params: dict[str, Any] | None = None, json: Any = None, name: str | None = None) -> Any:
        route = ROUTES[action][n]
        segment = account if account is not None else (self.account or EVERY_ACCOUNT)
        named = quote(name, safe="") if name is not None else None
        path = route.path.format(account_id=quote(segment, safe=""), job_id=job_id, schedule_id=schedule_id,
                                 task=named, priority=named)
        kwargs: dict[str, Any] = {}
        if params:
            kwargs["params"] = {k: v for k, v in params.items() if v is not None}
        if json is not None or route.method in ("POST", "PATCH"):
            kwargs["json"] = json if json is not None else {}
        answer = self._http.request(route.method, path, **kwargs)
        return _answer(answer)

    def _own(self, target: str, ident: Any) -> int:
        """An id as the local surface takes it: ValidationError for one that is not a whole number."""
        return parse_job_id(ident)

    def _own_account(self, account: str | None, what: str) -> str | None:
        bound = self._me.get("account")
        if bound is not None and account not in (None, bound):
            raise AccessDenied(
                f"operator {self.name!r} is bound to account {bound!r} and may not {what} for account {account!r}"
            )
        return account

    # -- reads --------------------------------------------------------------------------------------
    def list_jobs(
        self,
        state: str | list[str] | None = None,
        task: str | list[str] | None = None,
        since: datetime | str | timedelta | None = None,
        until: datetime | str | timedelta | None = None,
        error_code: str | list[str] | None = None,
        text: str | None = None,
        include_old_succeeded: bool = False,
        page: int = 1,
        per_page: int = 50,
        after_id: int | None = None,
        **unknown: Any,
    ) -> JobPage:
        """The queue, newest first, one page at a time (``Operations.list_jobs``)."""
        body = _body(state=state, task=task, since=_time(since), until=_time(until), error_code=error_code,
                     text=text, after_id=after_id, **unknown)
        body.update(include_old_succeeded=include_old_succeeded, page=page, per_page=per_page)
        data = self._call("list_jobs", 1, json=body)
        return JobPage(items=[wire.decode(JobRow, r) for r in data["items"]], total=int(data["total"]),
                       page=int(data["page"]), per_page=int(data["per_page"]),
                       total_is_exact=bool(data.get("total_is_exact", True)))

    def get_job(self, job_id: int) -> Any:
        """The full record of one job, masked for non-administrators (``Operations.get_job``)."""
        return wire.decode_detail(self._call("get_job", job_id=self._own("job", job_id)))

    def throughput(self, window: str | timedelta = "1h", by: str = "task") -> pd.DataFrame:
        """Succeeded, failed, dead-lettered and cancelled counts per task inside ``window``."""
        return wire.decode_frame(self._call("throughput", params={"window": _span(window), "by": by}))

    def throughput_series(self, window: str | timedelta = "24h", interval: str | timedelta = "1h") -> pd.DataFrame:
        """Event counts per interval, task and state over ``window``, in long form for charts."""
        params = {"window": _span(window), "interval": _span(interval)}
        return wire.decode_frame(self._call("throughput_series", params=params))

    def run_time_percentiles(self, window: str | timedelta = "24h") -> pd.DataFrame:
        """Per task, p50/p95/p99 of attempt run time and queue wait (seconds) over ``window``."""
        return wire.decode_frame(self._call("run_time_percentiles", params={"window": _span(window)}))

    def history(
        self,
        since: datetime | str | timedelta | None = None,
        until: datetime | str | timedelta | None = None,
        task: str | list[str] | None = None,
        state: str | list[str] | None = None,
        account: str | None = None,
    ) -> pd.DataFrame:
        """Every job, ledger and archive together, masked for this operator (``Operations.history``)."""
        scope = self._own_account(account, "read the history of jobs")
        params = {"since": _time(since), "until": _time(until), "task": task, "state": state}
        return wire.decode_frame(self._call("history", account=scope, params=params))

    def archive_runs(self, since: datetime | str | timedelta | None = None) -> pd.DataFrame:
        """The archive's runs, newest first (``Operations.archive_runs``)."""
        return wire.decode_frame(self._call("archive_runs", params={"since": _time(since)}))

    def activity_log(
        self,
        since: datetime | str | timedelta | None = None,
        until: datetime | str | timedelta | None = None,
        operator: str | None = None,
    ) -> pd.DataFrame:
        """The Activity Log, oldest first."""
        params = {"since": _time(since), "until": _time(until), "operator": operator}
        return wire.decode_frame(self._call("activity_log", params=params))

    def verify_audit(self) -> Any:
        """Check the Activity Log's hash chain."""
        from ..ledger.audit import VerifyResult

        return wire.decode(VerifyResult, self._call("verify_audit"))

    def dead_letter_groups(
        self,
        task: str | list[str] | None = None,
        since: datetime | str | timedelta | None = None,
        until: datetime | str | timedelta | None = None,
    ) -> pd.DataFrame:
        """Dead letters counted per task and error code, biggest group first."""
        params = {"task": task, "since": _time(since), "until": _time(until)}
        return wire.decode_frame(self._call("dead_letter_groups", params=params))

    def list_schedules(self) -> pd.DataFrame:
        """The schedules this operator may see, with next and last run."""
        return wire.decode_frame(self._call("list_schedules"))

    def preview_schedule(
        self,
        cron: str | None = None,
        every: float | timedelta | str | None = None,
        timezone: str | None = None,
        count: int = 5,
    ) -> list[datetime]:
        """The next fire times of a timing before it is saved."""
        every_text = f"{_seconds(every):g}s" if isinstance(every, int | float | timedelta) else every
        params = {"cron": cron, "every": every_text, "timezone": timezone, "count": count}
        return [wire.parse_time(t) for t in self._call("preview_schedule", params=params)["fire_times"]]

    # -- writes on one job --------------------------------------------------------------------------
    def rerun(self, job_id: int) -> None:
        """Re-run a failed, succeeded or dead-letter job."""
        self._call("rerun", job_id=self._own("job", job_id))

    def cancel(self, job_id: int) -> None:
        """Cancel a queued or retrying job; a running one stops at its next checkpoint."""
        self._call("cancel", job_id=self._own("job", job_id))

    def retry_now(self, job_id: int) -> None:
        """Bring a retrying job's future retry forward to now."""
        self._call("retry_now", job_id=self._own("job", job_id))

    def send_to_dead_letter(self, job_id: int, reason: str | None = None) -> None:
        """Move a job to the dead letter without further retries."""
        self._call("send_to_dead_letter", job_id=self._own("job", job_id), json={"reason": reason})

    def replay(self, job_id: int) -> None:
        """Return a dead-lettered job to the queue with a fresh attempt counter."""
        self._call("replay", job_id=self._own("job", job_id))

    def edit_and_replay(self, job_id: int, payload: Any) -> int:
        """Queue a new job from a dead letter with an edited payload; returns the new id."""
        ident = self._own("job", job_id)
        return int(self._call("edit_and_replay", job_id=ident, json={"payload": _payload(payload)})["id"])

    def dismiss(self, job_id: int) -> None:
        """Purge a dead-lettered job (irreversible); the Activity Log keeps a snapshot."""
        self._call("dismiss", job_id=self._own("job", job_id))

    def resolve(self, job_id: int, note: str) -> None:
        """Mark a failed, retrying or dead-letter job as handled, with a note."""
        self._call("resolve", job_id=self._own("job", job_id), json={"note": note})

    def trigger(self, job_id: int) -> None:
        """Run a queued or retrying job now."""
        self._call("trigger", job_id=self._own("job", job_id))

    def update_job(self, job_id: int, **fields: Any) -> None:
        """Change a waiting job's priority, scheduled_for, max_attempts, or payload."""
        body = dict(fields)
        if "scheduled_for" in body:
            body["scheduled_for"] = _time(body["scheduled_for"], ahead=True)
        if "payload" in body:
            _payload(body["payload"])
        self._call("update_job", job_id=self._own("job", job_id), json=body)

    def delete_job(self, job_id: int) -> None:
        """Delete a job in any state but running."""
        self._call("delete_job", job_id=self._own("job", job_id))

    def enqueue(
        self,
        task: str,
        payload: Any = None,
        *,
        priority: str | None = None,
        delay: float | timedelta | None = None,
        max_attempts: int | None = None,
        account: str | None = None,
    ) -> int:
        """Queue a new job as this operator; returns its id."""
        account = self._own_account(account, "enqueue jobs")
        body = _body(task=task, priority=priority, delay=_seconds(delay), max_attempts=max_attempts)
        body["payload"] = _payload(payload)
        return int(self._call("enqueue", account=account, json=body)["id"])

    # -- schedules --------------------------------------------------------------------------------
    def create_schedule(
        self,
        task: str,
        *,
        cron: str | None = None,
        every: float | timedelta | str | None = None,
        timezone: str | None = None,
        payload: Any = None,
        max_attempts: int | None = None,
        retention: float | timedelta | str | None = None,
        priority: str | None = None,
        account: str | None = None,
    ) -> int:
        """Register a recurring job; returns the schedule id."""
        account = self._own_account(account, "create schedules")
        body = _body(task=task, cron=cron, every=_seconds(every), timezone=timezone, max_attempts=max_attempts,
                     retention=_seconds(retention), priority=priority)
        if payload is not None:
            body["payload"] = _payload(payload)
        return int(self._call("create_schedule", account=account, json=body)["id"])

    def edit_schedule(self, schedule_id: int, **changes: Any) -> None:
        """Change a schedule's fields (``enabled=False`` pauses it)."""
        body = {k: _seconds(v) if k in ("every", "retention") else v for k, v in changes.items()}
        if "payload" in body:
            _payload(body["payload"])
        self._call("edit_schedule", schedule_id=self._own("schedule", schedule_id), json=body)

    def pause_schedule(self, schedule_id: int) -> None:
        """Stop a schedule's ticks; it stays registered until resumed."""
        self._call("pause_schedule", schedule_id=self._own("schedule", schedule_id))

    def resume_schedule(self, schedule_id: int) -> None:
        """Start a paused schedule again from its next fire time."""
        self._call("resume_schedule", schedule_id=self._own("schedule", schedule_id))

    def run_schedule_now(self, schedule_id: int) -> int:
        """Emit one job from the schedule now; returns the job id."""
        return int(self._call("run_schedule_now", schedule_id=self._own("schedule", schedule_id))["id"])

    # -- pauses -------------------------------------------------------------------------------------
    def paused(self) -> pd.DataFrame:
        """The paused tasks and priority queues (``Operations.paused``)."""
        return wire.decode_frame(self._call("paused"))

    def pause_task(self, task: str) -> None:
        """Pause a task: its waiting jobs stay queued until ``resume_task``."""
        self._call("pause_task", name=_named(task, "task"))

    def resume_task(self, task: str) -> None:
        """Resume a paused task: its waiting jobs are delivered again."""
        self._call("resume_task", name=_named(task, "task"))

    def pause_queue(self, priority: str) -> None:
        """Pause a priority queue: its waiting jobs stay queued until ``resume_queue``."""
        self._call("pause_queue", name=_named(priority, "priority"))

    def resume_queue(self, priority: str) -> None:
        """Resume a paused priority queue: its waiting jobs are delivered again."""
        self._call("resume_queue", name=_named(priority, "priority"))

    # -- writes on many jobs ----------------------------------------------------------------------
    def delete_jobs(
        self,
        dry_run: bool = False,
        *,
        all: bool = False,  # the HTTP body's name: "no filter, on purpose"
        batch_size: int = 500,
        progress: ProgressFn | None = None,
        show_progress: bool = False,
        **filters: Any,
    ) -> int:
        """Delete every job ``list_jobs(**filters)`` would show, except running ones; returns the count."""
        body = _body(**{k: _time(v) if k in ("since", "until") else v for k, v in filters.items()})
        body.update(dry_run=dry_run, all=all)
        answer = self._call("delete_jobs", json=body)
        return _bulk_done(answer, "deleted", dry_run, progress)

    def replay_dead_letters(
        self,
        task: str | list[str] | None = None,
        error_code: str | list[str] | None = None,
        since: datetime | str | timedelta | None = None,
        until: datetime | str | timedelta | None = None,
        dry_run: bool = False,
        batch_size: int = 500,
        progress: ProgressFn | None = None,
        show_progress: bool = False,
    ) -> int:
        """Replay every matching dead letter; ``dry_run`` only counts. Returns the count."""
        body = _body(task=task, error_code=error_code, since=_time(since), until=_time(until))
        body.update(dry_run=dry_run, batch_size=batch_size)
        return _bulk_done(self._call("replay_dead_letters", json=body), "replayed", dry_run, progress)

    def dismiss_dead_letters(
        self,
        task: str | list[str] | None = None,
        error_code: str | list[str] | None = None,
        since: datetime | str | timedelta | None = None,
        until: datetime | str | timedelta | None = None,
        dry_run: bool = False,
        batch_size: int = 500,
        progress: ProgressFn | None = None,
        show_progress: bool = False,
    ) -> int:
        """Dismiss (purge) every matching dead letter; ``dry_run`` only counts. Returns the count."""
        body = _body(task=task, error_code=error_code, since=_time(since), until=_time(until))
        body.update(dry_run=dry_run, batch_size=batch_size)
        return _bulk_done(self._call("dismiss_dead_letters", json=body), "dismissed", dry_run, progress)


def _named(value: Any, what: str) -> str:
    """A task or priority as a path segment: ValidationError for one that is not text."""
    if not isinstance(value, str) or not value.strip():
        raise ValidationError(f"{what} {validate.describe(value)} is not valid: give a {what} name")
    return value


def _bulk_done(answer: dict[str, Any], key: str, dry_run: bool, progress: ProgressFn | None) -> int:
    """The count a bulk operation returns locally; the progress callback hears of the end (one request)."""
    matched, done = int(answer["matched"]), int(answer[key])
    if dry_run:
        return matched
    if progress is not None and matched:
        progress(done, matched)
    return done


def _answer(response: httpx.Response) -> Any:
    """The JSON answer, or the surface's error the problem names."""
    if response.status_code < 400:
        return response.json() if response.content else None
    try:
        problem = response.json()
    except ValueError:
        problem = {}
    detail = problem.get("detail") if isinstance(problem, dict) else None
    error = problem.get("error") if isinstance(problem, dict) else None
    cls = _ERRORS.get(str(error)) or _BY_STATUS.get(response.status_code)
    if cls is None:
        raise ServerError(f"the server answered {response.status_code}: {detail or response.text[:500]}")
    if cls is Unavailable:
        retry = response.headers.get("retry-after", "")
        raise Unavailable.said(str(detail or "the server cannot reach its ledger or Redis"),
                               int(retry) if retry.isdigit() else 5)
    raise cls(str(detail or f"the server answered {response.status_code}"))


def remote(
    url: str,
    token: str | None = None,
    *,
    account: str | None = None,
    timeout: float = 120.0,
    transport: httpx.BaseTransport | None = None,
) -> RemoteOperations:
    """The Jobs surface of the server at ``url`` as the operator ``token`` names (default:
    ``SGEN_OPS_API_TOKEN``, else JupyterHub's ``JUPYTERHUB_API_TOKEN``). Raises AccessDenied if the server
    refuses the token, as the admin gate refuses an unknown operator."""
    token = token or next((os.environ[v].strip() for v in TOKEN_VARIABLES if os.environ.get(v, "").strip()), None)
    if not token:
        raise AccessDenied(
            "no API token: set SGEN_OPS_API_TOKEN (an administrator makes one with `sgen-ops tokens create NAME`), "
            "or run inside JupyterHub"
        )
    http = httpx.Client(base_url=url.rstrip("/"), headers={"Authorization": f"Bearer {token}"}, timeout=timeout,
                        transport=transport)
    try:
        me = _answer(http.get(ROUTES["can"][0].path))
        return RemoteOperations(http, me).within(account)
    except BaseException:
        http.close()
        raise
