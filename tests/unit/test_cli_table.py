"""The CLI's tables: relative times, blanks for missing values, and cutting to the terminal's width."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pandas as pd

from sgen_ops.cli import table

NOW = datetime(2026, 1, 31, 12, 0, tzinfo=UTC)


def test_relative_times() -> None:
    def ago(**delta: float) -> str:
        return table.relative(NOW - timedelta(**delta), NOW)

    assert ago(seconds=0.2) == "just now"
    assert ago(seconds=45) == "45s ago"
    assert ago(minutes=3, seconds=10) == "3m ago"
    assert ago(hours=2, minutes=5) == "2h5m ago"
    assert ago(days=3, hours=4) == "3d4h ago"
    assert ago(days=15) == "2w1d ago"
    assert ago(minutes=-90) == "in 1h30m"
    assert table.relative(NOW.replace(tzinfo=None) - timedelta(minutes=1), NOW) == "1m ago"  # naive is UTC
    assert table.relative(None, NOW) == table.relative(pd.NaT, NOW) == ""


def test_missing_values_are_blank() -> None:
    for value in (None, math.nan, pd.NaT, pd.NA):
        assert table.text(value) == ""
    assert table.text(7.0) == "7" and table.text(True) == "yes" and table.text("a\n  b") == "a b"


def test_render_aligns_and_cuts_only_the_cuttable_columns() -> None:
    columns = (
        table.Column("ID", "id", right=True),
        table.Column("STATE", "state"),
        table.Column("ERROR", "error", cut=True),
        table.Column("WHEN", "at", when=True),
    )
    rows = [
        {"id": 7, "state": "dead-letter", "error": "timeout: " + "very long " * 20, "at": NOW - timedelta(minutes=3)},
        {"id": 12, "state": "queued", "error": None, "at": None},
    ]
    wide = table.render(rows, columns, max_width=500, now=NOW).splitlines()
    assert wide[1].endswith("very long  3m ago") and "…" not in wide[1]
    narrow = table.render(rows, columns, max_width=60, now=NOW).splitlines()
    assert all(len(line) <= 60 for line in narrow)
    assert narrow[0].split() == ["ID", "STATE", "ERROR", "WHEN"]
    assert narrow[1].startswith(" 7  dead-letter  timeout: very") and "…  3m ago" in narrow[1]
    assert narrow[2] == "12  queued"  # blanks, and no trailing spaces
    # Nothing cuttable left: the table keeps its columns whole rather than lose them.
    tight = table.render(rows, columns, max_width=10, now=NOW).splitlines()
    assert tight[1] == " 7  dead-letter  timeout: ve…  3m ago"  # cut to its floor of 12 characters
