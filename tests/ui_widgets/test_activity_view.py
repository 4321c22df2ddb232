"""The Activity Log view: entries masked as the Python API's read masks them, the filters, the chain's
status for an administrator (and plain words for everyone else), and the app's tab."""

from __future__ import annotations

from typing import Any

from sqlalchemy import update

import sgen_ops
from sgen_ops.core.masking import MASK
from sgen_ops.ledger.store import ActivityEntry
from sgen_ops.surface.operations import Operations
from sgen_ops.ui import ActivityLogView, app
from sgen_ops.ui.activity import change_text
from tests.integration.test_surface_fixtures import Jobs

from .helpers import status_of, text

SECRET = "key-visible-only-to-administrators"


def _activity(hub: sgen_ops.Hub, ops: dict[str, Operations], jobs: Jobs) -> dict[str, int]:
    """An editor re-runs a failed job; the administrator cancels a queued one and edits and replays a dead
    letter whose payload holds a secret."""
    failed, queued = jobs.make("failed"), jobs.make("queued")
    dead = hub.enqueue("test.secret", {"credentials": {"api_key": "old-key"}})
    hub.work()
    ops["editor"].rerun(failed)
    ops["administrator"].cancel(queued)
    ops["administrator"].edit_and_replay(dead, {"credentials": {"api_key": SECRET}})
    return {"rerun": failed, "cancel": queued, "edit_and_replay": dead}


def _rows(view: ActivityLogView) -> list[str]:
    return [text(row) for row in view.log_table.value.split("<tr")[2:]]


def test_entries_newest_first_masked_as_the_api_reads_them(
    hub: sgen_ops.Hub, ops: dict[str, Operations], jobs: Jobs
) -> None:
    targets = _activity(hub, ops, jobs)
    editor = ActivityLogView(ops["editor"])
    assert status_of(editor) == ("", "")
    assert list(dict.fromkeys(editor.frame["action"]))[:3] == ["edit_and_replay", "cancel", "rerun"]
    assert editor.frame["at"].is_monotonic_decreasing
    shown = editor.log_table.value
    assert SECRET not in str(list(editor.frame["change"])) and MASK in str(list(editor.frame["change"]))
    assert SECRET not in shown
    # The same masked change as ops.activity_log returns to this operator.
    expected = ops["editor"].activity_log()
    replayed = expected[expected["action"] == "edit_and_replay"].iloc[0]
    assert change_text(replayed["change"]) in text(shown)
    assert any(f"job {targets['edit_and_replay']}" in row for row in _rows(editor)[:2])
    assert text(editor.page_label.value) == f"{len(expected)} entries · page 1 of 1"

    # Each operator's view holds exactly the changes the API's read gives that operator, newest first.
    for role in ("editor", "administrator"):
        view = editor if role == "editor" else ActivityLogView(ops[role])
        assert list(view.frame["change"]) == list(ops[role].activity_log()["change"])[::-1]


def test_filters_by_operator_action_and_target(hub: sgen_ops.Hub, ops: dict[str, Operations], jobs: Jobs) -> None:
    targets = _activity(hub, ops, jobs)
    view = ActivityLogView(ops["administrator"])
    assert {"editor", "administrator"} <= set(view.operator_filter.options)
    assert {"rerun", "cancel", "edit_and_replay"} <= set(view.action_filter.options)

    view.operator_filter.value = "editor"
    assert list(view.frame["action"]) == ["rerun"]
    assert len(_rows(view)) == 1 and "editor" in _rows(view)[0]

    view.operator_filter.value = "any"
    view.action_filter.value = "cancel"
    assert list(view.frame["target_id"]) == [targets["cancel"]]

    view.action_filter.value = "any"
    view.target_filter.value = f"job {targets['rerun']}"
    view.apply_button.click()
    assert list(view.frame["action"]) == ["rerun"]
    view.target_filter.value = f"schedule {targets['rerun']}"
    view.apply_button.click()
    assert "No Activity Log entries match." in text(view.log_table.value)

    view.target_filter.value = "the cancelled one"
    view.apply_button.click()
    kind, message = status_of(view)
    assert kind == "error" and "give an id, 'job ID' or 'schedule ID'" in message

    # A refresh keeps the filters chosen.
    view.target_filter.value = ""
    view.action_filter.value = "cancel"
    view.refresh_button.click()
    assert view.action_filter.value == "cancel" and list(view.frame["action"]) == ["cancel"]


def test_paging(hub: sgen_ops.Hub, ops: dict[str, Operations], jobs: Jobs) -> None:
    _activity(hub, ops, jobs)
    view = ActivityLogView(ops["administrator"], per_page=2)
    total = len(view.frame)
    assert view.prev_button.disabled and not view.next_button.disabled
    view.next_button.click()
    assert view.page == 2 and f"page 2 of {-(-total // 2)}" in text(view.page_label.value)


def test_chain_status_verified_broken_and_for_administrators_only(
    hub: sgen_ops.Hub, ops: dict[str, Operations], jobs: Jobs
) -> None:
    _activity(hub, ops, jobs)
    admin = ActivityLogView(ops["administrator"])
    assert admin.chain_ok is True and "sgen-chain-ok" in admin.chain._dom_classes
    assert text(admin.chain.value).startswith("✔ Chain verified: all")

    editor = ActivityLogView(ops["editor"])
    assert editor.chain_ok is None and "sgen-chain-unchecked" in editor.chain._dom_classes
    assert "Only administrators can check the Activity Log's chain; you are signed in as an editor." in text(
        editor.chain.value)
    assert "verify_audit" not in text(editor.chain.value)

    with hub.ledger.write() as session:
        session.execute(update(ActivityEntry).where(ActivityEntry.id == 2).values(operator="someone-else"))
    admin.refresh_button.click()
    assert admin.chain_ok is False and "sgen-chain-broken" in admin.chain._dom_classes
    assert "entry 2 was altered" in text(admin.chain.value)


def test_a_viewer_is_told_the_log_is_not_theirs(ops: dict[str, Operations]) -> None:
    view = ActivityLogView(ops["viewer"])
    kind, message = status_of(view)
    assert (kind, message) == ("info", "ℹ Only administrators and editors can read the Activity Log; you are signed "
                                       "in as a viewer.")
    assert view.frame.empty
    # None of the controls it could not use: the filters, the paging, the (empty) table and the chain.
    for box in (*view.controls, view.pager, view.log_table, view.chain):
        assert box.layout.display == "none"
    assert all(box.layout.display != "none" for box in ActivityLogView(ops["editor"]).controls)


def test_pause_entries_name_their_task_and_queue_and_show_no_nan(ops: dict[str, Operations]) -> None:
    """A pause is about no one job: its target is the task's (or queue's) name, its account a dash."""
    admin = ops["administrator"]
    admin.pause_task("test.ok")
    admin.pause_queue("low")
    view = ActivityLogView(admin)
    rows = _rows(view)
    assert any("pause_task task test.ok —" in row for row in rows), rows
    assert any("pause_queue queue low —" in row for row in rows), rows
    assert "nan" not in text(view.log_table.value).split()


def test_the_app_has_an_activity_log_tab(ops: dict[str, Operations]) -> None:
    tab: Any = app(ops["administrator"])
    assert tab.titles[-1] == "Activity Log"
    tab.selected_index = len(tab.titles) - 1
    assert isinstance(tab.children[-1], ActivityLogView)
