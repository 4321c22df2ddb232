"""The job detail view: the record, masked for the operator, and the actions its state allows."""

from __future__ import annotations

import os
import socket

import pytest

import sgen_ops
from sgen_ops.surface.operations import Operations
from sgen_ops.ui import JobDetailView
from sgen_ops.ui.detail import worker_label
from tests.integration.test_surface_fixtures import SECRET_PAYLOAD, SECRET_VALUES, Jobs, job_row, ledger_state

from .helpers import status_of, text


def shown_actions(view: JobDetailView) -> set[str]:
    return {action for action, b in view.buttons.items() if b in view.actions.children}


@pytest.mark.parametrize(("state", "actions"), [
    ("queued", {"cancel", "trigger", "send_to_dead_letter"}),
    ("retrying", {"cancel", "retry_now", "trigger", "send_to_dead_letter", "resolve"}),
    ("failed", {"rerun", "send_to_dead_letter", "resolve"}),
    ("dead-letter", {"replay", "resolve", "dismiss"}),  # Replay, not also Re-run
    ("succeeded", {"rerun"}),
    ("cancelled", set()),
])
def test_the_actions_follow_the_state(admin: Operations, jobs: Jobs, state: str, actions: set[str]) -> None:
    view = JobDetailView(admin, jobs.make(state))
    assert shown_actions(view) == actions
    assert (view.resolve_note in view.actions.children) == bool(actions & {"resolve", "send_to_dead_letter"})


def test_shows_attempts_error_log_and_worker(hub: sgen_ops.Hub, admin: Operations, jobs: Jobs) -> None:
    job_id = jobs.make("dead-letter")
    view = JobDetailView(admin, job_id)
    assert text(view.header.value).startswith(f"Job {job_id} · test.boom dead-letter")
    attempts = text(view.attempts_table.value)
    assert attempts.count("ValueError kaboom: the handler broke") == 2
    assert "# Run Started Finished Duration Exit Error" in attempts
    assert view.error_log.selected_index is None  # collapsed until opened
    assert "Traceback" in text(view.error_log_text.value) and "kaboom" in text(view.error_log_text.value)
    recorded = job_row(hub, job_id)["worker"]
    # The burst worker's host and pid (through the API, with the test stack's queue prefix before the host).
    assert f"{socket.gethostname()} · pid {os.getpid()}" in text(view.facts.value)
    assert recorded not in text(view.facts.value)
    assert "Attempts 2 of 2" in text(view.facts.value)


def test_shows_an_interval_schedule(admin: Operations) -> None:
    schedule_id = admin.create_schedule("test.ok", every="1h", payload={"n": 1})
    view = JobDetailView(admin, admin.run_schedule_now(schedule_id))
    assert status_of(view) == ("", "")
    assert f"Schedule #{schedule_id} test.ok · every 1h · enabled" in text(view.facts.value)


def test_worker_label_names_host_and_pid() -> None:
    assert worker_label("sgen-ab12-web-1-4242-0f3a9c", "sgen-ab12") == "web-1 · pid 4242"
    assert worker_label("sgen-web-1-4242-0f3a9c") == "sgen-web-1 · pid 4242"
    rq_named = "3f2a9c1b7d4e4b6f9a8c0d1e2f3a4b5c"
    assert worker_label(rq_named, "p", {rq_named: ("web-2", 77)}) == "web-2 · pid 77"
    assert worker_label(rq_named, "p") == rq_named  # gone, and its name says nothing more
    assert worker_label(None) == "—"


def test_a_dead_letter_offers_one_way_back_to_the_queue_per_role(ops: dict[str, Operations], jobs: Jobs) -> None:
    """An administrator replays; an editor, who may not replay, re-runs; never both buttons at once."""
    job_id = jobs.make("dead-letter")
    assert {"replay", "rerun"} & shown_actions(JobDetailView(ops["administrator"], job_id)) == {"replay"}
    editor = JobDetailView(ops["editor"], job_id)
    assert {"replay", "rerun"} & shown_actions(editor) == {"rerun"}
    assert not editor.rerun_button.disabled
    hosted = JobDetailView(ops["administrator"], job_id, omit=frozenset({"replay", "dismiss"}))
    assert shown_actions(hosted) == {"resolve"}


