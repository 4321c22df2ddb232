"""A table with a checkbox per row: the job lists of the queue and the dead letter, and the schedule list.

The table is a ``GridBox`` (columns line up across rows); the first cell of each row is a checkbox
labelled with the row's id. ``table.rows`` is the selection, shaped like ``SelectMultiple``:
``.options`` (the ids shown), ``.value`` (the ids ticked, settable) and ``.observe(handler)``.
Row widgets are pooled and reused from page to page, so paging sends values, not new widgets.

CSS classes: ``sgen-table`` on the grid, ``sgen-table-header`` on header cells, ``sgen-row-select`` on
every row checkbox, ``<row_class>-<id>`` (e.g. ``sgen-job-4218``) on the checkbox of that row,
``sgen-select-page`` on the header checkbox that ticks every row shown, ``sgen-table-empty`` on the
line shown when there are no rows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import ipywidgets as widgets

from . import render

_CELL_BORDER = "1px solid #eaecf0"


@dataclass(frozen=True)
class Column:
    """A column: its title and its CSS grid track size."""

    title: str
    width: str = "auto"


@dataclass(frozen=True)
class Row:
    """A row to show: its id and its cells (HTML)."""

    id: int
    cells: Sequence[str]


class _PooledRow:
    def __init__(self, n_cells: int, on_toggle: Callable[[dict[str, Any]], None]) -> None:
        self.id: int | None = None
        self.check = widgets.Checkbox(value=False, description="", indent=False,
                                      layout=widgets.Layout(width="auto", border_bottom=_CELL_BORDER))
        self.check.add_class("sgen-row-select")
        self.check.observe(on_toggle, names="value")
        self.cells = [
            widgets.HTML(layout=widgets.Layout(padding="0 8px", border_bottom=_CELL_BORDER, overflow="hidden"))
            for _ in range(n_cells)
        ]
        self._row_class = ""

    def show(self, row: Row, row_class: str, selected: bool) -> None:
        css = f"{row_class}-{row.id}"
        if css != self._row_class:
            if self._row_class:
                self.check.remove_class(self._row_class)
            self.check.add_class(css)
            self._row_class = css
        self.id = row.id
        self.check.description = str(row.id)
        self.check.value = selected
        for widget, html in zip(self.cells, row.cells, strict=True):
            if widget.value != html:
                widget.value = html

    @property
    def widgets(self) -> list[widgets.Widget]:
        return [self.check, *self.cells]


class RowSelection:
    """The ticked rows of a ``SelectableTable``, in the shape of ``SelectMultiple``."""

    def __init__(self, table: SelectableTable) -> None:
        self._table = table

    @property
    def options(self) -> tuple[int, ...]:
        """The ids of the rows shown, top to bottom."""
        return self._table.ids

    @property
    def value(self) -> tuple[int, ...]:
        """The ids of the ticked rows, top to bottom."""
        return self._table.selected()

    @value.setter
    def value(self, ids: Iterable[int]) -> None:
        self._table.select(ids)

    @property
    def checkboxes(self) -> list[widgets.Checkbox]:
        """The checkbox of each row shown, top to bottom."""
        return [r.check for r in self._table.shown_rows]

    def observe(self, handler: Callable[[tuple[int, ...]], None]) -> None:
        """Call ``handler(selected_ids)`` whenever the selection changes."""
        self._table.listeners.append(handler)

    def __len__(self) -> int:
        return len(self.options)


class SelectableTable(widgets.GridBox):  # type: ignore[misc]  # ipywidgets ships no type information
    """Rows with a checkbox each; ``show(rows)`` replaces them, ``rows`` is the selection."""

    def __init__(
        self, columns: Sequence[Column], *, row_class: str, id_title: str = "ID", empty: str = "No rows."
    ) -> None:
        tracks = " ".join(["minmax(64px, max-content)", *(c.width for c in columns)])
        super().__init__(layout=widgets.Layout(grid_template_columns=tracks, grid_gap="2px 0", align_items="center",
                                               width="100%", overflow="auto"))
        self.add_class("sgen-table")
        self.row_class = row_class
        self.n_cells = len(columns)
        self.listeners: list[Callable[[tuple[int, ...]], None]] = []
        self.select_page = widgets.Checkbox(value=False, description=id_title, indent=False,
                                            tooltip="Select every row shown",
                                            layout=widgets.Layout(width="auto", border_bottom="2px solid #eaecf0"))
        self.select_page.add_class("sgen-select-page")
        self.select_page.add_class("sgen-table-header")
        self.select_page.observe(self._on_select_page, names="value")
        self.header: list[widgets.Widget] = [self.select_page]
        for c in columns:
            cell = widgets.HTML(f"<b style='color:#475467;{render.FONT}'>{render.esc(c.title)}</b>",
                                layout=widgets.Layout(padding="0 8px", border_bottom="2px solid #eaecf0"))
            cell.add_class("sgen-table-header")
            self.header.append(cell)
        self.empty = widgets.HTML(layout=widgets.Layout(grid_column="1 / -1", padding="8px"))
        self.empty.add_class("sgen-table-empty")
        self.empty_text = empty
        self._pool: list[_PooledRow] = []
        self._n = 0
        self._quiet = False
        self.rows = RowSelection(self)
        self.show([])

    # -- content ------------------------------------------------------------------------------
    @property
    def shown_rows(self) -> list[_PooledRow]:
        return self._pool[: self._n]

    @property
    def ids(self) -> tuple[int, ...]:
        return tuple(r.id for r in self.shown_rows if r.id is not None)

    def show(
        self, rows: Sequence[Row], *, keep_selection: bool = True, empty: str | None = None,
        ticked: Iterable[int] = (),
    ) -> None:
        """Show ``rows``; rows still shown keep their tick unless ``keep_selection`` is False, and rows
        whose id is in ``ticked`` are ticked (a selection remembered while its rows were off the page)."""
        before = (set(self.selected()) if keep_selection else set()) | set(ticked)
        was = self.selected()
        self._quiet = True
        try:
            while len(self._pool) < len(rows):
                self._pool.append(_PooledRow(self.n_cells, self._on_toggle))
            for pooled, row in zip(self._pool, rows, strict=False):
                if len(row.cells) != self.n_cells:
                    raise ValueError(f"row {row.id} has {len(row.cells)} cells; the table has {self.n_cells}")
                pooled.show(row, self.row_class, row.id in before)
            for pooled in self._pool[len(rows):]:
                pooled.id = None
                pooled.check.value = False
            self._n = len(rows)
            body: list[widgets.Widget] = [w for r in self.shown_rows for w in r.widgets]
            if not rows:
                self.empty.value = render.muted(render.esc(empty or self.empty_text))
                body = [self.empty]
            self.children = tuple(self.header + body)
            self._sync_select_page()
        finally:
            self._quiet = False
        if self.selected() != was:
            self._notify()

    # -- selection ----------------------------------------------------------------------------
    def selected(self) -> tuple[int, ...]:
        return tuple(r.id for r in self.shown_rows if r.check.value and r.id is not None)

    def select(self, ids: Iterable[int]) -> None:
        """Tick exactly the rows ``ids`` (each must be shown)."""
        wanted = {int(i) for i in ids}
        missing = wanted - set(self.ids)
        if missing:
            raise ValueError(f"row(s) {', '.join(map(str, sorted(missing)))} are not shown; shown: {list(self.ids)}")
        was = self.selected()
        self._quiet = True
        try:
            for r in self.shown_rows:
                r.check.value = r.id in wanted
            self._sync_select_page()
        finally:
            self._quiet = False
        if self.selected() != was:
            self._notify()

    def _on_toggle(self, change: dict[str, Any]) -> None:
        if self._quiet:
            return
        self._quiet = True
        try:
            self._sync_select_page()
        finally:
            self._quiet = False
        self._notify()

    def _on_select_page(self, change: dict[str, Any]) -> None:
        if self._quiet:
            return
        self.select(self.ids if change["new"] else ())

    def _sync_select_page(self) -> None:
        shown = self.shown_rows
        self.select_page.value = bool(shown) and all(r.check.value for r in shown)

    def _notify(self) -> None:
        selected = self.selected()
        for listener in self.listeners:
            listener(selected)
