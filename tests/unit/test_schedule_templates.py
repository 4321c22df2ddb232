"""Payload templates, retention and fire-time previews: the pure parts of the schedule service."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from sgen_ops.errors import ValidationError
from sgen_ops.ledger.schedules import check_template, parse_retention, preview, render_payload

LIMIT = 1024 * 1024


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def render(template: Any, tick_at: datetime, timezone: str = "UTC", schedule_id: int = 7) -> Any:
    return render_payload(template, tick_at=tick_at, timezone=timezone, schedule_id=schedule_id)


# --------------------------------------------------------------------------- rendering


def test_tick_is_the_iso_time_in_the_schedules_zone() -> None:
    assert render("{tick}", utc(2026, 3, 29, 7)) == "2026-03-29T07:00:00+00:00"
    assert render("{tick}", utc(2026, 3, 29, 7), "Europe/Paris") == "2026-03-29T09:00:00+02:00"
    assert render("{tick}", utc(2026, 3, 28, 8), "Europe/Paris") == "2026-03-28T09:00:00+01:00"


@pytest.mark.parametrize(
    ("fmt", "tick_at", "expected"),
    [
        ("%G-W%V", utc(2026, 11, 23, 6), "2026-W48"),
        # ISO week years differ from calendar years around New Year.
        ("%G-W%V", utc(2027, 1, 1, 6), "2026-W53"),
        ("%G-W%V", utc(2025, 12, 29, 6), "2026-W01"),
        ("%Y-%m-%d", utc(2026, 3, 29, 7), "2026-03-29"),
        ("%H:%M %Z", utc(2026, 7, 1, 7), "07:00 UTC"),
        ("100%% on %d", utc(2026, 7, 1), "100% on 01"),
    ],
)
def test_tick_with_a_strftime_format(fmt: str, tick_at: datetime, expected: str) -> None:
    assert render(f"{{tick:{fmt}}}", tick_at) == expected


def test_formats_use_the_schedules_zone() -> None:
    # 23:30 UTC on 31 December is already New Year's Day in Tokyo.
    assert render("{tick:%Y-%m-%d}", utc(2026, 12, 31, 23, 30), "Asia/Tokyo") == "2027-01-01"
    assert render("{tick:%Y-%m-%d}", utc(2026, 12, 31, 23, 30)) == "2026-12-31"


def test_every_string_value_is_rendered_recursively_and_the_rest_is_left_alone() -> None:
    template = {
        "report": "sales",
        "period": "{tick:%G-W%V}",
        "label": "week {tick:%V} of schedule {schedule_id}",
        "nested": {"days": ["{tick:%Y-%m-%d}", "static"], "deeper": [{"at": "{tick}"}]},
        "untouched": "{other} {tick:%Y {schedule_id:x} {} {{x}}",
        "{tick:%Y}": "keys are structure, not data",
        "n": 3,
        "flag": True,
        "none": None,
    }
    out = render(template, utc(2026, 3, 29, 7), "Europe/Paris", schedule_id=42)
    assert out == {
        "report": "sales",
        "period": "2026-W13",
        "label": "week 13 of schedule 42",
        "nested": {"days": ["2026-03-29", "static"], "deeper": [{"at": "2026-03-29T09:00:00+02:00"}]},
        "untouched": "{other} {tick:%Y {schedule_id:x} {} {{x}}",
        "{tick:%Y}": "keys are structure, not data",
        "n": 3,
        "flag": True,
        "none": None,
    }
    # The template itself is not changed.
    assert template["period"] == "{tick:%G-W%V}"


def test_a_template_without_placeholders_renders_to_itself() -> None:
    assert render(None, utc(2026, 1, 1)) is None
    assert render({"keys": ["home", "catalog"]}, utc(2026, 1, 1)) == {"keys": ["home", "catalog"]}


# --------------------------------------------------------------------------- validation


def check(template: Any, timezone: str = "UTC") -> None:
    check_template(template, timezone=timezone, payload_max_bytes=LIMIT, sample_tick=utc(2026, 1, 1))


@pytest.mark.parametrize(
    "template",
    [None, {}, {"period": "{tick:%G-W%V}", "at": "{tick}", "id": "{schedule_id}"}, ["{tick:%a %A %j %U %W %f %z}"]],
)
def test_valid_templates_pass(template: Any) -> None:
    check(template)


@pytest.mark.parametrize(
    ("template", "reason"),
    [
        ({"d": "{tick:%Q}"}, "unknown directive '%Q'"),
        ({"d": "{tick:%Y-%}"}, "lone '%'"),
        ({"d": "{tick:}"}, "empty format"),
        ({"d": "{tick:%-d}"}, "unknown directive '%-'"),
        ({"deep": [{"d": "ok {tick:%k}"}]}, "at payload.deep[0].d"),
        ({"s": {1, 2}}, "not JSON-serialisable"),
        ({"x": float("nan")}, "not JSON-serialisable"),
        ({"x": object()}, "not JSON-serialisable"),
    ],
)
def test_invalid_templates_say_why(template: Any, reason: str) -> None:
    with pytest.raises(ValidationError, match=reason.replace("[", r"\[").replace("]", r"\]")):
        check(template)


def test_the_rendered_payload_must_fit_the_size_limit() -> None:
    template = {"many": ["{tick}"] * 40}  # about 420 bytes, rendered about 1200
    check_template(template, timezone="UTC", payload_max_bytes=2000, sample_tick=utc(2026, 1, 1))
    with pytest.raises(ValidationError, match="limit is 600 bytes"):
        check_template(template, timezone="UTC", payload_max_bytes=600, sample_tick=utc(2026, 1, 1))


# --------------------------------------------------------------------------- retention


@pytest.mark.parametrize(
    ("value", "days"),
    [(None, None), (30, 30.0), (0.5, 0.5), ("30", 30.0), ("30d", 30.0), ("12h", 0.5), ("2w", 14.0),
     (timedelta(days=3), 3.0)],
)
def test_retention_forms(value: Any, days: float | None) -> None:
    assert parse_retention(value) == days


@pytest.mark.parametrize("value", [0, -1, "0d", "forever", True, float("inf"), 4000, [30]])
def test_bad_retention_says_what_is_allowed(value: Any) -> None:
    with pytest.raises(ValidationError, match=r"retention .* is not valid.*number of days"):
        parse_retention(value)


# --------------------------------------------------------------------------- preview


def test_preview_of_a_cron_in_a_zone_crosses_daylight_saving() -> None:
    fires = preview(cron="0 9 * * *", timezone="Europe/Paris", count=3, now=utc(2026, 3, 27, 12))
    assert fires == [utc(2026, 3, 28, 8), utc(2026, 3, 29, 7), utc(2026, 3, 30, 7)]


def test_preview_of_an_interval_counts_from_now() -> None:
    now = utc(2026, 5, 1, 10, 7)
    assert preview(every="15m", now=now) == [now + timedelta(minutes=15 * k) for k in range(1, 6)]
    assert preview(every=timedelta(hours=1), count=1, now=now) == [now + timedelta(hours=1)]
    assert preview(every=90, count=0, now=now) == []


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"cron": "61 * * * *"}, "invalid cron expression"),
        ({"cron": "0 9 * *"}, "it has 4 fields"),
        ({"cron": "0 9 * * *", "every": "5m"}, "exactly one of cron= or every="),
        ({}, "exactly one of cron= or every="),
        ({"every": 0.5}, "under the minimum of 1 second"),
        ({"every": "soon"}, "invalid interval"),
        ({"cron": "@daily", "timezone": "Mars/Olympus"}, "unknown time zone"),
        ({"every": "5m", "count": -1}, "count -1 is not valid"),
    ],
)
def test_preview_rejects_what_create_would(kwargs: dict[str, Any], reason: str) -> None:
    with pytest.raises(ValidationError, match=reason):
        preview(**kwargs)