def test_shows_the_schedule_that_emitted_it(hub: sgen_ops.Hub, admin: Operations) -> None:
    schedule_id = admin.create_schedule("test.ok", cron="0 9 * * *", payload={"n": 1})
    job_id = admin.run_schedule_now(schedule_id)
    facts = text(JobDetailView(admin, job_id).facts.value)
    assert f"Schedule #{schedule_id} test.ok · cron 0 9 * * * · enabled" in facts
    assert "Triggered by administrator" in facts


@pytest.mark.parametrize("role", ["viewer", "editor", "administrator"])
def test_the_payload_is_masked_except_for_an_administrator(hub: sgen_ops.Hub, ops: dict[str, Operations],
                                                           role: str) -> None:
    job_id = hub.enqueue("test.secret", SECRET_PAYLOAD)
    hub.work()
    view = JobDetailView(ops[role], job_id)
    shown = text(view.payload.value) + text(view.attempts_table.value) + text(view.error_log_text.value)
    assert '"region": "eu-west-1"' in text(view.payload.value)
    for secret in SECRET_VALUES:
        assert (secret in shown) is (role == "administrator"), secret


def test_resolve_needs_a_note(hub: sgen_ops.Hub, admin: Operations, jobs: Jobs) -> None:
    job_id = jobs.make("failed")
    view = JobDetailView(admin, job_id)
    before = ledger_state(hub)
    view.resolve_button.click()
    assert status_of(view) == ("error", "✖ ValidationError: resolve needs a non-empty note saying how the failure "
                                        "was handled")
    assert ledger_state(hub) == before
    view.resolve_note.value = "customer re-sent the file"
    view.resolve_button.click()
    assert status_of(view) == ("ok", f"✔ Resolved job {job_id}.")
    assert job_row(hub, job_id)["resolution_note"] == "customer re-sent the file"
    assert "Resolution note customer re-sent the file" in text(view.facts.value)
    assert shown_actions(view) == set()  # resolved is final


def test_retry_now_and_send_to_dead_letter(hub: sgen_ops.Hub, admin: Operations, jobs: Jobs) -> None:
    job_id = jobs.make("retrying")
    changes: list[int] = []
    view = JobDetailView(admin, job_id, on_change=lambda: changes.append(1))
    due = job_row(hub, job_id)["scheduled_for"]
    view.retry_now_button.click()
    assert job_row(hub, job_id)["scheduled_for"] < due
    view.retry_now_button.click()  # now already due: refused in words, the view goes on
    assert status_of(view)[0] == "error" and "already due" in status_of(view)[1]
    view.resolve_note.value = "provider is down for the week"
    view.send_to_dead_letter_button.click()
    assert job_row(hub, job_id)["state"] == "dead-letter"
    assert job_row(hub, job_id)["dead_letter_reason"] == "provider is down for the week"
    assert changes == [1, 1]
    assert "dismiss" in shown_actions(view)


def test_dismiss_asks_for_confirmation(hub: sgen_ops.Hub, admin: Operations, jobs: Jobs) -> None:
    job_id = jobs.make("dead-letter")
    changes: list[int] = []
    view = JobDetailView(admin, job_id, on_change=lambda: changes.append(1))
    view.dismiss_button.click()
    assert job_row(hub, job_id)["state"] == "dead-letter"
    assert view.confirm_dismiss_button in view.actions.children
    view.keep_button.click()
    assert view.confirm_dismiss_button not in view.actions.children
    view.dismiss_button.click()
    view.confirm_dismiss_button.click()
    assert job_row(hub, job_id) == {}
    assert changes == [1]
    assert text(view.header.value) == f"Job {job_id} was dismissed"
    assert view.actions.children == ()
    view.refresh()  # nothing left to read, and no error for it
    assert status_of(view)[0] == "ok"


