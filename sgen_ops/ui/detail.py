"""The job detail view: one job's full record, masked for the operator, with the actions its state allows.

``JobDetailView(ops, job_id, on_change=None)`` shows the payload (pretty JSON, sensitive fields masked
for every role but Administrator), the attempt history (number, run, started, finished, duration, exit,
error), the error log (collapsed), the schedule that emitted the job and the worker that last ran it.
Its action buttons are the operations whose accepted states include the job's state (the declarations in
``sgen_ops.surface.declarations.OPERATIONS``), each once: a dead letter shows Replay to a role that may replay
and Re-run (the same return to the queue) only to one that may not; ``omit`` leaves out actions the hosting view
already offers (the triage view's Replay and Dismiss). Buttons the role may not use are disabled with the
reason, in plain words, as tooltip. The Worker field names the host and process id that last ran it.
Dismiss asks first: it shows "Confirm dismiss" and "Keep". A queued job not yet run shows its payload in an
editor with "Save payload" (``update_job``): read-only, with the reason as tooltip, for a role that may not
change what a job runs (by default every role but Administrator); an edit in progress survives a refresh.
After a write, the view reloads and calls ``on_change()`` so that the list it was opened from refreshes too.

Widgets: ``header``, ``facts``, ``payload``, ``attempts_table``, ``error_log`` (Accordion) and
``error_log_text``, ``actions`` (the button bar), ``buttons`` (action -> Button), ``rerun_button``,
``cancel_button``, ``retry_now_button``, ``trigger_button``, ``send_to_dead_letter_button``,
``replay_button``, ``resolve_button``, ``dismiss_button``, ``confirm_dismiss_button``, ``keep_button``,
``resolve_note`` (Text: the note resolve needs, also the reason given when sending to the dead letter),
``payload_editor`` (Textarea), ``save_payload_button``, ``payload_edit`` (the two, shown while the payload
may change), ``status``; ``detail`` is the last ``JobDetail`` read (None if it could not be read or was dismissed).

CSS classes: ``sgen-detail``, ``sgen-detail-header``, ``sgen-detail-facts``, ``sgen-payload``,
``sgen-attempts``, ``sgen-error-log``, ``sgen-detail-actions``, ``sgen-detail-<action>`` for each action
button (``sgen-detail-rerun``, ``sgen-detail-cancel``, ``sgen-detail-retry-now``, ``sgen-detail-trigger``,
``sgen-detail-send-to-dead-letter``, ``sgen-detail-replay``, ``sgen-detail-resolve``,
``sgen-detail-dismiss``), ``sgen-detail-confirm-dismiss``, ``sgen-detail-keep``, ``sgen-resolve-note``,
``sgen-detail-payload-editor``, ``sgen-detail-save-payload``, and ``sgen-status`` on the status line.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import ipywidgets as widgets

from ..config import Settings
from ..core.durations import format_duration
from ..core.states import WAITING
from ..ledger.query import JobDetail
from ..runtime import workers_info
from ..surface.declarations import OPERATIONS
from . import render
from .base import View, button, denial, gate

if TYPE_CHECKING:
    from ..surface.operations import Operations

# action -> (label, button style, what it does: the tooltip when allowed)
ACTIONS: dict[str, tuple[str, str, str]] = {
    "rerun": ("Re-run", "primary", "Queue the job again with a fresh attempt counter"),
    "cancel": ("Cancel", "warning", "Cancel the job (a running one stops at its next checkpoint)"),
    "retry_now": ("Retry now", "", "Bring the scheduled retry forward to now"),
    "trigger": ("Run now", "", "Run the waiting job now, whatever its scheduled time"),
    "send_to_dead_letter": ("Send to dead letter", "warning", "Stop retrying; move the job to the dead letter"),
    "replay": ("Replay", "primary", "Return the dead letter to the queue with a fresh attempt counter"),
    "resolve": ("Resolve", "success", "Mark the failure as handled, with the note"),
    "dismiss": ("Dismiss", "danger", "Purge the dead letter (irreversible; the Activity Log keeps a snapshot)"),
}
DONE: dict[str, str] = {
    "rerun": "Re-ran job {id}: queued again with a fresh attempt counter.",
    "cancel": "Cancelled job {id}.",
    "retry_now": "Job {id} will be retried now.",
    "trigger": "Job {id} will run now.",
    "send_to_dead_letter": "Sent job {id} to the dead letter.",
    "replay": "Replayed job {id} from the dead letter.",
    "resolve": "Resolved job {id}.",
    "dismiss": "Dismissed job {id}: purged from the dead letter (the Activity Log keeps a snapshot).",
}


def css_name(action: str) -> str:
    return "sgen-detail-" + action.replace("_", "-")


def parse_payload(text: str) -> Any:
    """A payload editor's JSON; a ValueError saying where it is wrong."""
    if not text.strip():
        raise ValueError("the payload is empty; write JSON such as {} or null")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"invalid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})") from None


