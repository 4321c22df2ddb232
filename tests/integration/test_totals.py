"""Totals that never scan (docs/totals.md): exact up to the cap, past it a bound flagged inexact and shown
"10,000+"; the default view's parts counted against one cap; dead-letter groups capped the same way; keyset
paging that walks every job once while new ones arrive; and the flag through the API, the remote client,
the command line and the views."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pandas as pd
import pytest
from sqlalchemy import update

import sgen_ops
from sgen_ops.core.times import utcnow
from sgen_ops.ledger import query
from sgen_ops.ledger.store import Job

from ..helpers import bring_to
from .test_surface_fixtures import add_operators


def _queued(hub: sgen_ops.Hub, n: int, task: str = "test.ok", account: str | None = None) -> list[int]:
    return hub.enqueue_many(task, [{"n": i} for i in range(n)], account=account, delay=3600)


@pytest.fixture
def cap(monkeypatch: pytest.MonkeyPatch) -> int:
    """A cap of 5, so that a handful of jobs goes past it."""
    monkeypatch.setattr(query, "COUNT_CAP", 5)
    return 5


def test_a_total_is_exact_up_to_the_cap_and_a_flagged_bound_past_it(hub: sgen_ops.Hub, cap: int) -> None:
    admin = add_operators(hub)["administrator"]
    acme = add_operators(hub, account="acme", suffix="-acme")["viewer"]
    _queued(hub, 8, account="acme")
    _queued(hub, 3, task="test.boom", account="globex")

    page = admin.list_jobs(per_page=4)
    assert (page.total, page.total_is_exact, page.total_text) == (5, False, "5+")
    assert len(page.items) == 4 and page.more_after()
    assert len(admin.list_jobs().items) == 11  # the cap bounds the count, never the page
    for ops, filters in ((admin, {"state": "queued"}), (admin, {"task": "test.ok"}), (acme, {})):
        found = ops.list_jobs(**filters)
        assert (found.total, found.total_is_exact) == (5, False), filters
    for ops, filters, exact in ((admin, {"task": "test.boom"}, 3), (acme, {"task": "test.boom"}, 0),
                                (admin.within("globex"), {}, 3)):
        found = ops.list_jobs(**filters)
        assert (found.total, found.total_is_exact, found.total_text) == (exact, True, str(exact)), filters
    _queued(hub, 2, task="test.boom", account="globex")
    at_cap = admin.list_jobs(task="test.boom", per_page=5)
    assert (at_cap.total, at_cap.total_is_exact) == (5, True)  # exactly the cap is still exact
    assert not at_cap.more_after()


def test_the_default_views_parts_share_one_cap(hub: sgen_ops.Hub, cap: int) -> None:
    """Unfinished jobs and succeeded ones inside the retention window are counted from different indexes,
    against one cap; succeeded jobs past the window are not in the view and not counted."""
    admin = add_operators(hub)["administrator"]
    waiting = _queued(hub, 2)
    done = _queued(hub, 4)
    for job_id in done:
        bring_to(hub, job_id, "succeeded")
    with hub.ledger.write() as session:  # two of them succeeded before the window
        session.execute(update(Job).where(Job.id.in_(done[:2])).values(updated_at=utcnow() - timedelta(days=30)))
    page = admin.list_jobs()
    assert (page.total, page.total_is_exact) == (4, True)
    assert {r.id for r in page.items} == {*waiting, *done[2:]}
    _queued(hub, 2)
    assert (admin.list_jobs().total, admin.list_jobs().total_is_exact) == (5, False)
    assert admin.list_jobs(include_old_succeeded=True).total_is_exact is False
    assert (admin.list_jobs(state="succeeded").total, admin.list_jobs(state="succeeded").total_is_exact) == (4, True)


def test_keyset_paging_walks_every_job_once_while_new_ones_arrive(hub: sgen_ops.Hub, cap: int) -> None:
    admin = add_operators(hub)["administrator"]
    first = _queued(hub, 12)
    # Jobs created at the same moment are ordered by id, the highest first: four an hour ago, the rest now.
    with hub.ledger.write() as session:
        session.execute(update(Job).where(Job.id.in_(first[4:8])).values(created_at=utcnow() - timedelta(hours=1)))
        session.execute(update(Job).where(Job.id.in_([*first[:4], *first[8:]])).values(created_at=utcnow()))
    expected = [*reversed(first[8:]), *reversed(first[:4]), *reversed(first[4:8])]
    seen: list[int] = []
    page = admin.list_jobs(per_page=5)
    while True:
        seen += [r.id for r in page.items]
        _queued(hub, 2)  # newer than every job listed: never on a later page
        if not page.more_after(0):
            break
        page = admin.list_jobs(per_page=5, after_id=page.items[-1].id)
        assert (page.page, page.total_is_exact) == (1, False)
    assert seen == expected
    with pytest.raises(sgen_ops.ValidationError, match="page or after_id"):
        admin.list_jobs(page=2, after_id=first[0])


def test_after_a_job_of_another_account_is_not_found(hub: sgen_ops.Hub) -> None:
    acme = add_operators(hub, account="acme", suffix="-acme")["viewer"]
    [theirs] = _queued(hub, 1, account="globex")
    [mine] = _queued(hub, 1, account="acme")
    with pytest.raises(sgen_ops.NotFound):
        acme.list_jobs(after_id=theirs)
    assert acme.list_jobs(after_id=mine).items == []


def test_dead_letter_groups_are_counted_up_to_their_cap(hub: sgen_ops.Hub, monkeypatch: pytest.MonkeyPatch) -> None:
    from .test_surface_fixtures import Jobs

    monkeypatch.setattr(query, "GROUP_COUNT_CAP", 2)
    everyone = add_operators(hub)
    admin = everyone["administrator"]
    jobs = Jobs(hub, admin)
    for _ in range(3):
        jobs.make("dead-letter", account="acme")
    manual = _queued(hub, 1, account="globex")[0]
    admin.send_to_dead_letter(manual, "stuck")
    groups = everyone["viewer"].dead_letter_groups()
    rows = [(r.task, None if pd.isna(r.error_code) else r.error_code, r.count, r.count_is_exact)
            for r in groups.itertuples()]
    assert rows == [("test.boom", "ValueError", 2, False), ("test.ok", None, 1, True)]
    assert groups["newest"].notna().all()
    acme = add_operators(hub, account="globex", suffix="-globex")["viewer"]
    assert [(r.task, r.count, r.count_is_exact) for r in acme.dead_letter_groups().itertuples()] == [
        ("test.ok", 1, True)]
    assert admin.dead_letter_groups(task="test.ok")["count"].tolist() == [1]


def test_dead_letter_groups_are_one_statement_whatever_the_groups(hub: sgen_ops.Hub) -> None:
    """The groups are found and counted in one statement whose text does not depend on the groups found, so the
    backend plans it once per connection (a statement or UNION arm per group was planned anew each call)."""
    from sqlalchemy import event

    from .test_surface_fixtures import Jobs

    admin = add_operators(hub)["administrator"]
    jobs = Jobs(hub, admin)
    calls: list[list[str]] = []

    def seen(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        calls[-1].append(statement)

    def groups_read() -> pd.DataFrame:
        calls.append([])
        event.listen(hub.ledger.engine, "before_cursor_execute", seen)
        try:
            return admin.dead_letter_groups()
        finally:
            event.remove(hub.ledger.engine, "before_cursor_execute", seen)

    jobs.make("dead-letter")
    assert len(groups_read()) == 1
    for _ in range(2):
        admin.send_to_dead_letter(_queued(hub, 1)[0], "stuck")
    admin.send_to_dead_letter(_queued(hub, 1, account="globex")[0], "stuck")
    groups = groups_read()
    assert [(r.task, r.count) for r in groups.itertuples()] == [("test.ok", 3), ("test.boom", 1)]
    one_group, two_groups = ([s for s in call if "'dead-letter'" in s] for call in calls)
    assert len(one_group) == 1 and one_group == two_groups


def test_the_real_cap_reads_ten_thousand_plus(hub: sgen_ops.Hub) -> None:
    admin = add_operators(hub)["administrator"]
    _queued(hub, query.COUNT_CAP + 1)
    page = admin.list_jobs(per_page=10)
    assert (page.total, page.total_is_exact, page.total_text) == (10_000, False, "10,000+")
    assert admin.list_jobs(per_page=10, state="succeeded").total_text == "0"


def _frame_of(page: Any) -> list[int]:
    return [int(i) for i in page.to_frame()["id"]]


def test_the_flag_travels_through_the_api_and_the_remote_client(hub: sgen_ops.Hub, cap: int) -> None:
    from sgen_ops.api import create_app
    from tests.api.conftest import IN_PROCESS_URL, Api, InProcess

    add_operators(hub)
    _queued(hub, 7, account="acme")
    api = Api(hub, IN_PROCESS_URL, InProcess(create_app(hub, hub_users=None)))
    try:
        answer = api.http("administrator").get("/api/accounts/acme/jobs", params={"per_page": 3}).json()
        assert {k: answer[k] for k in ("total", "total_is_exact", "page", "per_page")} == {
            "total": 5, "total_is_exact": False, "page": 1, "per_page": 3}
        after = answer["items"][-1]["id"]
        local = hub.as_operator("administrator").within("acme")
        deeper = api.http("administrator").get("/api/accounts/acme/jobs",
                                               params={"per_page": 3, "after_id": after}).json()
        assert [r["id"] for r in deeper["items"]] == [r.id for r in local.list_jobs(per_page=3, after_id=after).items]
        remote = api.remote("administrator")
        page = remote.list_jobs(per_page=3)
        assert (page.total, page.total_is_exact, page.total_text) == (5, False, "5+")
        assert _frame_of(page) == _frame_of(local.list_jobs(per_page=3))
        assert _frame_of(remote.list_jobs(per_page=3, after_id=after)) == [r["id"] for r in deeper["items"]]
        searched = api.http("administrator").post("/api/accounts/acme/jobs/search", json={"task": ["test.boom"]})
        assert searched.json()["total_is_exact"] is True and searched.json()["total"] == 0
    finally:
        api.close()
