"""Durations: how long something waits or lasts, in one grammar for every setting and argument that takes one.

A duration is a number of seconds (``90``, ``"90"``), a ``timedelta``, or text such as ``"90s"``, ``"15m"``,
``"1h30m"``, ``"2d"``, ``"1w"``, ``"45 minutes"``, ``"1 hour and 30 minutes"`` (units s, m, h, d, w and their
names). ``parse_duration`` reads one as seconds within bounds (at least 1 second by default, at most 3650 days,
which keeps every time computed from it inside the calendar); ``format_duration`` writes seconds back in the
compact form. Schedule intervals, throughput windows, token lifetimes, job delays and retentions all read
theirs here. Pure code: no I/O, no clock.
"""

from __future__ import annotations

import math
import re
from datetime import timedelta

from ..errors import ValidationError
from .validate import describe, storable

MIN_SECONDS = 1.0
MAX_SECONDS = 3650 * 86400.0  # ten years: keeps now + duration (and anchor + k * every) far from datetime's limits

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


def _bound(seconds: float) -> str:
    if seconds >= 86400:
        return f"{seconds / 86400:g} days"
    return "1 second" if seconds == 1 else f"{seconds:g} seconds"


def forms(minimum: float = MIN_SECONDS, maximum: float = MAX_SECONDS) -> str:
    """The forms a duration takes, and its bounds, in words (for refusals)."""
    return (
        "a number of seconds (e.g. 90 or '90'), a timedelta, or text such as '90s', '15m', '1h30m', '2d', '1w', "
        f"'45 minutes', '1 hour' (units: s, m, h, d, w), from {_bound(minimum)} up to {_bound(maximum)}"
    )


def _error(value: object, problem: str, name: str, minimum: float, maximum: float) -> ValidationError:
    return ValidationError(f"invalid {name} {describe(value)}: {problem}; allowed: {forms(minimum, maximum)}")


def _text_seconds(value: str, name: str, minimum: float, maximum: float) -> float:
    text = value.strip().lower()
    if not text:
        raise _error(value, "it is empty", name, minimum, maximum)
    if text.startswith("-"):
        raise _error(value, f"it is negative, it must be at least {_bound(minimum)}", name, minimum, maximum)
    if _NUMERIC_RE.fullmatch(text):
        return float(text)
    total = 0.0
    seen: set[int] = set()
    pos = 0
    while pos < len(text):
        match = _TERM_RE.match(text, pos)
        if match is None:
            raise _error(value, f"cannot understand {describe(text[pos:].strip())}", name, minimum, maximum)
        number, unit = match.group(1), match.group(2)
        if unit not in _UNIT_SECONDS:
            raise _error(value, f"unknown unit {unit!r}", name, minimum, maximum)
        factor = _UNIT_SECONDS[unit]
        if factor in seen:
            raise _error(value, f"unit {unit!r} is given more than once", name, minimum, maximum)
        seen.add(factor)
        total += float(number) * factor
        pos = match.end()
    return total


def parse_duration(
    value: int | float | timedelta | str, name: str = "duration", *, minimum: float = MIN_SECONDS,
    maximum: float = MAX_SECONDS,
) -> float:
    """Seconds in ``value``: a number of seconds, a ``timedelta``, a numeric string, or text like ``"1h30m"``.

    Raises ``ValidationError`` (naming ``name``, saying what was wrong and which forms are allowed) for a bool,
    an unparseable value, or a duration under ``minimum`` seconds (1 by default; 0 allows none) or over
    ``maximum`` (3650 days).
    """
    if isinstance(value, bool):
        raise _error(value, f"a bool is not a {name}", name, minimum, maximum)
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, int | float):
        try:
            seconds = float(value)
        except OverflowError:
            seconds = math.inf
    elif isinstance(value, str):
        storable(value, name)
        seconds = _text_seconds(value, name, minimum, maximum)
    else:
        raise _error(value, f"a {type(value).__name__} is not a {name}", name, minimum, maximum)
    if not math.isfinite(seconds):
        raise _error(value, "it is not a finite number", name, minimum, maximum)
    if seconds < minimum:
        if seconds < 0:
            problem = f"it is negative, it must be at least {_bound(minimum)}"
        elif seconds == 0:
            problem = f"it is zero, it must be at least {_bound(minimum)}"
        else:
            problem = f"{seconds:g}s is under the minimum of {_bound(minimum)}"
        raise _error(value, problem, name, minimum, maximum)
    if seconds > maximum:
        raise _error(value, f"{seconds:g} seconds is over the maximum of {_bound(maximum)}", name, minimum, maximum)
    return seconds


def as_timedelta(value: int | float | timedelta | str, name: str = "duration", *, minimum: float = MIN_SECONDS,
                 maximum: float = MAX_SECONDS) -> timedelta:
    """``parse_duration`` as a ``timedelta``: a window ('15m', '1h', '7d'), a lifetime, a delay."""
    return timedelta(seconds=parse_duration(value, name, minimum=minimum, maximum=maximum))


def format_duration(seconds: float) -> str:
    """Compact text for seconds, the inverse of ``parse_duration``: 90 -> ``"1m30s"``, 5400 -> ``"1h30m"``."""
    total_us = round(seconds * 1_000_000)
    if total_us < 0:
        return "-" + format_duration(-seconds)
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


# Units of a rounded duration, largest first: (seconds, short name, long name).
_ROUNDED = ((604800, "w", "week"), (86400, "d", "day"), (3600, "h", "hour"), (60, "m", "minute"), (1, "s", "second"))


def approximate(seconds: float, *, short: bool = False) -> str:
    """A duration rounded down to its largest unit and, above minutes, the next one: "3 minutes",
    "2 hours 5 minutes", "2 weeks 1 day" (``short``: "3m", "2h5m", "2w1d"), for people rather than parsers."""
    seconds = abs(seconds)

    def part(count: int, unit: tuple[int, str, str]) -> str:
        if short:
            return f"{count}{unit[1]}"
        return f"{count} {unit[2]}" if count == 1 else f"{count} {unit[2]}s"

    for i, unit in enumerate(_ROUNDED):
        size = unit[0]
        if seconds >= size or size == 1:
            whole, rest = divmod(int(seconds), size)
            parts = [part(whole, unit)]
            if size > 60:
                smaller = _ROUNDED[i + 1]
                if rest // smaller[0]:
                    parts.append(part(rest // smaller[0], smaller))
            return ("" if short else " ").join(parts)
    raise AssertionError("unreachable")