def payload_editable(d: JobDetail) -> bool:
    """Whether ``update_job`` may still change the job's payload: queued, before any attempt of any run."""
    return d.state == "queued" and d.attempts == 0 and not d.attempt_history and d.replayed_as_id is None


_WORKER_NAME = re.compile(r"^(?P<rest>.+)-(?P<pid>\d+)-[0-9a-f]{6}$")


def worker_label(worker: str | None, prefix: str | None = None, live: Mapping[str, tuple[str, int]] | None = None
                 ) -> str:
    """'host · pid 4242' for the worker that last ran the job: from sgen-ops's worker names
    (``<queue prefix>-<host>-<pid>-<tag>``), else from the live worker of that name (``live``: name ->
    (host, pid)), else the name as recorded (a worker RQ named, gone since: the ledger has no more)."""
    if not worker:
        return render.DASH
    match = _WORKER_NAME.match(worker)
    if match is not None:
        host = match["rest"].removeprefix(f"{prefix}-") if prefix else match["rest"]
        return f"{render.esc(host)} · pid {match['pid']}"
    if live and worker in live:
        host, pid = live[worker]
        return f"{render.esc(host)} · pid {pid}"
    return render.esc(worker)


def held_by(d: JobDetail, paused: Any) -> str | None:
    """What pause holds the waiting job back ('task import.products', 'queue low'), from ``ops.paused()``."""
    if d.state not in WAITING or paused is None or not len(paused):
        return None
    found = set(zip(paused["kind"], paused["name"], strict=True))
    for kind, name in (("task", d.task), ("queue", d.priority)):
        if (kind, name) in found:
            return f"{kind} {name}"
    return None


def facts_html(d: JobDetail, worker: str | None = None, paused_by: str | None = None) -> str:
    """The job's record besides payload and attempts, as a two-column table; ``paused_by`` names the pause
    that holds it back (``held_by``)."""
    schedule = render.DASH
    if d.schedule:
        s = d.schedule
        every = s.get("every")
        # Seconds in the job's record; written as the schedules table and form write it ("1h", "5m").
        every_text = format_duration(float(every)) if isinstance(every, int | float) else every
        timing = f"cron {s['cron']}" if s.get("cron") else f"every {every_text}" if every else ""
        state = "enabled" if s.get("enabled") else "paused"
        schedule = (f"#{render.esc(s['id'])} {render.esc(s['task'])} · {render.esc(timing)} · {render.badge(state)}"
                    f" · next {render.when(s.get('next_run'))}")
    elif d.schedule_id is not None:
        schedule = f"#{d.schedule_id} (removed)"
    rows = [
        ("Attempts", render.esc(f"{d.attempts} of {d.max_attempts}")),
        ("Priority", render.esc(d.priority)),
        ("Scheduled for", f"{render.when(d.scheduled_for)} <small>({render.timestamp(d.scheduled_for)})</small>"),
        ("Created", f"{render.when(d.created_at)} <small>({render.timestamp(d.created_at)})</small>"),
        ("Updated", render.when(d.updated_at)),
        ("Account", render.esc(d.account or "every account")),
        ("Triggered by", render.esc(d.originating_user)),
        ("Worker", worker or worker_label(d.worker)),
        ("Schedule", schedule),
        ("Last error", render.esc(d.last_error_code)),
    ]
    if paused_by is not None:
        rows.append(("Paused", render.paused_badge(f"{paused_by} is paused") + " " + render.muted(
            f"{render.esc(paused_by)} is paused: this job waits, with no attempt, until it is resumed")))
    if d.replayed_from_id is not None:
        rows.append(("Replayed from", f"job {d.replayed_from_id}"))
    if d.replayed_as_id is not None:
        rows.append(("Edited and replayed as", f"job {d.replayed_as_id} "
                     + render.muted("(this dead letter is kept for audit, out of the live dead letter)")))
    if d.dead_letter_reason:
        rows.append(("Dead-letter reason", render.esc(d.dead_letter_reason)))
    if d.resolution_note:
        rows.append(("Resolution note", render.esc(d.resolution_note)))
    if d.cancel_requested:
        rows.append(("Cancellation", "requested; the worker stops at its next checkpoint"))
    body = "".join(
        f'<tr><th style="text-align:left;padding:2px 12px 2px 0;color:#475467;font-weight:500">{k}</th>'
        f'<td style="padding:2px 0">{v}</td></tr>'
        for k, v in rows
    )
    return f'<table style="border-collapse:collapse;{render.FONT}">{body}</table>'


