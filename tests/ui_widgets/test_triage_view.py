"""The dead-letter triage view: groups, replay, dismiss behind a confirmation, edit and replay, bulk."""

from __future__ import annotations

import sgen_ops
from sgen_ops.surface.operations import Operations
from sgen_ops.ui import TriageView
from tests.helpers import job_count
from tests.integration.test_surface_fixtures import Jobs, job_row, ledger_state

from .helpers import status_of, text


def dead_letters(hub: sgen_ops.Hub, task: str, n: int) -> list[int]:
    ids = hub.enqueue_many(task, [{"n": i, "credentials": {"api_key": f"key-{i}"}} for i in range(n)])
    hub.work()
    assert {job_row(hub, i)["state"] for i in ids} == {"dead-letter"}
    return ids


def test_groups_by_task_and_error_code_and_filters_the_list(hub: sgen_ops.Hub, admin: Operations) -> None:
    boom = dead_letters(hub, "test.boom", 3)
    secret = dead_letters(hub, "test.secret", 1)
    manual = hub.enqueue("test.ok", {"n": 1}, delay=3600)
    admin.send_to_dead_letter(manual, reason="broken by hand")
    hub.enqueue("test.ok", {"n": 2}, delay=3600)  # not a dead letter: never counted

    view = TriageView(admin)
    assert view.group_counts() == {("test.boom", "ValueError"): 3, ("test.secret", "auth_failed"): 1,
                                   ("test.ok", None): 1}
    labels = [label for label, _ in view.groups.options]
    assert labels[0].startswith("All dead letters") and labels[0].endswith(" 5")
    assert labels[1].split()[:3] == ["test.boom", "ValueError", "3"]  # biggest group first
    assert set(view.rows.options) == {*boom, *secret, manual}

    view.groups.value = ("test.boom", "ValueError")
    assert set(view.rows.options) == set(boom)
    assert (view.bulk_task.value, view.bulk_error_code.value) == ("test.boom", "ValueError")
    view.groups.value = None
    assert len(view.rows.options) == 5


def test_ticking_one_dead_letter_shows_its_detail_and_payload(hub: sgen_ops.Hub, admin: Operations) -> None:
    (job_id,) = dead_letters(hub, "test.secret", 1)
    view = TriageView(admin)
    view.rows.value = (job_id,)
    assert view.detail is not None and view.detail.job_id == job_id
    assert "auth_failed" in text(view.detail.attempts_table.value)
    assert '"api_key": "key-0"' in view.payload_editor.value  # the administrator edits the clear payload
    assert text(view.payload_error.value) == "✔ valid JSON"
    view.rows.value = ()
    assert view.detail is None and view.payload_editor.value == ""


def test_replay_the_ticked(hub: sgen_ops.Hub, admin: Operations) -> None:
    ids = dead_letters(hub, "test.boom", 3)
    view = TriageView(admin)
    view.rows.value = ids[:2]
    view.replay_button.click()
    assert [job_row(hub, i)["state"] for i in ids] == ["queued", "queued", "dead-letter"]
    assert status_of(view)[0] == "ok"
    assert view.rows.options == (ids[2],)
    assert view.group_counts() == {("test.boom", "ValueError"): 1}


def test_dismiss_asks_for_confirmation(hub: sgen_ops.Hub, admin: Operations) -> None:
    ids = dead_letters(hub, "test.boom", 2)
    view = TriageView(admin)
    view.rows.value = (ids[0],)
    view.dismiss_button.click()
    assert job_row(hub, ids[0])["state"] == "dead-letter"  # nothing yet
    assert view.confirm_dismiss_button in view.confirm_box.children
    assert status_of(view)[0] == "info"
    view.keep_button.click()
    assert view.confirm_box.children == ()
    assert job_row(hub, ids[0])["state"] == "dead-letter"

    view.dismiss_button.click()
    view.confirm_dismiss_button.click()
    assert job_row(hub, ids[0]) == {}
    assert job_row(hub, ids[1])["state"] == "dead-letter"
    assert view.rows.options == (ids[1],)
    assert status_of(view) == ("ok", f"✔ Dismissed 1 dead letter: {ids[0]}.")


