"""One relative-time formatter: the terminal's "3m ago" and the views' "3 minutes ago" say the same thing."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from sgen_ops.cli import table
from sgen_ops.core.durations import approximate
from sgen_ops.core.times import relative
from sgen_ops.ui import render

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(("delta", "long", "short"), [
    (timedelta(seconds=0.4), "just now", "just now"),
    (timedelta(seconds=45), "45 seconds ago", "45s ago"),
    (timedelta(minutes=1, seconds=10), "1 minute ago", "1m ago"),
    (timedelta(minutes=3), "3 minutes ago", "3m ago"),
    (timedelta(hours=2, minutes=5), "2 hours 5 minutes ago", "2h5m ago"),
    (timedelta(days=1), "1 day ago", "1d ago"),
    (timedelta(days=15), "2 weeks 1 day ago", "2w1d ago"),
    (-timedelta(minutes=59, seconds=30), "in 59 minutes", "in 59m"),
    (-timedelta(hours=3), "in 3 hours", "in 3h"),
])
def test_relative_times_in_words_and_in_short(delta: timedelta, long: str, short: str) -> None:
    moment = NOW - delta
    assert relative(moment, NOW) == render.relative(moment, NOW) == long
    assert relative(moment, NOW, short=True) == table.relative(moment, NOW) == short
    # The same numbers, whichever the form.
    assert re.findall(r"\d+", long) == re.findall(r"\d+", short)


def test_no_time_is_a_blank_in_a_table_and_a_dash_in_a_view() -> None:
    assert table.relative(None, NOW) == ""
    assert render.relative(None, NOW) == render.DASH


def test_a_naive_time_is_utc() -> None:
    assert relative(NOW.replace(tzinfo=None) - timedelta(minutes=1), NOW) == "1 minute ago"


def test_durations_are_rounded_for_people() -> None:
    assert approximate(3 * 86400 + 4 * 3600 + 59) == "3 days 4 hours"
    assert approximate(3 * 86400 + 4 * 3600 + 59, short=True) == "3d4h"
    assert render.duration(7200) == "2 hours"
