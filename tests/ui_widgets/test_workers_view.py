"""The workers and queues view: RQ workers as they register in Redis (host, pid, state, current job,
heartbeat, counts; stale ones flagged), each priority queue's depth and oldest due job, the live toggle."""

from __future__ import annotations

import socket
import subprocess
from datetime import UTC, datetime, timedelta
from typing import Any

from rq.utils import utcformat

import sgen_ops
from sgen_ops.runtime import execution
from sgen_ops.runtime.execution import bind_hub
from sgen_ops.runtime.workers import SgenWorker, worker_name
from sgen_ops.surface.operations import Operations
from sgen_ops.ui import WorkersView, app

from .helpers import status_of, text


def _register(hub: sgen_ops.Hub, *, pid: int | None = None) -> Any:
    """A worker of this hub's queues registered in Redis as a running one registers itself."""
    bind_hub(hub)  # a worker takes its settings from the process's hub (else it would connect one of its own)
    worker = SgenWorker(hub.transport.ordered_queues, connection=hub.redis,
                        name=worker_name(hub.settings.queue_prefix))
    if pid is not None:
        worker.pid = pid
    worker.register_birth()
    return worker


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def _rows(view: WorkersView) -> list[str]:
    return [text(row) for row in view.workers_table.value.split("<tr")[2:]]


def test_workers_and_queue_depths(hub: sgen_ops.Hub, ops: dict[str, Operations]) -> None:
    admin = ops["administrator"]
    ready = [hub.enqueue("test.ok", {"n": n}) for n in range(3)]
    busy = _register(hub)
    idle = _register(hub)
    stale = _register(hub, pid=_dead_pid())
    old = _register(hub)
    try:
        # The worker takes the first delivery and claims its attempt, as it does before running the handler.
        taken = busy.dequeue_job_and_maintain_ttl(None)
        assert taken is not None and taken[0].id == hub.transport.rq_job_id(ready[0], 1)
        execution.RUNTIME.name = busy.name  # the process's worker, the last one made here otherwise
        assert execution.claim(hub, ready[0], taken[0].id) is not None
        hub.enqueue("test.ok", {"later": True}, delay=3600)
        hub.enqueue("test.ok", {"high": True}, priority="high")
        hub.redis.hset(old.key, "last_heartbeat", utcformat(datetime.now(UTC) - timedelta(hours=1)))

        view = WorkersView(admin)  # served too: through GET /api/workers
        assert status_of(view) == ("", "")
        rows = {w.name: w for w in view.snapshot.workers}  # type: ignore[union-attr]
        assert set(rows) == {busy.name, idle.name, stale.name, old.name}
        assert rows[busy.name].current_job == ready[0] and rows[busy.name].current_task == "test.ok"
        assert rows[busy.name].state == "busy" and rows[busy.name].host == socket.gethostname()
        assert not rows[busy.name].stale and not rows[idle.name].stale
        assert rows[stale.name].stale and "no longer runs" in (rows[stale.name].stale_reason or "")
        assert rows[old.name].stale and "no heartbeat" in (rows[old.name].stale_reason or "")

        shown = _rows(view)
        assert any(f"job {ready[0]} · test.ok" in row and str(busy.pid) in row for row in shown)
        assert sum("stale" in row for row in shown) == 2
        assert view.workers_table.value.count("sgen-worker-stale") == 2
        assert text(view.summary.value).startswith("4 workers (2 stale) · 1 busy · 3 ready · 1 scheduled")

        queues = {q.priority: q for q in view.snapshot.queues}  # type: ignore[union-attr]
        assert (queues["normal"].ready, queues["normal"].scheduled, queues["high"].ready) == (2, 1, 1)
        assert (queues["normal"].waiting, queues["normal"].delayed, queues["normal"].running) == (2, 1, 1)
        assert queues["low"].oldest_due is None and queues["normal"].oldest_due is not None
        table = text(view.queues_table.value)
        assert "normal 2 1 1" in table and "high 1 0 0" in table and "low 0 0 0 —" in table
    finally:
        for worker in (busy, idle, stale, old):
            worker.register_death()


def test_no_worker_says_how_to_start_one(hub: sgen_ops.Hub, admin: Operations) -> None:
    view = WorkersView(admin)
    assert "No worker is serving these queues" in text(view.workers_table.value)
    assert "last schedule tick never" in text(view.summary.value)


def test_live_toggle_refreshes_on_its_own_and_stops(hub: sgen_ops.Hub, admin: Operations) -> None:
    view = WorkersView(admin)
    assert not view.live.running
    view.live.toggle.value = True
    try:
        assert view.live.running and view.live.toggle.icon == "pause"
        worker = _register(hub)
        try:
            view.live.tick()  # what the timer runs every interval
            assert [w.name for w in view.snapshot.workers] == [worker.name]  # type: ignore[union-attr]
        finally:
            worker.register_death()
    finally:
        view.live.toggle.value = False
    assert not view.live.running and view.live.toggle.icon == "play"


def test_an_account_bound_operator_is_told_queues_are_shared(hub: sgen_ops.Hub) -> None:
    hub.add_operator("acme-admin", "administrator", account="acme")
    view = WorkersView(hub.as_operator("acme-admin"))
    kind, message = status_of(view)
    assert kind == "info" and "shared by every account" in message and view.snapshot is None


def test_the_app_has_a_workers_tab(admin: Operations) -> None:
    tab: Any = app(admin)
    index = tab.titles.index("Workers")
    tab.selected_index = index
    assert isinstance(tab.children[index], WorkersView)


def test_a_paused_queue_is_marked(hub: sgen_ops.Hub, ops: dict[str, Operations]) -> None:
    admin = ops["administrator"]
    admin.pause_queue("high")
    view = WorkersView(admin)
    rows = view.queues_table.value.split("<tr")[2:]
    high = next(row for row in rows if ">high<" in row)
    assert "sgen-paused-badge" in high
    assert sum("sgen-paused-badge" in row for row in rows) == 1
    assert text(view.paused_line.value).startswith("Paused: queue high")
    admin.resume_queue("high")
    view.refresh()
    assert "sgen-paused-badge" not in view.queues_table.value and view.paused_line.value == ""


def test_the_last_schedule_tick_is_the_schedulers_not_a_manual_run(hub: sgen_ops.Hub, admin: Operations) -> None:
    """The view (and ``sgen-ops info``, through the same ``last_schedule_tick``) shows when the scheduler last
    emitted a due tick; a run asked for by hand is not the scheduler's."""
    from sgen_ops.runtime import workers_info

    schedule = admin.create_schedule("test.ok", every="5m")
    admin.run_schedule_now(schedule)
    assert workers_info.snapshot(hub).last_schedule_tick is None
    hub.tick(now=datetime.now(UTC) + timedelta(minutes=6))
    with hub.ledger.read() as session:
        emitted = workers_info.last_schedule_tick(session)
    assert emitted is not None and workers_info.snapshot(hub).last_schedule_tick == emitted
    view = WorkersView(admin)
    assert "last schedule tick never" not in text(view.summary.value)
