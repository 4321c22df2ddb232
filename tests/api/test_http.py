"""The HTTP API in process: errors as RFC 9457 problem details with the surface's words, the admin gate
before everything, the service endpoints, and what the OpenAPI document declares."""

from __future__ import annotations

from typing import Any

import pytest

import sgen_ops
from sgen_ops import InvalidTransition, NotFound, ValidationError
from sgen_ops.api.routes import ROUTES
from tests.integration.test_surface_fixtures import Jobs, add_operators, ledger_state

from .conftest import Api

PROBLEM_FIELDS = {"type", "title", "status", "detail", "error"}


def problem(answer: Any, status: int) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    body = answer.json()
    assert set(body) == PROBLEM_FIELDS and body["status"] == status
    return body  # type: ignore[no-any-return]


def test_errors_are_problem_details_with_the_surfaces_words(hub: sgen_ops.Hub, api: Api) -> None:
    ops = add_operators(hub)
    jobs = Jobs(hub, ops["administrator"])
    queued, failed = jobs.make("queued"), jobs.make("failed")
    admin, viewer = api.http("administrator"), api.http("viewer")

    body = problem(viewer.post(f"/api/jobs/{failed}/retry"), 403)
    assert body["detail"] == "operator 'viewer' (viewer) may not rerun; allowed for: administrator, editor"
    assert (body["error"], body["title"], body["type"]) == ("AccessDenied", "Forbidden",
                                                          "urn:sgen-ops:problem:access-denied")

    with pytest.raises(InvalidTransition) as refused:
        ops["administrator"].replay(queued)
    body = problem(admin.post(f"/api/jobs/{queued}/replay"), 409)
    assert (body["detail"], body["error"]) == (str(refused.value), "InvalidTransition")

    with pytest.raises(NotFound) as missing:
        ops["administrator"].get_job(queued + 100)
    assert problem(admin.get(f"/api/jobs/{queued + 100}"), 404)["detail"] == str(missing.value)

    with pytest.raises(ValidationError) as bad:
        ops["administrator"].resolve(failed, "  ")
    assert problem(admin.post(f"/api/jobs/{failed}/resolve", json={"note": "  "}), 422)["detail"] == str(bad.value)
    # What the framework refuses before the surface (a body field the operation does not take) is a 422 too.
    body = problem(admin.patch(f"/api/jobs/{queued}", json={"state": "succeeded"}), 422)
    assert "state" in body["detail"] and body["error"] == "ValidationError"

    body = problem(api.http().get(f"/api/jobs/{queued}"), 401)
    assert body["error"] == "Unauthenticated" and "Authorization: Bearer" in body["detail"]


def test_an_unauthenticated_request_never_reaches_the_surface(hub: sgen_ops.Hub, api: Api) -> None:
    ops = add_operators(hub)
    failed = Jobs(hub, ops["administrator"]).make("failed")
    before = ledger_state(hub)
    anonymous = api.http()
    for action, routes in ROUTES.items():
        for route in routes:
            path = route.path.format(account_id="*", job_id=failed, schedule_id=1, task="test.ok", priority="high")
            answer = anonymous.request(route.method, path, json={} if route.method in ("POST", "PATCH") else None)
            assert answer.status_code == 401, (action, route.path, answer.text)
            assert answer.headers["www-authenticate"].startswith("Bearer")
    assert problem(anonymous.get("/metrics"), 401)
    assert ledger_state(hub) == before


def test_service_endpoints(hub: sgen_ops.Hub, api: Api) -> None:
    add_operators(hub)
    health = api.http().get("/healthz")
    assert health.status_code == 200 and health.json() == {"status": "ok", "ledger": "ok", "redis": "ok"}
    document = api.http().get("/openapi.json").json()
    declared = {(r.method.lower(), r.path) for routes in ROUTES.values() for r in routes}
    documented = {(m, p) for p, ops in document["paths"].items() for m in ops}
    assert declared <= documented
    assert documented - declared == {("get", "/healthz"), ("get", "/metrics")}
    assert "Problem" in document["components"]["schemas"]
    body = problem(api.http("viewer").get("/api/no-such-thing"), 404)
    assert body["type"] == "about:blank"


def test_an_account_bound_operator_sees_only_their_account(hub: sgen_ops.Hub, api: Api) -> None:
    everyone = add_operators(hub)
    add_operators(hub, account="acme", suffix="-acme")
    jobs = Jobs(hub, everyone["administrator"])
    mine, theirs = jobs.make("failed", account="acme"), jobs.make("failed", account="globex")
    acme = api.http("viewer-acme")
    assert [j["id"] for j in acme.get("/api/accounts/acme/jobs").json()["items"]] == [mine]
    assert [j["id"] for j in acme.get("/api/accounts/*/jobs").json()["items"]] == [mine]
    other = problem(acme.get("/api/accounts/globex/jobs"), 404)
    assert other["detail"] == "account 'globex' not found"
    # An operator of every account lists one account's jobs through its path.
    admin = api.http("administrator")
    assert [j["id"] for j in admin.get("/api/accounts/globex/jobs").json()["items"]] == [theirs]
    assert {j["id"] for j in admin.get("/api/accounts/*/jobs").json()["items"]} == {mine, theirs}
    # Another account's job answers exactly as a missing one does.
    theirs_body = problem(acme.get(f"/api/jobs/{theirs}"), 404)
    missing_body = problem(acme.get(f"/api/jobs/{theirs + 1000}"), 404)
    assert theirs_body == {**missing_body, "detail": missing_body["detail"].replace(str(theirs + 1000), str(theirs))}


def test_ids_past_what_the_ledger_holds_are_not_found(hub: sgen_ops.Hub, api: Api) -> None:
    add_operators(hub)
    admin = api.http("administrator")
    for ident in (0, -3, 2**31, 2**63, 10**30):
        assert problem(admin.get(f"/api/jobs/{ident}"), 404)["detail"] == f"job {ident} not found"
    assert problem(admin.get("/api/jobs/1.5"), 422)["error"] == "ValidationError"
