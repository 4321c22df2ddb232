"""Durations: one grammar for intervals, windows, lifetimes, delays and retentions; bounds and refusals."""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any

import pytest

from sgen_ops.core.durations import as_timedelta, format_duration, parse_duration
from sgen_ops.errors import ValidationError


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (90, 90.0),
        (1, 1.0),
        (90.5, 90.5),
        ("90", 90.0),
        ("2.5", 2.5),
        (timedelta(minutes=5), 300.0),
        ("15m", 900.0),
        (" 15M ", 900.0),
        ("90s", 90.0),
        ("1h30m", 5400.0),
        ("1h 30m", 5400.0),
        ("1.5h", 5400.0),
        ("2d", 172800.0),
        ("1w", 604800.0),
        ("45 minutes", 2700.0),
        ("1 hour", 3600.0),
        ("1 hour and 30 minutes", 5400.0),
        ("2 days, 3 hours", 2 * 86400.0 + 3 * 3600.0),
        ("10 secs", 10.0),
    ],
)
def test_parse_duration_accepts(value: int | float | timedelta | str, seconds: float) -> None:
    assert parse_duration(value) == seconds


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        (True, "bool"),
        (False, "bool"),
        (0, "zero"),
        ("0s", "zero"),
        (timedelta(0), "zero"),
        (-5, "negative"),
        ("-5m", "negative"),
        ("-5", "negative"),
        (0.5, "under the minimum of 1 second"),
        ("500ms", "unknown unit 'ms'"),
        ("", "empty"),
        ("   ", "empty"),
        ("abc", "cannot understand 'abc'"),
        ("5 parsecs", "unknown unit 'parsecs'"),
        ("1h30", "cannot understand '30'"),
        ("1h1h", "more than once"),
        (float("nan"), "finite"),
        (float("inf"), "finite"),
        (None, "NoneType"),
        ([60], "list"),
        ("3651d", "maximum of 3650 days"),
    ],
)
def test_parse_duration_rejects_with_reason_and_allowed_forms(value: object, fragment: str) -> None:
    with pytest.raises(ValidationError) as info:
        parse_duration(value)  # type: ignore[arg-type]
    message = str(info.value)
    assert fragment in message
    assert repr(value) in message
    assert "allowed:" in message
    assert "'15m'" in message
    assert "'1h30m'" in message


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (900, "15m"),
        (5400, "1h30m"),
        (172800, "2d"),
        (90, "1m30s"),
        (45, "45s"),
        (3661, "1h1m1s"),
        (86401, "1d1s"),
        (604800, "1w"),
        (694800, "1w1d1h"),
        (1.5, "1.5s"),
        (61.25, "1m1.25s"),
        (0, "0s"),
    ],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text
    if seconds >= 1:
        assert parse_duration(text) == seconds  # round trip


def test_the_name_and_bounds_are_the_callers() -> None:
    assert parse_duration(0, "delay", minimum=0) == 0.0
    assert parse_duration("15m", "delay", minimum=0) == 900.0
    with pytest.raises(ValidationError, match=r"^invalid delay -5: it is negative, it must be at least 0 seconds; "
                                              r"allowed: .*from 0 seconds up to 3650 days$"):
        parse_duration(-5, "delay", minimum=0)
    with pytest.raises(ValidationError, match="invalid window 'soon'"):
        as_timedelta("soon", "window")
    assert as_timedelta("1h30m", "window") == timedelta(hours=1, minutes=30)
    with pytest.raises(ValidationError, match="over the maximum of 2 days"):
        parse_duration("3d", "expires_in", maximum=2 * 86400)


def test_every_duration_argument_reads_the_same_grammar() -> None:
    """A schedule's interval, a throughput window, a token's lifetime, a job's delay and a retention agree."""
    from sgen_ops.core.schedule_timing import Timing
    from sgen_ops.ledger.jobs import parse_delay
    from sgen_ops.ledger.schedules import parse_retention
    from sgen_ops.ledger.tokens import parse_expiry

    assert Timing.build(every="1h30m").every == 5400.0
    assert parse_delay("1h30m") == 5400.0
    assert parse_expiry("1h30m") == timedelta(seconds=5400)
    assert parse_retention("1h30m") == 5400.0 / 86400
    for refuse in (lambda: Timing.build(every="1 fortnight"), lambda: parse_delay("1 fortnight"),
                   lambda: parse_expiry("1 fortnight")):
        with pytest.raises(ValidationError, match="unknown unit 'fortnight'"):
            refuse()


@pytest.mark.parametrize(
    "value", [math.nan, math.inf, -1, 10**400, "soon", timedelta(days=-1), timedelta.max],
    ids=["nan", "inf", "negative", "huge", "text", "negative-timedelta", "max-timedelta"],
)
def test_a_delay_is_finite_and_bounded(value: Any) -> None:
    with pytest.raises(ValidationError, match=r"^invalid delay"):
        parse_duration(value, "delay", minimum=0)
