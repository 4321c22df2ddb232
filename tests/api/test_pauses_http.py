"""Pausing over HTTP: the routes, their errors as problem details, and the remote client's methods."""

from __future__ import annotations

import pytest

import sgen_ops
from sgen_ops import AccessDenied, ValidationError
from tests.integration.test_surface_fixtures import add_operators, job_row

from .conftest import Api
from .test_http import problem


def test_pause_and_resume_routes(hub: sgen_ops.Hub, api: Api) -> None:
    add_operators(hub)
    admin = api.http("administrator")
    assert admin.post("/api/tasks/test.ok/pause").status_code == 204
    assert admin.post("/api/queues/high/pause").status_code == 204
    listed = api.http("viewer").get("/api/paused")
    assert listed.status_code == 200
    assert [(r["kind"], r["name"]) for r in listed.json()["items"]] == [("task", "test.ok"), ("queue", "high")]
    job_id = hub.enqueue("test.ok")
    hub.work(burst=True)
    assert job_row(hub, job_id)["state"] == "queued"
    assert admin.post("/api/tasks/test.ok/resume").status_code == 204
    hub.work(burst=True)
    assert job_row(hub, job_id)["state"] == "succeeded"

    assert "allowed: high, normal, low" in problem(admin.post("/api/queues/urgent/pause"), 422)["detail"]
    assert "registered tasks" in problem(admin.post("/api/tasks/no.such/pause"), 422)["detail"]
    assert "it is paused" in problem(admin.post("/api/queues/high/pause"), 409)["detail"]
    assert "may not pause_task" in problem(api.http("editor").post("/api/tasks/test.ok/pause"), 403)["detail"]
    assert [(r["kind"], r["name"]) for r in admin.get("/api/paused").json()["items"]] == [("queue", "high")]


def test_the_remote_client_pauses_as_the_local_surface_does(hub: sgen_ops.Hub, api: Api) -> None:
    local = add_operators(hub)["administrator"]
    remote = api.remote("administrator")
    remote.pause_task("test.ok")
    remote.pause_queue("low")
    assert remote.paused().equals(local.paused())
    assert local.paused()["name"].tolist() == ["test.ok", "low"]
    remote.resume_task("test.ok")
    remote.resume_queue("low")
    assert remote.paused().empty
    with pytest.raises(ValidationError, match="allowed: high, normal, low"):
        remote.pause_queue("urgent")
    with pytest.raises(ValidationError, match="give a task name"):
        remote.pause_task("")
    with pytest.raises(AccessDenied, match="may not resume_queue"):
        api.remote("viewer").resume_queue("low")
    assert local.activity_log()["action"].tolist() == ["pause_task", "pause_queue", "resume_task", "resume_queue"]
