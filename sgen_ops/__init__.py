"""sgen-ops: run SGEN's background-job queue from Jupyter.

The public surface: ``connect`` to a stack, ``remote`` to reach one through its HTTP API, ``task`` to
register a handler, ``TaskError`` to fail an attempt with an error code, and the errors every operation
may raise.
"""

from .client import RemoteOperations, remote
from .errors import (
    AccessDenied,
    InvalidTransition,
    JobCancelled,
    NotFound,
    SgenOpsError,
    TaskError,
    ValidationError,
)
from .hub import Hub, connect
from .states import State
from .tasks import task

__all__ = [
    "AccessDenied",
    "Hub",
    "InvalidTransition",
    "JobCancelled",
    "NotFound",
    "RemoteOperations",
    "SgenOpsError",
    "State",
    "TaskError",
    "ValidationError",
    "connect",
    "remote",
    "task",
]

__version__ = "0.1.0"
