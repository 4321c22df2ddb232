"""Where each operation of the surface is served over HTTP, and how its arguments travel: ``sgen_ops.api``
generates its endpoints from these, ``sgen_ops.api.client`` its methods, so the two never disagree.

An operation's route names the HTTP method and path, the model of the arguments that are not in the path (the
query of a GET, the JSON body otherwise), and its success status. The method of ``Operations`` of the same
name is the rest of the declaration: its parameters are the arguments (``job_id``, ``schedule_id``, ``task``
and ``priority`` fill the path's segments of those names, ``account`` or the operator's scope fills
``{account_id}``), and its return annotation says what the answer is (``wire.codec``). A new read is one
method, one entry in ``surface.declarations.READS``, one row of ``core.permissions.PERMISSIONS`` and one
route here; the endpoint and the remote method follow.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from pydantic import BaseModel

from . import schemas as s


@dataclass(frozen=True)
class Route:
    """One HTTP endpoint of an operation; ``status`` is its success status (201: it creates a job or a
    schedule and answers its id; 204: it answers nothing). ``args``: the model of the arguments outside
    the path (None: it takes none). ``bulk``: a write on many jobs answering ``{"matched", bulk}``
    (``dry_run`` only counts). ``idempotent``: an ``Idempotency-Key`` header replays the first answer."""

    method: str
    path: str
    status: int = 200
    args: type[BaseModel] | None = None
    bulk: str | None = None
    idempotent: bool = False


_JOB = "/api/jobs/{job_id}"
_ACCOUNT = "/api/accounts/{account_id}"
_SCHEDULE = "/api/schedules/{schedule_id}"
_DONE = 204
_NEW = 201

# Seed 003's endpoints exactly, then every seed 000 operation. ``{account_id}`` is an account, or ``*`` for
# every account the operator may see (``Operations.within``). Every public method of ``Operations`` but
# ``within`` (the ``{account_id}`` segment) has a route, and every route an operation: tests/api checks both.
# The remote client calls an operation's route with a body where it has one (a body refuses an argument the
# operation does not take; a query would ignore it), else its first.
ROUTES: Mapping[str, tuple[Route, ...]] = {
    # reads
    "list_jobs": (Route("GET", f"{_ACCOUNT}/jobs", args=s.JobsQuery),
                  Route("POST", f"{_ACCOUNT}/jobs/search", args=s.Search)),
    "get_job": (Route("GET", _JOB),),
    "dead_letter_groups": (Route("GET", f"{_ACCOUNT}/dead-letters/groups", args=s.GroupsQuery),),
    "throughput": (Route("GET", f"{_ACCOUNT}/throughput", args=s.ThroughputQuery),),
    "throughput_series": (Route("GET", f"{_ACCOUNT}/throughput/series", args=s.SeriesQuery),),
    "run_time_percentiles": (Route("GET", f"{_ACCOUNT}/throughput/run-times", args=s.RunTimesQuery),),
    "activity_log": (Route("GET", f"{_ACCOUNT}/activity", args=s.ActivityQuery),),
    "verify_audit": (Route("GET", "/api/audit/verify"),),
    "list_schedules": (Route("GET", f"{_ACCOUNT}/schedules"),),
    "preview_schedule": (Route("GET", "/api/schedules/preview", args=s.PreviewQuery),),
    "can": (Route("GET", "/api/me"),),
    "paused": (Route("GET", "/api/paused"),),
    "workers": (Route("GET", "/api/workers"),),
    "history": (Route("GET", f"{_ACCOUNT}/history", args=s.HistoryQuery),),
    "archive_runs": (Route("GET", "/api/archive/runs", args=s.ArchiveRunsQuery),),
    # creations
    "enqueue": (Route("POST", f"{_ACCOUNT}/jobs", _NEW, args=s.NewJob, idempotent=True),),
    "create_schedule": (Route("POST", f"{_ACCOUNT}/schedules", _NEW, args=s.NewSchedule),),
    "edit_and_replay": (Route("POST", f"{_JOB}/edit-and-replay", _NEW, args=s.NewPayload),),
    "run_schedule_now": (Route("POST", f"{_SCHEDULE}/run", _NEW),),
    # writes on one job
    "rerun": (Route("POST", f"{_JOB}/retry", _DONE),),
    "resolve": (Route("POST", f"{_JOB}/resolve", _DONE, args=s.Note),),
    "trigger": (Route("POST", f"{_JOB}/trigger", _DONE),),
    "cancel": (Route("POST", f"{_JOB}/cancel", _DONE),),
    "retry_now": (Route("POST", f"{_JOB}/retry-now", _DONE),),
    "send_to_dead_letter": (Route("POST", f"{_JOB}/dead-letter", _DONE, args=s.Reason),),
    "replay": (Route("POST", f"{_JOB}/replay", _DONE),),
    "dismiss": (Route("POST", f"{_JOB}/dismiss", _DONE),),
    "update_job": (Route("PATCH", _JOB, _DONE, args=s.JobChanges),),
    "delete_job": (Route("DELETE", _JOB, _DONE),),
    # writes on many jobs
    "delete_jobs": (Route("POST", f"{_ACCOUNT}/jobs/search-delete", args=s.SearchDelete, bulk="deleted",
                          idempotent=True),),
    "replay_dead_letters": (Route("POST", f"{_ACCOUNT}/dead-letters/replay", args=s.Triage, bulk="replayed",
                                  idempotent=True),),
    "dismiss_dead_letters": (Route("POST", f"{_ACCOUNT}/dead-letters/dismiss", args=s.Triage, bulk="dismissed",
                                   idempotent=True),),
    # schedules
    "edit_schedule": (Route("PATCH", _SCHEDULE, _DONE, args=s.ScheduleChanges),),
    "pause_schedule": (Route("POST", f"{_SCHEDULE}/pause", _DONE),),
    "resume_schedule": (Route("POST", f"{_SCHEDULE}/resume", _DONE),),
    # pauses
    "pause_task": (Route("POST", "/api/tasks/{task}/pause", _DONE),),
    "resume_task": (Route("POST", "/api/tasks/{task}/resume", _DONE),),
    "pause_queue": (Route("POST", "/api/queues/{priority}/pause", _DONE),),
    "resume_queue": (Route("POST", "/api/queues/{priority}/resume", _DONE),),
}

