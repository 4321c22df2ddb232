"""Operator notes: resolve notes and dead-letter reasons, stored as written, apart from the Activity Log.

The job keeps the text in its own column too (``resolution_note``, ``dead_letter_reason``); each note is
also a row of ``operator_notes`` with its author, so that the resolver can show it as written to its author
and to administrators, and hide it whole from other readers when it quotes a secret. Activity Log entries
refer to a note as ``{"note_id": n}`` and never hold its text: the log can never be edited.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from .store import OperatorNote

# The job columns that hold operator-written text.
NOTE_FIELDS = ("dead_letter_reason", "resolution_note")
REF_KEY = "note_id"


def add(
    session: Session, *, target_type: str, target_id: int, field: str, operator: str, role: str, text: str,
    sensitive: bool, at: datetime,
) -> int:
    """Store a note as written; returns its id."""
    note = OperatorNote(target_type=target_type, target_id=target_id, field=field, operator=operator, role=role,
                        text=text, sensitive=sensitive, at=at)
    session.add(note)
    session.flush()
    return int(note.id)


def ref(note_id: int | None) -> dict[str, int] | None:
    """How the Activity Log refers to a note."""
    return None if note_id is None else {REF_KEY: note_id}


def ref_id(value: Any) -> int | None:
    """The note id of a reference made by ``ref``, else None."""
    if isinstance(value, dict) and len(value) == 1 and isinstance(value.get(REF_KEY), int):
        return int(value[REF_KEY])
    return None


def latest(session: Session, target_type: str, target_ids: Sequence[int]) -> dict[tuple[int, str], OperatorNote]:
    """The newest note of each (target, field) among ``target_ids``."""
    found: dict[tuple[int, str], OperatorNote] = {}
    for start in range(0, len(target_ids), 500):
        chunk = target_ids[start:start + 500]
        newest = (
            select(func.max(OperatorNote.id))
            .where(OperatorNote.target_type == target_type, OperatorNote.target_id.in_(chunk))
            .group_by(OperatorNote.target_id, OperatorNote.field)
        )
        for note in session.scalars(select(OperatorNote).where(OperatorNote.id.in_(newest))):
            found[(note.target_id, note.field)] = note
    return found


def by_id(session: Session, ids: Iterable[int]) -> Mapping[int, OperatorNote]:
    wanted = sorted(set(ids))
    found: dict[int, OperatorNote] = {}
    for start in range(0, len(wanted), 500):
        for note in session.scalars(select(OperatorNote).where(OperatorNote.id.in_(wanted[start:start + 500]))):
            found[note.id] = note
    return found
