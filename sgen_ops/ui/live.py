"""Live views: an auto-refresh toggle with its interval, for the queue, dead-letter and workers views.

``LiveRefresh(view, refresh)`` is a small bar (a "Live" toggle and an interval) whose background thread
calls ``refresh`` every interval while the toggle is on, under the view's lock (so a tick never runs in
the middle of an operator's click). ``refresh`` re-reads and re-draws only what changed; the views keep the
operator's selection and open detail across it. ``tick()`` runs one refresh now (what the thread calls).

Widgets: ``toggle`` (ToggleButton), ``interval`` (Dropdown of seconds); ``ticks`` counts refreshes done.
CSS classes: ``sgen-live`` on the bar, ``sgen-live-toggle``, ``sgen-live-interval``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import ipywidgets as widgets

if TYPE_CHECKING:
    from .base import View

STOP_WAIT_S = 5.0
INTERVALS = (("2 s", 2.0), ("5 s", 5.0), ("10 s", 10.0), ("30 s", 30.0), ("1 min", 60.0))


class LiveRefresh(widgets.HBox):  # type: ignore[misc]  # ipywidgets ships no type information
    """A "Live" toggle: while on, ``refresh`` runs every ``interval`` seconds."""

    def __init__(self, view: View, refresh: Callable[[], None], *, interval: float = 10.0) -> None:
        super().__init__(layout=widgets.Layout(align_items="center"))
        self.view, self.refresh = view, refresh
        self.ticks = 0
        self.toggle = widgets.ToggleButton(
            value=False, description="Live", icon="play", tooltip="Refresh this view on its own, every interval",
            layout=widgets.Layout(width="auto", min_width="72px"),
        )
        self.toggle.add_class("sgen-live-toggle")
        self.interval = widgets.Dropdown(options=INTERVALS, value=interval, description="every",
                                         style={"description_width": "40px"}, layout=widgets.Layout(width="130px"))
        self.interval.add_class("sgen-live-interval")
        self.add_class("sgen-live")
        self.children = (self.toggle, self.interval)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.toggle.observe(self._on_toggle, names="value")

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def tick(self) -> None:
        """One refresh now, as the timer does it (errors land in the view's status line)."""
        with self.view.lock:
            self.view.attempt(self.refresh)
            self.ticks += 1

    def _on_toggle(self, change: dict[str, Any]) -> None:
        if change["new"]:
            self.toggle.icon = "pause"
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="sgen-live-refresh", daemon=True)
            self._thread.start()
        else:
            self.toggle.icon = "play"
            self.stop()

    def _run(self) -> None:
        while not self._stop.wait(float(self.interval.value)):
            self.tick()

    def stop(self) -> None:
        """Stop the timer (the toggle goes off); a tick under way finishes, waited for a few seconds at most
        (a caller holding the view's lock must not wait for a tick that needs it)."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=STOP_WAIT_S)
        if self.toggle.value:
            self.toggle.value = False

    def close(self) -> None:
        self.stop()
        super().close()
