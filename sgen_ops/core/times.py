"""Time in UTC: every moment sgen-ops stores or compares is timezone-aware UTC."""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(value: datetime) -> datetime:
    """A naive datetime is taken as UTC; an aware one is converted to UTC."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def relative(moment: datetime, now: datetime | None = None, *, short: bool = False) -> str:
    """``moment`` against ``now`` (default: the clock), as people say it: "3 minutes ago", "in 2 hours 5 minutes",
    "just now" within a second; ``short`` for a terminal's columns: "3m ago", "in 2h5m". A naive time is UTC."""
    from .durations import approximate

    delta = ((now or utcnow()) - as_utc(moment)).total_seconds()
    if abs(delta) < 1:
        return "just now"
    spoken = approximate(delta, short=short)
    return f"{spoken} ago" if delta > 0 else f"in {spoken}"
