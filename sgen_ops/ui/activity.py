"""The Activity Log view: who did what to which job or schedule, and whether the log's chain holds.

``ActivityLogView(ops, per_page=50)`` reads ``ops.activity_log`` (the same read as the Python API and
``GET .../activity``: each change masked by the resolver for this operator) over a time window, newest
first, filtered by operator, action and target ("job 42", "schedule 3", or an id). The chain line shows
``ops.verify_audit()`` for an administrator, and says in plain words whose check it is otherwise.

Widgets: ``operator_filter`` and ``action_filter`` (Dropdown, "any" first, then the values seen in the
window), ``target_filter`` (Text), ``window`` (Dropdown: 1h, 24h, 7d, 30d, all), ``apply_button``,
``refresh_button``, ``prev_button``, ``next_button``, ``page_label``, ``log_table`` (HTML), ``chain`` (HTML),
``controls`` (the boxes of the filters) and ``pager``, hidden with the table and the chain from an operator who
may not read the log, ``status``; ``frame`` is the filtered log shown (newest first), ``chain_ok`` the last
verification (None when not checked).

CSS classes: ``sgen-activity``, ``sgen-activity-operator``, ``sgen-activity-action``, ``sgen-activity-target``,
``sgen-activity-window``, ``sgen-apply``, ``sgen-refresh``, ``sgen-prev``, ``sgen-next``, ``sgen-page-label``,
``sgen-activity-table``, ``sgen-activity-chain`` (+ ``sgen-chain-ok`` | ``sgen-chain-broken`` |
``sgen-chain-unchecked``), ``sgen-status``.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

import ipywidgets as widgets
import pandas as pd

from ..core.durations import as_timedelta
from ..core.times import utcnow
from ..errors import ValidationError
from ..ledger.audit import target_label
from . import render
from .base import View, button, denial

if TYPE_CHECKING:
    from ..surface.operations import Operations

ANY = "any"
WINDOWS = ("1h", "24h", "7d", "30d", "all")
CHANGE_CHARS = 240
_TARGET = re.compile(r"^\s*(?:(job|schedule)s?\s*#?\s*)?(\d+)\s*$", re.IGNORECASE)
_CHAIN_CLASSES = ("sgen-chain-ok", "sgen-chain-broken", "sgen-chain-unchecked")


def parse_target(text: str) -> tuple[str | None, int | None]:
    """'job 42' -> ("job", 42); '42' -> (None, 42); '' -> (None, None); anything else is refused."""
    if not text.strip():
        return None, None
    match = _TARGET.match(text)
    if match is None:
        raise ValidationError(f"target {text!r} is not valid; give an id, 'job ID' or 'schedule ID'")
    kind = match.group(1)
    return (kind.lower() if kind else None), int(match.group(2))


def change_text(change: Any) -> str:
    """The (already masked) change as one line of JSON, cut for the table (the full one is in ``frame``)."""
    if change is None or (isinstance(change, float) and pd.isna(change)):
        return ""
    shown = json.dumps(change, ensure_ascii=False, default=str, sort_keys=True)
    return shown if len(shown) <= CHANGE_CHARS else shown[: CHANGE_CHARS - 1] + "…"


def blank(value: Any) -> str:
    """A cell's text: the value, or a dash for none (a missing value read through pandas is NaN, never "nan")."""
    return str(value) if isinstance(value, str) and value else render.DASH


