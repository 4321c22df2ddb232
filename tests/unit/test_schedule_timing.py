"""When schedules fire: interval parsing, cron/zone validation, DST behaviour, catch-up without storms."""

from __future__ import annotations

import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from types import FrameType
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from croniter import CroniterError, croniter  # type: ignore[import-untyped,unused-ignore]

from sgen_ops.core.schedule_timing import Timing, validate_cron, validate_timezone
from sgen_ops.errors import ValidationError

PARIS = ZoneInfo("Europe/Paris")
NEW_YORK = ZoneInfo("America/New_York")


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


# --------------------------------------------------------------------------- validate_cron / validate_timezone


@pytest.mark.parametrize(
    ("expr", "normalised"),
    [
        ("0 9 * * *", "0 9 * * *"),
        ("  0   9 * *  * ", "0 9 * * *"),
        ("*/15 * * * MON-FRI", "*/15 * * * MON-FRI"),
        ("0 0 29 2 *", "0 0 29 2 *"),
        ("@daily", "@daily"),
        ("@HOURLY", "@hourly"),
        ("@weekly", "@weekly"),
    ],
)
def test_validate_cron_accepts_and_normalises(expr: str, normalised: str) -> None:
    assert validate_cron(expr) == normalised


def _croniter_reason(expr: str) -> str:
    try:
        croniter(expr, utc(2000, 1, 1)).get_next(datetime)
    except CroniterError as exc:
        return str(exc)
    raise AssertionError(f"croniter accepted {expr!r}")


@pytest.mark.parametrize("expr", ["61 * * * *", "0 25 * * *", "*/0 * * * *", "a b c d e", "0 0 30 2 *"])
def test_validate_cron_quotes_croniters_reason(expr: str) -> None:
    with pytest.raises(ValidationError) as info:
        validate_cron(expr)
    message = str(info.value)
    assert f"invalid cron expression {expr!r}" in message
    assert _croniter_reason(expr) in message
    assert "expected 5 fields: minute hour day-of-month month day-of-week" in message


@pytest.mark.parametrize(
    ("expr", "fragment"),
    [
        ("* * *", "it has 3 fields"),
        ("0 0 * * * *", "it has 6 fields"),
        ("", "empty"),
        ("@reboot", "unknown alias '@reboot'"),
    ],
)
def test_validate_cron_rejects_wrong_shape(expr: str, fragment: str) -> None:
    with pytest.raises(ValidationError) as info:
        validate_cron(expr)
    assert fragment in str(info.value)
    assert "expected 5 fields" in str(info.value)


def test_validate_timezone() -> None:
    assert validate_timezone(None) == "UTC"
    assert validate_timezone("UTC") == "UTC"
    assert validate_timezone(" Europe/Paris ") == "Europe/Paris"
    with pytest.raises(ValidationError) as info:
        validate_timezone("Mars/Olympus_Mons")
    assert "'Mars/Olympus_Mons'" in str(info.value)
    assert "'Europe/Paris'" in str(info.value)
    with pytest.raises(ValidationError, match=r"did you mean 'Europe/Paris'"):
        validate_timezone("europe/paris")
    for bad in ("", "Europe", "../etc/passwd", "/etc/localtime"):
        with pytest.raises(ValidationError, match="unknown time zone"):
            validate_timezone(bad)


# --------------------------------------------------------------------------- Timing.build


@pytest.mark.parametrize(("cron", "every"), [("0 9 * * *", "15m"), (None, None)])
def test_build_needs_exactly_one_of_cron_and_every(cron: str | None, every: str | None) -> None:
    with pytest.raises(ValidationError, match=r"give exactly one of cron= or every="):
        Timing.build(cron=cron, every=every)
    with pytest.raises(ValidationError, match=r"give exactly one of cron= or every="):
        Timing(cron=cron, every=900.0 if every else None)


