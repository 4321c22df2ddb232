"""Tables for the terminal: aligned columns, relative times (``core.times.relative`` in its short form: "3m ago"
where the views say "3 minutes ago"), blanks for missing values, and the widest text columns cut (with "…") so
that a row fits the terminal."""

from __future__ import annotations

import math
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ..core.times import as_utc
from ..core.times import relative as relative_time

ELLIPSIS = "…"
GAP = "  "
# A column that is cut to fit keeps at least this many characters (or its title's width).
MIN_CUT = 12


def missing(value: Any) -> bool:
    """None, NaN and NaT: what a table shows as a blank."""
    if value is None:
        return True
    if isinstance(value, float):
        return math.isnan(value)
    return type(value).__name__ in ("NaTType", "NAType")


def relative(moment: datetime | None, now: datetime | None = None) -> str:
    """``moment`` against ``now``: "3m ago", "in 2h", "just now"; a blank for none."""
    if missing(moment):
        return ""
    assert moment is not None
    return relative_time(moment, now, short=True)


def text(value: Any) -> str:
    """A value as one line of a cell: blanks for missing, ISO times, yes/no."""
    if missing(value):
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, datetime):
        return as_utc(value).strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return " ".join(str(value).split())


def joined(*keys: str, sep: str = ": ") -> Callable[[Mapping[str, Any]], str]:
    """A cell of several fields of a row, the blank ones left out: "timeout: POST https://..."."""
    return lambda row: sep.join(text(row.get(k)) for k in keys if not missing(row.get(k)) and row.get(k) != "")


def cut(value: str, width: int) -> str:
    return value if len(value) <= width else value[: max(0, width - 1)] + ELLIPSIS


@dataclass(frozen=True)
class Column:
    """One column: its title, how a row gives its cell, whether it is a time shown relatively, whether it
    is right-aligned (numbers), and whether it may be cut to fit the terminal."""

    title: str
    value: str | Callable[[Mapping[str, Any]], Any]
    when: bool = False
    right: bool = False
    cut: bool = False

    def cell(self, row: Mapping[str, Any], now: datetime) -> str:
        raw = self.value(row) if callable(self.value) else row.get(self.value)
        return relative(raw, now) if self.when else text(raw)


def width() -> int:
    """The terminal's width (COLUMNS if set; 120 when the output is not a terminal)."""
    return shutil.get_terminal_size((120, 24)).columns


def render(
    rows: Sequence[Mapping[str, Any]],
    columns: Sequence[Column],
    *,
    max_width: int | None = None,
    now: datetime | None = None,
) -> str:
    """``rows`` as an aligned table with a header line, no wider than ``max_width`` (default: the terminal)
    as long as cutting the columns marked ``cut`` can get it there."""
    now = now or datetime.now(UTC)
    limit = max_width or width()
    cells = [[c.cell(row, now) for c in columns] for row in rows]
    widths = [max([len(c.title), *(len(line[i]) for line in cells)]) for i, c in enumerate(columns)]
    excess = sum(widths) + len(GAP) * (len(columns) - 1) - limit
    # Cut the widest cuttable column first, one character at a time, down to its floor.
    while excess > 0:
        cuttable = [i for i, c in enumerate(columns) if c.cut and widths[i] > max(MIN_CUT, len(c.title))]
        if not cuttable:
            break
        widest = max(cuttable, key=lambda i: widths[i])
        floor = max(MIN_CUT, len(columns[widest].title))
        second = max([widths[i] for i in cuttable if i != widest] or [floor])
        step = min(excess, widths[widest] - max(floor, second - 1) or 1)
        widths[widest] -= step
        excess -= step

    def line(values: Sequence[str]) -> str:
        parts = []
        for i, (c, v) in enumerate(zip(columns, values, strict=True)):
            v = cut(v, widths[i])
            parts.append(v.rjust(widths[i]) if c.right else v.ljust(widths[i]))
        return GAP.join(parts).rstrip()

    return "\n".join([line([c.title for c in columns]), *(line(v) for v in cells)])