def attempts_html(d: JobDetail) -> str:
    rows = [
        (
            str(a.number),
            str(a.run),
            render.when(a.started_at),
            render.when(a.finished_at),
            render.seconds(a.duration_s),
            render.badge(a.exit) if a.exit in render.STATE_COLOURS else render.esc(a.exit or "running"),
            (f"<code>{render.esc(a.error_code)}</code> " if a.error_code else "") + (
                render.esc(a.error) if a.error else ""),
        )
        for a in d.attempt_history
    ]
    return render.table(("#", "Run", "Started", "Finished", "Duration", "Exit", "Error"), rows,
                        css_class="sgen-attempts-table", empty="No attempts yet.")


class JobDetailView(View):
    """One job's detail with the actions its state allows; see the module docstring."""

    css_class = "sgen-detail"

    def __init__(
        self, ops: Operations, job_id: int, on_change: Callable[[], Any] | None = None, *,
        omit: frozenset[str] = frozenset(),
    ) -> None:
        super().__init__(ops)
        self.job_id = job_id
        self.omit = omit
        self.on_change = on_change
        self.detail: JobDetail | None = None
        self.paused_by: str | None = None  # the pause holding the waiting job back (``held_by``)
        self.dismissed = False
        self.layout.border = "1px solid #eaecf0"
        self.layout.padding = "8px 12px"

        self.header = widgets.HTML()
        self.header.add_class("sgen-detail-header")
        self.facts = widgets.HTML()
        self.facts.add_class("sgen-detail-facts")
        self.payload = widgets.HTML()
        self.payload.add_class("sgen-payload")
        self.attempts_table = widgets.HTML()
        self.attempts_table.add_class("sgen-attempts")
        self.error_log_text = widgets.HTML()
        self.error_log = widgets.Accordion(children=[self.error_log_text], selected_index=None)
        self.error_log.set_title(0, "Error log")
        self.error_log.add_class("sgen-error-log")

        self.buttons: dict[str, widgets.Button] = {}
        for action, (label, style, tip) in ACTIONS.items():
            b = button(label, css_name(action), style=style, tooltip=tip)
            gate(b, ops, action, tip)
            if action != "dismiss":  # dismiss asks for confirmation first
                b.on_click(self.guard(lambda _b, a=action: self.act(a)))
            self.buttons[action] = b
        self.rerun_button = self.buttons["rerun"]
        self.cancel_button = self.buttons["cancel"]
        self.retry_now_button = self.buttons["retry_now"]
        self.trigger_button = self.buttons["trigger"]
        self.send_to_dead_letter_button = self.buttons["send_to_dead_letter"]
        self.replay_button = self.buttons["replay"]
        self.resolve_button = self.buttons["resolve"]
        self.dismiss_button = self.buttons["dismiss"]
        self.dismiss_button.on_click(self.guard(lambda _b: self.ask_dismiss()))
        self.confirm_dismiss_button = button("Confirm dismiss", "sgen-detail-confirm-dismiss", style="danger",
                                             icon="trash", tooltip="Purge this dead letter now; this cannot be undone")
        self.confirm_dismiss_button.on_click(self.guard(lambda _b: self.confirm_dismiss()))
        self.keep_button = button("Keep", "sgen-detail-keep", tooltip="Do not dismiss")
        self.keep_button.on_click(self.guard(lambda _b: self.keep()))
        self.resolve_note = widgets.Text(placeholder="Note: how the failure was handled (resolve) or why (dead letter)",
                                         layout=widgets.Layout(width="420px"))
        self.resolve_note.add_class("sgen-resolve-note")
        self.actions = widgets.HBox(layout=widgets.Layout(flex_flow="row wrap", align_items="center"))
        self.actions.add_class("sgen-detail-actions")
        self.confirming = False

        # What the job runs: administrators' to change by default; read-only otherwise, saying why.
        self.payload_editor = widgets.Textarea(layout=widgets.Layout(width="520px", height="160px"))
        self.payload_editor.add_class("sgen-detail-payload-editor")
        self.save_payload_button = button("Save payload", "sgen-detail-save-payload", icon="save")
        may = gate(self.save_payload_button, ops, "update_job_payload",
                   "Save the edited payload: the job runs it at its first attempt")
        self.payload_editor.disabled = not may
        self.payload_editor.tooltip = (
            "The payload as JSON; it can change until the job's first attempt" if may
            else denial(ops, "update_job_payload"))
        self.save_payload_button.on_click(self.guard(lambda _b: self.save_payload()))
        self.payload_edit = widgets.HBox([self.payload_editor, self.save_payload_button],
                                         layout=widgets.Layout(display="none", align_items="flex-start"))
        self._drawn_payload = ""  # the editor's text as last drawn: a different one is an edit in progress

        self.children = (
            self.header,
            self.actions,
            self.status,
            self.facts,
            widgets.HTML(render.heading("Payload", 4)),
            self.payload,
            self.payload_edit,
            widgets.HTML(render.heading("Attempt history", 4)),
            self.attempts_table,
            self.error_log,
        )
        self.attempt(self.refresh)

    def close(self) -> None:
        """Close the view and its buttons, shown or not."""
        for w in (*self.buttons.values(), self.confirm_dismiss_button, self.keep_button, self.resolve_note,
                  self.payload_editor, self.save_payload_button, self.payload_edit):
            w.close()
        super().close()

    # -- reading ------------------------------------------------------------------------------
    def refresh(self) -> None:
        """Read the job again and redraw everything."""
        self._reload()

    def _reload(self) -> bool:
        if self.dismissed:
            self._draw()
            return True
        ok, detail = self.attempt(self.ops.get_job, self.job_id)
        self.detail = detail if ok else None
        if self.detail is not None and self.detail.state in WAITING:
            read, paused = self.attempt(self.ops.paused)
            self.paused_by = held_by(self.detail, paused) if read else None
        else:
            self.paused_by = None
        self._draw()
        return ok

    def _draw(self) -> None:
        d = self.detail
        if d is None:
            gone = "was dismissed" if self.dismissed else "could not be read"
            self.header.value = render.heading(f"Job {render.esc(self.job_id)} {gone}")
            for w in (self.facts, self.payload, self.attempts_table, self.error_log_text):
                w.value = ""
            self.actions.children = ()
            self.payload_edit.layout.display = "none"
            return
        self.header.value = render.heading(
            f"Job {d.id} · {render.esc(d.task)} &nbsp;{render.badge(d.state)}"
            f" &nbsp;{render.muted(render.esc(f'{d.attempts} of {d.max_attempts} attempts'))}"
        )
        self.facts.value = facts_html(d, self._worker(d.worker), self.paused_by)
        self.payload.value = render.pre(render.pretty_json(d.payload))
        self._draw_payload_editor(d)
        self.attempts_table.value = attempts_html(d)
        self.error_log_text.value = render.pre(d.error_log or d.last_error_detail or "No errors logged.",
                                               max_height="420px")
        self._draw_actions()

    def _draw_payload_editor(self, d: JobDetail) -> None:
        editable = payload_editable(d)
        self.payload_edit.layout.display = "" if editable else "none"
        text = render.pretty_json(d.payload) if editable else ""
        if self.payload_editor.value == self._drawn_payload:  # untouched: show the payload as it is now
            self.payload_editor.value = text
        self._drawn_payload = text

    def _worker(self, name: str | None) -> str:
        hub = getattr(self.ops, "hub", None)
        if hub is None or not name or _WORKER_NAME.match(name):
            # A client of the API does not know the stack's queue prefix: the default one is left out.
            return worker_label(name, hub.settings.queue_prefix if hub is not None else Settings.queue_prefix)
        live = {w.name: (w.host, w.pid) for w in workers_info.live_workers(hub) if w.pid is not None}
        return worker_label(name, hub.settings.queue_prefix, live)

    def available(self) -> list[str]:
        """The actions the job's current state accepts (the role may still forbid some)."""
        if self.detail is None:
            return []
        state = self.detail.state
        replaced = self.detail.replayed_as_id is not None  # kept for audit: see surface.replaced
        accepted = [a for a in ACTIONS if OPERATIONS[a].admits(state, replaced)]
        if "rerun" in accepted and "replay" in accepted:
            # One way back to the queue: Replay where the role may, else Re-run.
            accepted.remove("rerun" if self.ops.can("replay") or not self.ops.can("rerun") else "replay")
        return [a for a in accepted if a not in self.omit]

    def _draw_actions(self) -> None:
        shown: list[widgets.Widget] = [self.buttons[a] for a in self.available()]
        if "resolve" in self.available() or "send_to_dead_letter" in self.available():
            shown.append(self.resolve_note)
        if self.confirming and "dismiss" in self.available():
            shown += [self.confirm_dismiss_button, self.keep_button]
        self.actions.children = tuple(shown)

    # -- writing ------------------------------------------------------------------------------
    def act(self, action: str) -> None:
        """Perform ``action`` on the job; the result or the error is shown in ``.status``."""
        if action == "dismiss":
            self.ask_dismiss()
            return
        note = self.resolve_note.value.strip()
        call: Callable[[], Any]
        if action == "resolve":
            call = functools.partial(self.ops.resolve, self.job_id, note)
        elif action == "send_to_dead_letter":
            call = functools.partial(self.ops.send_to_dead_letter, self.job_id, reason=note or None)
        else:
            call = functools.partial(getattr(self.ops, action), self.job_id)
        self.clear_status()
        with self.busy(self.buttons[action]):
            ok, _ = self.attempt(call)
        if ok:
            done = DONE[action]
            if action == "cancel" and self.detail is not None and self.detail.state == "running":
                done = "Cancellation of running job {id} requested; the worker stops it at its next checkpoint."
            self.resolve_note.value = ""
            self._changed(done.format(id=self.job_id))

    def save_payload(self) -> None:
        """Change the waiting job's payload to the editor's JSON (``update_job``); the outcome is in ``.status``."""
        try:
            payload = parse_payload(self.payload_editor.value)
        except ValueError as exc:
            self.show_status(f"The payload is not valid JSON; nothing was saved: {exc}.", "error")
            return
        self.clear_status()
        with self.busy(self.save_payload_button):
            ok, _ = self.attempt(self.ops.update_job, self.job_id, payload=payload)
        if ok:
            self._drawn_payload = self.payload_editor.value  # saved: the next draw shows the stored payload
            self._changed(f"Saved the payload of job {self.job_id}.")

    def ask_dismiss(self) -> None:
        self.confirming = True
        self._draw_actions()
        self.show_status(f"Dismiss purges job {self.job_id} for good. Click \u201cConfirm dismiss\u201d to go on.",
                         "info")

    def keep(self) -> None:
        self.confirming = False
        self._draw_actions()
        self.clear_status()

    def confirm_dismiss(self) -> None:
        if not self.confirming:
            self.show_status("Click Dismiss first, then confirm.", "info")
            return
        self.confirming = False
        self.clear_status()
        with self.busy(self.confirm_dismiss_button):
            ok, _ = self.attempt(self.ops.dismiss, self.job_id)
        if ok:
            self.dismissed = True
            self.detail = None
            self._changed(DONE["dismiss"].format(id=self.job_id))
        else:
            self._draw_actions()

    def _changed(self, text: str) -> None:
        if self._reload():
            self.show_status(text, "ok")
        if self.on_change is not None:
            self.on_change()
