"""Reading widgets the way an operator sees them."""

from __future__ import annotations

import html
import re
from typing import Any


def text(markup: str) -> str:
    """What a reader sees of an HTML value: tags dropped, entities decoded, whitespace collapsed."""
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", markup))).strip()


def status_of(view: Any) -> tuple[str, str]:
    """(kind, text) of a view's status line; the kind is also a CSS class on the widget."""
    kinds = [c.removeprefix("sgen-status-") for c in view.status._dom_classes if c.startswith("sgen-status-")]
    assert len(kinds) <= 1, kinds
    return (kinds[0] if kinds else ""), text(view.status.value)


def column(view: Any, index: int) -> list[str]:
    """The text of one column (0 = the first after the ID) for every row shown."""
    return [text(row_cells[index].value) for row_cells in (r.cells for r in view.table.shown_rows)]
