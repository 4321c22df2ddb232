"""Per-task payload masking: hide sensitive payload fields, and scrub them out of error text."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any, overload

from ..errors import ValidationError

# Fixed width whatever the value: the mask must not reveal a secret's length or type.
MASK = "••••••"

# Numbers shorter than this are not scrubbed from text: replacing every "1" or "42" would wreck it.
# Shorter values are not scrubbed from free text: masking every "b" would wreck a traceback.
_MIN_SCRUB_CHARS = 3

# Auth schemes kept visible before a masked credential ("Authorization: Bearer ••••••").
_AUTH_SCHEMES = ("bearer", "basic", "token", "digest")

# One path segment: (dict key or None for "*", list index or None).
_Segment = tuple[str | None, int | None]
_Path = tuple[_Segment, ...]


def _parse_path(path: str) -> _Path:
    """Split a dotted path into precompiled segments, rejecting malformed ones."""
    if not isinstance(path, str) or not path.strip():
        raise ValidationError(
            f"sensitive path {path!r} is empty; "
            "use a dotted path such as 'credentials.api_key' or 'rows.*.card'"
        )
    segments: list[_Segment] = []
    for part in path.split("."):
        if not part.strip():
            raise ValidationError(
                f"sensitive path {path!r} has an empty segment; segments are key names, list indexes "
                "or '*' separated by single dots, e.g. 'rows.*.card' or 'items.0.secret'"
            )
        if part == "*":
            segments.append((None, None))
        elif "*" in part:
            raise ValidationError(
                f"sensitive path {path!r}: '*' must be a whole segment "
                f"(any one key or index), not part of {part!r}"
            )
        elif part.isdigit():
            # JSON object keys are strings, so "0" may name a dict key as well as a list index.
            segments.append((part, int(part)))
        else:
            segments.append((part, None))
    return tuple(segments)


def _matches(segment: _Segment, key: str | int, in_list: bool) -> bool:
    name, index = segment
    if name is None:
        return True
    if in_list:
        return index is not None and index == key
    return name == str(key)


class MaskingRule:
    """Which parts of a task's payload are sensitive, and how to hide them.

    ``everything`` is the rule of a task whose declaration no process has published: the whole payload is
    masked and every one of its values scrubbed from text (fail closed).
    """

    def __init__(
        self, sensitive: Sequence[str] = (), global_keys: Sequence[str] = (), *, everything: bool = False
    ) -> None:
        self.everything = everything
        if isinstance(sensitive, str):
            raise ValidationError(f"sensitive must be a list of dotted paths, not the string {sensitive!r}")
        if isinstance(global_keys, str):
            raise ValidationError(
                f"global_keys must be a list of key substrings, not the string {global_keys!r}"
            )
        self.sensitive: tuple[str, ...] = tuple(sensitive)
        self._paths: tuple[_Path, ...] = tuple(_parse_path(p) for p in self.sensitive)
        keys: list[str] = []
        for key in global_keys:
            if not isinstance(key, str) or not key.strip():
                # An empty substring would match every key and mask the whole payload.
                raise ValidationError(
                    f"global sensitive key {key!r} is empty; "
                    "use key-name fragments such as 'password' or 'token'"
                )
            keys.append(key.strip().lower())
        self.global_keys: tuple[str, ...] = tuple(keys)
        self._text_re: re.Pattern[str] | None = None
        if keys:
            alternatives = "|".join(re.escape(k) for k in sorted(set(keys), key=len, reverse=True))
            schemes = "|".join(_AUTH_SCHEMES)
            # A key is a whole run of [\w.-] that contains a global key, found from the run's start only
            # (the look-behind) and taken possessively: linear in the text, where a plain [\w.-]* on each
            # side of the key backtracks quadratically through a long run of word characters.
            self._text_re = re.compile(
                r"(?P<head>(?P<q>[\"']?)(?<![\w.-])(?=[\w.-]*?(?:" + alternatives + r"))[\w.-]++(?P=q)\s*[:=]\s*"
                r"(?:(?:" + schemes + r")\s+)?)"
                r"(?P<value>\"[^\"]*\"|'[^']*'|[^\s,;&)\]}\"']+)",
                re.IGNORECASE,
            )

    def _key_is_global(self, key: object) -> bool:
        if not isinstance(key, str) or not self.global_keys:
            return False
        lowered = key.lower()
        return any(k in lowered for k in self.global_keys)

    def _advance(self, states: list[_Path], key: str | int, in_list: bool) -> tuple[list[_Path], bool]:
        """Step the still-matching paths past ``key``; True if one of them ends here.

        A key holding dots (``{"customer.email": ...}``) is matched both as one segment and as the segments
        it spells, so the path ``customer.email`` masks it either way."""
        nxt = [p[1:] for p in states if _matches(p[0], key, in_list)]
        hit = any(not p for p in nxt)
        if not in_list and isinstance(key, str) and "." in key:
            spelled = states
            for part in key.split("."):
                spelled = [p[1:] for p in spelled if _matches(p[0], part, False)]
                hit = hit or any(not p for p in spelled)
                spelled = [p for p in spelled if p]
            nxt.extend(spelled)
        return [p for p in nxt if p], hit

    def is_sensitive_path(self, path: tuple[str | int, ...]) -> bool:
        """True if the value at ``path`` (dict keys and list indexes) is masked, itself or via an ancestor."""
        if self.everything:
            return True
        states = list(self._paths)
        for key in path:
            in_list = isinstance(key, int) and not isinstance(key, bool)
            if not in_list and self._key_is_global(key):
                return True
            states, hit = self._advance(states, key, in_list)
            if hit:
                return True
        return False

    def mask_payload(self, payload: Any) -> Any:
        """A deep copy of ``payload`` with every sensitive value (whole subtree) replaced by MASK.

        The input is never mutated; a payload that is not a dict or list comes back unchanged (under the
        ``everything`` rule, any payload but None is one MASK).
        """
        if self.everything:
            return None if payload is None else MASK
        return self._mask(payload, list(self._paths))

    def _mask(self, node: Any, states: list[_Path]) -> Any:
        if isinstance(node, dict):
            out: dict[Any, Any] = {}
            for key, value in node.items():
                child, hit = self._advance(states, key, False)
                out[key] = MASK if hit or self._key_is_global(key) else self._mask(value, child)
            return out
        if isinstance(node, list):
            items: list[Any] = []
            for i, value in enumerate(node):
                child, hit = self._advance(states, i, True)
                items.append(MASK if hit else self._mask(value, child))
            return items
        return node  # JSON scalars are immutable, so sharing them keeps the copy deep

    def sensitive_values(self, payload: Any) -> list[str]:
        """The raw text of every sensitive leaf in ``payload``, for scrubbing free text.

        Masked subtrees are flattened to their leaves. Strings and numbers are kept when their text
        has at least 3 characters, so scrubbing does not replace every "1" or "b" in a traceback
        (the value itself is still masked wherever the payload is shown). Booleans and nulls are skipped.
        """
        found: list[str] = []
        if self.everything:
            _leaves(payload, found)
        else:
            self._collect(payload, list(self._paths), found)
        return list(dict.fromkeys(found))  # de-duplicated, first-seen order

    def _collect(self, node: Any, states: list[_Path], found: list[str]) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                child, hit = self._advance(states, key, False)
                if hit or self._key_is_global(key):
                    _leaves(value, found)
                else:
                    self._collect(value, child, found)
        elif isinstance(node, list):
            for i, value in enumerate(node):
                child, hit = self._advance(states, i, True)
                if hit:
                    _leaves(value, found)
                else:
                    self._collect(value, child, found)

    @overload
    def mask_text(self, text: str, payload: Any = None) -> str: ...
    @overload
    def mask_text(self, text: None, payload: Any = None) -> None: ...
    def mask_text(self, text: str | None, payload: Any = None) -> str | None:
        """``text`` with the payload's sensitive values and ``key=value`` style secrets replaced by MASK.

        Scrubs (a) every occurrence of a sensitive value of ``payload``, longest first, and (b) the
        value in ``key=value``, ``key: value``, ``"key": "value"`` and ``Authorization: Bearer x``
        fragments whose key contains a global key. Used on error details and tracebacks.
        """
        if text is None:
            return None
        values = self.sensitive_values(payload) if payload is not None else []
        if values:
            # Longest first, so a secret containing another one is replaced whole.
            ordered = sorted(values, key=len, reverse=True)
            text = re.sub("|".join(re.escape(v) for v in ordered), MASK, text)
        if self._text_re is not None:
            text = self._text_re.sub(_mask_fragment, text)
        return text


    def search_text(self, payload: Any, error_detail: str | None = None) -> str:
        """What a masked reader may search: the masked payload's JSON (non-ASCII as itself, as PostgreSQL's
        JSON text has it) with the masks left out, so that searching for the mask or its escape matches
        nothing, then the masked error detail."""
        text = json.dumps(self.mask_payload(payload), sort_keys=True, ensure_ascii=False).replace(MASK, "")
        if error_detail:
            text += "\n" + self.mask_text(error_detail, payload).replace(MASK, "")
        return text

    def restore(self, submitted: Any, stored: Any = None, what: str = "payload", *, has_stored: bool = False) -> Any:
        """``submitted`` with each sensitive value that still holds the mask given back its ``stored`` value:
        saving a payload as a masked reader saw it keeps the secrets (as a password field does). A mask
        anywhere else (a field that is not sensitive, or one ``stored`` lacks) is a ValidationError; without
        ``has_stored`` (a new payload) every mask is."""
        return self._restore(submitted, stored if has_stored else _ABSENT, (), what)

    def _restore(self, node: Any, stored: Any, path: tuple[str | int, ...], what: str) -> Any:
        if isinstance(node, str) and MASK in node:
            if node == MASK and stored is not _ABSENT and self.is_sensitive_path(path):
                return stored
            where = what + "".join(f"[{k!r}]" for k in path)
            raise ValidationError(
                f"{where} holds the mask {MASK!r} where no hidden value can be kept; the mask is allowed only in a "
                "sensitive field, standing for the value already stored there: give the real value"
            )
        if isinstance(node, dict):
            return {
                k: self._restore(v, _child(stored, k), (*path, k), what) for k, v in node.items()
            }
        if isinstance(node, list):
            return [self._restore(v, _child(stored, i), (*path, i), what) for i, v in enumerate(node)]
        return node


_ABSENT: Any = object()


def _child(stored: Any, key: str | int) -> Any:
    """``stored[key]`` if there is one (dict key, or list index), else _ABSENT."""
    if isinstance(stored, dict) and isinstance(key, str) and key in stored:
        return stored[key]
    if isinstance(stored, list) and isinstance(key, int) and 0 <= key < len(stored):
        return stored[key]
    return _ABSENT


def _mask_fragment(match: re.Match[str]) -> str:
    value = match.group("value")
    # Keep the quotes so a masked JSON or repr fragment still reads as one.
    quote = value[0] if value[0] in "\"'" and len(value) >= 2 and value[-1] == value[0] else ""
    return f"{match.group('head')}{quote}{MASK}{quote}"


def _leaves(node: Any, found: list[str]) -> None:
    """Append the scrubbable text of every leaf under ``node``."""
    if isinstance(node, dict):
        for value in node.values():
            _leaves(value, found)
    elif isinstance(node, list):
        for value in node:
            _leaves(value, found)
    elif isinstance(node, str):
        if len(node) >= _MIN_SCRUB_CHARS:
            found.append(node)
    elif isinstance(node, int | float) and not isinstance(node, bool):
        text = str(node)
        if len(text) >= _MIN_SCRUB_CHARS:
            found.append(text)