def test_confirm_without_dismiss_does_nothing(hub: sgen_ops.Hub, admin: Operations) -> None:
    ids = dead_letters(hub, "test.boom", 1)
    view = TriageView(admin)
    view.rows.value = tuple(ids)
    view.confirm_dismiss_button.click()
    assert job_row(hub, ids[0])["state"] == "dead-letter"


def test_an_editor_may_not_dismiss_or_replay(hub: sgen_ops.Hub, ops: dict[str, Operations]) -> None:
    dead_letters(hub, "test.boom", 1)
    view = TriageView(ops["editor"])
    assert view.dismiss_button.disabled
    assert view.dismiss_button.tooltip == (
        "Only administrators can dismiss dead letters; you are signed in as an editor."
    )
    assert view.replay_button.disabled and view.edit_replay_button.disabled
    assert view.bulk_replay_button.disabled and not view.preview_button.disabled  # counting is reading
    assert view.bulk_dismiss_button.tooltip == (
        "Only administrators can dismiss dead letters in bulk; you are signed in as an editor."
    )
    assert not TriageView(ops["administrator"]).dismiss_button.disabled


def test_edit_and_replay_with_invalid_json_shows_the_error_inline(hub: sgen_ops.Hub, admin: Operations) -> None:
    (job_id,) = dead_letters(hub, "test.boom", 1)
    view = TriageView(admin)
    view.rows.value = (job_id,)
    before = ledger_state(hub)

    view.payload_editor.value = '{"n": 1,, }'
    assert "invalid JSON" in text(view.payload_error.value)  # live, as it is typed
    view.edit_replay_button.click()
    assert "invalid JSON: Expecting property name enclosed in double quotes (line 1, column 9)" in text(
        view.payload_error.value)
    assert status_of(view)[0] == "error"
    assert ledger_state(hub) == before

    # Valid JSON the surface refuses: its ValidationError shows next to the editor as well.
    view.payload_editor.value = '{"n": NaN}'
    view.edit_replay_button.click()
    assert "ValidationError: payload is not JSON-serialisable" in text(view.payload_error.value)
    assert ledger_state(hub) == before


def test_edit_and_replay_queues_a_new_job_with_the_edited_payload(hub: sgen_ops.Hub, admin: Operations) -> None:
    (job_id,) = dead_letters(hub, "test.boom", 1)
    view = TriageView(admin)
    view.rows.value = (job_id,)
    jobs_before = job_count(hub)
    view.payload_editor.value = '{"n": 42, "fixed": true}'
    view.edit_replay_button.click()
    assert job_count(hub) == jobs_before + 1
    new_id = job_row(hub, job_id)["replayed_as_id"]
    assert new_id is not None
    assert job_row(hub, new_id)["payload"] == {"n": 42, "fixed": True}
    assert job_row(hub, new_id)["state"] == "queued"
    assert job_row(hub, job_id)["state"] == "dead-letter"  # kept for audit
    done = f"✔ Queued job {new_id} from dead letter {job_id} with the edited payload."
    assert text(view.edit_replay_result.value) == done  # next to the button
    assert status_of(view) == ("ok", done)


def test_edit_and_replay_refusals_show_next_to_the_button(admin: Operations) -> None:
    view = TriageView(admin)
    view.edit_replay_button.click()
    assert text(view.edit_replay_result.value) == "ℹ Tick exactly one dead letter to edit and replay it."
    assert "sgen-edit-replay-result" in view.edit_replay_result._dom_classes


def test_the_detail_leaves_replay_and_dismiss_to_the_list_buttons(hub: sgen_ops.Hub, admin: Operations) -> None:
    (job_id,) = dead_letters(hub, "test.boom", 1)
    view = TriageView(admin)
    view.rows.value = (job_id,)
    assert view.detail is not None
    shown = {a for a, b in view.detail.buttons.items() if b in view.detail.actions.children}
    assert shown == {"resolve"}


def test_a_viewer_can_preview_the_count(hub: sgen_ops.Hub, ops: dict[str, Operations]) -> None:
    dead_letters(hub, "test.boom", 3)
    dead_letters(hub, "test.secret", 1)
    view = TriageView(ops["viewer"])
    assert not view.preview_button.disabled and view.bulk_replay_button.disabled
    view.bulk_task.value = "test.boom"
    view.preview_button.click()
    assert text(view.bulk_count.value) == "3 dead letters match"
    assert status_of(view)[0] != "error"


