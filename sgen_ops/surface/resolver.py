"""The resolver: for one operator, "may they do this?" and "how is this record shown to them?".

Policy in one place, as Oban Web's resolver keeps it: the role's capabilities, the account scope, and
masking -- of payloads and task-produced text by each task's masking rule (``rules.MaskingRules``, which
fails closed), of operator notes by who wrote them, and of Activity Log entries. Every read and write of
the surface, the Activity Log, exports, search and the views go through it.

Operator-written text is never scrubbed piecemeal (that would tell its author which words are secrets):
a reader sees a note as written, or -- when it is someone else's and quotes a secret -- not at all.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import ColumnElement

from ..core.masking import MASK, MaskingRule
from ..core.permissions import Policy
from ..ledger import audit, notes
from ..ledger.rules import MaskingRules
from ..ledger.store import ActivityEntry, Operator, OperatorNote


class Resolver:
    """What one operator may do and see."""

    def __init__(self, operator: Operator, policy: Policy, rules: MaskingRules) -> None:
        self.operator = operator
        self.policy = policy
        self.rules = rules
        self.unmasked = policy.unmasked(operator.role)

    # -- may they ------------------------------------------------------------------------------
    def can(self, action: str) -> bool:
        return self.policy.allows(self.operator.role, action)

    def check(self, action: str) -> None:
        """AccessDenied unless the role may perform ``action``."""
        self.policy.check(self.operator.role, action, self.operator.name)

    def check_arguments(self, action: str, arguments: Mapping[str, Any]) -> None:
        """AccessDenied, with the reason, if an argument makes ``action`` count as one the role may not perform
        (an editor's ``update_job`` with a ``payload`` changes what the job runs)."""
        self.policy.check_arguments(self.operator.role, action, arguments, self.operator.name)

    def scope(self, model: Any) -> list[ColumnElement[bool]]:
        """The conditions that keep a query inside this operator's account."""
        account = self.operator.account
        return [] if account is None else [model.account == account]

    # -- how is it shown -----------------------------------------------------------------------
    def rule(self, task: str | None) -> MaskingRule | None:
        """The masking rule this operator sees ``task`` through; None: in clear (administrator)."""
        return None if self.unmasked else self.rules.rule(task)

    def payload(self, task: str | None, payload: Any) -> Any:
        rule = self.rule(task)
        return payload if rule is None else rule.mask_payload(payload)

    def text(self, task: str | None, text: str | None, payload: Any) -> str | None:
        """Text a task produced (an error, a log), scrubbed of the job's secrets."""
        rule = self.rule(task)
        return text if rule is None or not text else rule.mask_text(text, payload)

    def note(self, task: str | None, text: str | None, payload: Any = None, note: OperatorNote | None = None) -> (
        str | None
    ):
        """Operator-written text as written, or MASK whole when it is someone else's and quotes a secret
        (as written, or by the rule in force now)."""
        if text is None or self.unmasked or (note is not None and note.operator == self.operator.name):
            return text
        if note is not None and note.sensitive:
            return MASK
        return text if self.rules.rule(task).mask_text(text, payload) == text else MASK

    def entry(self, row: ActivityEntry, found: Mapping[int, OperatorNote]) -> tuple[Any, str | None]:
        """An Activity Log entry as this operator may see it: (change, reason). ``found``: the notes the
        entries refer to, by id."""
        change = row.change
        if not self.unmasked:
            # Stored masked; masked again by the rules in force now (and legacy entries written in clear).
            change = audit.mask_change(change, self.rules.rule)
        task = change.get("task") if isinstance(change, dict) else None
        change = self._with_notes(change, task, found)
        note_id = change.get(notes.REF_KEY) if isinstance(change, dict) else None
        if isinstance(note_id, int):
            note = found.get(note_id)
            reason = self.note(task, note.text, None, note) if note is not None else None
        else:
            reason = self.note(task, row.reason)  # entries written before notes were kept apart
        return change, reason

    def _with_notes(self, node: Any, task: str | None, found: Mapping[int, OperatorNote]) -> Any:
        """``node`` with each note reference replaced by the note as this operator may see it."""
        if isinstance(node, list):
            return [self._with_notes(v, task, found) for v in node]
        if not isinstance(node, dict):
            return node
        here = node["task"] if isinstance(node.get("task"), str) else task
        out: dict[str, Any] = {}
        for key, value in node.items():
            note_id = notes.ref_id(value) if key in notes.NOTE_FIELDS else None
            if note_id is not None:
                note = found.get(note_id)
                out[key] = self.note(here, note.text, None, note) if note is not None else None
            elif key in notes.NOTE_FIELDS and isinstance(value, str):
                out[key] = self.note(here, value)  # legacy entries held the text itself
            else:
                out[key] = self._with_notes(value, here, found)
        return out


def note_ids(change: Any) -> set[int]:
    """Every note an Activity Log change refers to."""
    found: set[int] = set()
    stack = [change]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            for key, value in node.items():
                if key == notes.REF_KEY and isinstance(value, int):
                    found.add(value)
                else:
                    stack.append(value)
        elif isinstance(node, list):
            stack.extend(node)
    return found
