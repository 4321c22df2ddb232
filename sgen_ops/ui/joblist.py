"""A paged list of jobs read from ``ops.list_jobs`` one page at a time: the table of the queue view and
of the dead-letter triage view.

``JobList`` owns the table (``SelectableTable``), its selection (``rows``), the pager (``prev_button``,
``next_button``, ``page_label``: "page 2 of 40 · 1,000 jobs") and the last page read (``job_page``).
Next and Prev page by keyset (``after_id``: the last job of the page before), so that a page deep in a
million jobs costs what the first does; ``anchors`` keeps the job each page was read after.
``remembered`` holds the ids ticked (with the row's ``updated_at`` when it was ticked), also those that left
the page since (new jobs pushed them down, or the operator paged on): a row is ticked again when it is shown
again unchanged, so a refresh never loses a selection; a row that came back changed (replayed and failed
again, say) is not ticked: the operator ticked what it was, not what it is. ``forget(ids)`` drops ids the view
acted on. ``refreshing`` is True while a read redraws the rows: a view's selection handler tells a tick the
operator made from one the list's change made.
Filters are two dicts of ``list_jobs`` keyword arguments: ``fixed`` (set by the view, e.g. the dead
letter's state) and ``filters`` (chosen by the operator). Errors land in the owning view's ``.status``.

CSS classes: ``sgen-job-list``, ``sgen-prev``, ``sgen-next``, ``sgen-page-label`` and the table's
(``sgen-table``, ``sgen-row-select``, ``sgen-job-<id>``, ``sgen-select-page``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import ipywidgets as widgets

from ..errors import NotFound
from ..ledger.query import JobPage, JobRow
from .base import button
from .table import Column, Row, SelectableTable

if TYPE_CHECKING:
    from .base import View

Cells = Callable[[JobRow, datetime], Sequence[str]]


def page_label(page: JobPage, number: int | None = None) -> str:
    """'page 2 of 40 · 1,000 jobs', or past the count's cap 'page 2 · 10,000+ jobs' (docs/totals.md)."""
    number = page.page if number is None else number
    noun = "job" if page.total == 1 and page.total_is_exact else "jobs"
    of = f" of {page.pages}" if page.total_is_exact else ""
    return f"page {number}{of} · {page.total_text} {noun}"


class JobList(widgets.VBox):  # type: ignore[misc]  # ipywidgets ships no type information
    """One page of jobs with row checkboxes and Prev/Next."""

    def __init__(
        self,
        view: View,
        columns: Sequence[Column],
        cells: Cells,
        *,
        per_page: int = 25,
        fixed: dict[str, Any] | None = None,
        empty: str = "No jobs match these filters.",
    ) -> None:
        super().__init__()
        self.add_class("sgen-job-list")
        self.view = view
        self.cells = cells
        self.per_page = per_page
        self.page = 1
        # page number -> the job it is read after (keyset paging); a page without one is read by number.
        self.anchors: dict[int, int] = {}
        self.fixed: dict[str, Any] = dict(fixed or {})
        self.filters: dict[str, Any] = {}
        self.job_page: JobPage | None = None
        self.table = SelectableTable(columns, row_class="sgen-job", empty=empty)
        self.rows = self.table.rows
        # id -> the row's updated_at when it was ticked
        self.remembered: dict[int, datetime] = {}
        self.refreshing = False
        self.rows.observe(self._remember)
        self.prev_button = button("‹ Prev", "sgen-prev", tooltip="Previous page")
        self.next_button = button("Next ›", "sgen-next", tooltip="Next page")
        self.prev_button.on_click(view.guard(lambda _b: self.go(self.page - 1)))
        self.next_button.on_click(view.guard(lambda _b: self.go(self.page + 1)))
        self.page_label = widgets.Label(value="")
        self.page_label.add_class("sgen-page-label")
        self.pager = widgets.HBox([self.prev_button, self.page_label, self.next_button],
                                  layout=widgets.Layout(align_items="center"))
        self.children = (self.table, self.pager)

    def _remember(self, selected: tuple[int, ...]) -> None:
        shown = {r.id: r.updated_at for r in self.job_page.items} if self.job_page is not None else {}
        for job_id in self.table.ids:
            if job_id in selected:
                self.remembered.setdefault(job_id, shown[job_id])
            else:
                self.remembered.pop(job_id, None)

    def forget(self, ids: Iterable[int]) -> None:
        """Untick ``ids`` and forget them (the view acted on them: a refresh must not tick them again)."""
        gone = set(ids)
        for job_id in gone:
            self.remembered.pop(job_id, None)
        if gone & set(self.rows.value):
            self.rows.value = [i for i in self.rows.value if i not in gone]

    def _read(self, page: int) -> JobPage:
        args = {**self.filters, **self.fixed, "per_page": self.per_page}
        after = self.anchors.get(page) if page > 1 else None
        if after is None:
            return self.view.ops.list_jobs(**args, page=page)
        try:
            return self.view.ops.list_jobs(**args, after_id=after)
        except NotFound:
            # The job the page was read after is gone (dismissed, deleted): start again from the top.
            self.anchors.clear()
            self.page = 1
            return self.view.ops.list_jobs(**args, page=1)

    def _fetch(self) -> JobPage:
        page = self._read(self.page)
        while not page.items and self.page > 1:
            # The page emptied (its jobs moved on): show the page before instead of an empty table.
            self.page -= 1
            page = self._read(self.page)
        return page

    def refresh(self) -> bool:
        """Read the current page again; False (and the error in the view's status) if it failed."""
        ok, page = self.view.attempt(self._fetch)
        if ok and page is not None:
            self.refreshing = True  # the ticks change below because the list did, not because the operator did
            self.job_page = page
            now = datetime.now(UTC)
            ticked = {r.id for r in page.items if self.remembered.get(r.id) == r.updated_at}
            # Changed rows lose their tick (``remembered`` follows through ``_remember``), shown or not.
            try:
                self.table.show([Row(r.id, self.cells(r, now)) for r in page.items], keep_selection=False,
                                ticked=ticked)
            finally:
                self.refreshing = False
            self.page_label.value = page_label(page, self.page)
        self.prev_button.disabled = self.job_page is None or self.page <= 1
        self.next_button.disabled = self.job_page is None or not self.job_page.more_after(self.page)
        return ok

    def go(self, page: int) -> None:
        """Show page ``page`` (one step forward at most: the next page is read after the last job shown)."""
        if page > self.page:
            if self.job_page is None or not self.job_page.more_after(self.page):
                return
            self.anchors[self.page + 1] = self.job_page.items[-1].id
            page = self.page + 1
        self.page = max(1, page)
        self.refresh()

    def use(self, filters: dict[str, Any]) -> bool:
        """Show page 1 of the jobs ``filters`` match."""
        self.filters = dict(filters)
        self.page = 1
        self.anchors.clear()
        return self.refresh()
