"""The schedules view: the schedule list, a create/edit form with live cron validation, pause, resume and
run now.

``SchedulesView(ops)`` lists ``ops.list_schedules()`` (task, timing, enabled or paused, next run, the
next fire times, retry budget, priority, recent runs) with a checkbox per schedule. The form takes the
task (a dropdown of the registered tasks), cron or interval, timezone, payload template (JSON), max
attempts, priority and retention; while a cron, interval or timezone is typed, ``ops.preview_schedule``
checks it and the form shows croniter's reason for a bad one or the next five fire times of a good one.
"Edit ticked" loads the one ticked schedule into the form; "Save changes" sends only the fields changed
(the payload only if one is typed: ``list_schedules`` does not return the template).

Widgets: ``table``, ``rows`` (selection of schedule ids), ``pause_button``, ``resume_button``,
``run_now_button``, ``edit_button``, ``refresh_button``, ``form_title``, ``task_input`` (Dropdown),
``timing_kind`` (ToggleButtons: "cron" or "every"), ``cron_input``, ``every_input``, ``timezone_input``
(Combobox), ``payload_input`` (Textarea), ``payload_error``, ``max_attempts_input``, ``priority_input``
(Dropdown), ``retention_input``, ``timing_feedback`` (HTML; ``fire_times`` holds the times shown, or
``timing_error`` the reason), ``create_button``, ``save_button``, ``new_button``, ``status``;
``schedules`` is the last ``list_schedules`` frame and ``editing_id`` the schedule in the form (None: new).

CSS classes: ``sgen-schedules``, ``sgen-schedule-table`` (plus the table's ``sgen-row-select``,
``sgen-schedule-<id>``, ``sgen-select-page``), ``sgen-pause``, ``sgen-resume``, ``sgen-run-now``,
``sgen-edit-schedule``, ``sgen-refresh``, ``sgen-schedule-form``, ``sgen-form-title``, ``sgen-form-task``,
``sgen-timing-kind``, ``sgen-cron``, ``sgen-every``, ``sgen-timezone``, ``sgen-payload-input``,
``sgen-payload-error``, ``sgen-max-attempts``, ``sgen-priority``, ``sgen-retention``, ``sgen-cron-feedback``,
``sgen-create-schedule``, ``sgen-save-schedule``, ``sgen-new-schedule``, ``sgen-status``.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

import ipywidgets as widgets
import pandas as pd

from ..core.tasks import PRIORITIES, registered
from ..core.times import as_utc
from ..errors import SgenOpsError, ValidationError
from . import render
from .base import View, button, gate, run_each
from .table import Column, Row, SelectableTable

if TYPE_CHECKING:
    from ..surface.operations import Operations

COLUMNS = (
    Column("Task", "minmax(120px, max-content)"),
    Column("Timing", "max-content"),
    Column("State", "max-content"),
    Column("Next run", "max-content"),
    Column("Next fire times", "max-content"),
    Column("Budget", "max-content"),
    Column("Priority", "max-content"),
    Column("Retention", "max-content"),
    # As wide as its runs: the grid scrolls sideways rather than cut them.
    Column("Recent runs", "max-content"),
)
CHOOSE_TASK = "choose a task…"
CRON_EXAMPLE = "0 9 * * MON-FRI"
_LABEL = {"description_width": "110px"}
_WIDE = {"width": "420px"}


def _zone(name: str | None) -> ZoneInfo | None:
    try:
        return ZoneInfo(name) if name else None
    except (ZoneInfoNotFoundError, ValueError):
        return None


def fire_time(moment: datetime, zone: str | None, now: datetime | None = None) -> str:
    """'Mon 2026-11-24 09:00 Europe/Paris (in 13 hours)'."""
    tz = _zone(zone)
    local = as_utc(moment).astimezone(tz) if tz else as_utc(moment)
    return f"{local:%a %Y-%m-%d %H:%M} {zone or 'UTC'} ({render.relative(moment, now)})"


def schedule_cells(s: Any) -> tuple[str, ...]:
    """The list's cells of one ``list_schedules`` row."""
    fires = list(s.next_fires) if isinstance(s.next_fires, list | tuple) else []
    zone = s.timezone if isinstance(s.timezone, str) else None
    tz = _zone(zone)
    short = [f"{as_utc(t).astimezone(tz) if tz else as_utc(t):%m-%d %H:%M}" for t in fires]
    recent = list(s.recent_runs) if isinstance(s.recent_runs, list | tuple) else []
    runs = " ".join(
        f"<span style='white-space:nowrap' title='{render.esc(kind)} tick {render.timestamp(tick)}'>"
        f"#{render.esc(job)} {render.badge(state or 'purged')}</span>"
        for job, state, tick, kind in recent[:3]
    )
    timing = f"cron <code>{render.esc(s.cron)}</code> {render.esc(zone or 'UTC')}" if isinstance(s.cron, str) else (
        f"every {render.esc(s.every)}")
    return (
        f"<span style='{render.FONT}'>{render.esc(s.task)}</span>",
        f"<span style='{render.FONT}'>{timing}</span>",
        render.badge("enabled" if s.enabled else "paused"),
        f"<span style='{render.FONT}'>{render.when(_time(s.next_run))}</span>",
        f"<span style='{render.MONO}' title='{render.esc(', '.join(short))}'>"
        f"{render.esc(', '.join(short[:3]) + (' …' if len(short) > 3 else '')) if short else render.DASH}</span>",
        f"<span style='{render.FONT}'>{render.esc(_int(s.max_attempts))}</span>",
        f"<span style='{render.FONT}'>{render.esc(s.priority)}</span>",
        f"<span style='{render.FONT}'>{render.esc(retention_text(s.retention))}</span>",
        f"<div style='white-space:nowrap'>{runs}</div>" if runs else render.muted("none yet"),
    )


