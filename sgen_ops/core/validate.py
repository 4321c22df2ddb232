"""Checks at the public boundary, one definition each.

Every argument a caller hands to the surface, the hub or a schedule is checked here before anything is
read or written: its type, that a backend can store it (no NUL, no lone surrogate, the same on SQLite as
on PostgreSQL), that it fits its column, that numbers and times are finite and in range. A refusal is a
``ValidationError`` naming the argument, what was wrong and what is allowed (``NotFound`` for an id that
cannot exist), and its message quotes the value through ``describe``, which never fails and never runs
long, whatever the value.
"""

from __future__ import annotations

import json
import math
import operator
import re
import reprlib
from datetime import UTC, datetime, timedelta
from typing import Any

from ..errors import NotFound, ValidationError
from .times import as_utc

# Ids and counts are INTEGER columns: PostgreSQL's int4.
INT_MAX = 2**31 - 1
# Integers inside payloads: what every JSON consumer (and a signed 64-bit column) can hold.
JSON_INT_MAX = 2**63 - 1
# Column widths of the ledger (store/models.py).
TASK_CHARS = 200
ACCOUNT_CHARS = 100
OPERATOR_CHARS = 200
ERROR_CODE_CHARS = 100
# Operator-written text: notes and reasons.
NOTE_CHARS = 10_000
# A search term or filter name longer than this is not something anyone searches for.
TERM_CHARS = 1_000
# Names in one filter (states, tasks, error codes).
FILTER_NAMES = 1_000
# Latest time a job may be delayed or scheduled to: far from datetime's limits, within every backend's.
LATEST = datetime(9000, 1, 1, tzinfo=UTC)
EARLIEST = datetime(1, 1, 2, tzinfo=UTC)


class _Describe(reprlib.Repr):
    def __init__(self) -> None:
        super().__init__()
        self.maxlevel = 3
        self.maxstring = 80
        self.maxother = 60
        self.maxlong = 40
        self.maxlist = self.maxtuple = self.maxdict = self.maxset = self.maxfrozenset = 4

    def repr_int(self, x: int, level: int) -> str:
        if x.bit_length() > 128:  # repr() of a huge int raises (or takes quadratic time)
            return f"<an integer of {x.bit_length()} bits>"
        return super().repr_int(x, level)


_DESCRIBE = _Describe()


def describe(value: Any) -> str:
    """A short, safe rendering of any value for an error message (nested, huge or hostile alike)."""
    try:
        return _DESCRIBE.repr(value)
    except Exception:  # noqa: BLE001 - a value whose repr fails is still described
        return f"<a {type(value).__name__}>"


def _kind(value: Any) -> str:
    if value is None:
        return "None"
    kind = type(value).__name__
    return f"an {kind}" if kind[0] in "aeiou" else f"a {kind}"


def _said(name: str, value: Any, eq: bool) -> str:
    """How a message quotes an argument: ``name=value`` for keyword filters, ``name value`` for fields."""
    return f"{name}={describe(value)}" if eq else f"{name} {describe(value)}"


# -- text ------------------------------------------------------------------------------------------
def storable(value: str, name: str) -> str:
    """``value`` unless it holds what a backend cannot store: NUL (PostgreSQL refuses it in text and
    JSON) or a lone surrogate (not UTF-8 at all)."""
    if "\x00" in value:
        raise ValidationError(
            f"{name} contains a NUL character (\\x00) at position {value.index(chr(0))}, which the ledger cannot "
            "store; remove it"
        )
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValidationError(
            f"{name} contains a lone surrogate ({value[exc.start]!a}) at position {exc.start}, which is not "
            "valid Unicode text and cannot be stored; send UTF-8 text"
        ) from None
    return value


def text(value: Any, name: str, *, max_chars: int, allowed: str, empty: bool = False, eq: bool = False) -> str:
    """A string argument: storable, at most ``max_chars`` long, not blank unless ``empty``."""
    if not isinstance(value, str):
        raise ValidationError(f"{_said(name, value, eq)} is not valid: {_kind(value)}; give {allowed}")
    storable(value, name)
    if not empty and not value.strip():
        raise ValidationError(f"{_said(name, value, eq)} is not valid: it is empty; give {allowed}")
    if len(value) > max_chars:
        raise ValidationError(
            f"{name} is not valid: it is {len(value)} characters long, over the limit of {max_chars}; give {allowed}"
        )
    return value


