"""Where each operation of the surface is served over HTTP: ``sgen_ops.api`` builds its endpoints from
these, ``sgen_ops.api.client`` its calls, so the two never disagree."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Route:
    """One HTTP endpoint of an operation; ``status`` is its success status (201: it creates a job or a
    schedule and answers its id; 204: it answers nothing)."""

    method: str
    path: str
    status: int = 200


_JOB = "/api/jobs/{job_id}"
_ACCOUNT = "/api/accounts/{account_id}"
_SCHEDULE = "/api/schedules/{schedule_id}"
_DONE = 204
_NEW = 201

# Seed 003's endpoints exactly, then every seed 000 operation. ``{account_id}`` is an account, or ``*`` for
# every account the operator may see (``Operations.within``). Every public method of ``Operations`` but
# ``within`` (the ``{account_id}`` segment) has a route, and every route an operation: tests/api checks both.
ROUTES: Mapping[str, tuple[Route, ...]] = {
    # reads
    "list_jobs": (Route("GET", f"{_ACCOUNT}/jobs"), Route("POST", f"{_ACCOUNT}/jobs/search")),
    "get_job": (Route("GET", _JOB),),
    "dead_letter_groups": (Route("GET", f"{_ACCOUNT}/dead-letters/groups"),),
    "throughput": (Route("GET", f"{_ACCOUNT}/throughput"),),
    "throughput_series": (Route("GET", f"{_ACCOUNT}/throughput/series"),),
    "run_time_percentiles": (Route("GET", f"{_ACCOUNT}/throughput/run-times"),),
    "activity_log": (Route("GET", f"{_ACCOUNT}/activity"),),
    "verify_audit": (Route("GET", "/api/audit/verify"),),
    "list_schedules": (Route("GET", f"{_ACCOUNT}/schedules"),),
    "preview_schedule": (Route("GET", "/api/schedules/preview"),),
    "can": (Route("GET", "/api/me"),),
    "paused": (Route("GET", "/api/paused"),),
    "history": (Route("GET", f"{_ACCOUNT}/history"),),
    "archive_runs": (Route("GET", "/api/archive/runs"),),
    # creations
    "enqueue": (Route("POST", f"{_ACCOUNT}/jobs", _NEW),),
    "create_schedule": (Route("POST", f"{_ACCOUNT}/schedules", _NEW),),
    "edit_and_replay": (Route("POST", f"{_JOB}/edit-and-replay", _NEW),),
    "run_schedule_now": (Route("POST", f"{_SCHEDULE}/run", _NEW),),
    # writes on one job
    "rerun": (Route("POST", f"{_JOB}/retry", _DONE),),
    "resolve": (Route("POST", f"{_JOB}/resolve", _DONE),),
    "trigger": (Route("POST", f"{_JOB}/trigger", _DONE),),
    "cancel": (Route("POST", f"{_JOB}/cancel", _DONE),),
    "retry_now": (Route("POST", f"{_JOB}/retry-now", _DONE),),
    "send_to_dead_letter": (Route("POST", f"{_JOB}/dead-letter", _DONE),),
    "replay": (Route("POST", f"{_JOB}/replay", _DONE),),
    "dismiss": (Route("POST", f"{_JOB}/dismiss", _DONE),),
    "update_job": (Route("PATCH", _JOB, _DONE),),
    "delete_job": (Route("DELETE", _JOB, _DONE),),
    # writes on many jobs
    "delete_jobs": (Route("POST", f"{_ACCOUNT}/jobs/search-delete"),),
    "replay_dead_letters": (Route("POST", f"{_ACCOUNT}/dead-letters/replay"),),
    "dismiss_dead_letters": (Route("POST", f"{_ACCOUNT}/dead-letters/dismiss"),),
    # schedules
    "edit_schedule": (Route("PATCH", _SCHEDULE, _DONE),),
    "pause_schedule": (Route("POST", f"{_SCHEDULE}/pause", _DONE),),
    "resume_schedule": (Route("POST", f"{_SCHEDULE}/resume", _DONE),),
    # pauses
    "pause_task": (Route("POST", "/api/tasks/{task}/pause", _DONE),),
    "resume_task": (Route("POST", "/api/tasks/{task}/resume", _DONE),),
    "pause_queue": (Route("POST", "/api/queues/{priority}/pause", _DONE),),
    "resume_queue": (Route("POST", "/api/queues/{priority}/resume", _DONE),),
}

