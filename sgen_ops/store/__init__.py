"""The durable job ledger: SQLAlchemy models, Alembic migrations, sessions."""

from .db import Ledger
from .models import (
    ACTIVITY_LOG,
    ATTEMPTS,
    EVENTS,
    JOBS,
    ActivityEntry,
    ApiToken,
    Attempt,
    Base,
    IdempotencyKey,
    Job,
    JobEvent,
    Operator,
    Schedule,
    ScheduleTick,
)
from .types import as_utc, utcnow

__all__ = [
    "ACTIVITY_LOG",
    "ATTEMPTS",
    "EVENTS",
    "JOBS",
    "ActivityEntry",
    "ApiToken",
    "Attempt",
    "Base",
    "IdempotencyKey",
    "Job",
    "JobEvent",
    "Ledger",
    "Operator",
    "Schedule",
    "ScheduleTick",
    "as_utc",
    "utcnow",
]