def test_bulk_replay_shows_the_count_asks_first_and_reports_in_the_bulk_panel(hub: sgen_ops.Hub,
                                                                             admin: Operations) -> None:
    boom = dead_letters(hub, "test.boom", 5)
    other = dead_letters(hub, "test.secret", 1)
    view = TriageView(admin)
    view.bulk_task.value = "test.boom"
    before = ledger_state(hub)
    view.preview_button.click()
    assert text(view.bulk_count.value) == "5 dead letters match"
    assert ledger_state(hub) == before  # a dry run

    view.bulk_replay_button.click()  # counts and asks; nothing changes yet
    assert ledger_state(hub) == before
    assert text(view.bulk_count.value) == "5 dead letters match"
    assert text(view.bulk_result.value).startswith("ℹ Replay queues 5 dead letters again")
    assert view.bulk_confirm_replay_button.layout.display is None and view.bulk_keep_button.layout.display is None
    assert view.bulk_confirm_dismiss_button.layout.display == "none"
    view.bulk_keep_button.click()
    assert view.bulk_confirm_replay_button.layout.display == "none" and view.bulk_result.value == ""
    view.bulk_confirm_replay_button.click()  # withdrawn: a confirmation without its question does nothing
    assert ledger_state(hub) == before
    assert "first" in text(view.bulk_result.value)

    seen: list[int] = []
    view.progress.observe(lambda change: seen.append(change["new"]), names="value")
    view.batch_size = 2
    view.bulk_replay_button.click()
    view.bulk_confirm_replay_button.click()
    assert view.progress.max == 5 and view.progress.value == 5
    # Batch by batch locally; through the HTTP API the bulk write is one request, reported when it ends.
    assert seen == ([2, 4, 5] if isinstance(admin, Operations) else [5])
    assert {job_row(hub, i)["state"] for i in boom} == {"queued"}
    assert job_row(hub, other[0])["state"] == "dead-letter"
    # The outcome is in the bulk panel, not under the buttons of the ticked rows.
    assert text(view.bulk_result.value) == "✔ Replayed 5 dead letters."
    assert status_of(view) == ("", "")
    assert view.group_counts() == {("test.secret", "auth_failed"): 1}


def test_changing_a_bulk_filter_withdraws_the_question(hub: sgen_ops.Hub, admin: Operations) -> None:
    dead_letters(hub, "test.boom", 2)
    secret = dead_letters(hub, "test.secret", 1)
    view = TriageView(admin)
    view.bulk_task.value = "test.boom"
    view.bulk_replay_button.click()
    assert view.pending_bulk is not None
    view.bulk_task.value = "test.secret"  # the count shown was for another filter
    assert view.pending_bulk is None and view.bulk_confirm_replay_button.layout.display == "none"
    view.bulk_confirm_replay_button.click()
    assert job_row(hub, secret[0])["state"] == "dead-letter"


def test_bulk_with_nothing_matching_says_so_and_asks_nothing(hub: sgen_ops.Hub, admin: Operations) -> None:
    dead_letters(hub, "test.boom", 1)
    view = TriageView(admin)
    view.bulk_error_code.value = "no_such_code"
    view.bulk_replay_button.click()
    assert text(view.bulk_result.value) == "ℹ No dead letters match these filters; nothing to replay."
    assert view.pending_bulk is None and view.bulk_confirm_replay_button.layout.display == "none"


def test_bulk_dismiss_by_error_code_asks_first(hub: sgen_ops.Hub, admin: Operations) -> None:
    boom = dead_letters(hub, "test.boom", 2)
    secret = dead_letters(hub, "test.secret", 2)
    view = TriageView(admin)
    view.bulk_error_code.value = "auth_failed"
    view.bulk_dismiss_button.click()
    assert text(view.bulk_count.value) == "2 dead letters match"
    assert text(view.bulk_result.value).startswith("ℹ Dismiss purges 2 dead letters for good.")
    assert view.bulk_confirm_dismiss_button.layout.display is None  # shown
    assert all(job_row(hub, i) for i in secret)
    view.bulk_confirm_dismiss_button.click()
    assert [job_row(hub, i) for i in secret] == [{}, {}]
    assert {job_row(hub, i)["state"] for i in boom} == {"dead-letter"}
    assert view.progress.value == view.progress.max == 2
    assert text(view.bulk_result.value) == "✔ Dismissed 2 dead letters."


