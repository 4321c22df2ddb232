"""An edited-and-replayed dead letter is kept for audit, linked both ways to its replacement, and leaves the
live dead letter: lists, groups and bulk triage leave it out, and it can no longer be replayed (issue 14,
defect 2)."""

from __future__ import annotations

from typing import Any

import pytest

import sgen_ops
from sgen_ops import InvalidTransition
from sgen_ops.ui import TriageView
from sgen_ops.ui.detail import JobDetailView
from tests.integration.test_surface_fixtures import add_operators, job_row


def _dead_letters(hub: sgen_ops.Hub, n: int) -> list[int]:
    ids = [hub.enqueue("test.boom", {"n": i}) for i in range(n)]
    hub.work(burst=True)
    assert {job_row(hub, i)["state"] for i in ids} == {"dead-letter"}
    return ids


def test_the_replaced_original_leaves_the_live_dead_letter(hub: sgen_ops.Hub) -> None:
    admin = add_operators(hub)["administrator"]
    original, other = _dead_letters(hub, 2)
    dead_at = job_row(hub, original)["updated_at"]
    new_id = admin.edit_and_replay(original, {"n": 0, "fixed": True})

    row = job_row(hub, original)
    assert (row["state"], row["replayed_as_id"], row["payload"]) == ("dead-letter", new_id, {"n": 0})
    assert row["updated_at"] == dead_at  # its dead-lettered time is not reset
    # Linked both ways.
    assert admin.get_job(original).replayed_as_id == new_id
    assert admin.get_job(new_id).replayed_from_id == original
    # Out of the dead-letter lists, groups and bulk previews; still listed among every job, for audit.
    assert [j.id for j in admin.list_jobs(state="dead-letter").items] == [other]
    assert original not in [j.id for j in admin.list_jobs(state=["dead-letter", "queued"]).items]
    assert new_id in [j.id for j in admin.list_jobs(state=["dead-letter", "queued"]).items]
    assert original in [j.id for j in admin.list_jobs().items]
    assert admin.dead_letter_groups()["count"].tolist() == [1]
    assert admin.replay_dead_letters(task="test.boom", dry_run=True) == 1
    assert admin.dismiss_dead_letters(dry_run=True) == 1


@pytest.mark.parametrize("action", ["replay", "rerun", "dismiss", "resolve", "edit_and_replay"])
def test_the_replaced_original_takes_no_triage(hub: sgen_ops.Hub, action: str) -> None:
    admin = add_operators(hub)["administrator"]
    (original,) = _dead_letters(hub, 1)
    new_id = admin.edit_and_replay(original, {"n": 0, "fixed": True})
    entries = len(admin.activity_log())
    args: dict[str, Any] = {"resolve": {"note": "handled"}, "edit_and_replay": {"payload": {"n": 1}}}.get(action, {})
    with pytest.raises(InvalidTransition, match=rf"edited and replayed as job {new_id} and is kept for audit only"):
        getattr(admin, action)(original, **args)
    assert job_row(hub, original)["state"] == "dead-letter"
    assert len(admin.activity_log()) == entries


def test_bulk_triage_leaves_the_replaced_original_alone(hub: sgen_ops.Hub) -> None:
    admin = add_operators(hub)["administrator"]
    original, other = _dead_letters(hub, 2)
    new_id = admin.edit_and_replay(original, {"n": 0, "fixed": True})
    assert admin.dismiss_dead_letters(task="test.boom") == 1
    assert job_row(hub, other) == {}
    assert job_row(hub, original)["state"] == "dead-letter"
    assert job_row(hub, new_id)["state"] == "queued"
    # Deleting it on purpose is still possible, with a snapshot in the Activity Log.
    admin.delete_job(original)
    assert job_row(hub, original) == {}
    assert admin.activity_log()["action"].tolist()[-1] == "delete_job"


def test_the_views_show_the_link_and_offer_no_triage(hub: sgen_ops.Hub) -> None:
    admin = add_operators(hub)["administrator"]
    original, other = _dead_letters(hub, 2)
    new_id = admin.edit_and_replay(original, {"n": 0, "fixed": True})
    detail = JobDetailView(admin, original)
    assert detail.available() == []  # no Replay, Re-run, Dismiss or Resolve on what is kept for audit
    assert f"job {new_id}" in detail.facts.value and "kept for audit" in detail.facts.value
    assert JobDetailView(admin, other).available() != []
    replacement = JobDetailView(admin, new_id)
    assert f"job {original}" in replacement.facts.value
    triage = TriageView(admin)
    assert triage.rows.options == (other,)
