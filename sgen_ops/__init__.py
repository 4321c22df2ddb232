"""sgen-ops: run SGEN's background-job queue from Jupyter.

The public surface: ``connect`` to a stack, ``task`` to register a handler, ``TaskError`` to fail an
attempt with an error code, and the errors every operation may raise.
"""

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
    "SgenOpsError",
    "State",
    "TaskError",
    "ValidationError",
    "connect",
    "task",
]

__version__ = "0.1.0"
