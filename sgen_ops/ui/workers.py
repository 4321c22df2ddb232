"""The workers and queues view, read-only: who is working, on what, and what waits.

``WorkersView(ops)`` shows ``ops.workers()`` (the local surface's, or ``GET /api/workers`` through the remote
client): each live RQ worker of the stack (host, pid, state, the job it runs, last heartbeat, jobs succeeded
and failed; stale ones flagged with the reason), each priority queue's depth (ready, scheduled for later,
running) with how long its oldest due job has waited, and when a schedule last emitted a tick. To an
operator bound to one account (queues are shared by every account) it says so instead. A ``LiveRefresh`` bar
refreshes it on its own.

Widgets: ``summary``, ``paused_line``, ``queues_table``, ``workers_table`` (HTML), ``refresh_button``, ``live``
(``LiveRefresh``), ``status``; ``snapshot`` is the last one read.

CSS classes: ``sgen-workers``, ``sgen-workers-summary``, ``sgen-queues-table``, ``sgen-workers-table``,
``sgen-worker-stale`` (on each stale worker's row), ``sgen-paused-line`` (the paused tasks and queues),
``sgen-paused-badge`` (on a paused queue's row), ``sgen-live``, ``sgen-refresh``, ``sgen-status``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import ipywidgets as widgets

from ..runtime import workers_info
from . import render
from .base import View, button
from .live import LiveRefresh

if TYPE_CHECKING:
    from ..surface.operations import Operations


def _queues_html(snap: workers_info.Snapshot, paused: frozenset[str] = frozenset()) -> str:
    rows = []
    for q in snap.queues:
        waited = snap.oldest_wait_seconds(q)
        badge = render.paused_badge("This queue is paused: its jobs are not delivered") if q.priority in paused else ""
        rows.append((
            f"<b>{render.esc(q.priority)}</b>{badge}", render.count(q.ready), render.count(q.scheduled),
            render.count(q.running), render.DASH if waited is None else render.esc(render.duration(waited)),
        ))
    return render.table(["Priority", "Ready", "Scheduled", "Running", "Oldest due job waiting"], rows,
                        css_class="sgen-queues-rows")


def _workers_html(snap: workers_info.Snapshot) -> str:
    body = []
    for w in snap.workers:
        job = render.DASH if w.current_job is None else f"job {w.current_job} · {render.esc(w.current_task)}"
        stale = (f'<span class="sgen-stale-flag" style="color:#b42318;font-weight:600">stale</span> '
                 f"{render.muted(render.esc(w.stale_reason))}") if w.stale else ""
        cells = (render.esc(w.host), render.esc(w.pid), render.badge(w.state) + (" " + stale if stale else ""), job,
                 render.when(w.last_heartbeat, snap.at), render.count(w.succeeded), render.count(w.failed))
        tds = "".join(f'<td style="padding:4px 10px;vertical-align:top">{c}</td>' for c in cells)
        css = "sgen-worker-row sgen-worker-stale" if w.stale else "sgen-worker-row"
        body.append(f'<tr class="{css}" title="{render.esc(w.name)}">{tds}</tr>')
    if not body:
        body.append('<tr><td colspan="7" style="padding:8px 10px;color:#667085">No worker is serving these queues. '
                    "Start one with <code>sgen-ops worker</code>.</td></tr>")
    head = "".join(
        f'<th style="text-align:left;padding:4px 10px;border-bottom:2px solid #eaecf0;color:#475467">{h}</th>'
        for h in ("Host", "PID", "State", "Current job", "Last heartbeat", "Succeeded", "Failed")
    )
    return (f'<table class="sgen-workers-rows" style="border-collapse:collapse;{render.FONT}">'
            f"<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>")


def _summary_html(snap: workers_info.Snapshot) -> str:
    stale = sum(w.stale for w in snap.workers)
    busy = sum(w.current_job is not None for w in snap.workers)
    n = len(snap.workers)
    parts = [
        f"{n} worker{'' if n == 1 else 's'}" + (f" ({stale} stale)" if stale else ""),
        f"{busy} busy",
        f"{sum(q.ready for q in snap.queues)} ready",
        f"{sum(q.scheduled for q in snap.queues)} scheduled",
        "last schedule tick " + (render.relative(snap.last_schedule_tick, snap.at) if snap.last_schedule_tick
                                 else "never"),
    ]
    return f'<div style="{render.FONT}">{" · ".join(parts)}</div>'


class WorkersView(View):
    """Live workers and priority queues, read-only, with a live-refresh toggle."""

    css_class = "sgen-workers"

    def __init__(self, ops: Operations) -> None:
        super().__init__(ops)
        self.snapshot: workers_info.Snapshot | None = None
        self.summary = widgets.HTML()
        self.summary.add_class("sgen-workers-summary")
        self.queues_table = widgets.HTML()
        self.queues_table.add_class("sgen-queues-table")
        self.paused_line = widgets.HTML()
        self.paused_line.add_class("sgen-paused-line")
        self.workers_table = widgets.HTML(layout=widgets.Layout(overflow="auto"))
        self.workers_table.add_class("sgen-workers-table")
        self.refresh_button = button("Refresh", "sgen-refresh", icon="refresh")
        self.refresh_button.on_click(self.guard(lambda _b: self.refresh()))
        self.live = LiveRefresh(self, self.refresh)
        self.children = (
            widgets.HTML(render.heading("Workers and queues")),
            widgets.HBox([self.refresh_button, self.live], layout=widgets.Layout(align_items="center")),
            self.status,
            self.summary,
            self.paused_line,
            widgets.HTML(render.heading("Queues", 4)),
            self.queues_table,
            widgets.HTML(render.heading("Workers", 4)),
            self.workers_table,
        )
        self.attempt(self.refresh)

    def _unavailable(self) -> str | None:
        if self.ops.account is not None:
            return (f"Workers and queues are shared by every account; you see account {self.ops.account!r} only. "
                    "Ask an operator who sees every account.")
        return None

    def refresh(self) -> None:
        """Read the workers and queues again; only the parts that changed are sent to the page."""
        reason = self._unavailable()
        if reason is not None:
            self.show_status(reason, "info")
            return
        snap = self.ops.workers()
        paused = self.ops.paused()
        self.snapshot = snap
        # An unchanged value is not sent again (traitlets compares before notifying).
        self.summary.value = _summary_html(snap)
        self.paused_line.value = render.paused_line(paused)
        self.queues_table.value = _queues_html(snap, frozenset(paused.loc[paused["kind"] == "queue", "name"]))
        self.workers_table.value = _workers_html(snap)
        if self.status_kind == "error":
            self.clear_status()
