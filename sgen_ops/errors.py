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


class Unavailable(SgenOpsError):
    """The ledger (the database) or Redis cannot be reached: an outage, a restart, a failover. Nothing was
    recorded; try again later. ``service`` is ``"ledger"`` or ``"redis"``, ``where`` its address
    (``host:port``, or the SQLite file), ``reason`` what went wrong in words, and ``retry_after`` the seconds
    after which trying again makes sense."""

    def __init__(self, service: str, where: str, reason: str, retry_after: int = 5) -> None:
        name = "the ledger" if service == "ledger" else "Redis" if service == "redis" else service
        super().__init__(f"{name} at {where} is unreachable: {reason}")
        self.service = service
        self.where = where
        self.reason = reason
        self.retry_after = retry_after

    @classmethod
    def said(cls, message: str, retry_after: int = 5) -> Unavailable:
        """As a server reported it (the remote client): its words, as they came."""
        error = cls.__new__(cls)
        Exception.__init__(error, message)
        error.service, error.where, error.reason, error.retry_after = "", "", message, retry_after
        return error


class TaskError(Exception):
    """Raised by a task handler to fail an attempt with a stable error code and a human detail."""

    def __init__(self, code: str, detail: str = "") -> None:
        super().__init__(f"{code}: {detail}" if detail else code)
        self.code = code
        self.detail = detail


class JobCancelled(Exception):
    """Raised by ``ctx.checkpoint()`` when an operator cancelled the running job."""


class AttemptFenced(Exception):
    """Raised by ``ctx.checkpoint()`` when this attempt may no longer run: its worker could not renew its lease
    in time (the ledger was unreachable), or the ledger has recorded it lost meanwhile. The handler should
    let it propagate; the attempt is recorded ``worker-lost`` and retried under the retry budget."""
