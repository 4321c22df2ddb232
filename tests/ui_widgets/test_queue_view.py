"""The queue view, driven from Python the way an operator drives it in the browser."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

import sgen_ops
from sgen_ops.core.states import ALL_STATES
from sgen_ops.surface.operations import Operations
from sgen_ops.ui import QueueView
from tests.integration.test_surface_fixtures import SECRET_PAYLOAD, SECRET_VALUES, Jobs, job_row, ledger_state

from .helpers import column, status_of, text

TASK, STATE, ATTEMPTS, NEXT_RUN, ERROR, OPERATOR = range(6)


def test_lists_the_seed_columns(hub: sgen_ops.Hub, admin: Operations, jobs: Jobs) -> None:
    ids = jobs.make_all(["queued", "retrying", "dead-letter", "succeeded"])
    view = QueueView(admin)
    assert set(view.rows.options) == set(ids.values())
    by_id = dict(zip(view.rows.options, view.table.shown_rows, strict=True))
    queued = [text(c.value) for c in by_id[ids["queued"]].cells]
    assert queued[TASK] == "test.ok"
    assert queued[STATE] == "queued"
    assert queued[ATTEMPTS] == "0 of 3"
    assert queued[NEXT_RUN].startswith("in ") and "minute" in queued[NEXT_RUN]  # in 59 minutes
    dead = [text(c.value) for c in by_id[ids["dead-letter"]].cells]
    assert dead[ATTEMPTS] == "2 of 2"
    assert dead[NEXT_RUN] == "dead-letter"
    assert "ValueError" in dead[ERROR] and "kaboom" in dead[ERROR]
    assert text(by_id[ids["succeeded"]].cells[NEXT_RUN].value) == "—"
    # Newest first, as the seed's screen.
    assert list(view.rows.options) == sorted(view.rows.options, reverse=True)
    assert view.page_label.value == "page 1 of 1 · 4 jobs"
    assert text(view.throughput_line.value) == "Throughput (1h): 1 succeeded · 3 failed · 1 dead-lettered"


def test_state_chips_show_every_state_with_its_count_and_filter_at_once(
    hub: sgen_ops.Hub, admin: Operations, jobs: Jobs
) -> None:
    ids = jobs.make_all(["queued", "failed", "dead-letter", "succeeded"])
    hub.enqueue("test.ok", {"n": 9}, delay=3600)
    view = QueueView(admin)
    chips = view.state_filter.chips
    assert list(chips) == list(ALL_STATES)  # every state shown, none hidden behind a scroll
    assert chips["queued"].description == "queued · 2" and chips["failed"].description == "failed · 1"
    assert chips["running"].description == "running · 0"
    assert view.state_filter.counts == {s: admin.list_jobs(state=s, per_page=1).total for s in ALL_STATES}

    chips["failed"].value = True  # no Apply needed
    assert view.rows.options == (ids["failed"],)
    chips["dead-letter"].value = True
    assert set(view.rows.options) == {ids["failed"], ids["dead-letter"]}
    assert view.state_filter.value == ("failed", "dead-letter")

    # The counts follow the other filters.
    view.task_filter.value = "test.boom"
    view.apply_button.click()
    assert chips["queued"].description == "queued · 0" and chips["dead-letter"].description == "dead-letter · 1"


def test_state_task_and_text_filters_narrow_the_rows(hub: sgen_ops.Hub, admin: Operations, jobs: Jobs) -> None:
    ids = jobs.make_all(["queued", "failed", "dead-letter", "succeeded"])
    marked = hub.enqueue("test.ok", {"needle": "haystack-7731"}, delay=3600)
    view = QueueView(admin)
    assert len(view.rows.options) == 5

    view.state_filter.value = ("failed", "dead-letter")
    view.apply_button.click()
    assert set(view.rows.options) == {ids["failed"], ids["dead-letter"]}
    assert set(column(view, STATE)) == {"failed", "dead-letter"}

    view.state_filter.value = ()
    view.task_filter.value = "test.ok"
    view.apply_button.click()
    assert set(view.rows.options) == {ids["queued"], ids["succeeded"], marked}

    view.text_filter.value = "haystack-7731"
    view.apply_button.click()
    assert view.rows.options == (marked,)
    assert view.page_label.value == "page 1 of 1 · 1 job"

    view.reset_button.click()
    assert len(view.rows.options) == 5


def test_error_code_and_date_filters(hub: sgen_ops.Hub, admin: Operations, jobs: Jobs) -> None:
    ids = jobs.make_all(["failed", "dead-letter"])
    view = QueueView(admin)
    view.error_code_filter.value = "ValueError"
    view.apply_button.click()
    assert view.rows.options == (ids["dead-letter"],)

    view.error_code_filter.value = ""
    created = job_row(hub, ids["failed"])["created_at"]
    view.since_filter.value = created + timedelta(hours=1)
    view.apply_button.click()
    assert view.rows.options == ()
    assert "No jobs match" in text(view.table.empty.value)
    view.since_filter.value = None
    view.until_filter.value = created + timedelta(hours=1)
    view.apply_button.click()
    assert set(view.rows.options) == set(ids.values())


def test_a_failed_read_is_reported_and_the_view_stays_usable(admin: Operations, jobs: Jobs) -> None:
    job_id = jobs.make("queued")
    view = QueueView(admin)
    real = admin.list_jobs

    def refuse(**kwargs: Any) -> Any:
        raise sgen_ops.AccessDenied("operator 'administrator' (administrator) may not list_jobs; allowed for: no role")

    admin.list_jobs = refuse  # type: ignore[method-assign]
    view.refresh_button.click()
    assert status_of(view) == (
        "error", "✖ AccessDenied: operator 'administrator' (administrator) may not list_jobs; allowed for: no role")
    assert view.rows.options == (job_id,)  # the last page read stays on screen
    admin.list_jobs = real  # type: ignore[method-assign]
    view.state_filter.value = ("queued",)
    view.apply_button.click()
    assert status_of(view)[0] == ""
    assert view.rows.options == (job_id,)


def test_next_and_prev_page(hub: sgen_ops.Hub, admin: Operations) -> None:
    ids = hub.enqueue_many("test.ok", [{"n": i} for i in range(12)], delay=3600)
    view = QueueView(admin, per_page=5)
    assert view.page_label.value == "page 1 of 3 · 12 jobs"
    first = view.rows.options
    assert len(first) == 5 and view.prev_button.disabled and not view.next_button.disabled
    view.next_button.click()
    assert view.page_label.value == "page 2 of 3 · 12 jobs"
    second = view.rows.options
    assert len(second) == 5 and not set(first) & set(second)
    view.next_button.click()
    assert view.page_label.value == "page 3 of 3 · 12 jobs"
    assert len(view.rows.options) == 2 and view.next_button.disabled
    assert set(first) | set(second) | set(view.rows.options) == set(ids)
    view.prev_button.click()
    assert view.rows.options == second


def test_rerun_of_a_ticked_failed_job_queues_it_and_refreshes(hub: sgen_ops.Hub, admin: Operations,
                                                             ops: dict[str, Operations], jobs: Jobs) -> None:
    failed = jobs.make("failed")
    view = QueueView(ops["editor"])
    view.rows.value = (failed,)
    view.rerun_button.click()
    assert job_row(hub, failed)["state"] == "queued"
    assert status_of(view) == ("ok", f"✔ Re-ran 1 job: {failed}.")
    row = dict(zip(view.rows.options, column(view, STATE), strict=True))
    assert row[failed] == "queued"
    assert view.rows.value == ()


def test_cancel_of_a_ticked_queued_job(hub: sgen_ops.Hub, admin: Operations, jobs: Jobs) -> None:
    queued = jobs.make("queued")
    view = QueueView(admin)
    view.table.rows.checkboxes[0].value = True  # the way a click on the row's checkbox does it
    assert view.rows.value == (queued,)
    view.cancel_button.click()
    assert job_row(hub, queued)["state"] == "cancelled"
    assert column(view, STATE) == ["cancelled"]


def test_rerun_of_a_queued_job_shows_the_refusal_and_changes_nothing(hub: sgen_ops.Hub, admin: Operations,
                                                                    jobs: Jobs) -> None:
    queued = jobs.make("queued")
    view = QueueView(admin)
    before = ledger_state(hub)
    view.rows.value = (queued,)
    view.rerun_button.click()
    kind, message = status_of(view)
    assert kind == "error"
    assert f"Job {queued}: InvalidTransition: cannot rerun job {queued}: it is queued" in message
    assert ledger_state(hub) == before
    # Still usable: the same view re-runs a job that may be re-run.
    failed = jobs.make("failed")
    view.refresh_button.click()
    view.rows.value = (failed,)
    view.rerun_button.click()
    assert status_of(view)[0] == "ok"
    assert job_row(hub, failed)["state"] == "queued"


def test_partial_success_reports_both(hub: sgen_ops.Hub, admin: Operations, jobs: Jobs) -> None:
    ids = jobs.make_all(["queued", "dead-letter"])
    view = QueueView(admin)
    view.rows.value = (ids["queued"], ids["dead-letter"])
    view.rerun_button.click()
    kind, message = status_of(view)
    assert kind == "error"
    assert f"Re-ran 1 job: {ids['dead-letter']}." in message and f"Job {ids['queued']}: InvalidTransition" in message
    assert job_row(hub, ids["dead-letter"])["state"] == "queued"


def test_buttons_without_the_role_are_disabled_with_the_reason(ops: dict[str, Operations]) -> None:
    viewer = QueueView(ops["viewer"])
    assert viewer.rerun_button.disabled and viewer.cancel_button.disabled
    assert viewer.rerun_button.tooltip == (
        "Only administrators and editors can re-run jobs; you are signed in as a viewer."
    )
    assert viewer.cancel_button.tooltip == (
        "Only administrators and editors can cancel jobs; you are signed in as a viewer."
    )
    assert not viewer.open_detail_button.disabled
    editor = QueueView(ops["editor"])
    assert not editor.rerun_button.disabled and not editor.cancel_button.disabled


def test_nothing_ticked_says_so(admin: Operations, jobs: Jobs) -> None:
    jobs.make("failed")
    view = QueueView(admin)
    view.rerun_button.click()
    assert status_of(view) == ("info", "ℹ Tick one or more jobs first.")


@pytest.mark.parametrize(("role", "shown"), [("editor", False), ("administrator", True)])
def test_open_detail_masks_the_payload_except_for_an_administrator(
    hub: sgen_ops.Hub, ops: dict[str, Operations], role: str, shown: bool
) -> None:
    job_id = hub.enqueue("test.secret", SECRET_PAYLOAD)
    hub.work()
    view = QueueView(ops[role])
    view.rows.value = (job_id,)
    view.open_detail_button.click()
    assert view.detail is not None and view.detail.job_id == job_id
    assert view.detail in view.detail_area.children
    payload = text(view.detail.payload.value)
    assert "eu-west-1" in payload  # not sensitive: shown to everyone
    for secret in SECRET_VALUES:
        assert (secret in payload) is shown, secret
    view.close_detail_button.click()
    assert view.detail is None and view.detail_area.children == ()


def test_a_write_in_the_detail_refreshes_the_list(hub: sgen_ops.Hub, admin: Operations, jobs: Jobs) -> None:
    dead = jobs.make("dead-letter")
    view = QueueView(admin)
    view.rows.value = (dead,)
    view.open_detail_button.click()
    assert view.detail is not None
    view.detail.replay_button.click()
    assert job_row(hub, dead)["state"] == "queued"
    assert column(view, STATE) == ["queued"]


def test_opens_one_page_of_a_large_queue(hub: sgen_ops.Hub, admin: Operations) -> None:
    hub.enqueue_many("test.ok", [{"n": i} for i in range(5000)], delay=3600)
    calls: list[dict[str, Any]] = []
    real = admin.list_jobs

    def spy(*args: Any, **kwargs: Any) -> Any:
        calls.append(kwargs)
        return real(*args, **kwargs)

    admin.list_jobs = spy  # type: ignore[method-assign]
    view = QueueView(admin, per_page=25)
    assert len(view.rows.options) == 25
    assert len(view.table.children) == 7 * (1 + 25)  # header + one page of rows, nothing more
    # One page read; the state chips' counts are one count (a page of one) per state.
    assert calls == [{"page": 1, "per_page": 25}, *({"state": s, "per_page": 1} for s in ALL_STATES)]
    assert view.page_label.value == "page 1 of 200 · 5,000 jobs"
    view.next_button.click()
    assert calls[-1] == {"after_id": view.jobs.anchors[2], "per_page": 25}  # the next page by keyset
    assert len(calls) == 2 + len(ALL_STATES)  # paging does not count again


def test_a_paused_task_is_marked_and_its_waiting_jobs_say_paused(hub: sgen_ops.Hub, admin: Operations,
                                                                  ops: dict[str, Any]) -> None:
    waiting = hub.enqueue("test.ok", {"n": 1})
    other = hub.enqueue("test.flaky", {"succeed_on": 1})
    admin.pause_task("test.ok")
    admin.pause_queue("low")
    view = QueueView(ops["viewer"])
    by_id = dict(zip(view.rows.options, view.table.shown_rows, strict=True))
    cells = [c.value for c in by_id[waiting].cells]
    assert "sgen-paused-badge" in cells[TASK] and text(cells[TASK]) == "test.ok paused"
    assert "sgen-paused-note" in cells[NEXT_RUN] and text(cells[NEXT_RUN]) == "paused"
    assert "sgen-paused-badge" not in by_id[other].cells[TASK].value
    assert text(view.paused_line.value).startswith("Paused: task test.ok · queue low")

    admin.resume_task("test.ok")
    admin.resume_queue("low")
    view.refresh()
    by_id = dict(zip(view.rows.options, view.table.shown_rows, strict=True))
    assert "sgen-paused" not in "".join(c.value for c in by_id[waiting].cells)
    assert view.paused_line.value == ""


def test_pause_and_resume_the_task_picked(hub: sgen_ops.Hub, ops: dict[str, Any]) -> None:
    admin, editor = ops["administrator"], ops["editor"]
    refused = QueueView(editor)
    assert refused.pause_task_button.disabled and refused.resume_task_button.disabled
    assert refused.pause_task_button.tooltip == "Only administrators can pause tasks; you are signed in as an editor."
    assert refused.task_picker.layout.display == "none"  # a picker it could do nothing with
    view = QueueView(admin)
    assert view.task_picker.layout.display != "none"
    assert ("test.ok", "test.ok") in view.task_picker.options and view.task_picker.value is None
    view.task_filter.value = "test.boom"  # the Task filter is the list's, not the pause's
    view.pause_task_button.click()
    assert status_of(view) == ("info", "ℹ Pick the task to pause in the list beside the button.")
    assert admin.paused().empty
    view.task_picker.value = "test.ok"
    view.pause_task_button.click()
    assert status_of(view) == ("ok", "✔ Paused task test.ok: its waiting jobs stay queued until it is resumed.")
    assert admin.paused()["name"].tolist() == ["test.ok"]
    job_id = hub.enqueue("test.ok")
    hub.work(burst=True)
    view.refresh()
    assert job_row(hub, job_id)["state"] == "queued"
    assert text(view.paused_line.value).startswith("Paused: task test.ok")
    assert ("test.ok (paused)", "test.ok") in view.task_picker.options and view.task_picker.value == "test.ok"
    view.pause_task_button.click()
    kind, message = status_of(view)
    assert kind == "error" and "it is paused" in message
    view.resume_task_button.click()
    assert status_of(view) == ("ok", "✔ Resumed task test.ok: its waiting jobs are delivered again.")
    hub.work(burst=True)
    assert job_row(hub, job_id)["state"] == "succeeded"
    assert admin.activity_log()["action"].tolist()[-2:] == ["pause_task", "resume_task"]


def test_a_refresh_reads_the_open_detail_again(hub: sgen_ops.Hub, admin: Operations) -> None:
    """The list shows a job succeeded: so does its open detail, after the same refresh."""
    job_id = hub.enqueue("test.ok", {"n": 1})
    view = QueueView(admin)
    view.rows.value = [job_id]
    view.open_detail_button.click()
    assert view.detail is not None and view.detail.detail is not None and view.detail.detail.state == "queued"
    hub.work(burst=True)
    view.live.tick()
    assert view.detail.detail.state == "succeeded"
    assert "succeeded" in text(view.detail.header.value)
    # The row changed since it was ticked: the tick went with it, the detail the operator opened stays.
    assert view.rows.value == () and view.detail.job_id == job_id


def test_a_rerun_job_that_fails_again_comes_back_unticked(hub: sgen_ops.Hub, admin: Operations) -> None:
    job_id = hub.enqueue("test.boom", {"n": 1})
    hub.work()
    view = QueueView(admin)
    view.state_filter.chips["dead-letter"].value = True
    view.rows.value = [job_id]
    view.rerun_button.click()
    assert job_id not in view.rows.options
    hub.work()
    view.refresh()
    assert job_id in view.rows.options and view.rows.value == ()
