"""The schedules view: live cron validation, create, edit, pause, resume and run now."""

from __future__ import annotations

from datetime import timedelta
from zoneinfo import ZoneInfo

import sgen_ops
from sgen_ops.surface.operations import Operations
from sgen_ops.ui import SchedulesView
from tests.integration.test_surface_fixtures import job_row

from .helpers import column, status_of, text

STATE = 2


def test_live_cron_validation_shows_croniters_reason(admin: Operations) -> None:
    view = SchedulesView(admin)
    view.cron_input.value = "61 * * * *"
    assert view.fire_times == []
    assert "[61 * * * *] is not acceptable, out of range" in view.timing_error
    assert "[61 * * * *] is not acceptable, out of range" in text(view.timing_feedback.value)
    assert "sgen-message-error" in view.timing_feedback.value

    view.cron_input.value = "*/5 * * * *"  # each keystroke is checked; no button press
    assert view.timing_error == ""
    assert len(view.fire_times) == 5
    assert all(t.minute % 5 == 0 for t in view.fire_times)
    assert all(b - a == timedelta(minutes=5) for a, b in zip(view.fire_times, view.fire_times[1:], strict=False))
    # Five fire times, each with its relative time ("in 4 minutes", or "now" right at a boundary).
    assert text(view.timing_feedback.value).count(" UTC (") == 5


def test_live_validation_follows_timezone_and_interval(admin: Operations) -> None:
    view = SchedulesView(admin)
    view.cron_input.value = "0 9 * * *"
    view.timezone_input.value = "Europe/Paris"
    assert len(view.fire_times) == 5
    assert {t.astimezone(ZoneInfo("Europe/Paris")).hour for t in view.fire_times} == {9}
    assert "09:00 Europe/Paris" in text(view.timing_feedback.value)
    view.timezone_input.value = "Mars/Olympus"
    assert view.fire_times == [] and "Mars/Olympus" in view.timing_error

    view.timing_kind.value = "every"
    view.every_input.value = "15x"
    assert "unknown unit" in view.timing_error
    view.every_input.value = "15m"
    assert [b - a for a, b in zip(view.fire_times, view.fire_times[1:], strict=False)] == [timedelta(minutes=15)] * 4


def test_create_a_schedule_from_the_form(hub: sgen_ops.Hub, admin: Operations) -> None:
    view = SchedulesView(admin)
    assert view.rows.options == ()
    view.task_input.value = "test.ok"
    view.cron_input.value = "*/10 * * * *"
    view.payload_input.value = '{"day": "{tick:%Y-%m-%d}"}'
    view.max_attempts_input.value = "4"
    view.priority_input.value = "high"
    view.create_button.click()
    kind, message = status_of(view)
    assert kind == "ok", message
    listed = admin.list_schedules()
    assert len(listed) == 1
    row = listed.iloc[0]
    assert (row["task"], row["cron"], row["max_attempts"], row["priority"]) == ("test.ok", "*/10 * * * *", 4, "high")
    assert view.rows.options == (int(row["id"]),)
    assert column(view, STATE) == ["enabled"]
    assert view.cron_input.value == ""  # the form is ready for the next one


def test_a_refused_create_is_shown_and_creates_nothing(admin: Operations) -> None:
    view = SchedulesView(admin)
    view.task_input.value = "test.ok"
    view.cron_input.value = "61 * * * *"
    view.create_button.click()
    kind, message = status_of(view)
    assert kind == "error" and "ValidationError" in message and "out of range" in message
    view.cron_input.value = "0 * * * *"
    view.payload_input.value = "{not json"
    assert "invalid JSON" in text(view.payload_error.value)
    view.create_button.click()
    assert "not valid JSON" in status_of(view)[1]
    assert admin.list_schedules().empty


