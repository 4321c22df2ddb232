"""The queue view: the seed's Jobs screen.

``QueueView(ops, per_page=25)`` shows one page of ``ops.list_jobs`` at a time (ID, Task, State,
Attempts "n of m", Next run as relative time, last-error excerpt, operator), newest first, with filters
(state, task, created since/until, text search, error code), Apply and Refresh, Prev/Next and a page
label ("page 2 of 40 · 1,000 jobs"), the throughput line "Throughput (1h): N succeeded · N failed ·
N dead-lettered", and Re-run, Cancel and Open detail acting on the ticked rows. Open detail shows a
``JobDetailView`` under the list. Only the page shown is read, so a queue of a million jobs opens as
fast as one of fifty.

Widgets: ``state_filter`` (``StateChips``: a toggle chip per state with its count under the other filters;
``.value`` the states chosen), ``task_filter`` (Combobox), ``since_filter``,
``until_filter`` (DatetimePicker), ``text_filter``, ``error_code_filter`` (Text; commas separate several),
``include_old_filter`` (Checkbox), ``apply_button``, ``refresh_button``, ``reset_button``, ``table``
(``SelectableTable``), ``rows`` (its selection: ``.options``, ``.value``), ``prev_button``,
``next_button``, ``page_label``, ``throughput_line``, ``rerun_button``, ``cancel_button``,
``open_detail_button``, ``task_picker`` (Dropdown of the registered and the paused tasks), ``pause_task_button``
and ``resume_task_button`` (the task picked),
``close_detail_button``, ``paused_line`` (the paused tasks and queues, from
``ops.paused``; a paused task also gets a ``sgen-paused-badge`` in the list and "paused" as the next run of
its waiting jobs, class ``sgen-paused-note``), ``detail_area`` and ``detail`` (the open
``JobDetailView`` or None), ``live`` (``LiveRefresh``: re-reads the page and the throughput line every
interval; the ticks stay as they are and the open detail is read again, so it shows the job's state as the
list does), ``status``. ``job_page`` is the last ``JobPage``
read.

CSS classes: ``sgen-queue``, ``sgen-state-filter``, ``sgen-task-filter``, ``sgen-since-filter``,
``sgen-until-filter``, ``sgen-text-filter``, ``sgen-error-code-filter``, ``sgen-include-old-filter``,
``sgen-apply``, ``sgen-refresh``, ``sgen-reset``, ``sgen-job-table`` (plus the ``sgen-table`` classes:
``sgen-row-select``, ``sgen-job-<id>``, ``sgen-select-page``), ``sgen-prev``, ``sgen-next``,
``sgen-page-label``, ``sgen-throughput-line``, ``sgen-rerun``, ``sgen-cancel``, ``sgen-open-detail``,
``sgen-task-picker``, ``sgen-pause-task``, ``sgen-resume-task``, ``sgen-close-detail``, ``sgen-paused-line``,
``sgen-paused-badge``, ``sgen-paused-note``, ``sgen-detail-area``, ``sgen-live``, ``sgen-status``.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any

import ipywidgets as widgets

from ..core.states import ALL_STATES, WAITING
from ..core.tasks import registered
from ..core.times import as_utc
from ..ledger.query import JobPage, JobRow
from . import render
from .base import View, button, close_tree, gate, run_each
from .detail import JobDetailView
from .joblist import JobList
from .live import LiveRefresh
from .table import Column

if TYPE_CHECKING:
    from ..surface.operations import Operations

COLUMNS = (
    Column("Task", "minmax(120px, max-content)"),
    Column("State", "max-content"),
    Column("Attempts", "max-content"),
    Column("Next run", "max-content"),
    Column("Last error", "minmax(160px, 1fr)"),
    Column("Operator", "max-content"),
)
THROUGHPUT_WINDOW = "1h"
_FILTER_LAYOUT = {"width": "260px"}
_LABEL_STYLE = {"description_width": "72px"}


def names(text: str) -> list[str] | None:
    """'a, b' -> ['a', 'b']; blank -> None (not filtered)."""
    items = [t.strip() for t in text.split(",") if t.strip()]
    return items or None


def next_run_cell(row: JobRow, now: datetime, paused: bool = False) -> str:
    if row.state == "dead-letter":
        return render.muted("dead-letter")
    if row.state in WAITING and paused:
        return ('<span class="sgen-paused-note" style="color:#b54708" title="Its task is paused: it waits until '
                'the task is resumed">paused</span>')
    if row.state not in WAITING or row.next_run is None:
        return render.DASH
    if as_utc(row.next_run) <= now:
        return f'<span title="{render.timestamp(row.next_run)}">due {render.relative(row.next_run, now)}</span>'
    return render.when(row.next_run, now)


def error_cell(row: JobRow) -> str:
    if not row.last_error_code and not row.last_error_excerpt:
        return ""
    code = f"<code>{render.esc(row.last_error_code)}</code> " if row.last_error_code else ""
    text = render.esc(row.last_error_excerpt) if row.last_error_excerpt else ""
    full = render.esc(f"{row.last_error_code or ''} {row.last_error_excerpt or ''}".strip())
    return (f'<div title="{full}" style="white-space:nowrap;overflow:hidden;text-overflow:ellipsis;'
            f'max-width:520px;color:#b42318;{render.FONT}">{code}{text}</div>')


def queue_cells(row: JobRow, now: datetime, paused_tasks: frozenset[str] = frozenset()) -> tuple[str, ...]:
    """The queue table's cells of one job: Task, State, Attempts, Next run, Last error, Operator; a task in
    ``paused_tasks`` gets a paused badge, and its waiting jobs "paused" for their next run."""
    paused = row.task in paused_tasks
    badge = render.paused_badge("This task is paused: its waiting jobs are not delivered") if paused else ""
    return (
        f"<span style='{render.FONT}'>{render.esc(row.task)}</span>{badge}",
        render.badge(row.state),
        f"<span style='{render.FONT}'>{render.esc(row.attempts_label)}</span>",
        f"<span style='{render.FONT}'>{next_run_cell(row, now, paused)}</span>",
        error_cell(row),
        f"<span style='{render.FONT}'>{render.esc(row.originating_user)}</span>",
    )


def throughput_text(ops: Operations, window: str = THROUGHPUT_WINDOW) -> str:
    """'Throughput (1h): 142 succeeded · 6 failed · 2 dead-lettered' from ``ops.throughput``."""
    frame = ops.throughput(window)
    total = {c: int(frame[c].sum()) if len(frame) else 0 for c in ("succeeded", "failed", "dead_lettered")}
    return (f"Throughput ({window}): {render.count(total['succeeded'])} succeeded · "
            f"{render.count(total['failed'])} failed · {render.count(total['dead_lettered'])} dead-lettered")


class StateChips(widgets.HBox):  # type: ignore[misc]  # ipywidgets ships no type information
    """The state filter: one toggle chip per state, each with its count; ``value`` is the tuple of states
    chosen (none: every state), settable like a ``SelectMultiple``'s."""

    def __init__(self, states: tuple[str, ...]) -> None:
        super().__init__(layout=widgets.Layout(flex_flow="row wrap", align_items="center", width="100%"))
        self.add_class("sgen-state-filter")
        self.chips: dict[str, widgets.ToggleButton] = {}
        for state in states:
            chip = widgets.ToggleButton(value=False, description=state, tooltip=f"Only {state} jobs (with the others "
                                        "chosen)", layout=widgets.Layout(width="auto", margin="0 4px 4px 0"))
            chip.add_class("sgen-state-chip")
            chip.add_class(f"sgen-state-chip-{state}")
            self.chips[state] = chip
        self.counts: dict[str, int] = {}
        self.inexact: set[str] = set()  # states whose count reached the cap: shown "10,000+"
        self.children = (widgets.HTML(f"<span style='{render.FONT};color:#475467;margin-right:6px'>State</span>"),
                         *self.chips.values())

    @property
    def value(self) -> tuple[str, ...]:
        return tuple(state for state, chip in self.chips.items() if chip.value)

    @value.setter
    def value(self, states: tuple[str, ...] | list[str]) -> None:
        unknown = set(states) - set(self.chips)
        if unknown:
            raise ValueError(f"unknown state(s) {sorted(unknown)}; states are: {', '.join(self.chips)}")
        for state, chip in self.chips.items():
            chip.value = state in states

    def show_counts(self, counts: dict[str, int]) -> None:
        """'failed · 12' on each chip ('succeeded · 10,000+' past the count's cap)."""
        self.counts = dict(counts)
        for state, chip in self.chips.items():
            more = "+" if state in self.inexact else ""
            chip.description = f"{state} · {render.count(counts[state])}{more}" if state in counts else state


