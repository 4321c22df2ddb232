"""A paged list of jobs read from ``ops.list_jobs`` one page at a time: the table of the queue view and
of the dead-letter triage view.

``JobList`` owns the table (``SelectableTable``), its selection (``rows``), the pager (``prev_button``,
``next_button``, ``page_label``: "page 2 of 40 · 1,000 jobs") and the last page read (``job_page``).
``remembered`` holds the ids ticked, also those that left the page since (new jobs pushed them down, or
the operator paged on): a row is ticked again when it is shown again, so a refresh never loses a selection.
Filters are two dicts of ``list_jobs`` keyword arguments: ``fixed`` (set by the view, e.g. the dead
letter's state) and ``filters`` (chosen by the operator). Errors land in the owning view's ``.status``.

CSS classes: ``sgen-job-list``, ``sgen-prev``, ``sgen-next``, ``sgen-page-label`` and the table's
(``sgen-table``, ``sgen-row-select``, ``sgen-job-<id>``, ``sgen-select-page``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import ipywidgets as widgets

from ..ledger.query import JobPage, JobRow
from . import render
from .base import button
from .table import Column, Row, SelectableTable

if TYPE_CHECKING:
    from .base import View

Cells = Callable[[JobRow, datetime], Sequence[str]]


def page_label(page: JobPage) -> str:
    """'page 2 of 40 · 1,000 jobs'."""
    noun = "job" if page.total == 1 else "jobs"
    return f"page {page.page} of {page.pages} · {render.count(page.total)} {noun}"


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
        self.fixed: dict[str, Any] = dict(fixed or {})
        self.filters: dict[str, Any] = {}
        self.job_page: JobPage | None = None
        self.table = SelectableTable(columns, row_class="sgen-job", empty=empty)
        self.rows = self.table.rows
        self.remembered: set[int] = set()
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
        self.remembered = (self.remembered - set(self.table.ids)) | set(selected)

    def _fetch(self) -> JobPage:
        args = {**self.filters, **self.fixed}
        page = self.view.ops.list_jobs(**args, page=self.page, per_page=self.per_page)
        if not page.items and page.total and self.page > page.pages:
            # The page emptied (its jobs moved on): show the last page instead of an empty table.
            self.page = page.pages
            page = self.view.ops.list_jobs(**args, page=self.page, per_page=self.per_page)
        return page

    def refresh(self) -> bool:
        """Read the current page again; False (and the error in the view's status) if it failed."""
        ok, page = self.view.attempt(self._fetch)
        if ok and page is not None:
            self.job_page = page
            now = datetime.now(UTC)
            self.table.show([Row(r.id, self.cells(r, now)) for r in page.items], ticked=self.remembered)
            self.page_label.value = page_label(page)
        self.prev_button.disabled = self.job_page is None or self.page <= 1
        self.next_button.disabled = self.job_page is None or self.page >= self.job_page.pages
        return ok

    def go(self, page: int) -> None:
        """Show page ``page``, clamped to the pages there are."""
        last = self.job_page.pages if self.job_page else 1
        self.page = max(1, min(page, last))
        self.refresh()

    def use(self, filters: dict[str, Any]) -> bool:
        """Show page 1 of the jobs ``filters`` match."""
        self.filters = dict(filters)
        self.page = 1
        return self.refresh()
