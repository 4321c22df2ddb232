"""Bulk writes over HTTP (search-delete's guard and dry run, Idempotency-Key) and the Prometheus metrics."""

from __future__ import annotations

import re
from typing import Any

import sgen_ops
from sgen_ops.api.routes import ROUTES
from tests.integration.test_surface_fixtures import Jobs, add_operators, job_row, ledger_state, log_entries

from .conftest import Api


def test_search_delete_refuses_an_empty_filter_unless_all_and_dry_run_touches_nothing(
    hub: sgen_ops.Hub, api: Api
) -> None:
    ops = add_operators(hub)
    ids = Jobs(hub, ops["administrator"]).make_all(["failed", "succeeded", "dead-letter"], account="acme")
    other = Jobs(hub, ops["administrator"]).make("failed", account="globex")
    admin = api.http("administrator")
    before = ledger_state(hub)
    refused = admin.post("/api/accounts/acme/jobs/search-delete", json={})
    assert refused.status_code == 422 and "at least one filter" in refused.json()["detail"]
    dry = admin.post("/api/accounts/acme/jobs/search-delete", json={"all": True, "dry_run": True})
    assert dry.json() == {"matched": 3, "deleted": 0}
    assert ledger_state(hub) == before
    done = admin.post("/api/accounts/acme/jobs/search-delete", json={"all": True})
    assert done.status_code == 200 and done.json() == {"matched": 3, "deleted": 3}
    assert all(job_row(hub, j) == {} for j in ids.values())
    assert job_row(hub, other)["state"] == "failed"  # another account's job is out of the path's reach


def test_an_idempotency_key_answers_the_first_answer_and_changes_nothing_again(hub: sgen_ops.Hub, api: Api) -> None:
    ops = add_operators(hub)
    jobs = Jobs(hub, ops["administrator"])
    first = [jobs.make("dead-letter") for _ in range(2)]
    admin = api.http("administrator")
    key = {"Idempotency-Key": "replay-2026-11-29-a"}
    answer = admin.post("/api/accounts/*/dead-letters/replay", json={"task": "test.boom"}, headers=key)
    assert answer.json() == {"matched": 2, "replayed": 2} and "idempotent-replayed" not in answer.headers
    entries = len(log_entries(hub))
    # New dead letters arrive; the same request with the same key replays nothing more.
    later = jobs.make("dead-letter")
    again = admin.post("/api/accounts/*/dead-letters/replay", json={"task": "test.boom"}, headers=key)
    assert again.json() == {"matched": 2, "replayed": 2} and again.headers["idempotent-replayed"] == "true"
    assert job_row(hub, later)["run"] == 1 and len(log_entries(hub)) == entries
    # The same key with another request is refused; another operator's same key is their own.
    other = admin.post("/api/accounts/*/dead-letters/replay", json={"task": "test.ok"}, headers=key)
    assert other.status_code == 422 and "different request" in other.json()["detail"]
    # Replayed once each (the worker has since run them into the dead letter again), never twice.
    assert [job_row(hub, j)["run"] for j in first] == [2, 2]
    # A refused write frees its key: sent again once allowed, it runs.
    enqueue_key = {"Idempotency-Key": "enqueue-1"}
    bad = admin.post("/api/accounts/acme/jobs", json={"task": "no.such.task"}, headers=enqueue_key)
    assert bad.status_code == 422
    made = admin.post("/api/accounts/acme/jobs", json={"task": "test.ok", "payload": {"n": 1}}, headers=enqueue_key)
    repeat = admin.post("/api/accounts/acme/jobs", json={"task": "test.ok", "payload": {"n": 1}}, headers=enqueue_key)
    assert made.status_code == repeat.status_code == 201 and made.json() == repeat.json()
    assert job_row(hub, made.json()["id"])["payload"] == {"n": 1}


def scrape(api: Api) -> str:
    answer = api.http("administrator").get("/metrics")
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/plain")
    return answer.text


def sample(text: str, name: str, **labels: str) -> float:
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', line.split(" ")[0]))
        if found == labels:
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no sample {name}{labels} in:\n{text}")


def test_metrics_count_the_ledger_and_the_answers(hub: sgen_ops.Hub, api: Api) -> None:
    ops = add_operators(hub)
    add_operators(hub, account="acme", suffix="-acme")
    ids = Jobs(hub, ops["administrator"]).make_all(account="acme")
    hub.enqueue("test.ok", {"due": True}, account="globex")  # waiting, due now
    viewer = api.http("viewer")
    viewer.post(f"/api/jobs/{ids['failed']}/retry")  # refused: counted as denied
    api.http("editor").post(f"/api/jobs/{ids['failed']}/retry")
    text = scrape(api)
    assert sample(text, "sgen_ops_jobs", state="dead-letter", task="test.boom") == 1
    assert sample(text, "sgen_ops_jobs", state="queued", task="test.ok") == 2
    assert sample(text, "sgen_ops_dead_letters", task="test.boom") == 1
    assert sample(text, "sgen_ops_attempts", task="test.boom", outcome="failed") == 4
    assert sample(text, "sgen_ops_attempt_run_seconds_count", task="test.ok") == 1
    assert sample(text, "sgen_ops_attempt_run_seconds_bucket", task="test.ok", le="+Inf") == 1
    assert sample(text, "sgen_ops_queue_wait_seconds_count", task="test.boom") == 4
    assert sample(text, "sgen_ops_oldest_queued_job_age_seconds") > 0
    assert sample(text, "sgen_ops_workers", state="busy") == 0
    assert sample(text, "sgen_ops_operator_actions_total", action="rerun", result="denied") == 1
    assert sample(text, "sgen_ops_operator_actions_total", action="rerun", result="ok") == 1
    # No account and no job id is a label.
    labels = set(re.findall(r'(\w+)="', text))
    assert labels <= {"state", "task", "outcome", "le", "action", "result", "method", "route", "status"}
    assert "acme" not in text and "globex" not in text and f'"{ids["failed"]}"' not in text
    # An operator bound to one account may not read counts of every account.
    assert api.http("administrator-acme").get("/metrics").status_code == 403


def test_every_operation_is_counted_under_its_own_name(hub: sgen_ops.Hub, api: Api) -> None:
    add_operators(hub)
    http = api.http("viewer")
    for routes in ROUTES.values():
        route = routes[0]
        http.request(route.method, route.path.format(account_id="*", job_id=1, schedule_id=1, task="test.ok",
                                                  priority="high"),
                     json={} if route.method in ("POST", "PATCH") else None)
    text = scrape(api)
    counted: dict[str, Any] = {}
    for line in text.splitlines():
        if line.startswith("sgen_ops_operator_actions_total{"):
            counted[dict(re.findall(r'(\w+)="([^"]*)"', line))["action"]] = line
    assert set(counted) == set(ROUTES)