def account(value: Any, name: str = "account") -> str | None:
    """An account name, or None (no account / every account)."""
    if value is None:
        return None
    return text(value, name, max_chars=ACCOUNT_CHARS, allowed="an account name (text) or None").strip()


def names(value: Any, name: str, *, max_chars: int = TASK_CHARS) -> tuple[str, ...] | None:
    """One name or a list of names (filters): each storable text; None: not filtered."""
    if value is None:
        return None
    allowed = "a name or a list of names"
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list | tuple | set | frozenset):
        raise ValidationError(f"{_said(name, value, True)} is not valid: {_kind(value)}; give {allowed}")
    if not items:
        raise ValidationError(
            f"{_said(name, value, True)} is not valid: an empty list; give {allowed}, or leave it out"
        )
    if len(items) > FILTER_NAMES:
        raise ValidationError(f"{name} is not valid: it lists {len(items)} names, over the limit of {FILTER_NAMES}")
    return tuple(dict.fromkeys(text(v, name, max_chars=max_chars, allowed=allowed, eq=True) for v in items))


# -- numbers ---------------------------------------------------------------------------------------
def _integer(value: Any, name: str, allowed: str) -> int:
    """``value`` as an int (numpy integers are fine; bools, floats and text are not)."""
    if isinstance(value, bool):
        raise ValidationError(f"{name} {value!r} is not valid: a bool; give {allowed}")
    try:
        return int(operator.index(value))
    except TypeError:
        raise ValidationError(f"{name} {describe(value)} is not valid: {_kind(value)}; give {allowed}") from None


def whole(value: Any, name: str, *, lo: int, hi: int, allowed: str | None = None) -> int:
    """A whole number in ``lo..hi``."""
    allowed = allowed or f"a whole number >= {lo} (at most {hi})"
    number = _integer(value, name, allowed)
    if not lo <= number <= hi:
        raise ValidationError(f"{name} {describe(number)} is not valid: out of range; give {allowed}")
    return number


def ident(value: Any, what: str) -> int:
    """A job or schedule id: a whole number; one no row can have (below 1, past the column) is NotFound."""
    number = _integer(value, f"{what} id", "a whole number such as 42")
    if not 1 <= number <= INT_MAX:
        raise NotFound(f"{what} {describe(number)} not found")
    return number


def flag(value: Any, name: str, allowed: str = "True or False") -> bool:
    if not isinstance(value, bool):
        raise ValidationError(f"{name} {describe(value)} is not valid: {_kind(value)}; give {allowed}")
    return value


# -- times -----------------------------------------------------------------------------------------
_TIME_FORMS = (
    "a datetime, an ISO 8601 string such as '2026-01-31T12:00:00Z', or a timedelta (that long ago)"
)


def moment(value: Any, name: str, now: datetime) -> datetime:
    """A point in time: a datetime (naive is UTC), an ISO 8601 string, or a timedelta meaning that long
    before ``now``; between year 1 and 9000."""
    try:
        if isinstance(value, datetime):
            when = as_utc(value)
        elif isinstance(value, timedelta):
            when = now - value
        elif isinstance(value, str):
            storable(value, name)
            try:
                when = as_utc(datetime.fromisoformat(value.strip().replace("Z", "+00:00")))
            except ValueError:
                raise ValidationError(f"{name}={describe(value)} is not a time; give {_TIME_FORMS}") from None
        else:
            raise ValidationError(f"{name}={describe(value)} is not a time: {_kind(value)}; give {_TIME_FORMS}")
    except (OverflowError, ValueError) as exc:
        if isinstance(exc, ValidationError):
            raise
        raise ValidationError(f"{name}={describe(value)} is out of range; give {_TIME_FORMS}") from None
    if not EARLIEST <= when <= LATEST:
        raise ValidationError(
            f"{name}={describe(value)} is out of range; give a time between {EARLIEST.year} and {LATEST.year}"
        )
    return when


# -- JSON documents (payloads, templates) -----------------------------------------------------------
_JSON_FORMS = "objects with text keys, lists, text, numbers, true/false and null"


