"""Declared once: every operation of the surface has an HTTP route and every route an operation, each
route's arguments are the method's, the remote client has every method with the same parameters, and each
read's declared capability is the one its method checks."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.routing import APIRoute

import sgen_ops
from sgen_ops import AccessDenied
from sgen_ops.api import create_app
from sgen_ops.api.client import RemoteOperations
from sgen_ops.api.routes import ROUTES
from sgen_ops.ledger import query, schedules
from sgen_ops.surface import declarations as surface
from sgen_ops.surface.declarations import OPERATIONS, READS
from sgen_ops.surface.operations import Operations

# ``within`` is the ``{account_id}`` segment of the account routes, not an operation of its own.
NOT_OPERATIONS = {"within"}
SERVICE_PATHS = {"/healthz", "/metrics", "/openapi.json", "/docs", "/docs/oauth2-redirect"}


def public_methods(cls: type) -> set[str]:
    return {name for name, value in vars(cls).items() if not name.startswith("_") and inspect.isfunction(value)}


def test_every_operation_has_a_route_and_every_route_an_operation() -> None:
    operations = public_methods(Operations) - NOT_OPERATIONS
    assert set(ROUTES) == operations
    # Each operation is declared once: a write in OPERATIONS or a read/creation in READS (bulk triage
    # and the schedule writes are OPERATIONS too).
    assert set(ROUTES) <= set(OPERATIONS) | set(READS)
    assert not set(READS) & set(OPERATIONS)


def test_the_app_serves_exactly_the_declared_routes(hub: sgen_ops.Hub) -> None:
    app = create_app(hub, hub_users=None)
    served = {(r.name, m, r.path) for r in app.routes if isinstance(r, APIRoute) and r.path not in SERVICE_PATHS
              for m in r.methods}
    declared = {(action, route.method, route.path) for action, routes in ROUTES.items() for route in routes}
    assert served == declared
    statuses = {(r.name, r.path): r.status_code for r in app.routes if isinstance(r, APIRoute)}
    assert all(statuses[(a, r.path)] == r.status for a, routes in ROUTES.items() for r in routes)


def test_seed_003_endpoints_are_served_at_their_paths() -> None:
    declared = {(r.method, r.path): action for action, routes in ROUTES.items() for r in routes}
    seed = {
        ("GET", "/api/accounts/{account_id}/jobs"): "list_jobs",
        ("POST", "/api/accounts/{account_id}/jobs/search"): "list_jobs",
        ("POST", "/api/accounts/{account_id}/jobs/search-delete"): "delete_jobs",
        ("GET", "/api/jobs/{job_id}"): "get_job",
        ("PATCH", "/api/jobs/{job_id}"): "update_job",
        ("DELETE", "/api/jobs/{job_id}"): "delete_job",
        ("POST", "/api/jobs/{job_id}/retry"): "rerun",
        ("POST", "/api/jobs/{job_id}/resolve"): "resolve",
        ("POST", "/api/jobs/{job_id}/trigger"): "trigger",
        ("POST", "/api/jobs/{job_id}/cancel"): "cancel",
        ("POST", "/api/jobs/{job_id}/retry-now"): "retry_now",
        ("POST", "/api/jobs/{job_id}/dead-letter"): "send_to_dead_letter",
        ("POST", "/api/jobs/{job_id}/replay"): "replay",
        ("POST", "/api/jobs/{job_id}/dismiss"): "dismiss",
        ("POST", "/api/jobs/{job_id}/edit-and-replay"): "edit_and_replay",
        ("POST", "/api/accounts/{account_id}/jobs"): "enqueue",
        ("GET", "/api/accounts/{account_id}/schedules"): "list_schedules",
        ("POST", "/api/accounts/{account_id}/schedules"): "create_schedule",
        ("PATCH", "/api/schedules/{id}".replace("{id}", "{schedule_id}")): "edit_schedule",
        ("POST", "/api/schedules/{schedule_id}/pause"): "pause_schedule",
        ("POST", "/api/schedules/{schedule_id}/resume"): "resume_schedule",
        ("POST", "/api/schedules/{schedule_id}/run"): "run_schedule_now",
        ("GET", "/api/accounts/{account_id}/throughput"): "throughput",
        ("GET", "/api/accounts/{account_id}/activity"): "activity_log",
    }
    assert {key: declared.get(key) for key in seed} == seed


def _arguments(route: APIRoute) -> set[str]:
    """The query parameters and body fields a route takes (path parameters and headers aside)."""
    dependant = route.dependant
    names: set[str] = set()
    for param in [*dependant.query_params, *dependant.body_params]:
        annotation = param.field_info.annotation
        model = next((a for a in getattr(annotation, "__args__", (annotation,)) if hasattr(a, "model_fields")), None)
        names |= set(model.model_fields) if model is not None else {param.name}
    return names


# What the methods taking ``**keywords`` accept, as the surface declares it.
KEYWORDS = {
    "list_jobs": query.FILTERS,
    "delete_jobs": query.FILTERS,
    "update_job": surface.MUTABLE_FIELDS,
    "edit_schedule": schedules.EDITABLE_FIELDS,
}
# Path segments, and the arguments that stay in the caller's process (a progress callback, a bar; the server
# picks its own batches for search-delete).
PATH_ARGUMENTS = {"job_id", "schedule_id", "task", "priority", "account"}
LOCAL_ARGUMENTS = {"progress", "show_progress", "batch_size"}


def test_each_routes_arguments_are_its_methods_parameters(hub: sgen_ops.Hub) -> None:
    app = create_app(hub, hub_users=None)
    for route in app.routes:
        if not isinstance(route, APIRoute) or route.name not in ROUTES or route.name == "can":
            continue
        params = inspect.signature(getattr(Operations, route.name)).parameters
        accepted = set(params) - {"self"}
        if any(p.kind is p.VAR_KEYWORD for p in params.values()):
            accepted |= set(KEYWORDS[route.name])
        assert _arguments(route) <= accepted, f"{route.name} {route.path}: {_arguments(route) - accepted}"


@pytest.mark.parametrize("action", sorted(set(ROUTES) - {"can"}))
def test_each_methods_parameters_travel_by_every_route(action: str) -> None:
    """No argument is dropped on the way: each is a path segment, a field of the route's arguments, or one
    that stays with the caller."""
    params = inspect.signature(getattr(Operations, action)).parameters
    named = {p.name for p in params.values() if p.kind is not p.VAR_KEYWORD} - {"self"}
    for route in ROUTES[action]:
        fields = set(route.args.model_fields) if route.args is not None else set()
        in_path = {n for n in PATH_ARGUMENTS if f"{{{n}}}" in route.path or (n == "account" and "{account_id}"
                                                                              in route.path)}
        assert named - in_path - fields - LOCAL_ARGUMENTS == set(), (action, route.path)


def test_the_remote_client_has_every_method_with_the_same_parameters() -> None:
    local = public_methods(Operations)
    assert local <= public_methods(RemoteOperations), local - public_methods(RemoteOperations)
    for name in sorted(local):
        ours = inspect.signature(getattr(Operations, name)).parameters
        theirs = inspect.signature(getattr(RemoteOperations, name)).parameters
        assert [(p.name, p.kind, p.default) for p in ours.values()] == [
            (p.name, p.kind, p.default) for p in theirs.values()], name
    for prop in ("name", "role", "account"):
        assert isinstance(inspect.getattr_static(RemoteOperations, prop), property)


# One call of each read or creation, as a role that may do nothing at all.
CALLS: dict[str, Callable[[Operations], Any]] = {
    "list_jobs": lambda ops: ops.list_jobs(),
    "get_job": lambda ops: ops.get_job(1),
    "dead_letter_groups": lambda ops: ops.dead_letter_groups(),
    "throughput": lambda ops: ops.throughput(),
    "throughput_series": lambda ops: ops.throughput_series(),
    "run_time_percentiles": lambda ops: ops.run_time_percentiles(),
    "activity_log": lambda ops: ops.activity_log(),
    "verify_audit": lambda ops: ops.verify_audit(),
    "list_schedules": lambda ops: ops.list_schedules(),
    "preview_schedule": lambda ops: ops.preview_schedule(cron="0 6 * * *"),
    "enqueue": lambda ops: ops.enqueue("test.ok"),
    "create_schedule": lambda ops: ops.create_schedule("test.ok", every="1h"),
    "paused": lambda ops: ops.paused(),
    "history": lambda ops: ops.history(),
    "archive_runs": lambda ops: ops.archive_runs(),
    "workers": lambda ops: ops.workers(),
}


@pytest.mark.parametrize("action", sorted(a for a, r in READS.items() if r.capability is not None))
def test_each_reads_declared_capability_is_the_one_it_checks(make_hub: Callable[..., sgen_ops.Hub],
                                                             action: str) -> None:
    hub = make_hub(capabilities={"viewer": []})
    hub.add_operator("nobody", "viewer")
    with pytest.raises(AccessDenied, match=rf"may not {READS[action].capability};"):
        CALLS[action](hub.as_operator("nobody"))


def test_every_read_has_a_call_here() -> None:
    assert set(CALLS) == {a for a, r in READS.items() if r.capability is not None}
    assert surface.READS["can"].capability is None