def test_build_validates_and_normalises() -> None:
    t = Timing.build(cron=" 0  9 * * * ", timezone="Europe/Paris")
    assert (t.cron, t.every, t.timezone, t.anchor) == ("0 9 * * *", None, "Europe/Paris", None)
    i = Timing.build(every="15m", anchor=datetime(2026, 1, 1, 12, 0))  # naive anchor is UTC
    assert (i.cron, i.every, i.timezone, i.anchor) == (None, 900.0, "UTC", utc(2026, 1, 1, 12))
    assert i.anchor is not None and i.anchor.tzinfo is UTC
    with pytest.raises(ValidationError, match="invalid cron expression '61 \\* \\* \\* \\*'"):
        Timing.build(cron="61 * * * *")
    with pytest.raises(ValidationError, match="invalid interval"):
        Timing.build(every="soon")
    with pytest.raises(ValidationError, match="unknown time zone 'Mars/Olympus_Mons'"):
        Timing.build(cron="0 9 * * *", timezone="Mars/Olympus_Mons")


def test_interval_ignores_timezone_but_it_must_be_valid() -> None:
    with pytest.raises(ValidationError, match="unknown time zone 'Nowhere/Land'"):
        Timing.build(every=60, timezone="Nowhere/Land")
    tokyo = Timing.build(every=3600, timezone="Asia/Tokyo")
    plain = Timing.build(every=3600)
    after = utc(2026, 5, 5, 10, 20)
    assert tokyo.next_after(after) == plain.next_after(after) == utc(2026, 5, 5, 11)
    assert tokyo.describe() == "every 1h"


# --------------------------------------------------------------------------- cron next_after


def test_cron_next_after_in_utc_is_strictly_after() -> None:
    t = Timing.build(cron="0 9 * * *")
    assert t.next_after(utc(2026, 3, 15, 8, 59, 59)) == utc(2026, 3, 15, 9)
    assert t.next_after(utc(2026, 3, 15, 9)) == utc(2026, 3, 16, 9)
    assert t.next_after(utc(2026, 3, 15, 9, 0, 0) + timedelta(microseconds=1)) == utc(2026, 3, 16, 9)
    result = t.next_after(datetime(2026, 3, 15, 7))  # naive input is UTC
    assert result == utc(2026, 3, 15, 9)
    assert result.tzinfo is UTC
    # aware input in another zone is converted: 09:30 Paris (CET) is 08:30 UTC
    assert t.next_after(datetime(2026, 3, 15, 9, 30, tzinfo=PARIS)) == utc(2026, 3, 15, 9)


def test_daily_paris_0900_across_both_2026_dst_changes() -> None:
    t = Timing.build(cron="0 9 * * *", timezone="Europe/Paris")
    # Clocks go forward on Sunday 29 March 2026: 09:00 CET = 08:00 UTC, 09:00 CEST = 07:00 UTC.
    assert t.fire_times(utc(2026, 3, 27), 4) == [
        utc(2026, 3, 27, 8),
        utc(2026, 3, 28, 8),
        utc(2026, 3, 29, 7),
        utc(2026, 3, 30, 7),
    ]
    # Clocks go back on Sunday 25 October 2026.
    assert t.fire_times(utc(2026, 10, 23, 12), 4) == [
        utc(2026, 10, 24, 7),
        utc(2026, 10, 25, 8),
        utc(2026, 10, 26, 8),
        utc(2026, 10, 27, 8),
    ]
    for fire in t.fire_times(utc(2026, 3, 20), 240):
        local = fire.astimezone(PARIS)
        assert (local.hour, local.minute) == (9, 0)


def _fires_between(t: Timing, start: datetime, end: datetime) -> list[datetime]:
    out: list[datetime] = []
    x = t.next_after(start)
    while x < end:
        out.append(x)
        x = t.next_after(x)
    return out


def test_spring_forward_gap_fires_once_at_the_end_of_the_gap() -> None:
    # New York skips 02:00-03:00 on 8 March 2026: 02:30 local does not exist that day.
    t = Timing.build(cron="30 2 * * *", timezone="America/New_York")
    fires = _fires_between(t, utc(2026, 3, 6), utc(2026, 3, 11))
    assert fires == [
        utc(2026, 3, 6, 7, 30),  # 02:30 EST
        utc(2026, 3, 7, 7, 30),  # 02:30 EST
        utc(2026, 3, 8, 7, 0),  # gap: fires once, at 03:00 EDT, the first instant after the gap
        utc(2026, 3, 9, 6, 30),  # 02:30 EDT
        utc(2026, 3, 10, 6, 30),
    ]
    on_the_day = [f for f in fires if f.astimezone(NEW_YORK).date() == datetime(2026, 3, 8).date()]
    assert len(on_the_day) == 1
    assert fires == sorted(set(fires))