def test_pause_resume_and_run_now(hub: sgen_ops.Hub, ops: dict[str, Operations]) -> None:
    admin = ops["administrator"]
    schedule_id = admin.create_schedule("test.ok", every="1h", payload={"n": 1})
    view = SchedulesView(admin)
    view.rows.value = (schedule_id,)
    view.pause_button.click()
    assert not bool(admin.list_schedules().iloc[0]["enabled"])
    assert column(view, STATE) == ["paused"]
    assert view.rows.value == (schedule_id,)
    view.pause_button.click()  # already paused: refused, in words
    assert status_of(view)[0] == "error" and "already paused" in status_of(view)[1]
    view.resume_button.click()
    assert bool(admin.list_schedules().iloc[0]["enabled"])
    assert column(view, STATE) == ["enabled"]

    editor = SchedulesView(ops["editor"])
    editor.rows.value = (schedule_id,)
    editor.run_now_button.click()
    kind, message = status_of(editor)
    assert kind == "ok", message
    job_id = int(message.rsplit("job ", 1)[1].rstrip("."))
    assert job_row(hub, job_id)["schedule_id"] == schedule_id
    assert f"#{job_id}" in text(editor.table.shown_rows[0].cells[-1].value)  # recent runs


def test_edit_the_ticked_schedule(admin: Operations) -> None:
    schedule_id = admin.create_schedule("test.ok", every="1h", payload={"n": 1}, max_attempts=2)
    view = SchedulesView(admin)
    assert view.save_button.disabled
    view.rows.value = (schedule_id,)
    view.edit_button.click()
    assert view.editing_id == schedule_id
    assert (view.timing_kind.value, view.every_input.value, view.max_attempts_input.value) == ("every", "1h", "2")
    view.save_button.click()
    assert status_of(view) == ("info", "ℹ Nothing changed.")
    view.timing_kind.value = "cron"
    view.cron_input.value = "30 6 * * *"
    view.save_button.click()
    assert status_of(view)[0] == "ok", status_of(view)
    row = admin.list_schedules().iloc[0]
    assert (row["cron"], row["every"], row["max_attempts"]) == ("30 6 * * *", None, 2)
    assert "30 6 * * *" in text(view.table.shown_rows[0].cells[1].value)


def test_buttons_follow_the_role(ops: dict[str, Operations]) -> None:
    editor = SchedulesView(ops["editor"])
    assert editor.create_button.disabled
    assert editor.create_button.tooltip == "Only administrators can create schedules; you are signed in as an editor."
    assert editor.pause_button.disabled and editor.resume_button.disabled
    assert not editor.run_now_button.disabled
    viewer = SchedulesView(ops["viewer"])
    assert viewer.run_now_button.disabled
    assert viewer.run_now_button.tooltip == (
        "Only administrators and editors can run schedules now; you are signed in as a viewer."
    )
    viewer.cron_input.value = "0 0 * * *"  # previewing is reading: everyone may
    assert len(viewer.fire_times) == 5


def test_the_task_must_be_chosen(hub: sgen_ops.Hub, admin: Operations) -> None:
    """The form does not default to the first task: creating without choosing one is refused, in words."""
    view = SchedulesView(admin)
    assert view.task_input.value == "" and view.task_input.label == "choose a task…"
    view.timing_kind.value = "every"
    view.every_input.value = "1h"
    view.create_button.click()
    kind, message = status_of(view)
    assert kind == "error" and "choose the task the schedule runs" in message
    assert admin.list_schedules().empty
    view.task_input.value = "test.ok"
    view.create_button.click()
    assert status_of(view)[0] == "ok" and len(admin.list_schedules()) == 1
    assert view.task_input.value == ""  # the next new schedule asks again


def test_the_table_shows_every_and_retention_as_the_form_takes_them(admin: Operations) -> None:
    schedule_id = admin.create_schedule("test.ok", every="5m", retention="7d", payload={"n": 1})
    view = SchedulesView(admin)
    cells = [text(cell.value) for cell in view.table.shown_rows[0].cells]
    assert cells[1] == "every 5m"  # the unit the form takes, as list_schedules gives it
    assert cells[7] == "7d"  # not 7.0
    view.rows.value = (schedule_id,)
    view.edit_button.click()
    assert (view.every_input.value, view.retention_input.value) == ("5m", "7d")


def test_recent_runs_are_not_cut(admin: Operations) -> None:
    """The Recent runs column is as wide as its runs (the grid scrolls rather than clips them)."""
    schedule_id = admin.create_schedule("test.ok", every="1h", payload={"n": 1})
    runs = [admin.run_schedule_now(schedule_id) for _ in range(3)]
    view = SchedulesView(admin)
    tracks = view.table.layout.grid_template_columns.split()
    assert tracks[-1] == "max-content"
    assert all(f"#{job}" in text(view.table.shown_rows[0].cells[-1].value) for job in runs)