# How far back the task picker looks for the tasks the ledger has seen (a client of the API registers none).
KNOWN_TASKS_WINDOW = "30d"


def task_choices(paused: Iterable[str], known: Iterable[str] = ()) -> list[tuple[str, str | None]]:
    """The task picker's options: a prompt, then every task registered here, seen by the ledger (``known``) or
    paused, a paused one marked."""
    held = set(paused)
    return [("choose a task…", None), *((f"{t} (paused)" if t in held else t, t)
                                        for t in sorted(set(registered()) | set(known) | held))]


class QueueView(View):
    """The queue list with filters, paging, throughput and Re-run / Cancel / Open detail; see the module docstring."""

    css_class = "sgen-queue"

    def __init__(self, ops: Operations, per_page: int = 25) -> None:
        super().__init__(ops)
        self.per_page = per_page
        self.detail: JobDetailView | None = None

        # -- filters --
        self.state_filter = StateChips(ALL_STATES)
        for chip in self.state_filter.chips.values():  # a chip filters at once
            chip.observe(self.guard(lambda _c: self.apply()), names="value")
        self.task_filter = widgets.Combobox(options=sorted(registered()), placeholder="any task", description="Task",
                                            ensure_option=False, style=_LABEL_STYLE,
                                            layout=widgets.Layout(**_FILTER_LAYOUT))
        self.error_code_filter = widgets.Text(placeholder="any error code", description="Error code",
                                              style=_LABEL_STYLE, layout=widgets.Layout(**_FILTER_LAYOUT))
        self.text_filter = widgets.Text(placeholder="payload or error text", description="Search",
                                        style=_LABEL_STYLE, layout=widgets.Layout(**_FILTER_LAYOUT))
        self.since_filter = widgets.DatetimePicker(description="Since", style=_LABEL_STYLE)
        self.until_filter = widgets.DatetimePicker(description="Until", style=_LABEL_STYLE)
        self.include_old_filter = widgets.Checkbox(value=False, description="old succeeded too", indent=False,
                                                   tooltip="Also list succeeded jobs older than the retention window")
        for widget, css in (
            (self.state_filter, "sgen-state-filter"), (self.task_filter, "sgen-task-filter"),
            (self.error_code_filter, "sgen-error-code-filter"), (self.text_filter, "sgen-text-filter"),
            (self.since_filter, "sgen-since-filter"), (self.until_filter, "sgen-until-filter"),
            (self.include_old_filter, "sgen-include-old-filter"),
        ):
            widget.add_class(css)
        self.apply_button = button("Apply", "sgen-apply", style="primary", icon="filter",
                                   tooltip="List the jobs these filters match, from page 1")
        self.refresh_button = button("Refresh", "sgen-refresh", icon="refresh", tooltip="Read this page again")
        self.reset_button = button("Reset", "sgen-reset", tooltip="Clear every filter")
        self.apply_button.on_click(self.guard(lambda _b: self.apply()))
        self.refresh_button.on_click(self.guard(lambda _b: self.refresh()))
        self.live = LiveRefresh(self, self.refresh)
        self.reset_button.on_click(self.guard(lambda _b: self.reset()))

        # -- the list, one page at a time --
        # The paused tasks as last read (``ops.paused``): a badge on the task, "paused" on its waiting jobs.
        self.paused_tasks: frozenset[str] = frozenset()
        self.paused_line = widgets.HTML()
        self.paused_line.add_class("sgen-paused-line")
        self.jobs = JobList(self, COLUMNS, lambda row, now: queue_cells(row, now, self.paused_tasks),
                            per_page=per_page)
        self.jobs.table.add_class("sgen-job-table")
        self.table = self.jobs.table
        self.rows = self.jobs.rows
        self.prev_button, self.next_button = self.jobs.prev_button, self.jobs.next_button
        self.page_label = self.jobs.page_label
        self.throughput_line = widgets.HTML()
        self.throughput_line.add_class("sgen-throughput-line")

        # -- actions --
        self.rerun_button = button("Re-run", "sgen-rerun", style="primary", icon="repeat")
        self.cancel_button = button("Cancel", "sgen-cancel", style="warning", icon="ban")
        self.open_detail_button = button("Open detail", "sgen-open-detail", icon="search")
        gate(self.rerun_button, ops, "rerun", "Queue the ticked failed, succeeded or dead-letter jobs again")
        gate(self.cancel_button, ops, "cancel", "Cancel the ticked queued, retrying or running jobs")
        gate(self.open_detail_button, ops, "get_job", "Show the ticked job's payload, attempts and error log")
        self.rerun_button.on_click(self.guard(lambda _b: self.act_on_selected("rerun")))
        self.cancel_button.on_click(self.guard(lambda _b: self.act_on_selected("cancel")))
        self.open_detail_button.on_click(self.guard(lambda _b: self.open_detail()))
        self.task_picker = widgets.Dropdown(options=task_choices(()), value=None, description="Task",
                                            style=_LABEL_STYLE, layout=widgets.Layout(width="260px"))
        self.task_picker.add_class("sgen-task-picker")
        self.pause_task_button = button("Pause task", "sgen-pause-task", icon="pause")
        self.resume_task_button = button("Resume task", "sgen-resume-task", icon="play")
        gate(self.pause_task_button, ops, "pause_task",
             "Pause the task picked beside it: its waiting jobs stay queued until resumed")
        gate(self.resume_task_button, ops, "resume_task",
             "Resume the task picked beside it: its waiting jobs are delivered again")
        # A role that may neither pause nor resume sees no picker: there is nothing it could do with it.
        self.known_tasks: frozenset[str] = frozenset()
        if self.pause_task_button.disabled and self.resume_task_button.disabled:
            self.task_picker.layout.display = "none"
        else:  # served, the tasks the server runs are not registered here: those the ledger counted lately
            read, counted = self.attempt(ops.throughput, KNOWN_TASKS_WINDOW)
            self.known_tasks = frozenset(counted["task"]) if read and counted is not None else frozenset()
        self.pause_task_button.on_click(self.guard(lambda _b: self.set_task_paused(True)))
        self.resume_task_button.on_click(self.guard(lambda _b: self.set_task_paused(False)))
        self.close_detail_button = button("Close detail", "sgen-close-detail", icon="times")
        self.close_detail_button.on_click(self.guard(lambda _b: self.close_detail()))
        self.close_bar = widgets.HBox([self.close_detail_button])
        self.detail_area = widgets.VBox()
        self.detail_area.add_class("sgen-detail-area")

        box = widgets.Layout(flex_flow="row wrap", align_items="flex-start")
        self.children = (
            widgets.HTML(render.heading(f"Jobs · queue <small style='font-weight:400;color:#667085'>as "
                                        f"{render.esc(ops.name)} ({render.esc(ops.role)})</small>", 2)),
            widgets.HBox([
                self.state_filter,
                widgets.VBox([self.task_filter, self.error_code_filter, self.text_filter]),
                widgets.VBox([self.since_filter, self.until_filter, self.include_old_filter]),
                widgets.VBox([self.apply_button, self.refresh_button, self.reset_button]),
            ], layout=box),
            self.live,
            self.paused_line,
            self.jobs,
            self.throughput_line,
            widgets.HBox([self.rerun_button, self.cancel_button, self.open_detail_button, self.task_picker,
                          self.pause_task_button, self.resume_task_button], layout=box),
            self.status,
            self.detail_area,
        )
        self.attempt(self.refresh)

    # -- reading ------------------------------------------------------------------------------
    def read_filters(self) -> dict[str, Any]:
        """The filters in the widgets, as ``list_jobs`` keyword arguments (unset ones left out)."""
        f: dict[str, Any] = {
            "state": list(self.state_filter.value) or None,
            "task": names(self.task_filter.value),
            "error_code": names(self.error_code_filter.value),
            "text": self.text_filter.value.strip() or None,
            "since": self.since_filter.value,
            "until": self.until_filter.value,
            "include_old_succeeded": bool(self.include_old_filter.value) or None,
        }
        return {k: v for k, v in f.items() if v is not None}

    @property
    def job_page(self) -> JobPage | None:
        """The last page read."""
        return self.jobs.job_page

    @property
    def page(self) -> int:
        return self.jobs.page

    @property
    def filters(self) -> dict[str, Any]:
        """The filters applied (``list_jobs`` keyword arguments)."""
        return self.jobs.filters

    def refresh(self) -> None:
        """Read the paused tasks and queues, the current page with the applied filters, the count of each state,
        and the throughput line."""
        done_paused, paused = self.attempt(self.ops.paused)
        if done_paused and paused is not None:
            self.paused_tasks = frozenset(paused.loc[paused["kind"] == "task", "name"])
            self.paused_line.value = render.paused_line(paused)
            options = task_choices(self.paused_tasks, self.known_tasks)
            if list(self.task_picker.options) != options:
                picked = self.task_picker.value
                self.task_picker.options = options
                self.task_picker.value = picked if picked in [v for _, v in options] else None
        self.jobs.refresh()
        if self.detail is not None:  # the open detail shows what the list shows (a job that ran on, say)
            self.detail.refresh()
        done_counts, counts = self.attempt(self.state_counts)
        if done_counts and counts is not None:
            self.state_filter.show_counts(counts)
        done, line = self.attempt(throughput_text, self.ops)
        self.throughput_line.value = (
            f"<span style='{render.FONT};color:#344054'>{render.esc(line)}</span>" if done
            else render.muted(f"Throughput ({THROUGHPUT_WINDOW}): unavailable")
        )

    def state_counts(self) -> dict[str, int]:
        """How many jobs each state holds under the applied filters other than the state."""
        others = {k: v for k, v in self.jobs.filters.items() if k != "state"}
        pages = {state: self.ops.list_jobs(state=state, **others, per_page=1) for state in ALL_STATES}
        self.state_filter.inexact = {state for state, page in pages.items() if not page.total_is_exact}
        return {state: page.total for state, page in pages.items()}

    def apply(self) -> None:
        """Use the filters in the widgets, from page 1."""
        self.clear_status()
        self.jobs.filters = self.read_filters()
        self.jobs.page = 1
        self.refresh()

    def reset(self) -> None:
        self.state_filter.value = ()
        for text in (self.task_filter, self.error_code_filter, self.text_filter):
            text.value = ""
        self.since_filter.value = self.until_filter.value = None
        self.include_old_filter.value = False
        self.apply()

    def go(self, page: int) -> None:
        """Show page ``page`` (clamped to the pages there are)."""
        self.jobs.go(page)

    # -- acting -------------------------------------------------------------------------------
    def act_on_selected(self, action: str) -> None:
        """Run ``action`` (rerun or cancel) on every ticked job, report each outcome, and refresh."""
        ids = self.rows.value
        if not ids:
            self.show_status("Tick one or more jobs first.", "info")
            return
        self.clear_status()
        done, failed = run_each(getattr(self.ops, action), ids)
        verb = {"rerun": "Re-ran", "cancel": "Cancelled"}.get(action, action)
        lines = []
        if done:
            lines.append(f"{verb} {len(done)} job{'s' if len(done) != 1 else ''}: {', '.join(map(str, done))}.")
        lines += [f"Job {i}: {type(e).__name__}: {e}" for i, e in failed]
        self.show_status("\n".join(lines), "error" if failed else "ok")
        self.jobs.forget(done)
        self.refresh()

    def set_task_paused(self, paused: bool) -> None:
        """Pause (or resume) the task picked in ``task_picker``, say so, and refresh."""
        task = self.task_picker.value
        if not task:
            self.show_status(f"Pick the task to {'pause' if paused else 'resume'} in the list beside the button.",
                             "info")
            return
        if paused:
            self.ops.pause_task(task)
            done = f"Paused task {task}: its waiting jobs stay queued until it is resumed."
        else:
            self.ops.resume_task(task)
            done = f"Resumed task {task}: its waiting jobs are delivered again."
        self.refresh()
        self.show_status(done, "ok")

    def open_detail(self) -> None:
        """Show the detail of the (first) ticked job under the list."""
        ids = self.rows.value
        if not ids:
            self.show_status("Tick a job to open its detail.", "info")
            return
        self.close_detail()
        self.detail = JobDetailView(self.ops, ids[0], on_change=self.refresh)
        self.detail_area.children = (self.close_bar, self.detail)
        if len(ids) > 1:
            self.show_status(f"Showing job {ids[0]}, the first of {len(ids)} ticked.", "info")

    def close_detail(self) -> None:
        if self.detail is not None:
            close_tree(self.detail)
            self.detail = None
        self.detail_area.children = ()