def test_a_replayed_dead_letter_that_fails_again_comes_back_unticked(hub: sgen_ops.Hub, admin: Operations) -> None:
    """The operator replays A; A fails again and is a dead letter once more. Then B is edited and replayed:
    the refreshes after both actions leave A unticked, and the editor keeps B."""
    a, b = dead_letters(hub, "test.boom", 2)
    view = TriageView(admin)
    view.rows.value = (a,)
    view.replay_button.click()
    assert a not in view.rows.options
    hub.work()
    assert job_row(hub, a)["state"] == "dead-letter"

    view.rows.value = (b,)
    assert view.editing_id == b and f"dead letter {b}" in text(view.editing_label.value)
    view.payload_editor.value = '{"n": 9}'
    view.edit_replay_button.click()
    assert status_of(view)[0] == "ok"
    # A is listed again, not ticked; B, replayed, left the list; the editor and the detail still show B.
    assert view.rows.options == (a,) and view.rows.value == ()
    assert view.editing_id == b and view.detail is not None and view.detail.job_id == b
    assert view.payload_editor.value == '{"n": 9}'
    view.live.tick()
    assert view.rows.value == () and view.editing_id == b and view.detail.job_id == b


def test_a_refresh_opens_no_detail_the_operator_did_not_open(hub: sgen_ops.Hub, admin: Operations) -> None:
    """Two ticked; one leaves the list (replayed elsewhere): the other stays ticked, but no detail opens
    and nothing is loaded into the editor."""
    a, b = dead_letters(hub, "test.boom", 2)
    view = TriageView(admin)
    view.rows.value = (a, b)
    assert view.detail is None
    admin.replay(a)
    view.refresh()
    assert view.rows.value == (b,)
    assert view.detail is None and view.editing_id is None and view.payload_editor.value == ""


def test_replay_edited_refuses_a_dead_letter_that_changed_since_it_was_loaded(hub: sgen_ops.Hub,
                                                                             admin: Operations) -> None:
    (a,) = dead_letters(hub, "test.boom", 1)
    view = TriageView(admin)
    view.rows.value = (a,)
    view.payload_editor.value = '{"n": 7}'
    admin.replay(a)  # another operator replays it; it fails again
    hub.work()
    assert job_row(hub, a)["state"] == "dead-letter"
    jobs_before = job_count(hub)
    view.edit_replay_button.click()
    assert job_count(hub) == jobs_before
    assert text(view.edit_replay_result.value) == (
        f"✖ Dead letter {a} changed since it was loaded into the editor (it is dead-letter now); nothing was "
        "queued. Untick it and tick it again to load it as it is now.")
    # The refresh shows its new attempts; the changed row lost its tick, the editor still names it.
    view.refresh()
    assert view.rows.value == () and view.editing_id == a
    assert view.detail is not None and view.detail.detail is not None
    assert view.detail.detail.updated_at > view.editing_as[1]  # type: ignore[index]
    view.rows.value = (a,)  # loaded again: now it may go
    view.payload_editor.value = '{"n": 7}'
    view.edit_replay_button.click()
    assert job_count(hub) == jobs_before + 1


def test_replay_edited_of_a_dismissed_dead_letter_says_it_is_gone(hub: sgen_ops.Hub, admin: Operations) -> None:
    (a,) = dead_letters(hub, "test.boom", 1)
    view = TriageView(admin)
    view.rows.value = (a,)
    admin.dismiss(a)
    view.edit_replay_button.click()
    assert "is gone since it was loaded" in text(view.edit_replay_result.value)


def test_triage_for_a_viewer_is_read_only_and_masked(hub: sgen_ops.Hub, ops: dict[str, Operations],
                                                    jobs: Jobs) -> None:
    (job_id,) = dead_letters(hub, "test.secret", 1)
    view = TriageView(ops["viewer"])
    view.rows.value = (job_id,)
    assert "key-0" not in view.payload_editor.value
    assert view.edit_replay_button.disabled