def json_document(value: Any, name: str, *, max_depth: int, max_bytes: int) -> str:
    """``value`` encoded as JSON (ASCII, keys sorted), after checking what the encoder and the backends
    would choke on: nesting deeper than ``max_depth`` (walked without recursion), keys that are not text,
    NaN and infinity, integers past 64 bits, text that cannot be stored; then its size.

    Text is checked on the encoded document (one pass in C): NUL and lone surrogates leave an escape
    there that nothing else leaves, unless a string spells the escape itself; only then are the strings
    walked, for the exact place."""
    if not _plain(value, max_depth):
        _check_structure(value, name, max_depth)  # raises, naming the place
    encoded = json.dumps(value, allow_nan=False, sort_keys=True)
    if "\\u0000" in encoded or _LONE_SURROGATE.search(encoded):
        _check_strings(value, name)
    size = len(encoded.encode())
    if size > max_bytes:
        raise ValidationError(f"{name} is {size} bytes; the limit is {max_bytes} bytes (setting payload_max_bytes)")
    return encoded


_LONE_SURROGATE = re.compile(
    r"\\ud[89ab][0-9a-f]{2}(?!\\ud[c-f][0-9a-f]{2})|(?<!\\ud[89ab][0-9a-f]{2})\\ud[c-f][0-9a-f]{2}"
)


def _plain(value: Any, max_depth: int) -> bool:
    """True if ``value`` is plain JSON within ``max_depth``: the common case, checked fast (exact types,
    no paths built); anything else goes to ``_check_structure`` for the verdict and the message."""
    stack = [(value, 0)]
    while stack:
        node, depth = stack.pop()
        kind = type(node)
        if kind is dict:
            if any(type(k) is not str for k in node):
                return False
            children: Any = node.values()
        elif kind is list or kind is tuple:
            children = node
        else:
            return _plain_scalar(node)
        if depth >= max_depth:
            return False
        for child in children:
            kind = type(child)
            if kind is dict or kind is list or kind is tuple:
                stack.append((child, depth + 1))
            elif not (kind is str or child is None or kind is bool or _plain_scalar(child)):
                return False
    return True


def _plain_scalar(node: Any) -> bool:
    kind = type(node)
    if kind is int:
        return bool(-JSON_INT_MAX <= node <= JSON_INT_MAX)
    if kind is float:
        return math.isfinite(node)
    return kind is str or kind is bool or node is None


def _check_structure(value: Any, name: str, max_depth: int) -> None:
    stack: list[tuple[Any, int, str]] = [(value, 0, name)]
    while stack:
        node, depth, where = stack.pop()
        if node is None or isinstance(node, str | bool):
            continue
        if isinstance(node, int):
            if not -JSON_INT_MAX <= node <= JSON_INT_MAX:
                raise ValidationError(
                    f"{where} holds the integer {describe(node)}, past 64 bits; send large numbers as text"
                )
        elif isinstance(node, float):
            if not math.isfinite(node):
                raise ValidationError(
                    f"{name} is not JSON-serialisable: {where} holds {node!r}; give a finite number"
                )
        elif isinstance(node, dict | list | tuple):
            if depth >= max_depth:
                raise ValidationError(
                    f"{name} is nested more than {max_depth} levels deep (setting payload_max_depth); flatten it"
                )
            if isinstance(node, dict):
                for key, child in node.items():
                    if not isinstance(key, str):
                        raise ValidationError(
                            f"{name} is not JSON-serialisable: {where} has the key {describe(key)} ({_kind(key)}); "
                            "JSON object keys are text"
                        )
                    stack.append((child, depth + 1, f"{where}.{key[:40]}"))
            else:
                stack.extend((child, depth + 1, f"{where}[{i}]") for i, child in enumerate(node))
        else:
            raise ValidationError(
                f"{name} is not JSON-serialisable: {where} holds {_kind(node)} ({describe(node)}); "
                f"allowed: {_JSON_FORMS}"
            )


def _check_strings(value: Any, name: str) -> None:
    stack: list[tuple[Any, str]] = [(value, name)]
    while stack:
        node, where = stack.pop()
        if isinstance(node, str):
            storable(node, where)
        elif isinstance(node, dict):
            for key, child in node.items():
                storable(key, f"a key of {where}")
                stack.append((child, f"{where}.{key[:40]}"))
        elif isinstance(node, list | tuple):
            stack.extend((child, f"{where}[{i}]") for i, child in enumerate(node))


def clean_text(value: str) -> str:
    """Text a task produced (an error, a traceback), made storable: NUL and lone surrogates replaced."""
    if "\x00" in value:
        value = value.replace("\x00", "\ufffd")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        value = value.encode("utf-8", "replace").decode("utf-8")
    return value
