"""The operator app: the views as tabs, what the Voilà app shows.

``app(ops)`` returns an ``ipywidgets.Tab`` with Queue, Dead letter, Schedules, Throughput, Workers and
Activity Log; each view is built when its tab is first opened (the queue at once), so opening the app reads
only the queue.
``tab.views`` maps each title to its view once built; choosing a tab again refreshes its view.

CSS classes: ``sgen-app`` on the Tab, and each view's own (``sgen-queue``, ``sgen-triage``,
``sgen-schedules``, ``sgen-throughput``, ``sgen-workers``, ``sgen-activity``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import ipywidgets as widgets

from . import render
from .activity import ActivityLogView
from .base import View
from .queue import QueueView
from .schedules import SchedulesView
from .throughput import ThroughputView
from .triage import TriageView
from .workers import WorkersView

if TYPE_CHECKING:
    from ..surface.operations import Operations

TABS: tuple[tuple[str, Callable[[Operations], View]], ...] = (
    ("Queue", QueueView),
    ("Dead letter", TriageView),
    ("Schedules", SchedulesView),
    ("Throughput", ThroughputView),
    ("Workers", WorkersView),
    ("Activity Log", ActivityLogView),
)


class OperatorApp(widgets.Tab):  # type: ignore[misc]  # ipywidgets ships no type information
    """The views as tabs, each built on first use."""

    def __init__(self, ops: Operations) -> None:
        super().__init__()
        self.ops = ops
        self.add_class("sgen-app")
        self.views: dict[str, View] = {}
        self.placeholders = [widgets.HTML(render.muted("Loading…")) for _ in TABS]
        self.children = tuple(self.placeholders)
        self.titles = tuple(title for title, _ in TABS)
        self.observe(self._on_tab, names="selected_index")
        self.selected_index = 0
        self.view("Queue")

    def view(self, title: str) -> View:
        """The view of tab ``title``, built now if it was not yet."""
        if title not in self.views:
            index = self.titles.index(title)
            built = dict(TABS)[title](self.ops)
            self.views[title] = built
            children = list(self.children)
            children[index] = built
            self.children = tuple(children)
            self.placeholders[index].close()
        return self.views[title]

    def _on_tab(self, change: dict[str, Any]) -> None:
        index = change["new"]
        if index is None:
            return
        title = self.titles[index]
        if title in self.views:
            self.views[title].attempt(self.views[title].refresh)
        else:
            self.view(title)


def app(ops: Operations) -> widgets.Tab:
    """Queue, Dead letter, Schedules, Throughput, Workers and Activity Log as tabs of one ``ipywidgets.Tab``."""
    return OperatorApp(ops)
