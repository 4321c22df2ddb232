"""The remote client returns what the local surface returns -- the same JobPage, JobDetail and
DataFrames (columns, dtypes, values), masked alike -- and raises the same errors with the same words."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pandas as pd
import pytest

import sgen_ops
from sgen_ops import AccessDenied, InvalidTransition, NotFound, ValidationError
from sgen_ops.core.masking import MASK
from sgen_ops.surface import declarations as surface
from tests.integration.test_surface_fixtures import (
    SECRET_PAYLOAD,
    SECRET_VALUES,
    Jobs,
    add_operators,
    job_row,
)

from .conftest import Api

Read = Callable[[Any], Any]


def same(local: Any, remote: Any) -> None:
    if isinstance(local, pd.DataFrame):
        pd.testing.assert_frame_equal(local, remote, check_exact=True)
    else:
        assert local == remote


@pytest.fixture
def stocked(hub: sgen_ops.Hub) -> dict[str, int]:
    """Jobs in every state (one with secrets in its payload and error), schedules, Activity Log entries."""
    ops = add_operators(hub)
    admin = ops["administrator"]
    ids = Jobs(hub, admin).make_all()
    ids["secret"] = hub.enqueue("test.secret", SECRET_PAYLOAD, account="acme")
    hub.work()
    admin.create_schedule("test.secret", every="5m", payload={"credentials": {"api_key": "sk-live-51HxQ"}})
    admin.create_schedule("test.ok", cron="0 6 * * 1", timezone="Europe/Paris", account="acme")
    admin.run_schedule_now(1)
    admin.rerun(ids["succeeded"])
    admin.pause_queue("low")  # shown by the paused() read
    return ids


# Every read path, called the same way on a local and a remote surface: (operation, call).
READS: dict[str, tuple[str, Read]] = {
    "list_jobs": ("list_jobs", lambda ops: ops.list_jobs(include_old_succeeded=True, per_page=100)),
    "list_jobs_filtered": ("list_jobs", lambda ops: ops.list_jobs(state=["failed", "dead-letter"],
                                                                  since=timedelta(days=1))),
    "list_jobs_text": ("list_jobs", lambda ops: ops.list_jobs(text="rejected key")),
    "list_jobs_page_2": ("list_jobs", lambda ops: ops.list_jobs(per_page=3, page=2)),
    "throughput": ("throughput", lambda ops: ops.throughput(window="1h")),
    "throughput_by_account": ("throughput", lambda ops: ops.throughput(window=timedelta(hours=2), by="account")),
    "throughput_series": ("throughput_series", lambda ops: ops.throughput_series("24h", "1h")),
    "run_time_percentiles": ("run_time_percentiles", lambda ops: ops.run_time_percentiles("24h")),
    "activity_log": ("activity_log", lambda ops: ops.activity_log()),
    "dead_letter_groups": ("dead_letter_groups", lambda ops: ops.dead_letter_groups()),
    "list_schedules": ("list_schedules", lambda ops: ops.list_schedules()),
    "preview_schedule": ("preview_schedule",
                         lambda ops: ops.preview_schedule(cron="30 6 * * 1-5", timezone="UTC", count=3)),
    "verify_audit": ("verify_audit", lambda ops: ops.verify_audit()),
    "paused": ("paused", lambda ops: ops.paused()),
    "history": ("history", lambda ops: ops.history()),
    "history_filtered": ("history", lambda ops: ops.history(since=timedelta(days=1), state=["succeeded", "failed"],
                                                            task="test.ok")),
    "archive_runs": ("archive_runs", lambda ops: ops.archive_runs()),
    # When each was read aside (tests/api/test_served_client.py compares them with a live worker).
    "workers": ("workers", lambda ops: dataclasses.replace(ops.workers(), at=None)),
}


def test_the_reads_here_are_every_read() -> None:
    assert {action for action, _ in READS.values()} | {"get_job"} == {
        a for a, r in surface.READS.items() if r.capability is not None and a not in ("enqueue", "create_schedule")}


@pytest.mark.parametrize("role", ["administrator", "editor", "viewer"])
def test_every_read_returns_what_the_local_surface_returns(
    hub: sgen_ops.Hub, api: Api, stocked: dict[str, int], role: str
) -> None:
    local, remote = hub.as_operator(role), api.remote(role)
    for name, (action, read) in READS.items():
        capability = surface.READS[action].capability
        assert capability is not None
        if not local.can(capability):
            with pytest.raises(AccessDenied) as theirs:
                read(remote)
            with pytest.raises(AccessDenied) as ours:
                read(local)
            assert str(theirs.value) == str(ours.value)
            continue
        ours_value, theirs_value = read(local), read(remote)
        try:
            same(ours_value, theirs_value)
        except AssertionError as exc:
            raise AssertionError(f"{name} as {role}: {exc}") from None
    # The detail view of every job (a viewer's views are logged; the log is compared above, before them).
    for job_id in stocked.values():
        assert remote.get_job(job_id) == local.get_job(job_id)


@pytest.mark.parametrize("role", ["editor", "viewer"])
def test_no_read_path_over_http_holds_a_secret(hub: sgen_ops.Hub, api: Api, stocked: dict[str, int],
                                               role: str) -> None:
    http = api.http(role)
    secret = stocked["secret"]
    paths = [f"/api/jobs/{secret}", "/api/accounts/*/jobs?include_old_succeeded=true&per_page=500",
             "/api/accounts/acme/jobs", "/api/accounts/*/jobs?text=rejected", "/api/accounts/*/schedules",
             "/api/accounts/*/dead-letters/groups", "/api/accounts/*/throughput",
             "/api/accounts/*/throughput/series", "/api/accounts/*/throughput/run-times"]
    if role == "editor":
        # The Activity Log holds administrators' writes in clear; non-administrators read them masked.
        paths.append("/api/accounts/*/activity")
    read = [http.get(p) for p in paths] + [http.post("/api/accounts/*/jobs/search", json={"task": "test.secret"})]
    for answer in read:
        assert answer.status_code == 200, answer.text
        assert [s for s in SECRET_VALUES if s in answer.text] == [], answer.request.url
    assert http.get(f"/api/jobs/{secret}").json()["payload"]["credentials"]["api_key"] == MASK
    # The administrator's view holds them, so the check above can fail.
    assert "sk-live-51HxQ" in api.http("administrator").get(f"/api/jobs/{secret}").text


# Calls that fail, on a local and a remote surface alike.
FAILURES: dict[str, tuple[type[Exception], Callable[[Any, dict[str, int]], Any]]] = {
    "bad state": (ValidationError, lambda ops, ids: ops.list_jobs(state="exploded")),
    "unknown filter": (ValidationError, lambda ops, ids: ops.list_jobs(colour="red")),
    "bad page": (ValidationError, lambda ops, ids: ops.list_jobs(page=0)),
    "bad id": (ValidationError, lambda ops, ids: ops.get_job("seven")),
    "missing job": (NotFound, lambda ops, ids: ops.get_job(ids["failed"] + 999)),
    "refused transition": (InvalidTransition, lambda ops, ids: ops.replay(ids["queued"])),
    "empty note": (ValidationError, lambda ops, ids: ops.resolve(ids["failed"], "")),
    "bad field": (ValidationError, lambda ops, ids: ops.update_job(ids["queued"], colour="red")),
    "no field": (ValidationError, lambda ops, ids: ops.update_job(ids["queued"])),
    "bad window": (ValidationError, lambda ops, ids: ops.throughput(window="soon")),
    "bad cron": (ValidationError, lambda ops, ids: ops.create_schedule("test.ok", cron="61 * * * *")),
    "unknown task": (ValidationError, lambda ops, ids: ops.enqueue("no.such.task")),
    "not json": (ValidationError, lambda ops, ids: ops.edit_and_replay(ids["dead-letter"], {1, 2})),
    "no filter": (ValidationError, lambda ops, ids: ops.delete_jobs()),
    "missing schedule": (NotFound, lambda ops, ids: ops.pause_schedule(999)),
    "unknown action": (ValidationError, lambda ops, ids: ops.can("explode")),
}
# The framework checks these before the surface: the same error class, its own words.
CHECKED_AT_THE_BOUNDARY = {"bad state", "unknown filter", "bad page", "bad field", "bad window"}


@pytest.mark.parametrize("case", sorted(FAILURES))
def test_errors_are_the_local_surfaces(hub: sgen_ops.Hub, api: Api, case: str) -> None:
    ops = add_operators(hub)
    ids = Jobs(hub, ops["administrator"]).make_all(["queued", "failed", "dead-letter"])
    error, call = FAILURES[case]
    with pytest.raises(error) as ours:
        call(ops["administrator"], ids)
    with pytest.raises(error) as theirs:
        call(api.remote("administrator"), ids)
    if case not in CHECKED_AT_THE_BOUNDARY:
        assert str(theirs.value) == str(ours.value)


def test_writes_through_the_remote_client(hub: sgen_ops.Hub, api: Api) -> None:
    ops = add_operators(hub)
    ids = Jobs(hub, ops["administrator"]).make_all(["queued", "failed", "dead-letter", "retrying"])
    admin = api.remote("administrator")
    admin.rerun(ids["failed"])
    assert job_row(hub, ids["failed"])["state"] == "queued"
    new = admin.edit_and_replay(ids["dead-letter"], {"fixed": True})
    assert job_row(hub, new)["payload"] == {"fixed": True}
    admin.update_job(ids["queued"], priority="high", scheduled_for=timedelta(hours=2))
    assert job_row(hub, ids["queued"])["priority"] == "high"
    admin.send_to_dead_letter(ids["retrying"], "broken feed")
    assert job_row(hub, ids["retrying"])["dead_letter_reason"] == "broken feed"
    enqueued = admin.enqueue("test.ok", {"n": 5}, account="acme", priority="low", delay=timedelta(minutes=5))
    row = job_row(hub, enqueued)
    assert (row["account"], row["priority"], row["payload"]) == ("acme", "low", {"n": 5})
    schedule = admin.create_schedule("test.ok", every=timedelta(minutes=15), payload={"n": 1}, account="acme")
    admin.edit_schedule(schedule, every="30m")
    admin.pause_schedule(schedule)
    admin.resume_schedule(schedule)
    emitted = admin.run_schedule_now(schedule)
    assert job_row(hub, emitted)["schedule_id"] == schedule
    frame = admin.list_schedules().set_index("id")
    assert (frame.loc[schedule, "every"], frame.loc[schedule, "account"]) == ("30m", "acme")
    assert admin.delete_jobs(dry_run=True, task="test.nodl", state="queued") == 1
    assert admin.delete_jobs(task="test.nodl", state="queued") == 1
    assert job_row(hub, ids["failed"]) == {}
    log = ops["administrator"].activity_log()
    assert list(log["operator"].unique()) == ["administrator"]
    assert {"rerun", "edit_and_replay", "update_job", "send_to_dead_letter", "enqueue", "create_schedule",
            "edit_schedule", "pause_schedule", "resume_schedule", "run_schedule_now",
            "delete_jobs"} <= set(log["action"])


def test_keyset_paging_walks_the_same_list_as_pages(hub: sgen_ops.Hub, api: Api) -> None:
    add_operators(hub)
    for n in range(7):
        hub.enqueue("test.ok", {"n": n}, delay=3600)
    remote = api.remote("viewer")
    pages = [remote.list_jobs(per_page=3, page=p) for p in (1, 2, 3)]
    walked, after = [], None
    while True:
        page = remote.list_jobs(per_page=3, after_id=after)
        assert page.total == 7
        if not page.items:
            break
        walked += [r.id for r in page.items]
        after = page.items[-1].id
    assert walked == [r.id for p in pages for r in p.items]
    with pytest.raises(ValidationError, match="page or after_id"):
        remote.list_jobs(page=2, after_id=walked[0])


def test_the_remote_client_is_the_tokens_operator(hub: sgen_ops.Hub, api: Api) -> None:
    add_operators(hub)
    add_operators(hub, account="acme", suffix="-acme")
    remote = api.remote("editor-acme")
    assert (remote.name, remote.role, remote.account) == ("editor-acme", "editor", "acme")
    assert remote.can("rerun") and not remote.can("dismiss")
    assert remote.policy.roles_for("dismiss") == ("administrator",)
    with pytest.raises(NotFound, match="account 'globex' not found"):
        remote.within("globex")
    with pytest.raises(AccessDenied, match="bound to account 'acme'"):
        remote.enqueue("test.ok", account="globex")
    assert remote.within("acme") is remote
    assert "editor-acme" in repr(remote)
    with pytest.raises(AccessDenied, match="no API token"):
        sgen_ops.remote(api.url, transport=api.transport)
