"""sgen-ops: run SGEN's background-job queue from Jupyter.

The public surface: ``connect`` to a stack, ``remote`` to reach one through its HTTP API, ``task`` to
register a handler, ``TaskError`` to fail an attempt with an error code, and the errors every operation
may raise.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .core.states import State
from .core.tasks import task
from .errors import (
    AccessDenied,
    AttemptFenced,
    InvalidTransition,
    JobCancelled,
    NotFound,
    SgenOpsError,
    TaskError,
    Unavailable,
    ValidationError,
)

if TYPE_CHECKING:
    from .api.client import RemoteOperations, remote
    from .hub import Hub, connect

__all__ = [
    "AccessDenied",
    "AttemptFenced",
    "Hub",
    "InvalidTransition",
    "JobCancelled",
    "NotFound",
    "RemoteOperations",
    "SgenOpsError",
    "State",
    "TaskError",
    "Unavailable",
    "ValidationError",
    "connect",
    "remote",
    "task",
]

__version__ = "0.1.0"

# Imported on first use: the HTTP client (httpx, pandas and the surface's modules), which a worker never uses,
# and the hub (SQLAlchemy, redis, RQ), which `sgen-ops --version` and `--help` never use.
_LAZY = {"RemoteOperations": "api.client", "remote": "api.client", "Hub": "hub", "connect": "hub"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value
