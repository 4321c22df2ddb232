"""The dead-letter triage view: what failed past its retry budget, grouped, and what to do about it.

``TriageView(ops, per_page=25)`` shows the dead letters grouped by task and error code with counts
(``groups``: picking a group filters the list below it); the dead letters, one page at a time, with a
checkbox per row; the detail of the one ticked (``JobDetailView``); Replay and Dismiss of the ticked
(Dismiss asks first: "Confirm dismiss" or "Keep"); Edit and replay, a JSON editor of the ticked job's
payload whose errors -- bad JSON, or the ValidationError of ``edit_and_replay`` -- show next to it; and
bulk replay or dismiss by filter (task, error code, since): "Preview" shows the count (every role may
count: a dry run for a role that may run the bulk action, a read otherwise), "Replay all matching" and
"Dismiss all matching" show the count and ask first ("Confirm replay all" / "Confirm dismiss all", or
"Keep"; changing a filter withdraws the question), a progress bar follows the batches and the outcome shows
in the bulk panel (``bulk_result``). The ticked dead letter's detail leaves Replay and Dismiss to this view's
buttons.

Only the operator's own ticks choose: a refresh (live, after an action, paging, another group) never ticks a
row the operator did not tick (a dead letter that left the list and came back is not ticked again), never
opens another detail and never loads another job into the editor; the open detail is read again with the
list, so it shows the job's state now. The editor names the job it holds (``editing_label``); "Replay edited"
sends that job, or refuses, saying why, when it changed since it was loaded (replayed, dismissed, failed
again).

Widgets: ``groups`` (Select; value ``None`` for all, else ``(task, error_code)``), ``table``, ``rows``,
``prev_button``, ``next_button``, ``page_label``, ``detail_area``, ``detail``, ``replay_button``,
``dismiss_button``, ``confirm_dismiss_button``, ``keep_button``, ``payload_editor`` (Textarea),
``payload_error`` (HTML), ``editing_label`` (HTML: which dead letter the editor holds), ``edit_replay_button``,
``edit_replay_result`` (HTML: the outcome, next to the button), ``bulk_task``, ``bulk_error_code``,
``bulk_since``, ``preview_button``, ``bulk_count``, ``bulk_replay_button``, ``bulk_dismiss_button``,
``bulk_confirm_replay_button``, ``bulk_confirm_dismiss_button``, ``bulk_keep_button``, ``bulk_result`` (HTML),
``progress`` (IntProgress), ``refresh_button``, ``live`` (``LiveRefresh``: ``live_refresh`` every interval,
keeping the ticks, the open detail and the payload being edited), ``status``.

CSS classes: ``sgen-triage``, ``sgen-groups``, ``sgen-dead-letter-table`` (plus the table's
``sgen-row-select``, ``sgen-job-<id>``, ``sgen-select-page``), ``sgen-prev``, ``sgen-next``,
``sgen-page-label``, ``sgen-detail-area``, ``sgen-replay``, ``sgen-dismiss``, ``sgen-confirm-dismiss``,
``sgen-keep``, ``sgen-payload-editor``, ``sgen-payload-error``, ``sgen-editing``, ``sgen-edit-replay``,
``sgen-edit-replay-result``, ``sgen-bulk-task``, ``sgen-bulk-error-code``, ``sgen-bulk-since``,
``sgen-bulk-preview``, ``sgen-bulk-count``, ``sgen-bulk-replay``, ``sgen-bulk-dismiss``,
``sgen-bulk-confirm-replay``, ``sgen-bulk-confirm-dismiss``, ``sgen-bulk-keep``, ``sgen-bulk-result``,
``sgen-progress``, ``sgen-refresh``, ``sgen-status``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import ipywidgets as widgets
import pandas as pd

from ..core.tasks import registered
from ..errors import NotFound, SgenOpsError
from ..ledger.query import JobRow
from . import render
from .base import View, button, close_tree, denial, gate, run_each
from .detail import JobDetailView, parse_payload
from .joblist import JobList
from .live import LiveRefresh
from .queue import error_cell, names
from .table import Column

if TYPE_CHECKING:
    from ..surface.operations import Operations

DEAD = "dead-letter"
# At most this many (task, error code) groups are listed; every dead letter is still counted.
GROUP_SCAN_LIMIT = 500
NO_CODE = "(no code)"
NOT_EDITING = "Tick one dead letter to load its payload here."
COLUMNS = (
    Column("Task", "minmax(120px, max-content)"),
    Column("Error", "minmax(200px, 1fr)"),
    Column("Attempts", "max-content"),
    Column("Dead-lettered", "max-content"),
    Column("Operator", "max-content"),
)
STYLESHEET = """<style>
.sgen-groups select { font-family: var(--jp-code-font-family, ui-monospace, monospace); font-size: 12px; }
.sgen-payload-editor textarea { font-family: var(--jp-code-font-family, ui-monospace, monospace); font-size: 12px; }
</style>"""


def dead_letter_cells(row: JobRow, now: datetime) -> tuple[str, ...]:
    return (
        f"<span style='{render.FONT}'>{render.esc(row.task)}</span>",
        error_cell(row),
        f"<span style='{render.FONT}'>{render.esc(row.attempts_label)}</span>",
        f"<span style='{render.FONT}'>{render.when(row.updated_at, now)}</span>",
        f"<span style='{render.FONT}'>{render.esc(row.originating_user)}</span>",
    )


@dataclass(frozen=True)
class Group:
    """Dead letters of one task with one error code (None: dead-lettered by hand, no error)."""

    task: str
    error_code: str | None
    count: int
    newest: datetime
    exact: bool = True  # False: the group holds more than ``count`` (the count stopped at its cap)


def dead_letter_groups(ops: Operations, limit: int = GROUP_SCAN_LIMIT) -> tuple[list[Group], int]:
    """The dead letters per (task, error code), biggest group first; and how many dead letters there are
    (at least, when a group's count stopped at its cap: ``Group.exact``).

    Counted by the ledger, each group from its index range; ``limit`` caps how many groups are listed.
    """
    frame = ops.dead_letter_groups()
    exact = frame["count_is_exact"] if "count_is_exact" in frame else [True] * len(frame)
    groups = [
        Group(str(r.task), None if pd.isna(r.error_code) else str(r.error_code), int(r.count), r.newest, bool(e))
        for r, e in zip(frame.itertuples(index=False), exact, strict=True)
    ]
    return groups[:limit], int(frame["count"].sum()) if len(frame) else 0


def _count(count: int, exact: bool) -> str:
    return f"{count:,}" if exact else f"{count:,}+"


def group_label(task: str, code: str | None, count: int, newest: datetime, width: tuple[int, int],
                exact: bool = True) -> str:
    return (f"{task:<{width[0]}}  {code or NO_CODE:<{width[1]}}  {_count(count, exact):>7}  "
            f"newest {render.relative(newest)}")


class TriageView(View):
    """Dead letters grouped, listed, replayed, edited and dismissed; see the module docstring."""

    css_class = "sgen-triage"

    def __init__(self, ops: Operations, per_page: int = 25) -> None:
        super().__init__(ops)
        self.detail: JobDetailView | None = None
        self.editing_id: int | None = None
        # The dead letter in the editor as it was loaded: (state, updated_at); "Replay edited" checks it.
        self.editing_as: tuple[str, datetime] | None = None
        self.pending_dismiss: tuple[int, ...] = ()
        # The bulk action asked for and the filters it was counted with, until confirmed or withdrawn.
        self.pending_bulk: tuple[str, dict[str, Any]] | None = None
        self.batch_size = 500
        self.group_total = 0
        self.group_list: list[Group] = []
        self._quiet = False

        # -- groups --
        self.groups = widgets.Select(options=[("All dead letters", None)], value=None, rows=6,
                                     layout=widgets.Layout(width="100%"))
        self.groups.add_class("sgen-groups")
        self.groups.observe(self.guard(self._on_group), names="value")
        self.groups_note = widgets.HTML()
        self.refresh_button = button("Refresh", "sgen-refresh", icon="refresh", tooltip="Read the dead letters again")
        self.refresh_button.on_click(self.guard(lambda _b: self.refresh()))
        self.live = LiveRefresh(self, self.live_refresh)

        # -- list and detail --
        self.jobs = JobList(self, COLUMNS, dead_letter_cells, per_page=per_page, fixed={"state": DEAD},
                            empty="No dead letters here.")
        self.jobs.table.add_class("sgen-dead-letter-table")
        self.table, self.rows = self.jobs.table, self.jobs.rows
        self.prev_button, self.next_button = self.jobs.prev_button, self.jobs.next_button
        self.page_label = self.jobs.page_label
        self.rows.observe(self.guard(self._on_selection))
        self.detail_area = widgets.VBox()
        self.detail_area.add_class("sgen-detail-area")

        # -- replay / dismiss the ticked --
        self.replay_button = button("Replay", "sgen-replay", style="primary", icon="repeat")
        self.dismiss_button = button("Dismiss", "sgen-dismiss", style="danger", icon="trash")
        self.confirm_dismiss_button = button("Confirm dismiss", "sgen-confirm-dismiss", style="danger",
                                             tooltip="Purge the ticked dead letters now; this cannot be undone")
        self.keep_button = button("Keep", "sgen-keep", tooltip="Do not dismiss")
        gate(self.replay_button, ops, "replay", "Queue the ticked dead letters again with a fresh attempt counter")
        gate(self.dismiss_button, ops, "dismiss", "Purge the ticked dead letters (asks first)")
        gate(self.confirm_dismiss_button, ops, "dismiss", "Purge the ticked dead letters now; this cannot be undone")
        self.replay_button.on_click(self.guard(lambda _b: self.replay()))
        self.dismiss_button.on_click(self.guard(lambda _b: self.ask_dismiss()))
        self.confirm_dismiss_button.on_click(self.guard(lambda _b: self.confirm_dismiss()))
        self.keep_button.on_click(self.guard(lambda _b: self.keep()))
        self.confirm_box = widgets.HBox()

        # -- edit and replay --
        self.payload_editor = widgets.Textarea(placeholder="Tick one dead letter to edit its payload as JSON",
                                               layout=widgets.Layout(width="520px", height="180px"))
        self.payload_editor.add_class("sgen-payload-editor")
        self.payload_editor.observe(self.guard(lambda _c: self.check_payload()), names="value")
        # Read-only, saying why, for a role that may not change what a job runs.
        refusal = denial(ops, "edit_and_replay")
        self.payload_editor.disabled = refusal is not None
        self.payload_editor.tooltip = refusal
        self.payload_error = widgets.HTML(layout=widgets.Layout(width="320px"))
        self.payload_error.add_class("sgen-payload-error")
        self.editing_label = widgets.HTML(render.muted(NOT_EDITING))
        self.editing_label.add_class("sgen-editing")
        self.edit_replay_button = button("Replay edited", "sgen-edit-replay", style="primary", icon="edit")
        gate(self.edit_replay_button, ops, "edit_and_replay",
             "Queue a new job with the edited payload; the dead letter stays for audit")
        self.edit_replay_button.on_click(self.guard(lambda _b: self.edit_and_replay()))
        # The outcome shows here, next to the button (the status line may be scrolled out of sight).
        self.edit_replay_result = widgets.HTML()
        self.edit_replay_result.add_class("sgen-edit-replay-result")

        # -- bulk by filter --
        label = {"description_width": "80px"}
        self.bulk_task = widgets.Combobox(options=sorted(registered()), placeholder="any task", description="Task",
                                          ensure_option=False, style=label)
        self.bulk_error_code = widgets.Text(placeholder="any error code", description="Error code", style=label)
        self.bulk_since = widgets.DatetimePicker(description="Since", style=label)
        for w, css in ((self.bulk_task, "sgen-bulk-task"), (self.bulk_error_code, "sgen-bulk-error-code"),
                       (self.bulk_since, "sgen-bulk-since")):
            w.add_class(css)
        self.preview_button = button("Preview", "sgen-bulk-preview", icon="eye")
        self.bulk_count = widgets.HTML()
        self.bulk_count.add_class("sgen-bulk-count")
        self.bulk_replay_button = button("Replay all matching", "sgen-bulk-replay", style="primary")
        self.bulk_dismiss_button = button("Dismiss all matching", "sgen-bulk-dismiss", style="danger")
        self.bulk_confirm_replay_button = button("Confirm replay all", "sgen-bulk-confirm-replay", style="primary")
        self.bulk_confirm_dismiss_button = button("Confirm dismiss all", "sgen-bulk-confirm-dismiss", style="danger")
        self.bulk_keep_button = button("Keep", "sgen-bulk-keep", tooltip="Change nothing")
        for b in (self.bulk_confirm_replay_button, self.bulk_confirm_dismiss_button, self.bulk_keep_button):
            b.layout.display = "none"
        gate(self.preview_button, ops, "list_jobs", "Count the dead letters these filters match (changes nothing)")
        gate(self.bulk_replay_button, ops, "replay_dead_letters",
             "Replay every dead letter these filters match (shows the count and asks first)")
        gate(self.bulk_dismiss_button, ops, "dismiss_dead_letters",
             "Dismiss every dead letter these filters match (shows the count and asks first)")
        gate(self.bulk_confirm_replay_button, ops, "replay_dead_letters", "Replay them now")
        gate(self.bulk_confirm_dismiss_button, ops, "dismiss_dead_letters", "Purge them now; this cannot be undone")
        self.preview_button.on_click(self.guard(lambda _b: self.preview()))
        self.bulk_replay_button.on_click(self.guard(lambda _b: self.ask_bulk("replay")))
        self.bulk_dismiss_button.on_click(self.guard(lambda _b: self.ask_bulk("dismiss")))
        self.bulk_confirm_replay_button.on_click(self.guard(lambda _b: self.bulk("replay")))
        self.bulk_confirm_dismiss_button.on_click(self.guard(lambda _b: self.bulk("dismiss")))
        self.bulk_keep_button.on_click(self.guard(lambda _b: self.withdraw_bulk()))
        for w in (self.bulk_task, self.bulk_error_code, self.bulk_since):  # new filters: a new count, a new question
            w.observe(self.guard(lambda _c: self.withdraw_bulk()), names="value")
        self.bulk_result = widgets.HTML()
        self.bulk_result.add_class("sgen-bulk-result")
        self.progress = widgets.IntProgress(value=0, min=0, max=1, description="Progress", bar_style="info",
                                            style=label)
        self.progress.add_class("sgen-progress")
        self.progress_label = widgets.Label()

        section = widgets.Layout(border="1px solid #eaecf0", padding="6px 10px", margin="6px 0")
        row = widgets.Layout(flex_flow="row wrap", align_items="center")
        self.children = (
            widgets.HTML(STYLESHEET),
            widgets.HTML(render.heading("Dead letter · triage", 2)),
            widgets.HBox([widgets.HTML(render.muted("Grouped by task and error code — pick one to list it")),
                          widgets.HBox([self.live, self.refresh_button])],
                         layout=widgets.Layout(justify_content="space-between")),
            self.groups,
            self.groups_note,
            self.jobs,
            widgets.HBox([self.replay_button, self.dismiss_button, self.confirm_box], layout=row),
            self.status,
            self.detail_area,
            widgets.VBox([
                widgets.HTML(render.heading("Edit and replay", 4)),
                self.editing_label,
                widgets.HBox([self.payload_editor, self.payload_error], layout=row),
                widgets.HBox([self.edit_replay_button, self.edit_replay_result], layout=row),
            ], layout=section),
            widgets.VBox([
                widgets.HTML(render.heading("Bulk replay or dismiss, by filter", 4)),
                widgets.HBox([self.bulk_task, self.bulk_error_code, self.bulk_since], layout=row),
                widgets.HBox([self.preview_button, self.bulk_count], layout=row),
                widgets.HBox([self.bulk_replay_button, self.bulk_dismiss_button, self.bulk_confirm_replay_button,
                              self.bulk_confirm_dismiss_button, self.bulk_keep_button], layout=row),
                widgets.HBox([self.progress, self.progress_label], layout=row),
                self.bulk_result,
            ], layout=section),
        )
        self.attempt(self.refresh)

    # -- reading ------------------------------------------------------------------------------
    def refresh(self) -> None:
        """Count the groups again, read the current page of the list and the open detail."""
        self._refresh_groups()
        self.jobs.refresh()
        if self.detail is not None:
            self.detail.refresh()

    def live_refresh(self) -> None:
        """A live tick: the groups, the page and the open detail again; the ticks, the detail shown and the
        payload being edited stay, even when the dead letter they show left the page."""
        self.refresh()

    def _refresh_groups(self) -> None:
        ok, found = self.attempt(dead_letter_groups, self.ops)
        if not ok or found is None:
            return
        groups, total = found
        self.group_list, self.group_total = groups, total
        width = (max([len("Task"), *(len(g.task) for g in groups)]),
                 max([len(NO_CODE), *(len(g.error_code or "") for g in groups)]))
        every = all(g.exact for g in groups)
        options: list[tuple[str, tuple[str, str | None] | None]] = [
            (f"{'All dead letters':<{width[0] + width[1] + 2}}  {_count(total, every):>7}", None)
        ]
        options += [
            (group_label(g.task, g.error_code, g.count, g.newest, width, g.exact), (g.task, g.error_code))
            for g in groups
        ]
        keep = self.groups.value
        self._quiet = True  # new options are not a new choice
        try:
            self.groups.options = options
            self.groups.value = keep if keep in [v for _, v in options] else None
        finally:
            self._quiet = False
        if self.groups.value != keep:  # the group chosen is gone: list every dead letter
            self.jobs.filters, self.jobs.page = {}, 1
        listed = sum(g.count for g in groups)
        self.groups_note.value = render.muted(
            f"The {len(groups)} biggest groups hold {listed:,} of {_count(total, every)} dead letters."
            if listed < total else ""
        )

    def group_counts(self) -> dict[tuple[str, str | None], int]:
        """{(task, error_code): count} as the groups list shows it."""
        return {(g.task, g.error_code): g.count for g in self.group_list}

    def _on_group(self, change: dict[str, Any]) -> None:
        if self._quiet:
            return
        group = change["new"]
        filters: dict[str, Any] = {}
        if group is not None:
            task, code = group
            filters["task"] = task
            if code is not None:
                filters["error_code"] = code
            # The bulk filters follow the group, so that "Preview" counts what is listed.
            self.bulk_task.value, self.bulk_error_code.value = task, code or ""
        self.jobs.use(filters)

    def _on_selection(self, ids: tuple[int, ...]) -> None:
        if self.pending_dismiss and set(ids) != set(self.pending_dismiss):
            self.keep()
        if self.jobs.refreshing:  # the list changed, not the operator's choice: the detail and editor stay
            return
        if len(ids) == 1:
            self.open_detail(ids[0])
        else:
            self.close_detail()

    def open_detail(self, job_id: int) -> None:
        self.close_detail()
        # Replay and Dismiss are this view's own buttons, next to the list: the detail does not repeat them.
        self.detail = JobDetailView(self.ops, job_id, on_change=self._detail_changed,
                                    omit=frozenset({"replay", "dismiss"}))
        self.detail_area.children = (self.detail,)
        self.editing_id = job_id
        self.edit_replay_result.value = ""
        loaded = self.detail.detail
        self.editing_as = (loaded.state, loaded.updated_at) if loaded is not None else None
        self.editing_label.value = render.muted(
            f"Editing the payload of dead letter <b>{job_id}</b>" + (f" · {render.esc(loaded.task)}" if loaded else "")
            + " — \u201cReplay edited\u201d queues a new job from it")
        if loaded is not None:
            self.payload_editor.value = render.pretty_json(loaded.payload)

    def _detail_changed(self) -> None:
        # The detail may close when its job leaves the list: repeat its message here.
        if self.detail is not None and self.detail.status_kind == "ok":
            self.show_status(self.detail.status_text, "ok")
        self.refresh()

    def close_detail(self) -> None:
        if self.detail is not None:
            close_tree(self.detail)
            self.detail = None
        self.detail_area.children = ()
        self.editing_id = None
        self.editing_as = None
        self.editing_label.value = render.muted(NOT_EDITING)
        self.payload_editor.value = ""
        self.payload_error.value = ""

    # -- replay / dismiss the ticked ----------------------------------------------------------
    def _ticked(self) -> tuple[int, ...]:
        ids = self.rows.value
        if not ids:
            self.show_status("Tick one or more dead letters first.", "info")
        return ids

    def _report(self, verb: str, done: list[int], failed: list[tuple[int, SgenOpsError]]) -> None:
        lines = []
        if done:
            lines.append(f"{verb} {len(done)} dead letter{'s' if len(done) != 1 else ''}: {', '.join(map(str, done))}.")
        lines += [f"Job {i}: {type(e).__name__}: {e}" for i, e in failed]
        self.show_status("\n".join(lines), "error" if failed else "ok")

    def replay(self) -> None:
        """Replay every ticked dead letter."""
        ids = self._ticked()
        if not ids:
            return
        with self.busy(self.replay_button):
            done, failed = run_each(self.ops.replay, ids)
        self._report("Replayed", done, failed)
        self._acted_on(done)

    def ask_dismiss(self) -> None:
        ids = self._ticked()
        if not ids:
            return
        self.pending_dismiss = ids
        self.confirm_box.children = (self.confirm_dismiss_button, self.keep_button)
        self.show_status(f"Dismiss purges {len(ids)} dead letter{'s' if len(ids) != 1 else ''} for good "
                         f"({', '.join(map(str, ids))}). Click \u201cConfirm dismiss\u201d to go on.", "info")

    def keep(self) -> None:
        self.pending_dismiss = ()
        self.confirm_box.children = ()
        self.clear_status()

    def confirm_dismiss(self) -> None:
        ids, self.pending_dismiss = self.pending_dismiss, ()
        self.confirm_box.children = ()
        if not ids:
            self.show_status("Click Dismiss first, then confirm.", "info")
            return
        with self.busy(self.confirm_dismiss_button):
            done, failed = run_each(self.ops.dismiss, ids)
        self._report("Dismissed", done, failed)
        self._acted_on(done)

    def _acted_on(self, ids: list[int]) -> None:
        """Forget the ticks of the dead letters just replayed or dismissed (should one fail again and come
        back, it is not ticked), close their detail, and read the list again."""
        self.jobs.forget(ids)
        if self.editing_id in ids:
            self.close_detail()
        self.refresh()

    # -- edit and replay ----------------------------------------------------------------------
    def check_payload(self) -> bool:
        """Validate the editor's JSON as it is typed; the error shows next to the editor."""
        if not self.payload_editor.value.strip() and self.editing_id is None:
            self.payload_error.value = ""
            return False
        try:
            parse_payload(self.payload_editor.value)
        except ValueError as exc:
            self.payload_error.value = render.message("error", str(exc))
            return False
        self.payload_error.value = render.muted("✔ valid JSON")
        return True

    def edit_and_replay(self) -> None:
        """Queue a new job from the ticked dead letter with the edited payload; the outcome shows next to the
        button (and in the status line)."""
        if self.editing_id is None:
            self._edit_outcome("Tick exactly one dead letter to edit and replay it.", "info")
            return
        try:
            payload = parse_payload(self.payload_editor.value)
        except ValueError as exc:
            self.payload_error.value = render.message("error", str(exc))
            self._edit_outcome("The payload is not valid JSON; nothing was queued.", "error")
            return
        source = self.editing_id
        changed = self._changed_since_loaded(source)
        if changed is not None:
            self._edit_outcome(changed, "error")
            return
        try:
            new_id = self.ops.edit_and_replay(source, payload)
        except SgenOpsError as exc:
            self.payload_error.value = render.message("error", f"{type(exc).__name__}: {exc}")
            self._edit_outcome(f"{type(exc).__name__}: {exc}", "error")
            return
        done = f"Queued job {new_id} from dead letter {source} with the edited payload."
        self.refresh()
        if self.detail is not None and self.detail.detail is not None:  # this change was ours: it may go again
            self.editing_as = (self.detail.detail.state, self.detail.detail.updated_at)
        self._edit_outcome(done, "ok")

    def _changed_since_loaded(self, job_id: int) -> str | None:
        """Why the dead letter in the editor may not be replayed as edited (it is gone, or it changed since it
        was loaded), or None."""
        nothing = "nothing was queued. Untick it and tick it again to load it as it is now."
        try:
            now = self.ops.get_job(job_id)
        except NotFound:
            return f"Dead letter {job_id} is gone since it was loaded into the editor (dismissed); nothing was queued."
        if self.editing_as is None or (now.state, now.updated_at) != self.editing_as:
            return (f"Dead letter {job_id} changed since it was loaded into the editor (it is {now.state} now); "
                    + nothing)
        return None

    def _edit_outcome(self, text: str, kind: str) -> None:
        self.edit_replay_result.value = render.message(kind, text)
        self.show_status(text, kind)

    # -- bulk ---------------------------------------------------------------------------------
    def bulk_filters(self) -> dict[str, Any]:
        """The bulk filters as keyword arguments of ``replay_dead_letters`` / ``dismiss_dead_letters``."""
        f = {"task": names(self.bulk_task.value), "error_code": names(self.bulk_error_code.value),
             "since": self.bulk_since.value}
        return {k: v for k, v in f.items() if v is not None}

    def preview(self) -> int:
        """Count what the bulk filters match, shown in ``bulk_count``: the bulk action's own dry run for a role
        that may run it, else the same filters read as a list (every role may count)."""
        if self.ops.can("replay_dead_letters") or self.ops.can("dismiss_dead_letters"):
            run = self.ops.replay_dead_letters if self.ops.can("replay_dead_letters") else self.ops.dismiss_dead_letters
            count = run(dry_run=True, **self.bulk_filters())
        else:
            count = self.ops.list_jobs(state=DEAD, **self.bulk_filters(), per_page=1).total
        self.bulk_count.value = render.heading(
            f"{count:,} dead letter{'s' if count != 1 else ''} match{'es' if count == 1 else ''}", 4)
        return count

    def ask_bulk(self, action: str) -> None:
        """Count what the bulk filters match and ask to confirm ``action`` ("replay" or "dismiss") of them."""
        self.withdraw_bulk()
        count = self.preview()
        if not count:
            self._bulk_outcome(f"No dead letters match these filters; nothing to {action}.", "info")
            return
        self.pending_bulk = (action, self.bulk_filters())
        confirm = self.bulk_confirm_replay_button if action == "replay" else self.bulk_confirm_dismiss_button
        confirm.layout.display = self.bulk_keep_button.layout.display = None
        what = (f"Replay queues {count:,} dead letter{'s' if count != 1 else ''} again, each with a fresh attempt "
                "counter. Click \u201cConfirm replay all\u201d to go on" if action == "replay" else
                f"Dismiss purges {count:,} dead letter{'s' if count != 1 else ''} for good. Click "
                "\u201cConfirm dismiss all\u201d to go on")
        self._bulk_outcome(f"{what}, or \u201cKeep\u201d to change nothing.", "info")

    def withdraw_bulk(self) -> None:
        """Take back the question of a bulk action (Keep, or the filters changed)."""
        if self.pending_bulk is None:
            return
        self.pending_bulk = None
        for b in (self.bulk_confirm_replay_button, self.bulk_confirm_dismiss_button, self.bulk_keep_button):
            b.layout.display = "none"
        self.bulk_count.value = self.bulk_result.value = ""

    def _bulk_outcome(self, text: str, kind: str) -> None:
        self.bulk_result.value = render.message(kind, text)

    def bulk(self, action: str) -> None:
        """Replay or dismiss, as confirmed, every dead letter the bulk filters (as counted) match, with the
        progress bar following and the outcome in the bulk panel."""
        pending = self.pending_bulk
        if pending is None or pending[0] != action:
            label = "Replay all matching" if action == "replay" else "Dismiss all matching"
            self._bulk_outcome(f"Click \u201c{label}\u201d first: it shows the count and asks to confirm.", "info")
            return
        filters = pending[1]
        self.withdraw_bulk()
        run = self.ops.replay_dead_letters if action == "replay" else self.ops.dismiss_dead_letters
        self.progress.value, self.progress.max, self.progress.bar_style = 0, 1, "info"
        self.progress_label.value = ""

        def progress(done: int, total: int) -> None:
            self.progress.max = max(total, 1)
            self.progress.value = done
            self.progress_label.value = f"{done:,} of {total:,}"

        try:
            with self.busy(self.bulk_replay_button, self.bulk_dismiss_button):
                done = run(**filters, batch_size=self.batch_size, progress=progress)
        except SgenOpsError as exc:
            self.progress.bar_style = "danger"
            self._bulk_outcome(f"{type(exc).__name__}: {exc}", "error")
        else:
            verb = "Replayed" if action == "replay" else "Dismissed"
            self.progress.bar_style = "success"
            if not done:
                self._bulk_outcome("No dead letters match these filters any more; nothing changed.", "info")
            else:
                self._bulk_outcome(f"{verb} {done:,} dead letter{'s' if done != 1 else ''}.", "ok")
        self.refresh()
