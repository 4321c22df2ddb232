"""What every view shares: the ``.status`` line, callbacks that never fail silently, and buttons
gated by the operator's role.

ipywidgets swallows exceptions raised in callbacks, so every handler a view registers goes through
``View.guard``: an sgen-ops error (AccessDenied, NotFound, InvalidTransition, ValidationError) is shown
in ``.status`` in its own words, styled as an error; anything else is shown by type and message (the
traceback goes to the ``sgen_ops.ui`` logger, never to the screen). The view stays usable either way.

CSS classes: ``sgen-view`` on every view; ``sgen-status`` and ``<view class>-status`` (``sgen-queue-status``,
``sgen-detail-status``, ``sgen-triage-status``, ``sgen-schedules-status``, ``sgen-throughput-status``: unique
where a detail view sits inside the queue or triage view) on its status line, plus one of
``sgen-status-error``, ``sgen-status-ok``, ``sgen-status-info`` while a message of that kind is shown.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

import ipywidgets as widgets

from ..core.permissions import ARGUMENT_ACTIONS
from ..errors import SgenOpsError
from . import render

if TYPE_CHECKING:
    from ..surface.operations import Operations

log = logging.getLogger("sgen_ops.ui")

T = TypeVar("T")
STATUS_KINDS = ("error", "ok", "info")


# What each action does, in an operator's words, for the reasons a button is disabled.
ACTION_WORDS: dict[str, str] = {
    "rerun": "re-run jobs", "cancel": "cancel jobs", "retry_now": "retry jobs now", "trigger": "run jobs now",
    "resolve": "resolve jobs", "update_job": "change jobs", "enqueue": "queue new jobs",
    "send_to_dead_letter": "send jobs to the dead letter", "replay": "replay dead letters",
    "edit_and_replay": "edit and replay dead letters", "dismiss": "dismiss dead letters",
    "replay_dead_letters": "replay dead letters in bulk", "dismiss_dead_letters": "dismiss dead letters in bulk",
    "delete_job": "delete jobs", "delete_jobs": "delete jobs", "get_job": "open a job's detail",
    "list_jobs": "list jobs", "throughput": "see throughput", "list_schedules": "list schedules",
    "create_schedule": "create schedules", "edit_schedule": "edit schedules", "pause_schedule": "pause schedules",
    "resume_schedule": "resume schedules", "run_schedule_now": "run schedules now",
    "activity_log": "read the Activity Log", "verify_audit": "check the Activity Log's chain",
    "pause_task": "pause tasks", "resume_task": "resume tasks", "pause_queue": "pause queues",
    "resume_queue": "resume queues", "history": "read the job history", "archive_runs": "see the archive's runs",
    "dead_letter_groups": "count dead letters", "paused": "see what is paused",
    "preview_schedule": "preview schedules", "throughput_series": "see throughput",
    "run_time_percentiles": "see run times",
    # What an argument makes of an operation (an editor's update_job with a payload): the policy's own words.
    **dict(ARGUMENT_ACTIONS.values()),
}


def _a(word: str) -> str:
    return f"an {word}" if word[:1].lower() in "aeiou" else f"a {word}"


def denial(ops: Operations, action: str) -> str | None:
    """Why this operator may not ``action``, in plain words ("Only administrators can dismiss dead letters;
    you are signed in as an editor."), or None."""
    if ops.can(action):
        return None
    what = ACTION_WORDS.get(action, action.replace("_", " "))
    roles = list(ops.policy.roles_for(action))
    if not roles:
        return f"No role can {what} here; you are signed in as {_a(ops.role)}."
    who = " and ".join(f"{r}s" for r in roles)
    return f"Only {who} can {what}; you are signed in as {_a(ops.role)}."


def gate(button: widgets.Button, ops: Operations, action: str, tooltip: str = "") -> bool:
    """Disable ``button`` with the reason as its tooltip when the role lacks ``action``; True if allowed."""
    reason = denial(ops, action)
    button.disabled = reason is not None
    button.tooltip = reason or tooltip
    return reason is None


def button(description: str, css_class: str, *, style: str = "", icon: str = "", tooltip: str = "") -> widgets.Button:
    """A button with the views' look and a CSS class for browser tests."""
    b = widgets.Button(
        description=description, button_style=style, icon=icon, tooltip=tooltip,
        layout=widgets.Layout(width="auto", min_width="88px"),
    )
    b.add_class(css_class)
    return b


def close_tree(widget: widgets.Widget) -> None:
    """Close a widget and everything inside it, so replaced views leave no comms behind."""
    for child in getattr(widget, "children", ()):
        close_tree(child)
    widget.close()


def run_each(
    operation: Callable[[int], Any], ids: tuple[int, ...]
) -> tuple[list[int], list[tuple[int, SgenOpsError]]]:
    """Call ``operation(id)`` for each id: the ids done, and the (id, error) of those refused."""
    done: list[int] = []
    failed: list[tuple[int, SgenOpsError]] = []
    for job_id in ids:
        try:
            operation(job_id)
        except SgenOpsError as exc:  # each refusal is reported; a bug propagates to View.guard
            failed.append((job_id, exc))
        else:
            done.append(job_id)
    return done, failed


class View(widgets.VBox):  # type: ignore[misc]  # ipywidgets ships no type information
    """A view over one operator's ``Operations``: a VBox with a status line and guarded callbacks."""

    css_class = "sgen-view"

    def __init__(self, ops: Operations, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.ops = ops
        # Held by every guarded callback and by live refresh ticks: one change to the view at a time.
        self.lock = threading.RLock()
        self.status = widgets.HTML(value="", layout=widgets.Layout(min_height="0", margin="4px 0"))
        self.status.add_class("sgen-status")
        self.status.add_class(f"{self.css_class}-status")  # e.g. sgen-queue-status: unique even with nested views
        self.status_kind = ""
        self.status_text = ""
        self.add_class("sgen-view")
        self.add_class(self.css_class)
        self.layout.padding = "4px"

    # -- status -------------------------------------------------------------------------------
    def show_status(self, text: str, kind: str = "ok") -> None:
        """Show ``text`` in ``.status`` as an error, ok or info message."""
        if kind not in STATUS_KINDS:
            raise ValueError(f"status kind {kind!r}; use one of {', '.join(STATUS_KINDS)}")
        for other in STATUS_KINDS:
            self.status.remove_class(f"sgen-status-{other}")
        self.status.add_class(f"sgen-status-{kind}")
        self.status_kind, self.status_text = kind, text
        self.status.value = render.message(kind, text)

    def show_error(self, exc: BaseException) -> None:
        if isinstance(exc, SgenOpsError):
            self.show_status(f"{type(exc).__name__}: {exc}", "error")
        else:
            log.error("unexpected error in %s", type(self).__name__, exc_info=exc)
            self.show_status(f"Unexpected error ({type(exc).__name__}): {exc}", "error")

    def clear_status(self) -> None:
        for other in STATUS_KINDS:
            self.status.remove_class(f"sgen-status-{other}")
        self.status_kind = self.status_text = ""
        self.status.value = ""

    # -- never fail silently ------------------------------------------------------------------
    def attempt(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> tuple[bool, T | None]:
        """Call ``fn`` under the view's lock; an error is shown in ``.status`` and returns (False, None)."""
        with self.lock:
            try:
                return True, fn(*args, **kwargs)
            except Exception as exc:  # noqa: BLE001  # shown in .status; unexpected ones are logged by show_error
                self.show_error(exc)
                return False, None

    def guard(self, handler: Callable[..., Any]) -> Callable[..., None]:
        """Wrap a button or observe handler so that its errors land in ``.status``."""

        @functools.wraps(handler)
        def run(*args: Any) -> None:
            self.attempt(handler, *args)

        return run

    @contextmanager
    def busy(self, *buttons: widgets.Button) -> Iterator[None]:
        """Disable ``buttons`` while an operation runs (no double clicks), restoring them after."""
        before = [b.disabled for b in buttons]
        for b in buttons:
            b.disabled = True
        try:
            yield
        finally:
            for b, was in zip(buttons, before, strict=True):
                b.disabled = was

    def refresh(self) -> None:
        """Re-read what the view shows."""
        raise NotImplementedError