def test_hourly_across_autumn_overlap_never_repeats_an_instant() -> None:
    # New York repeats 01:00-02:00 on 1 November 2026.
    t = Timing.build(cron="0 * * * *", timezone="America/New_York")
    fires = t.fire_times(utc(2026, 10, 31, 23, 30), 12)
    assert len(set(fires)) == len(fires)
    assert all(b - a == timedelta(hours=1) for a, b in pairwise(fires))
    assert utc(2026, 11, 1, 5) in fires  # 01:00 EDT
    assert utc(2026, 11, 1, 6) in fires  # 01:00 EST
    # Iterating one step at a time from every instant inside the overlap agrees.
    x = utc(2026, 11, 1, 4, 30)
    for _ in range(6):
        nxt = t.next_after(x)
        assert nxt > x
        x = nxt


def test_autumn_overlap_wall_time_fires_once_per_occurrence() -> None:
    t = Timing.build(cron="30 1 * * *", timezone="America/New_York")
    fires = _fires_between(t, utc(2026, 10, 31), utc(2026, 11, 3))
    assert fires == [
        utc(2026, 10, 31, 5, 30),
        utc(2026, 11, 1, 5, 30),  # 01:30 EDT
        utc(2026, 11, 1, 6, 30),  # 01:30 EST, an hour later
        utc(2026, 11, 2, 6, 30),
    ]


# The two 2026 DST changes of each zone (the day before each, as a UTC midnight).
DST_EVES = {
    "America/New_York": (utc(2026, 3, 7), utc(2026, 10, 31)),
    "Europe/Paris": (utc(2026, 3, 28), utc(2026, 10, 24)),
    "Australia/Lord_Howe": (utc(2026, 4, 4), utc(2026, 10, 3)),
    "America/Santiago": (utc(2026, 4, 4), utc(2026, 9, 5)),
}


def test_dst_eves_are_followed_by_a_dst_change() -> None:
    for zone, eves in DST_EVES.items():
        for eve in eves:
            after = eve + timedelta(days=2)
            assert eve.astimezone(ZoneInfo(zone)).utcoffset() != after.astimezone(ZoneInfo(zone)).utcoffset()


@pytest.mark.parametrize("zone", sorted(DST_EVES))
@pytest.mark.parametrize("expr", ["*/15 * * * *", "30 1 * * *", "30 2 * * *", "0 0 * * *", "15 2,3 * * *"])
def test_next_after_is_path_independent_around_dst(zone: str, expr: str) -> None:
    t = Timing.build(cron=expr, timezone=zone)
    for start in DST_EVES[zone]:
        end = start + timedelta(days=2)
        fires = _fires_between(t, start, end)
        assert fires == sorted(set(fires))
        # next_after from any instant, not only from fire times, lands on the same sequence
        probe = start
        while probe < fires[-1]:
            expected = next(f for f in fires if f > probe)
            assert t.next_after(probe) == expected
            probe += timedelta(minutes=7, seconds=30)


# --------------------------------------------------------------------------- intervals


def test_interval_next_after_uses_the_anchor() -> None:
    anchor = utc(2026, 1, 1, 0, 0, 7)
    t = Timing.build(every="15m", anchor=anchor)
    assert t.next_after(anchor) == utc(2026, 1, 1, 0, 15, 7)
    assert t.next_after(utc(2026, 1, 1, 0, 15, 7)) == utc(2026, 1, 1, 0, 30, 7)
    assert t.next_after(utc(2026, 1, 1, 0, 20)) == utc(2026, 1, 1, 0, 30, 7)
    assert t.next_after(utc(2025, 12, 31)) == utc(2026, 1, 1, 0, 15, 7)  # first fire is anchor + every
    assert t.next_after(utc(2026, 6, 1, 12, 1)) == utc(2026, 6, 1, 12, 15, 7)


