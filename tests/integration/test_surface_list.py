"""The queue list (filters, pages, retention), throughput and timing stats, and the Activity Log frame."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
import pytest

import sgen_ops
from sgen_ops import ValidationError
from sgen_ops.surface.operations import Operations
from tests.integration.test_surface_fixtures import Jobs, add_operators, job_row

ROW_COLUMNS = [
    "id", "task", "state", "attempts", "max_attempts", "attempts_label", "next_run", "last_error_code",
    "last_error_excerpt", "originating_user", "account", "created_at", "updated_at",
]


@pytest.fixture
def ops(hub: sgen_ops.Hub) -> dict[str, Operations]:
    return add_operators(hub)


def test_newest_first_in_pages_with_a_total(hub: sgen_ops.Hub, ops: Any) -> None:
    ids = hub.enqueue_many("test.ok", [{"n": i} for i in range(7)], delay=60)
    viewer = ops["viewer"]
    first, last = viewer.list_jobs(per_page=3), viewer.list_jobs(per_page=3, page=3)
    assert [r.id for r in first.items] == ids[::-1][:3]  # same created_at: the id breaks the tie
    assert [r.id for r in last.items] == [ids[0]]
    assert (first.total, first.page, first.per_page, first.pages) == (7, 1, 3, 3)
    assert viewer.list_jobs(per_page=3, page=9).items == []
    for bad in ({"page": 0}, {"per_page": 0}, {"per_page": 10_001}, {"page": "2"}):
        with pytest.raises(ValidationError):
            viewer.list_jobs(**bad)


def test_rows_carry_the_queue_view_fields(hub: sgen_ops.Hub, ops: Any) -> None:
    admin = ops["administrator"]
    jobs = Jobs(hub, admin)
    ids = jobs.make_all(["queued", "retrying", "dead-letter"], account="acme")
    replayed = admin.edit_and_replay(ids["dead-letter"], None)
    rows = {r.id: r for r in ops["viewer"].list_jobs().items}
    queued, retrying, dead = rows[ids["queued"]], rows[ids["retrying"]], rows[ids["dead-letter"]]
    assert (queued.state, queued.attempts_label, queued.next_run) == ("queued", "0 of 3",
                                                                     job_row(hub, queued.id)["scheduled_for"])
    assert retrying.attempts_label == "1 of 3" and retrying.next_run > datetime.now(UTC)
    assert (retrying.last_error_code, retrying.last_error_excerpt) == ("later", "retry in an hour")
    assert (dead.next_run, dead.last_error_code, dead.account) == (None, "ValueError", "acme")
    assert rows[replayed].originating_user == "administrator" and dead.originating_user is None
    frame = ops["viewer"].list_jobs().to_frame()
    assert list(frame.columns) == ROW_COLUMNS and len(frame) == 4
    assert str(frame["created_at"].dtype) == "datetime64[ns, UTC]" or "UTC" in str(frame["created_at"].dtype)
    empty = ops["viewer"].list_jobs(task="test.nothing").to_frame()
    assert list(empty.columns) == ROW_COLUMNS and empty.empty


def test_long_error_excerpt_is_cut_to_one_line(hub: sgen_ops.Hub, ops: Any) -> None:
    job_id = hub.enqueue("test.verbose", {"text": "k" + "x\n" * 200})
    hub.work()
    [row] = ops["administrator"].list_jobs().items
    assert row.id == job_id and len(row.last_error_excerpt) == 120
    assert "\n" not in row.last_error_excerpt and row.last_error_excerpt.endswith("…")


def test_filters(hub: sgen_ops.Hub, ops: Any) -> None:
    jobs = Jobs(hub, ops["administrator"])
    ids = jobs.make_all(["queued", "succeeded", "failed", "dead-letter", "retrying"])
    viewer = ops["viewer"]

    def found(**filters: Any) -> set[int]:
        return {r.id for r in viewer.list_jobs(**filters).items}

    assert found(state="failed") == {ids["failed"]}
    assert found(state=["failed", "dead-letter"]) == {ids["failed"], ids["dead-letter"]}
    assert found(task="test.boom") == {ids["dead-letter"]}
    assert found(task=["test.boom", "test.nodl"]) == {ids["dead-letter"], ids["failed"]}
    assert found(error_code="always") == {ids["failed"]}
    assert found(error_code=["always", "later"]) == {ids["failed"], ids["retrying"]}
    assert found(text="KABOOM") == {ids["dead-letter"]}
    assert found(text='"n": 1') == {ids["queued"]}  # the payload, as JSON text
    created = {s: job_row(hub, i)["created_at"] for s, i in ids.items()}
    # make_all creates queued, retrying, succeeded, failed, dead-letter in that order.
    assert found(since=created["failed"]) == {ids["failed"], ids["dead-letter"]}
    assert found(until=created["failed"].isoformat()) == {ids["queued"], ids["retrying"], ids["succeeded"],
                                                           ids["failed"]}
    assert found(since=timedelta(hours=1), state="succeeded") == {ids["succeeded"]}
    assert found(since=datetime.now(UTC) + timedelta(hours=1)) == set()


@pytest.mark.parametrize(
    ("filters", "message"),
    [
        ({"state": "done"}, r"unknown state\(s\) done; states are: queued, running, retrying, succeeded, failed, "
                            r"dead-letter, cancelled, resolved"),
        ({"state": ["failed", "dead_letter"]}, r"unknown state\(s\) dead_letter"),
        ({"owner": "bob"}, r"unknown filter\(s\) owner; allowed filters: state, task, since, until, error_code"),
        ({"since": "yesterday"}, r"since='yesterday' is not a time"),
        ({"task": 5}, r"task=5 is not valid"),
        ({"text": 5}, r"text=5 is not valid"),
    ],
)
def test_bad_filters(hub: sgen_ops.Hub, ops: Any, filters: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        ops["viewer"].list_jobs(**filters)


def test_default_view_leaves_out_succeeded_jobs_past_retention(make_hub: Callable[..., sgen_ops.Hub]) -> None:
    hub = make_hub(retention_days=0)  # every succeeded job is past the window the moment it succeeds
    ops = add_operators(hub)
    kept = hub.book.prepare("test.ok", retention_days=30)  # a job's own retention (set by its schedule) wins
    kept_id = hub.book.create([kept])[0]
    old_id = hub.enqueue("test.ok")
    failed_id = hub.enqueue("test.nodl")
    hub.work()
    viewer = ops["viewer"]
    assert {r.id for r in viewer.list_jobs().items} == {kept_id, failed_id}
    assert viewer.list_jobs().total == 2
    assert {r.id for r in viewer.list_jobs(include_old_succeeded=True).items} == {kept_id, old_id, failed_id}
    assert {r.id for r in viewer.list_jobs(state="succeeded").items} == {kept_id, old_id}
    assert {r.id for r in viewer.list_jobs(state=["succeeded", "failed"]).items} == {kept_id, old_id, failed_id}


def test_default_retention_keeps_recent_succeeded_jobs(hub: sgen_ops.Hub, ops: Any) -> None:
    short = hub.book.prepare("test.ok", retention_days=0)
    short_id = hub.book.create([short])[0]
    recent = hub.enqueue("test.ok")
    hub.work()
    assert {r.id for r in ops["viewer"].list_jobs().items} == {recent}
    assert ops["administrator"].delete_jobs(task="test.ok") == 1  # deletes what list_jobs shows
    assert job_row(hub, short_id) != {} and job_row(hub, recent) == {}


# -- throughput -----------------------------------------------------------------------------------
def test_throughput_counts_events_per_task(hub: sgen_ops.Hub, ops: Any) -> None:
    hub.enqueue("test.flaky", {"succeed_on": 2})  # fails once, then succeeds
    hub.enqueue("test.ok")
    hub.enqueue("test.boom")  # fails twice, dead-lettered
    cancelled = hub.enqueue("test.ok", delay=3600)
    hub.work()
    ops["editor"].cancel(cancelled)
    frame = ops["viewer"].throughput("1h")
    assert list(frame.columns) == ["task", "succeeded", "failed", "dead_lettered", "cancelled"]
    assert frame.to_dict("records") == [
        {"task": "test.boom", "succeeded": 0, "failed": 2, "dead_lettered": 1, "cancelled": 0},
        {"task": "test.flaky", "succeeded": 1, "failed": 1, "dead_lettered": 0, "cancelled": 0},
        {"task": "test.ok", "succeeded": 1, "failed": 0, "dead_lettered": 0, "cancelled": 1},
    ]
    assert ops["viewer"].throughput(timedelta(minutes=15)).equals(frame)
    assert ops["viewer"].throughput("7d", by="account")[["succeeded", "failed"]].sum().tolist() == [2, 3]


def test_throughput_window_excludes_older_events(hub: sgen_ops.Hub, ops: Any) -> None:
    hub.enqueue("test.ok")
    hub.work()
    later = datetime.now(UTC) + timedelta(hours=2)
    assert sgen_ops.ledger.stats.throughput(hub.ledger, "1h", now=later).empty  # type: ignore[attr-defined]
    assert len(sgen_ops.ledger.stats.throughput(hub.ledger, "3h", now=later)) == 1  # type: ignore[attr-defined]


@pytest.mark.parametrize("window", ["1 fortnight", "0m", "-5m", "h", 0.5, timedelta(0), "99999999999w", float("nan")])
def test_bad_windows(hub: sgen_ops.Hub, ops: Any, window: Any) -> None:
    with pytest.raises(ValidationError, match="window"):
        ops["viewer"].throughput(window)


def test_bad_grouping(hub: sgen_ops.Hub, ops: Any) -> None:
    with pytest.raises(ValidationError, match="by='state' is not valid; group by one of: task, account"):
        ops["viewer"].throughput(by="state")


def test_throughput_series_and_timing(hub: sgen_ops.Hub, ops: Any) -> None:
    hub.enqueue("test.flaky", {"succeed_on": 2})
    hub.enqueue("test.ok")
    hub.work()
    series = ops["viewer"].throughput_series("24h", "1h")
    assert list(series.columns) == ["at", "task", "state", "count"]
    assert series.groupby(["task", "state"])["count"].sum().to_dict() == {
        ("test.flaky", "failed"): 1, ("test.flaky", "succeeded"): 1, ("test.ok", "succeeded"): 1,
    }
    assert (series["at"] <= pd.Timestamp.now(tz="UTC")).all()
    assert (series["at"].dt.minute == 0).all() and (series["at"].dt.second == 0).all()
    timing = ops["viewer"].run_time_percentiles("1h")
    assert list(timing["task"]) == ["test.flaky", "test.ok"] and list(timing["attempts"]) == [2, 1]
    assert (timing[["run_p50", "run_p95", "run_p99"]] >= 0).all().all()
    assert (timing["run_p50"] <= timing["run_p99"]).all()
    assert timing["wait_p50"].notna().all()
    assert ops["viewer"].run_time_percentiles("1h").columns.tolist() == timing.columns.tolist()
    assert hub.as_operator("viewer").run_time_percentiles("1s").shape[1] == 8


# -- the Activity Log frame -------------------------------------------------------------------------
def test_activity_log_frame_and_filters(hub: sgen_ops.Hub, ops: Any) -> None:
    jobs = Jobs(hub, ops["administrator"])
    ids = jobs.make_all(["failed", "dead-letter"])
    ops["editor"].rerun(ids["failed"])
    middle = datetime.now(UTC)
    ops["administrator"].replay(ids["dead-letter"])
    log = ops["editor"].activity_log()
    assert list(log.columns) == ["at", "operator", "action", "target_type", "target_id", "account", "change",
                                 "reason"]
    assert log[["operator", "action", "target_id"]].values.tolist() == [
        ["editor", "rerun", ids["failed"]], ["administrator", "replay", ids["dead-letter"]],
    ]
    assert log["at"].is_monotonic_increasing
    assert ops["editor"].activity_log(operator="administrator")["action"].tolist() == ["replay"]
    assert ops["editor"].activity_log(since=middle)["action"].tolist() == ["replay"]
    assert ops["editor"].activity_log(until=middle.isoformat())["action"].tolist() == ["rerun"]
    with pytest.raises(sgen_ops.AccessDenied):
        ops["viewer"].activity_log()


def test_dead_letter_groups_count_per_task_and_error_code_within_the_account(hub: sgen_ops.Hub) -> None:
    from tests.integration.test_surface_fixtures import Jobs, add_operators

    everyone = add_operators(hub)
    acme = add_operators(hub, account="acme", suffix="-acme")["viewer"]
    jobs = Jobs(hub, everyone["administrator"])
    for account in ("acme", "acme", "globex"):
        jobs.make("dead-letter", account=account)
    manual = jobs.make("queued", account="acme")
    everyone["administrator"].send_to_dead_letter(manual, "stuck")
    groups = everyone["viewer"].dead_letter_groups()
    assert list(groups.columns) == ["task", "error_code", "count", "newest", "count_is_exact"]
    assert groups["count_is_exact"].all()
    counts = {(r.task, r.error_code): r.count for r in groups.itertuples()}
    assert counts[("test.boom", "ValueError")] == 3
    assert sum(counts.values()) == 4
    mine = acme.dead_letter_groups()
    assert int(mine["count"].sum()) == 3  # two dead letters of acme plus the one sent by hand
    assert mine["newest"].notna().all()
