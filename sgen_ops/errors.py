"""The errors the public surface raises. Each message says what was wrong and what is allowed."""

from __future__ import annotations


class SgenOpsError(Exception):
    """Base class of every error sgen-ops raises on purpose."""


class AccessDenied(SgenOpsError):
    """The admin gate refused the caller, or the caller's role lacks the capability."""


class NotFound(SgenOpsError):
    """No such job or schedule -- also raised for another account's records, so existence never leaks."""


class InvalidTransition(SgenOpsError):
    """The job state machine does not allow this change from the job's current state."""


class ValidationError(SgenOpsError, ValueError):
    """Bad input: unknown task, malformed payload, invalid cron, unknown field or filter."""


class TaskError(Exception):
    """Raised by a task handler to fail an attempt with a stable error code and a human detail."""

    def __init__(self, code: str, detail: str = "") -> None:
        super().__init__(f"{code}: {detail}" if detail else code)
        self.code = code
        self.detail = detail


class JobCancelled(Exception):
    """Raised by ``ctx.checkpoint()`` when an operator cancelled the running job."""