def test_role_gated_buttons_say_why(ops: dict[str, Operations], jobs: Jobs) -> None:
    job_id = jobs.make("dead-letter")
    editor = JobDetailView(ops["editor"], job_id)
    assert editor.dismiss_button.disabled and editor.replay_button.disabled
    assert editor.dismiss_button.tooltip == (
        "Only administrators can dismiss dead letters; you are signed in as an editor."
    )
    assert not editor.rerun_button.disabled and not editor.resolve_button.disabled
    viewer = JobDetailView(ops["viewer"], job_id)
    assert all(b.disabled for b in viewer.buttons.values())
    assert viewer.rerun_button.tooltip == (
        "Only administrators and editors can re-run jobs; you are signed in as a viewer."
    )


def test_an_unknown_job_is_reported(admin: Operations) -> None:
    view = JobDetailView(admin, 987654)
    assert status_of(view) == ("error", "✖ NotFound: job 987654 not found")
    assert text(view.header.value) == "Job 987654 could not be read"


def test_a_waiting_job_held_by_a_pause_says_so(hub: sgen_ops.Hub, ops: dict[str, Operations]) -> None:
    admin = ops["administrator"]
    job_id = hub.enqueue("test.ok", priority="low")
    admin.pause_queue("low")
    view = JobDetailView(ops["viewer"], job_id)
    assert "sgen-paused-badge" in view.facts.value
    assert "queue low is paused: this job waits" in text(view.facts.value)
    admin.pause_task("test.ok")
    view.refresh()
    assert "task test.ok is paused" in text(view.facts.value)
    admin.resume_task("test.ok")
    admin.resume_queue("low")
    view.refresh()
    assert "sgen-paused-badge" not in view.facts.value


def test_an_editor_sees_the_payload_read_only_and_why(hub: sgen_ops.Hub, ops: dict[str, Operations]) -> None:
    job_id = hub.enqueue("test.ok", {"n": 1}, delay=3600)
    editor = JobDetailView(ops["editor"], job_id)
    assert editor.payload_edit.layout.display == "" and '"n": 1' in editor.payload_editor.value
    reason = "Only administrators can change what a job runs; you are signed in as an editor."
    assert editor.payload_editor.disabled and editor.payload_editor.tooltip == reason
    assert editor.save_payload_button.disabled and editor.save_payload_button.tooltip == reason
    # What the editor may change is still theirs (the view's other buttons), and the payload stays as it was.
    assert not editor.trigger_button.disabled and not editor.cancel_button.disabled
    before = ledger_state(hub)
    editor.payload_editor.value = '{"n": 2}'
    editor.save_payload()
    assert status_of(editor)[0] == "error" and "only administrators can change what a job runs" in status_of(editor)[1]
    assert ledger_state(hub) == before


def test_an_administrator_edits_a_waiting_jobs_payload(hub: sgen_ops.Hub, admin: Operations, jobs: Jobs) -> None:
    job_id = hub.enqueue("test.ok", {"n": 1}, delay=3600)
    view = JobDetailView(admin, job_id)
    assert not view.payload_editor.disabled and not view.save_payload_button.disabled
    view.payload_editor.value = "{not json"
    view.save_payload()
    assert status_of(view)[0] == "error" and "invalid JSON" in status_of(view)[1]
    view.payload_editor.value = '{"n": 2}'
    view.refresh()  # an edit in progress survives a refresh
    assert view.payload_editor.value == '{"n": 2}'
    view.save_payload()
    assert status_of(view) == ("ok", f"✔ Saved the payload of job {job_id}.")
    assert job_row(hub, job_id)["payload"] == {"n": 2}
    assert '"n": 2' in text(view.payload.value)
    # Once the job has run, its payload is no longer editable.
    assert JobDetailView(admin, jobs.make("succeeded")).payload_edit.layout.display == "none"
