"""Live views: a tick of the auto-refresh shows what changed and keeps the operator's ticks, the open
detail and the payload being edited, in the queue and the dead-letter views."""

from __future__ import annotations

import sgen_ops
from sgen_ops.surface.operations import Operations
from sgen_ops.ui import QueueView, TriageView

from .helpers import status_of


def test_queue_tick_keeps_the_ticks_and_the_open_detail(hub: sgen_ops.Hub, admin: Operations) -> None:
    first, second = (hub.enqueue("test.ok", {"n": n}, delay=3600) for n in range(2))
    view = QueueView(admin, per_page=2)
    view.rows.value = [first]
    view.open_detail_button.click()
    detail = view.detail
    assert detail is not None and detail.job_id == first
    view.show_status("Re-ran 1 job: 9.", "ok")  # an operator's last feedback

    newer = hub.enqueue("test.ok", {"n": 2}, delay=3600)
    view.live.tick()
    # Newest first: the new job is shown, the ticked one is still there and still ticked.
    assert view.rows.options == (newer, second)
    assert view.detail is detail and detail.job_id == first  # the open detail stays
    assert status_of(view) == ("ok", "✔ Re-ran 1 job: 9.")
    assert view.job_page is not None and view.job_page.total == 3

    # The ticked job was pushed to page 2: the tick comes back with it.
    assert view.rows.value == ()
    view.next_button.click()
    assert view.rows.options == (first,) and view.rows.value == (first,)

    # Unticking forgets it.
    view.rows.value = []
    view.prev_button.click()
    view.next_button.click()
    assert view.rows.value == ()


def test_queue_tick_keeps_a_tick_on_a_row_still_shown(hub: sgen_ops.Hub, admin: Operations) -> None:
    ids = [hub.enqueue("test.ok", {"n": n}, delay=3600) for n in range(3)]
    view = QueueView(admin)
    view.rows.value = [ids[1]]
    hub.enqueue("test.ok", {"n": 3}, delay=3600)
    view.live.tick()
    assert len(view.rows.options) == 4 and view.rows.value == (ids[1],)
    assert view.live.ticks == 1


def test_triage_tick_keeps_the_detail_and_the_payload_being_edited(hub: sgen_ops.Hub, admin: Operations) -> None:
    dead = hub.enqueue("test.boom", {"n": 1})
    hub.work()
    view = TriageView(admin, per_page=1)
    view.rows.value = [dead]
    assert view.detail is not None and view.detail.job_id == dead
    view.payload_editor.value = '{"n": 2}'

    newer = hub.enqueue("test.boom", {"n": 3})
    hub.work()
    view.live.tick()
    # The new dead letter heads the list (one per page) and the groups count it...
    assert view.rows.options == (newer,)
    assert sum(view.group_counts().values()) == 2
    # ...while the detail and the edit the operator was making stay.
    assert view.detail is not None and view.detail.job_id == dead
    assert view.payload_editor.value == '{"n": 2}' and view.editing_id == dead
    view.next_button.click()
    assert view.rows.value == (dead,)


def test_the_live_toggle_runs_and_stops_its_timer(admin: Operations) -> None:
    for view in (QueueView(admin), TriageView(admin)):
        assert not view.live.running
        view.live.interval.value = 2.0
        view.live.toggle.value = True
        assert view.live.running
        view.live.toggle.value = False
        assert not view.live.running
        view.live.toggle.value = True
        view.live.close()  # closing the view's bar stops its timer too
        assert not view.live.running and not view.live.toggle.value