def test_interval_without_anchor_counts_from_the_epoch() -> None:
    t = Timing.build(every="1h")
    assert t.next_after(utc(2026, 5, 5, 10, 20)) == utc(2026, 5, 5, 11)
    assert t.next_after(utc(2026, 5, 5, 11)) == utc(2026, 5, 5, 12)
    assert t.next_after(datetime(2026, 5, 5, 10, 20)) == utc(2026, 5, 5, 11)
    assert Timing.build(every=7).next_after(utc(1970, 1, 1)) == utc(1970, 1, 1, 0, 0, 7)


def test_fractional_interval_has_no_float_drift() -> None:
    anchor = utc(2026, 1, 1)
    t = Timing.build(every=1.5, anchor=anchor)
    far = anchor + timedelta(days=3650)
    assert t.next_after(far) == far + timedelta(seconds=1.5)
    assert t.next_after(anchor + timedelta(seconds=1.4)) == anchor + timedelta(seconds=1.5)


@pytest.mark.parametrize(
    "timing",
    [
        Timing.build(every="90s", anchor=utc(2026, 1, 1)),
        Timing.build(cron="*/10 * * * *", timezone="Europe/Paris"),
        Timing.build(cron="@daily", timezone="America/New_York"),
    ],
    ids=["interval", "cron", "alias"],
)
def test_fire_times_count_and_strictly_increasing(timing: Timing) -> None:
    after = utc(2026, 3, 28, 23, 55)
    times = timing.fire_times(after)
    assert len(times) == 5
    assert times[0] == timing.next_after(after)
    assert all(a < b for a, b in zip([after, *times], times, strict=False))
    assert all(x.tzinfo is UTC for x in times)
    assert len(timing.fire_times(after, 12)) == 12
    assert timing.fire_times(after, 0) == []


# --------------------------------------------------------------------------- latest_due


def test_latest_due_interval_none_one_many() -> None:
    anchor = utc(2026, 1, 1)
    t = Timing.build(every=60, anchor=anchor)
    minute = timedelta(minutes=1)
    assert t.latest_due(None, anchor + timedelta(seconds=59)) is None  # nothing has come due yet
    assert t.latest_due(anchor + minute, anchor + timedelta(seconds=90)) is None  # already fired
    assert t.latest_due(anchor + minute, anchor + 2 * minute) == anchor + 2 * minute  # due exactly now
    assert t.latest_due(anchor + minute, anchor + 1000 * minute + timedelta(seconds=5)) == anchor + 1000 * minute
    assert t.latest_due(None, anchor + timedelta(seconds=150)) == anchor + 2 * minute
    assert t.latest_due(anchor + 5 * minute, anchor + 3 * minute) is None  # last fire in the future: nothing


def lines_run(call: Callable[[], Any]) -> tuple[Any, int]:
    """``call()``'s result and the number of Python lines it ran, its own and croniter's: the work it did,
    counted rather than timed."""
    ran = 0

    def trace(frame: FrameType, event: str, arg: Any) -> Any:
        nonlocal ran
        if event == "line":
            ran += 1
        return trace

    before = sys.gettrace()
    sys.settrace(trace)
    try:
        result = call()
    finally:
        sys.settrace(before)
    return result, ran


def test_latest_due_one_second_interval_over_ten_years_is_one_tick_and_constant_work() -> None:
    anchor = utc(2016, 1, 1)
    t = Timing.build(every=1, anchor=anchor)
    now = utc(2026, 3, 15, 12, 0, 0) + timedelta(microseconds=500_000)
    due, work = lines_run(lambda: t.latest_due(anchor + timedelta(seconds=1), now))
    assert due == utc(2026, 3, 15, 12)
    # Ten years of missed ticks (315 million) cost what one minute of them costs: no walk over the ticks.
    in_a_minute, work_in_a_minute = lines_run(lambda: t.latest_due(now - timedelta(minutes=1), now))
    assert in_a_minute == due
    assert work == work_in_a_minute
    assert t.latest_due(due, now) is None  # after emitting it, nothing more is due


