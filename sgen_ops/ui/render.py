"""HTML for the views: state badges, human relative times, tables, pretty JSON, status messages.

Every colour and every piece of markup the views show comes from here, so the screens look alike.
Styles are inline: they work in JupyterLab, classic Notebook and Voilà without a stylesheet.
"""

from __future__ import annotations

import html
import json
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from ..core.durations import approximate
from ..core.times import as_utc
from ..core.times import relative as relative_time

# State -> (text colour, background). Succeeded green, failures red, retrying amber.
STATE_COLOURS: dict[str, tuple[str, str]] = {
    "queued": ("#344054", "#f2f4f7"),
    "running": ("#175cd3", "#eff8ff"),
    "retrying": ("#b54708", "#fffaeb"),
    "succeeded": ("#067647", "#ecfdf3"),
    "failed": ("#b42318", "#fef3f2"),
    "dead-letter": ("#b42318", "#fef3f2"),
    "cancelled": ("#667085", "#f9fafb"),
    "resolved": ("#5925dc", "#f4f3ff"),
    "enabled": ("#067647", "#ecfdf3"),
    "paused": ("#b54708", "#fffaeb"),
}
MESSAGE_STYLES: dict[str, tuple[str, str, str, str]] = {
    # kind -> (icon, text colour, background, border)
    "error": ("✖", "#b42318", "#fef3f2", "#fecdca"),
    "ok": ("✔", "#067647", "#ecfdf3", "#abefc6"),
    "info": ("ℹ", "#175cd3", "#eff8ff", "#b2ddff"),
}
DASH = "—"
FONT = "font-family: var(--jp-ui-font-family, system-ui, sans-serif); font-size: 13px"
MONO = "font-family: var(--jp-code-font-family, ui-monospace, SFMono-Regular, Menlo, monospace); font-size: 12px"


def esc(value: Any) -> str:
    """``value`` as HTML-escaped text; None as a dash."""
    return DASH if value is None or value == "" else html.escape(str(value))


def duration(seconds: float) -> str:
    """'2 minutes', '3 hours 5 minutes', '45 seconds' (``core.durations.approximate``)."""
    return approximate(seconds)


def relative(moment: datetime | None, now: datetime | None = None) -> str:
    """'in 2 minutes', '5 hours ago', 'just now' (``core.times.relative``) -- or a dash for no time."""
    if moment is None:
        return DASH
    return relative_time(moment, now)


def timestamp(moment: datetime | None) -> str:
    """'2026-01-31 12:00:05 UTC' -- exact time, for tooltips and detail tables."""
    if moment is None:
        return DASH
    return as_utc(moment).strftime("%Y-%m-%d %H:%M:%S UTC")


def when(moment: datetime | None, now: datetime | None = None) -> str:
    """Relative time with the exact time as a tooltip."""
    if moment is None:
        return DASH
    return f'<span title="{timestamp(moment)}">{relative(moment, now)}</span>'


def seconds(value: float | None) -> str:
    """A run time such as '0.42 s', '3.1 s', '2 minutes'."""
    if value is None:
        return DASH
    if value < 10:
        return f"{value:.2f} s"
    if value < 120:
        return f"{value:.1f} s"
    return duration(value)


def count(n: int) -> str:
    """1234 -> '1,234'."""
    return f"{n:,}"


def badge(state: str) -> str:
    """The state as a coloured pill."""
    fg, bg = STATE_COLOURS.get(state, ("#344054", "#f2f4f7"))
    return (
        f'<span class="sgen-badge sgen-badge-{esc(state)}" style="color:{fg};background:{bg};'
        f'border:1px solid {fg}33;border-radius:10px;padding:0 8px;white-space:nowrap;{FONT}">{esc(state)}</span>'
    )


def paused_badge(title: str) -> str:
    """The mark of a paused task or priority queue (``title``: what the pause holds back)."""
    return (f'<span class="sgen-paused-badge" title="{esc(title)}" style="color:#b54708;background:#fffaeb;'
            f'border:1px solid #fedf89;border-radius:10px;padding:0 8px;margin-left:6px;white-space:nowrap;'
            f'{FONT}">paused</span>')


def paused_line(frame: Any) -> str:
    """'Paused: task import.products · queue high' from ``ops.paused()`` ('' when nothing is paused)."""
    if frame is None or not len(frame):
        return ""
    names = [f"{esc(kind)} <b>{esc(name)}</b>" for kind, name in zip(frame["kind"], frame["name"], strict=True)]
    return (f'<div class="sgen-paused-names" style="color:#b54708;{FONT}">Paused: {" · ".join(names)} '
            f"{muted('(their waiting jobs are not delivered until resumed)')}</div>")


def message(kind: str, text: str) -> str:
    """A status message box: ``kind`` is error, ok or info."""
    icon, fg, bg, border = MESSAGE_STYLES[kind]
    body = html.escape(text).replace("\n", "<br>")
    return (
        f'<div class="sgen-message sgen-message-{kind}" role="{"alert" if kind == "error" else "status"}" '
        f'style="color:{fg};background:{bg};border:1px solid {border};border-radius:6px;padding:6px 10px;'
        f'line-height:1.45;{FONT}">'
        f"<b>{icon}</b> {body}</div>"
    )


def pretty_json(value: Any) -> str:
    """JSON with two-space indentation; dates and other non-JSON values as text."""
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


def pre(text: str | None, *, max_height: str = "320px") -> str:
    """Preformatted, scrollable text."""
    return (
        f'<pre style="{MONO};background:#f9fafb;border:1px solid #eaecf0;border-radius:6px;padding:8px;'
        f'margin:0;max-height:{max_height};overflow:auto;white-space:pre-wrap;word-break:break-word;line-height:1.4">'
        f"{html.escape(text) if text else DASH}</pre>"
    )


def table(headers: Sequence[str], rows: Iterable[Sequence[str]], *, css_class: str = "", empty: str = "") -> str:
    """An HTML table; cells are HTML already (escape text with ``esc``)."""
    th = "".join(
        f'<th style="text-align:left;padding:4px 10px;border-bottom:2px solid #eaecf0;color:#475467">{h}</th>'
        for h in headers
    )
    body = []
    for i, row in enumerate(rows):
        shade = "background:#fcfcfd;" if i % 2 else ""
        cells = "".join(f'<td style="padding:4px 10px;vertical-align:top">{cell}</td>' for cell in row)
        body.append(f'<tr style="{shade}border-bottom:1px solid #f2f4f7">{cells}</tr>')
    if not body and empty:
        body.append(f'<tr><td colspan="{len(headers)}" style="padding:8px 10px;color:#667085">{esc(empty)}</td></tr>')
    return (
        f'<table class="{css_class}" style="border-collapse:collapse;{FONT}"><thead><tr>{th}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table>"
    )


def heading(text: str, level: int = 3) -> str:
    size = {2: "18px", 3: "15px", 4: "13px"}.get(level, "13px")
    return f'<div style="{FONT};font-size:{size};font-weight:600;margin:6px 0 2px">{text}</div>'


def muted(text: str) -> str:
    return f'<span style="color:#667085;{FONT}">{text}</span>'

