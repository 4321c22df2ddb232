"""When a recurring schedule fires: cron and time-zone validation, fire-time arithmetic.

Pure code: no I/O, no clock reads. Every datetime returned is timezone-aware UTC; a naive datetime
given to this module is taken to be UTC, an aware one in another zone is converted.

A schedule is either a cron expression (5 fields, or an alias such as ``@daily``), evaluated by croniter
in the schedule's IANA time zone, or a fixed interval of seconds counted from an ``anchor`` (a duration:
``core.durations``).

DST (croniter's behaviour, kept as is): a local time inside a spring-forward gap fires once, at the first
instant after the gap (02:30 in New York on the spring-forward day fires at 03:00 EDT); a local time inside
a fall-back overlap fires once per occurrence (01:30 fires at 01:30 EDT and again at 01:30 EST, an hour
later). Fire times are distinct UTC instants, and ``t = next_after(t)`` strictly increases.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from croniter import CroniterError, croniter  # type: ignore[import-untyped,unused-ignore]

from ..errors import ValidationError
from .durations import format_duration, parse_duration
from .validate import describe, storable

__all__ = [
    "Timing",
    "validate_cron",
    "validate_timezone",
]

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

MAX_CRON_CHARS = 200  # the ledger's column

_CRON_FORMS = (
    "expected 5 fields: minute hour day-of-month month day-of-week (e.g. '0 9 * * *', '*/15 * * * MON-FRI'), "
    "or an alias: @hourly, @daily, @midnight, @weekly, @monthly, @yearly, @annually"
)
_ZONE_EXAMPLES = "use an IANA time zone name such as 'UTC', 'Europe/Paris', 'America/New_York', 'Asia/Tokyo'"

_CRON_ALIASES = ("@hourly", "@daily", "@midnight", "@weekly", "@monthly", "@yearly", "@annually")
_CRON_PROBE_START = datetime(2000, 1, 1, tzinfo=UTC)


# --------------------------------------------------------------------------- cron and zones


def validate_cron(expr: str) -> str:
    """The normalised expression (stripped, single-spaced, aliases lower-cased), or ``ValidationError``.

    Accepts 5-field cron and croniter's aliases. The error quotes croniter's own reason. An expression that
    can never fire (e.g. ``"0 0 30 2 *"``) is rejected too.
    """
    if not isinstance(expr, str):
        raise ValidationError(f"invalid cron expression {describe(expr)}: it must be a string; {_CRON_FORMS}")
    storable(expr, "cron expression")
    normalised = " ".join(expr.split())
    if len(normalised) > MAX_CRON_CHARS:
        raise ValidationError(
            f"invalid cron expression {describe(expr)}: it is over {MAX_CRON_CHARS} characters; {_CRON_FORMS}"
        )
    if not normalised:
        raise ValidationError(f"invalid cron expression {describe(expr)}: it is empty; {_CRON_FORMS}")
    if normalised.startswith("@"):
        normalised = normalised.lower()
        if normalised not in _CRON_ALIASES:
            raise ValidationError(
                f"invalid cron expression {describe(expr)}: unknown alias {describe(normalised)}; {_CRON_FORMS}"
            )
    else:
        n_fields = len(normalised.split(" "))
        if n_fields != 5:
            raise ValidationError(f"invalid cron expression {describe(expr)}: it has {n_fields} fields; {_CRON_FORMS}")
    try:
        croniter(normalised, _CRON_PROBE_START).get_next(datetime)
    except CroniterError as exc:
        raise ValidationError(f"invalid cron expression {describe(expr)}: {exc}; {_CRON_FORMS}") from exc
    except (ValueError, TypeError, KeyError, IndexError) as exc:  # defensive: croniter's less tidy failures
        raise ValidationError(f"invalid cron expression {describe(expr)}: {exc}; {_CRON_FORMS}") from exc
    return normalised


def validate_timezone(name: str | None) -> str:
    """The IANA zone name (``"UTC"`` for ``None``), or ``ValidationError`` naming the unknown zone."""
    if name is None:
        return "UTC"
    if not isinstance(name, str):
        raise ValidationError(f"invalid time zone {describe(name)}: it must be a string; {_ZONE_EXAMPLES}")
    key = name.strip()
    try:
        ZoneInfo(key)
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
        hint = ""
        if key:
            matches = sorted(z for z in available_timezones() if z.lower() == key.lower())
            if matches:
                hint = f" (did you mean {matches[0]!r}?)"
        raise ValidationError(f"unknown time zone {describe(name)}{hint}; {_ZONE_EXAMPLES}") from exc
    return key


def _as_utc(value: datetime, what: str) -> datetime:
    if not isinstance(value, datetime):
        raise TypeError(f"{what} must be a datetime, not {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


# --------------------------------------------------------------------------- Timing


@dataclass(frozen=True)
class Timing:
    """When a schedule fires: exactly one of ``cron`` (in ``timezone``) or ``every`` seconds (from ``anchor``).

    Interval fire times are ``anchor + k*every`` for k = 1, 2, ... (the anchor itself is not a fire time;
    ``anchor`` defaults to the Unix epoch). ``timezone`` is ignored for intervals. For cron, ``anchor`` only
    bounds ``latest_due`` catch-up when there is no previous fire.
    """

    cron: str | None = None
    every: float | None = None
    timezone: str = "UTC"
    anchor: datetime | None = None

    def __post_init__(self) -> None:
        if (self.cron is None) == (self.every is None):
            raise ValidationError(
                "give exactly one of cron= or every= (e.g. cron='0 9 * * *' or every='15m'); "
                f"got cron={describe(self.cron)}, every={describe(self.every)}"
            )
        if self.cron is not None:
            object.__setattr__(self, "cron", validate_cron(self.cron))
        if self.every is not None:
            object.__setattr__(self, "every", parse_duration(self.every, "interval"))
        object.__setattr__(self, "timezone", validate_timezone(self.timezone))
        if self.anchor is not None:
            object.__setattr__(self, "anchor", _as_utc(self.anchor, "anchor"))

    @classmethod
    def build(
        cls,
        cron: str | None = None,
        every: int | float | timedelta | str | None = None,
        timezone: str | None = None,
        anchor: datetime | None = None,
    ) -> Timing:
        """Validate operator input into a ``Timing`` (``ValidationError`` says what is wrong)."""
        if (cron is None) == (every is None):
            raise ValidationError(
                "give exactly one of cron= or every= (e.g. cron='0 9 * * *' or every='15m'); "
                f"got cron={describe(cron)}, every={describe(every)}"
            )
        zone = validate_timezone(timezone)
        if cron is not None:
            return cls(cron=validate_cron(cron), timezone=zone, anchor=anchor)
        assert every is not None
        return cls(every=parse_duration(every, "interval"), timezone=zone, anchor=anchor)

    # ---------------------------------------------------------------- helpers

    @property
    def _step(self) -> timedelta:
        assert self.every is not None
        return timedelta(microseconds=round(self.every * 1_000_000))

    @property
    def _origin(self) -> datetime:
        return self.anchor if self.anchor is not None else EPOCH

    def _cron_next(self, after: datetime) -> datetime:
        zone = ZoneInfo(self.timezone)
        it = croniter(self.cron, after.astimezone(zone))
        # croniter works in local wall time; guard against any repeat or step back around a DST change.
        for _ in range(64):
            candidate = _as_utc(it.get_next(datetime), "fire time")
            if candidate > after:
                return candidate
        raise RuntimeError(f"croniter made no progress after {after.isoformat()} for {self.describe()}")

    def _cron_latest(self, now: datetime) -> datetime:
        """Latest cron fire time <= ``now``: a few ``get_prev`` steps back, then forward via ``_cron_next``."""
        zone = ZoneInfo(self.timezone)
        it = croniter(self.cron, now.astimezone(zone))
        low = now
        for _ in range(8):  # in practice the first round answers; more rounds only widen the window
            for _ in range(2):
                low = min(low, _as_utc(it.get_prev(datetime), "fire time"))
            best: datetime | None = None
            t = self._cron_next(low - timedelta(microseconds=1))
            while t <= now:
                best = t
                t = self._cron_next(t)
            if best is not None:
                return best
        raise RuntimeError(f"croniter found no fire time before {now.isoformat()} for {self.describe()}")

    # ---------------------------------------------------------------- public API

    def next_after(self, after: datetime) -> datetime:
        """The first fire time strictly after ``after``, in UTC."""
        after = _as_utc(after, "after")
        if self.cron is not None:
            return self._cron_next(after)
        step, origin = self._step, self._origin
        if after < origin + step:
            return origin + step
        return origin + ((after - origin) // step + 1) * step

    def fire_times(self, after: datetime, count: int = 5) -> list[datetime]:
        """The next ``count`` fire times after ``after``, strictly increasing (the UI's preview)."""
        if count < 0:
            raise ValidationError(f"count must be zero or more, got {count}")
        out: list[datetime] = []
        t = _as_utc(after, "after")
        for _ in range(count):
            t = self.next_after(t)
            out.append(t)
        return out

    def latest_due(self, last_fire: datetime | None, now: datetime) -> datetime | None:
        """The most recent fire time ``t`` with ``lower < t <= now``, or ``None``: at most one catch-up tick.

        ``lower`` is ``last_fire`` (exclusive). Without a ``last_fire`` it is ``anchor`` (inclusive): intervals
        count from the anchor (epoch if unset); a cron without anchor returns ``None`` (no catch-up).
        Constant work however long the downtime: arithmetic for intervals, croniter ``get_prev`` from ``now``.
        """
        now = _as_utc(now, "now")
        last = _as_utc(last_fire, "last_fire") if last_fire is not None else None
        if last is not None and last >= now:
            return None
        if self.cron is not None:
            if last is None and self.anchor is None:
                return None
            candidate = self._cron_latest(now)
            if last is not None:
                return candidate if candidate > last else None
            assert self.anchor is not None
            return candidate if candidate >= self.anchor else None
        step, origin = self._step, self._origin
        if now < origin + step:
            return None
        candidate = origin + ((now - origin) // step) * step
        if last is not None and candidate <= last:
            return None
        return candidate

    def describe(self) -> str:
        """Short human text: ``"cron '0 9 * * *' (Europe/Paris)"`` or ``"every 15m"``."""
        if self.cron is not None:
            return f"cron {self.cron!r} ({self.timezone})"
        assert self.every is not None
        return f"every {format_duration(self.every)}"