def test_latest_due_cron_catch_up() -> None:
    t = Timing.build(cron="0 9 * * *")
    assert t.latest_due(utc(2026, 3, 14, 9), utc(2026, 3, 14, 12)) is None
    assert t.latest_due(utc(2026, 3, 14, 9), utc(2026, 3, 15, 8, 59)) is None
    assert t.latest_due(utc(2026, 3, 14, 9), utc(2026, 3, 15, 9)) == utc(2026, 3, 15, 9)  # inclusive of now
    assert t.latest_due(utc(2026, 3, 1, 9), utc(2026, 3, 15, 12)) == utc(2026, 3, 15, 9)  # many missed: latest only
    # Ten years of missed fires cost what one missed fire costs: croniter steps back from now, never
    # forward from the last fire (3,700 daily or 5 million minutely fires).
    now = utc(2026, 3, 15, 12)
    t.latest_due(utc(2026, 3, 14, 9), now)  # whatever croniter keeps after a first call, kept for both
    due, work = lines_run(lambda: t.latest_due(utc(2016, 1, 1, 9), now))
    assert due == utc(2026, 3, 15, 9)
    assert lines_run(lambda: t.latest_due(utc(2026, 3, 14, 9), now)) == (due, work)
    minutely = Timing.build(cron="* * * * *")
    now = utc(2026, 3, 15, 12, 0, 30)
    minutely.latest_due(utc(2026, 3, 15, 11, 59), now)
    due, work = lines_run(lambda: minutely.latest_due(utc(2016, 1, 1), now))
    assert due == utc(2026, 3, 15, 12)
    assert lines_run(lambda: minutely.latest_due(utc(2026, 3, 15, 11, 59), now)) == (due, work)


def test_latest_due_cron_without_last_fire_uses_the_anchor() -> None:
    now = utc(2026, 3, 15, 12)
    assert Timing.build(cron="0 9 * * *").latest_due(None, now) is None  # no anchor: no catch-up
    assert Timing.build(cron="0 9 * * *", anchor=utc(2026, 3, 15, 8)).latest_due(None, now) == utc(2026, 3, 15, 9)
    assert Timing.build(cron="0 9 * * *", anchor=utc(2026, 3, 15, 9)).latest_due(None, now) == utc(2026, 3, 15, 9)
    assert Timing.build(cron="0 9 * * *", anchor=utc(2026, 3, 15, 9, 30)).latest_due(None, now) is None


def test_latest_due_cron_in_a_zone_across_dst() -> None:
    t = Timing.build(cron="0 9 * * *", timezone="Europe/Paris")
    assert t.latest_due(utc(2026, 3, 28, 8), utc(2026, 3, 29, 6, 59)) is None
    assert t.latest_due(utc(2026, 3, 28, 8), utc(2026, 3, 29, 7, 30)) == utc(2026, 3, 29, 7)
    assert t.latest_due(utc(2026, 10, 24, 7), utc(2026, 10, 25, 7, 30)) is None
    assert t.latest_due(utc(2026, 10, 24, 7), utc(2026, 10, 25, 8)) == utc(2026, 10, 25, 8)


@pytest.mark.parametrize("zone", sorted(DST_EVES))
@pytest.mark.parametrize("expr", ["0 * * * *", "30 1 * * *", "30 2 * * *", "*/20 * * * *"])
def test_latest_due_agrees_with_next_after_around_dst(zone: str, expr: str) -> None:
    t = Timing.build(cron=expr, timezone=zone)
    for start in DST_EVES[zone]:
        fires = _fires_between(t, start, start + timedelta(days=2))
        probes = [*fires, *(f + timedelta(minutes=1) for f in fires), *(f - timedelta(seconds=1) for f in fires)]
        for now in probes:
            expected = max((f for f in fires if f <= now), default=None)
            assert t.latest_due(start, now) == expected


# --------------------------------------------------------------------------- describe


def test_describe() -> None:
    assert Timing.build(cron="0 9 * * *", timezone="Europe/Paris").describe() == "cron '0 9 * * *' (Europe/Paris)"
    assert Timing.build(cron="@daily").describe() == "cron '@daily' (UTC)"
    assert Timing.build(every="15m").describe() == "every 15m"
    assert Timing.build(every=5400).describe() == "every 1h30m"


