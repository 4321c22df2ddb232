"""The durable job ledger: SQLAlchemy models, Alembic migrations, sessions."""

from .db import Ledger
from .models import (
    ACTIVITY_LOG,
    ATTEMPTS,
    EVENTS,
    JOBS,
    PAUSES,
    ActivityEntry,
    ApiToken,
    Attempt,
    Base,
    IdempotencyKey,
    Job,
    JobEvent,
    Operator,
    OperatorNote,
    Pause,
    Schedule,
    ScheduleTick,
    TaskRule,
)
from .types import as_utc, utcnow

__all__ = [
    "ACTIVITY_LOG",
    "ATTEMPTS",
    "EVENTS",
    "JOBS",
    "PAUSES",
    "ActivityEntry",
    "ApiToken",
    "Attempt",
    "Base",
    "IdempotencyKey",
    "Job",
    "JobEvent",
    "Ledger",
    "Operator",
    "OperatorNote",
    "Pause",
    "Schedule",
    "ScheduleTick",
    "TaskRule",
    "as_utc",
    "utcnow",
]
