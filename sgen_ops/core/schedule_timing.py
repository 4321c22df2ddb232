"""When a recurring schedule fires: interval parsing, cron and time-zone validation, fire-time arithmetic.

Pure code: no I/O, no clock reads. Every datetime returned is timezone-aware UTC; a naive datetime
given to this module is taken to be UTC, an aware one in another zone is converted.

A schedule is either a cron expression (5 fields, or an alias such as ``@daily``), evaluated by croniter
in the schedule's IANA time zone, or a fixed interval of seconds counted from an ``anchor``.

DST (croniter's behaviour, kept as is): a local time inside a spring-forward gap fires once, at the first
instant after the gap (02:30 in New York on the spring-forward day fires at 03:00 EDT); a local time inside
a fall-back overlap fires once per occurrence (01:30 fires at 01:30 EDT and again at 01:30 EST, an hour
later). Fire times are distinct UTC instants, and ``t = next_after(t)`` strictly increases.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from croniter import CroniterError, croniter  # type: ignore[import-untyped,unused-ignore]

from ..errors import ValidationError
from .validate import describe, storable

__all__ = [
    "MAX_INTERVAL_SECONDS",
    "MIN_INTERVAL_SECONDS",
    "Timing",
    "format_interval",
    "parse_interval",
    "validate_cron",
    "validate_timezone",
]

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

MIN_INTERVAL_SECONDS = 1.0
MAX_CRON_CHARS = 200  # the ledger's column
MAX_INTERVAL_SECONDS = 3650 * 86400.0  # ten years: keeps anchor + k*every far from datetime's limits

_INTERVAL_FORMS = (
    "a number of seconds (e.g. 90 or '90'), a timedelta, or text such as '90s', '15m', '1h30m', '2d', '1w', "
    "'45 minutes', '1 hour' (units: s, m, h, d, w), from 1 second up to 3650 days"
)
_CRON_FORMS = (
    "expected 5 fields: minute hour day-of-month month day-of-week (e.g. '0 9 * * *', '*/15 * * * MON-FRI'), "
    "or an alias: @hourly, @daily, @midnight, @weekly, @monthly, @yearly, @annually"
)
_ZONE_EXAMPLES = "use an IANA time zone name such as 'UTC', 'Europe/Paris', 'America/New_York', 'Asia/Tokyo'"

_UNIT_SECONDS: dict[str, int] = {}
for _names, _secs in (
    (("s", "sec", "secs", "second", "seconds"), 1),
    (("m", "min", "mins", "minute", "minutes"), 60),
    (("h", "hr", "hrs", "hour", "hours"), 3600),
    (("d", "day", "days"), 86400),
    (("w", "wk", "wks", "week", "weeks"), 604800),
):
    for _name in _names:
        _UNIT_SECONDS[_name] = _secs

_NUMBER = r"(?:\d+(?:\.\d*)?|\.\d+)"
_NUMERIC_RE = re.compile(rf"[+-]?{_NUMBER}")
# One "<number><unit>" term, optionally preceded by a separator (spaces, a comma, or "and").
_TERM_RE = re.compile(rf"\s*(?:(?:,|\band\b)\s*)?({_NUMBER})\s*([a-z]+)\s*")

_CRON_ALIASES = ("@hourly", "@daily", "@midnight", "@weekly", "@monthly", "@yearly", "@annually")
_CRON_PROBE_START = datetime(2000, 1, 1, tzinfo=UTC)


# --------------------------------------------------------------------------- intervals


def _interval_error(value: object, problem: str, name: str = "interval") -> ValidationError:
    return ValidationError(f"invalid {name} {describe(value)}: {problem}; allowed: {_INTERVAL_FORMS}")


def _parse_interval_text(value: str, name: str = "interval") -> float:
    text = value.strip().lower()
    if not text:
        raise _interval_error(value, "it is empty", name)
    if text.startswith("-"):
        raise _interval_error(value, "it is negative, an interval must be positive", name)
    if _NUMERIC_RE.fullmatch(text):
        return float(text)
    total = 0.0
    seen: set[int] = set()
    pos = 0
    while pos < len(text):
        match = _TERM_RE.match(text, pos)
        if match is None:
            raise _interval_error(value, f"cannot understand {describe(text[pos:].strip())}", name)
        number, unit = match.group(1), match.group(2)
        if unit not in _UNIT_SECONDS:
            raise _interval_error(value, f"unknown unit {unit!r}", name)
        factor = _UNIT_SECONDS[unit]
        if factor in seen:
            raise _interval_error(value, f"unit {unit!r} is given more than once", name)
        seen.add(factor)
        total += float(number) * factor
        pos = match.end()
    return total


def parse_interval(value: int | float | timedelta | str, name: str = "interval") -> float:
    """Seconds in ``value``: a number of seconds, a ``timedelta``, a numeric string, or text like ``"1h30m"``.

    Raises ``ValidationError`` (saying what was wrong and which forms are allowed) for a bool, an unparseable
    value, or an interval under one second (zero and negative included) or over 3650 days.
    """
    if isinstance(value, bool):
        raise _interval_error(value, "a bool is not an interval", name)
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, int | float):
        try:
            seconds = float(value)
        except OverflowError:
            seconds = math.inf
    elif isinstance(value, str):
        storable(value, name)
        seconds = _parse_interval_text(value, name)
    else:
        raise _interval_error(value, f"a {type(value).__name__} is not an interval", name)
    if not math.isfinite(seconds):
        raise _interval_error(value, "it is not a finite number", name)
    if seconds <= 0:
        sign = "zero" if seconds == 0 else "negative"
        raise _interval_error(value, f"it is {sign}, it must be at least 1 second", name)
    if seconds < MIN_INTERVAL_SECONDS:
        raise _interval_error(value, f"{seconds:g}s is under the minimum of 1 second", name)
    if seconds > MAX_INTERVAL_SECONDS:
        raise _interval_error(value, f"{seconds:g} seconds is over the maximum of 3650 days", name)
    return seconds


def format_interval(seconds: float) -> str:
    """Compact text for seconds, the inverse of ``parse_interval``: 90 -> ``"1m30s"``, 5400 -> ``"1h30m"``."""
    total_us = round(seconds * 1_000_000)
    if total_us < 0:
        return "-" + format_interval(-seconds)
    whole, frac_us = divmod(total_us, 1_000_000)
    parts: list[str] = []
    for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60)):
        count, whole = divmod(whole, size)
        if count:
            parts.append(f"{count}{unit}")
    if frac_us:
        parts.append(f"{whole}.{frac_us:06d}".rstrip("0") + "s")
    elif whole or not parts:
        parts.append(f"{whole}s")
    return "".join(parts)


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
            object.__setattr__(self, "every", parse_interval(self.every))
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
        return cls(every=parse_interval(every), timezone=zone, anchor=anchor)

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
        return f"every {format_interval(self.every)}"