class ActivityLogView(View):
    """The Activity Log, newest first, with filters and the chain's verification status."""

    css_class = "sgen-activity"

    def __init__(self, ops: Operations, *, per_page: int = 50) -> None:
        super().__init__(ops)
        self.per_page = per_page
        self.page = 1
        self.entries = pd.DataFrame()
        self.frame = pd.DataFrame()
        self.chain_ok: bool | None = None
        style = {"description_width": "64px"}
        self.operator_filter = widgets.Dropdown(options=[ANY], value=ANY, description="Operator", style=style)
        self.action_filter = widgets.Dropdown(options=[ANY], value=ANY, description="Action", style=style)
        self.target_filter = widgets.Text(placeholder="job 42, schedule 3", description="Target", style=style)
        self.window = widgets.Dropdown(options=WINDOWS, value="7d", description="Last", style=style)
        for widget, css in ((self.operator_filter, "sgen-activity-operator"),
                            (self.action_filter, "sgen-activity-action"),
                            (self.target_filter, "sgen-activity-target"), (self.window, "sgen-activity-window")):
            widget.add_class(css)
            widget.layout = widgets.Layout(width="240px")
        self.apply_button = button("Apply", "sgen-apply", style="primary", icon="filter")
        self.refresh_button = button("Refresh", "sgen-refresh", icon="refresh")
        self.prev_button = button("Prev", "sgen-prev", icon="chevron-left")
        self.next_button = button("Next", "sgen-next", icon="chevron-right")
        self.page_label = widgets.HTML()
        self.page_label.add_class("sgen-page-label")
        self.log_table = widgets.HTML(layout=widgets.Layout(overflow="auto"))
        self.log_table.add_class("sgen-activity-table")
        self.chain = widgets.HTML()
        self.chain.add_class("sgen-activity-chain")

        self.apply_button.on_click(self.guard(lambda _b: self._apply()))
        self.refresh_button.on_click(self.guard(lambda _b: self.refresh()))
        self.window.observe(self.guard(lambda _c: self.refresh()), names="value")
        for dropdown in (self.operator_filter, self.action_filter):
            dropdown.observe(self.guard(lambda _c: self._apply()), names="value")
        self.prev_button.on_click(self.guard(lambda _b: self._turn(-1)))
        self.next_button.on_click(self.guard(lambda _b: self._turn(1)))

        self.controls = (
            widgets.HBox([self.window, self.operator_filter, self.action_filter],
                         layout=widgets.Layout(flex_flow="row wrap")),
            widgets.HBox([self.target_filter, self.apply_button, self.refresh_button]),
        )
        self.pager = widgets.HBox([self.prev_button, self.page_label, self.next_button],
                                  layout=widgets.Layout(align_items="center"))
        self.children = (widgets.HTML(render.heading("Activity Log")), self.chain, *self.controls, self.status,
                         self.log_table, self.pager)
        # An operator who may not read the log sees why, and none of the filters or paging it could not use.
        if denial(ops, "activity_log") is not None:
            for box in (*self.controls, self.pager, self.chain, self.log_table):
                box.layout.display = "none"
        self.attempt(self.refresh)

    # -- reading ------------------------------------------------------------------------------
    def refresh(self) -> None:
        """Re-read the log over the window and the chain's status; the filters chosen stay."""
        reason = denial(self.ops, "activity_log")
        if reason is not None:
            self.show_status(reason, "info")
            return
        since = None if self.window.value == "all" else utcnow() - as_timedelta(self.window.value, "window")
        self.entries = self.ops.activity_log(since=since)
        self._offer(self.operator_filter, self.entries["operator"])
        self._offer(self.action_filter, self.entries["action"])
        self._check_chain()
        self._apply(keep_page=True)

    def _offer(self, dropdown: widgets.Dropdown, values: pd.Series) -> None:
        """The values seen in the window as the dropdown's options, keeping the one chosen."""
        chosen = dropdown.value
        options = [ANY, *sorted({str(v) for v in values.dropna()})]
        if chosen not in options:
            options.append(chosen)
        if list(dropdown.options) != options:
            with dropdown.hold_trait_notifications():
                dropdown.options = options
                dropdown.value = chosen

    def _check_chain(self) -> None:
        if not self.ops.can("verify_audit"):
            self.chain_ok = None
            self._show_chain("sgen-chain-unchecked", "info", f"{denial(self.ops, 'verify_audit')} It checks that "
                             "no entry was removed or altered.")
            return
        result = self.ops.verify_audit()
        self.chain_ok = bool(result.ok)
        if result.ok:
            self._show_chain("sgen-chain-ok", "ok", f"Chain verified: {result.message}.")
        else:
            self._show_chain("sgen-chain-broken", "error", f"Chain broken: {result.message}.")

    def _show_chain(self, css: str, kind: str, text: str) -> None:
        for other in _CHAIN_CLASSES:
            self.chain.remove_class(other)
        self.chain.add_class(css)
        self.chain.value = render.message(kind, text)

    # -- filtering and paging -----------------------------------------------------------------
    def _apply(self, keep_page: bool = False) -> None:
        kind, target_id = parse_target(self.target_filter.value)
        frame = self.entries
        if not frame.empty:
            keep = pd.Series(True, index=frame.index)
            if self.operator_filter.value != ANY:
                keep &= frame["operator"] == self.operator_filter.value
            if self.action_filter.value != ANY:
                keep &= frame["action"] == self.action_filter.value
            if target_id is not None:
                keep &= frame["target_id"] == target_id
            if kind is not None:
                keep &= frame["target_type"] == kind
            frame = frame[keep].iloc[::-1].reset_index(drop=True)
        self.frame = frame
        if not keep_page:
            self.page = 1
        self.page = min(self.page, self.pages)
        self._show()

    @property
    def pages(self) -> int:
        return max(1, -(-len(self.frame) // self.per_page))

    def _turn(self, step: int) -> None:
        self.page = min(max(1, self.page + step), self.pages)
        self._show()

    def _show(self) -> None:
        start = (self.page - 1) * self.per_page
        shown = self.frame.iloc[start:start + self.per_page]
        rows = [
            (
                render.when(r.at),
                f'<span style="white-space:nowrap">{render.esc(blank(r.operator))}</span>',
                f"<code>{render.esc(r.action)}</code>",
                render.esc(target_label(r.target_type, r.target_id, r.change)),
                render.esc(blank(r.account)),
                f'<span style="{render.MONO};word-break:break-word">{render.esc(change_text(r.change))}</span>'
                + (f"<br>{render.muted('reason: ' + render.esc(r.reason))}" if isinstance(r.reason, str) else ""),
            )
            for r in shown.itertuples()
        ]
        self.log_table.value = render.table(
            ["When", "Operator", "Action", "Target", "Account", "Change"], rows, css_class="sgen-activity-rows",
            empty="No Activity Log entries match.",
        )
        total = len(self.frame)
        self.page_label.value = render.muted(
            f"{render.count(total)} entr{'y' if total == 1 else 'ies'} · page {self.page} of {self.pages}"
        )
        self.prev_button.disabled = self.page <= 1
        self.next_button.disabled = self.page >= self.pages