def retention_text(days: Any) -> str | None:
    """Days kept, as the form takes them: 7 -> '7d', 0.5 -> '12h'."""
    if days is None or pd.isna(days):
        return None
    days = float(days)
    return f"{days:g}d" if days.is_integer() else f"{round(days * 24):g}h"


def _time(value: Any) -> datetime | None:
    if value is None or value is pd.NaT or (isinstance(value, float) and pd.isna(value)):
        return None
    return pd.Timestamp(value).to_pydatetime() if not isinstance(value, datetime) else value


def _int(value: Any) -> int | None:
    return None if value is None or pd.isna(value) else int(value)


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


class SchedulesView(View):
    """Schedules listed, created, edited, paused, resumed and run now; see the module docstring."""

    css_class = "sgen-schedules"

    def __init__(self, ops: Operations) -> None:
        super().__init__(ops)
        self.schedules = pd.DataFrame()
        self.editing_id: int | None = None
        self.loaded: dict[str, Any] = {}
        self.fire_times: list[datetime] = []
        self.timing_error = ""

        # -- list --
        self.table = SelectableTable(COLUMNS, row_class="sgen-schedule", empty="No schedules yet.")
        self.table.add_class("sgen-schedule-table")
        self.rows = self.table.rows
        self.pause_button = button("Pause", "sgen-pause", style="warning", icon="pause")
        self.resume_button = button("Resume", "sgen-resume", style="success", icon="play")
        self.run_now_button = button("Run now", "sgen-run-now", style="primary", icon="bolt")
        self.edit_button = button("Edit ticked", "sgen-edit-schedule", icon="edit")
        self.refresh_button = button("Refresh", "sgen-refresh", icon="refresh", tooltip="Read the schedules again")
        gate(self.pause_button, ops, "pause_schedule", "Stop the ticked schedules' ticks until resumed")
        gate(self.resume_button, ops, "resume_schedule", "Start the ticked schedules again from their next fire time")
        gate(self.run_now_button, ops, "run_schedule_now", "Emit one job from each ticked schedule now, out of band")
        gate(self.edit_button, ops, "edit_schedule", "Load the ticked schedule into the form")
        self.pause_button.on_click(self.guard(lambda _b: self.act_on_selected("pause_schedule")))
        self.resume_button.on_click(self.guard(lambda _b: self.act_on_selected("resume_schedule")))
        self.run_now_button.on_click(self.guard(lambda _b: self.act_on_selected("run_schedule_now")))
        self.edit_button.on_click(self.guard(lambda _b: self.edit_selected()))
        self.refresh_button.on_click(self.guard(lambda _b: self.refresh()))

        # -- form --
        self.form_title = widgets.HTML()
        self.form_title.add_class("sgen-form-title")
        tasks = sorted(registered())
        # No task is chosen for the operator: a schedule of the first task in the list by mistake is worse than
        # being asked.
        self.task_input = widgets.Dropdown(options=[(CHOOSE_TASK, ""), *((t, t) for t in tasks)], value="",
                                           description="Task", style=_LABEL, layout=widgets.Layout(**_WIDE))
        self.timing_kind = widgets.ToggleButtons(options=[("Cron", "cron"), ("Interval", "every")], value="cron",
                                                 description="Timing", style=_LABEL)
        self.cron_input = widgets.Text(placeholder=CRON_EXAMPLE, description="Cron", continuous_update=True,
                                       style=_LABEL, layout=widgets.Layout(**_WIDE))
        self.every_input = widgets.Text(placeholder="15m, 1h30m, 2d", description="Every", continuous_update=True,
                                        style=_LABEL, layout=widgets.Layout(**_WIDE))
        self.timezone_input = widgets.Combobox(options=sorted(available_timezones()), value="UTC",
                                               description="Timezone", ensure_option=False, style=_LABEL,
                                               layout=widgets.Layout(**_WIDE))
        self.timing_feedback = widgets.HTML(layout=widgets.Layout(margin="0 0 0 114px"))
        self.payload_input = widgets.Textarea(placeholder='{"report": "weekly", "day": "{tick:%Y-%m-%d}"}',
                                              description="Payload", style=_LABEL,
                                              layout=widgets.Layout(width="420px", height="90px"))
        self.payload_error = widgets.HTML()
        self.max_attempts_input = widgets.Text(placeholder="task default", description="Max attempts", style=_LABEL)
        # "" is the task's default: a Dropdown shows no label for the value None.
        self.priority_input = widgets.Dropdown(options=[("task default", ""), *((p, p) for p in PRIORITIES)],
                                               value="", description="Priority", style=_LABEL)
        self.retention_input = widgets.Text(placeholder="settings default, e.g. 30d", description="Retention",
                                            style=_LABEL)
        for w, css in (
            (self.task_input, "sgen-form-task"), (self.timing_kind, "sgen-timing-kind"), (self.cron_input, "sgen-cron"),
            (self.every_input, "sgen-every"), (self.timezone_input, "sgen-timezone"),
            (self.timing_feedback, "sgen-cron-feedback"), (self.payload_input, "sgen-payload-input"),
            (self.payload_error, "sgen-payload-error"), (self.max_attempts_input, "sgen-max-attempts"),
            (self.priority_input, "sgen-priority"), (self.retention_input, "sgen-retention"),
        ):
            w.add_class(css)
        for w in (self.cron_input, self.every_input, self.timezone_input, self.timing_kind):
            w.observe(self.guard(lambda _c: self.check_timing()), names="value")
        self.payload_input.observe(self.guard(lambda _c: self.check_payload()), names="value")
        self.create_button = button("Create schedule", "sgen-create-schedule", style="primary", icon="plus")
        self.save_button = button("Save changes", "sgen-save-schedule", style="primary", icon="save")
        self.new_button = button("New", "sgen-new-schedule", tooltip="Clear the form for a new schedule")
        gate(self.create_button, ops, "create_schedule", "Register a new schedule from the form")
        self._can_edit = gate(self.save_button, ops, "edit_schedule", "Save the form into the schedule being edited")
        self.create_button.on_click(self.guard(lambda _b: self.create()))
        self.save_button.on_click(self.guard(lambda _b: self.save()))
        self.new_button.on_click(self.guard(lambda _b: self.new()))
        self.cron_box = widgets.VBox([self.cron_input, self.timezone_input])
        self.every_box = widgets.VBox([self.every_input])
        self.timing_box = widgets.VBox()
        self.timing_kind.observe(lambda _c: self._show_timing_kind(), names="value")
        self.form = widgets.VBox([
            self.form_title,
            self.task_input,
            self.timing_kind,
            self.timing_box,
            self.timing_feedback,
            widgets.HBox([self.payload_input, self.payload_error]),
            self.max_attempts_input,
            self.priority_input,
            self.retention_input,
            widgets.HBox([self.create_button, self.save_button, self.new_button]),
        ], layout=widgets.Layout(border="1px solid #eaecf0", padding="6px 10px", margin="6px 0"))
        self.form.add_class("sgen-schedule-form")

        row = widgets.Layout(flex_flow="row wrap", align_items="center")
        self.children = (
            widgets.HTML(render.heading("Schedules", 2)),
            self.table,
            widgets.HBox([self.pause_button, self.resume_button, self.run_now_button, self.edit_button,
                          self.refresh_button], layout=row),
            self.status,
            self.form,
        )
        self.new()
        self.attempt(self.refresh)

    # -- the list -----------------------------------------------------------------------------
    def refresh(self) -> None:
        """Read the schedule list again."""
        ok, frame = self.attempt(self.ops.list_schedules)
        if not ok or frame is None:
            return
        self.schedules = frame
        self.table.show([Row(int(s.id), schedule_cells(s)) for s in frame.itertuples(index=False)])

    def row(self, schedule_id: int) -> Any:
        matches = [s for s in self.schedules.itertuples(index=False) if int(s.id) == schedule_id]
        if not matches:
            raise ValidationError(f"schedule {schedule_id} is not in the list; refresh it")
        return matches[0]

    def act_on_selected(self, action: str) -> None:
        """Pause, resume or run now every ticked schedule, report each outcome, and refresh."""
        ids = self.rows.value
        if not ids:
            self.show_status("Tick one or more schedules first.", "info")
            return
        self.clear_status()
        results: dict[int, Any] = {}

        def call(schedule_id: int) -> None:
            results[schedule_id] = getattr(self.ops, action)(schedule_id)

        done, failed = run_each(call, ids)
        lines = []
        if done:
            if action == "run_schedule_now":
                lines.append("Ran now: " + ", ".join(f"schedule {i} → job {results[i]}" for i in done) + ".")
            else:
                verb = {"pause_schedule": "Paused", "resume_schedule": "Resumed"}[action]
                lines.append(f"{verb} schedule{'s' if len(done) != 1 else ''} {', '.join(map(str, done))}.")
        lines += [f"Schedule {i}: {type(e).__name__}: {e}" for i, e in failed]
        self.show_status("\n".join(lines), "error" if failed else "ok")
        self.refresh()

    # -- the form -----------------------------------------------------------------------------
    def _show_timing_kind(self) -> None:
        self.timing_box.children = (self.cron_box,) if self.timing_kind.value == "cron" else (self.every_box,)

    def new(self) -> None:
        """Empty the form for a new schedule."""
        self.editing_id = None
        self.loaded = {}
        self.form_title.value = render.heading("New schedule", 3)
        self.task_input.value = ""
        self.cron_input.value = self.every_input.value = ""
        self.timezone_input.value = "UTC"
        self.timing_kind.value = "cron"
        self.payload_input.value = ""
        self.payload_input.placeholder = '{"report": "weekly", "day": "{tick:%Y-%m-%d}"}'
        self.max_attempts_input.value = self.retention_input.value = ""
        self.priority_input.value = ""
        self.save_button.disabled = True
        self._show_timing_kind()
        self.check_timing()

    def edit_selected(self) -> None:
        """Load the one ticked schedule into the form."""
        ids = self.rows.value
        if len(ids) != 1:
            self.show_status("Tick exactly one schedule to edit it.", "info")
            return
        s = self.row(ids[0])
        self.editing_id = int(s.id)
        self.form_title.value = render.heading(f"Editing schedule {s.id} · {render.esc(s.task)}", 3)
        if s.task in self.task_input.options:
            self.task_input.value = s.task
        cron = _text(s.cron)
        self.timing_kind.value = "cron" if cron else "every"
        self.cron_input.value = cron or ""
        self.every_input.value = _text(s.every) or ""
        self.timezone_input.value = _text(s.timezone) or "UTC"
        self.payload_input.value = ""
        self.payload_input.placeholder = "unchanged (type a new payload template to replace it)"
        budget = _int(s.max_attempts)
        self.max_attempts_input.value = str(budget) if budget is not None else ""
        self.priority_input.value = s.priority if s.priority in PRIORITIES else ""
        self.retention_input.value = retention_text(s.retention) or ""
        self.loaded = self.form_values()
        self.save_button.disabled = not self._can_edit
        self.clear_status()

    def check_timing(self) -> None:
        """Live validation: croniter's reason for a bad cron, or the next five fire times."""
        self.fire_times, self.timing_error = [], ""
        kind = self.timing_kind.value
        value = (self.cron_input.value if kind == "cron" else self.every_input.value).strip()
        if not value:
            example = f"e.g. {CRON_EXAMPLE}, or @daily" if kind == "cron" else "e.g. 15m, 1h30m, 2d"
            self.timing_feedback.value = render.muted(f"Type {'a cron expression' if kind == 'cron' else 'an interval'}"
                                                      f" ({example}) to see its next fire times.")
            return
        zone = (self.timezone_input.value.strip() or None) if kind == "cron" else None
        try:
            if kind == "cron":
                times = self.ops.preview_schedule(cron=value, timezone=zone, count=5)
            else:
                times = self.ops.preview_schedule(every=value, count=5)
        except SgenOpsError as exc:
            self.timing_error = str(exc)
            self.timing_feedback.value = render.message("error", str(exc))
            return
        self.fire_times = list(times)
        items = "".join(f"<li>{render.esc(fire_time(t, zone))}</li>" for t in times)
        self.timing_feedback.value = (
            f"<div style='{render.FONT};color:#067647'>✔ Next {len(times)} fire times:"
            f"<ol style='margin:2px 0 0 0;color:#344054'>{items}</ol></div>"
        )

    def check_payload(self) -> bool:
        text = self.payload_input.value
        if not text.strip():
            self.payload_error.value = ""
            return True
        try:
            json.loads(text)
        except json.JSONDecodeError as exc:
            self.payload_error.value = render.message(
                "error", f"invalid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})")
            return False
        self.payload_error.value = render.muted("✔ valid JSON")
        return True

    def form_values(self) -> dict[str, Any]:
        """The form as keyword arguments of ``create_schedule``; a ValidationError for what cannot be read."""
        values: dict[str, Any] = {"task": self.task_input.value or None}
        if self.timing_kind.value == "cron":
            values["cron"] = self.cron_input.value.strip() or None
            values["timezone"] = self.timezone_input.value.strip() or None
        else:
            values["every"] = self.every_input.value.strip() or None
        text = self.payload_input.value
        if text.strip():
            try:
                values["payload"] = json.loads(text)
            except json.JSONDecodeError as exc:
                raise ValidationError(
                    f"the payload is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})") from None
        budget = self.max_attempts_input.value.strip()
        if budget:
            try:
                values["max_attempts"] = int(budget)
            except ValueError:
                raise ValidationError(f"max attempts {budget!r} is not a whole number; leave it empty for the "
                                      "task's default") from None
        values["priority"] = self.priority_input.value or None
        values["retention"] = self.retention_input.value.strip() or None
        return values

    def create(self) -> None:
        """Register a schedule from the form."""
        self.clear_status()
        values = self.form_values()
        task = values.pop("task")
        if task is None:
            raise ValidationError("choose the task the schedule runs (the Task list); none is picked for you")
        schedule_id = self.ops.create_schedule(task, **values)
        self.refresh()
        self.new()
        s = self.row(schedule_id)
        self.show_status(f"Created schedule {schedule_id} ({task}); next run {render.relative(_time(s.next_run))}.",
                         "ok")

    def save(self) -> None:
        """Save the fields changed in the form into the schedule being edited."""
        if self.editing_id is None:
            self.show_status("Load a schedule into the form first (tick one, then Edit ticked).", "info")
            return
        self.clear_status()
        values = self.form_values()
        changes = {k: v for k, v in values.items() if k == "payload" or v != self.loaded.get(k)}
        if not changes:
            self.show_status("Nothing changed.", "info")
            return
        schedule_id = self.editing_id
        self.ops.edit_schedule(schedule_id, **changes)
        self.refresh()
        self.show_status(f"Saved schedule {schedule_id}: {', '.join(sorted(changes))} changed.", "ok")
        self.new()
