"""The Activity Log: one entry per record an operator's write changed, append-only and hash-chained.

Each entry stores the hash of the entry before it (``prev_hash``) and its own
``hash = sha256(prev_hash + canonical JSON of its fields)``. Ids are assigned here, one after the
other, under a lock that serialises appends, so a gap in ids or a broken link means an entry was
removed and a hash that no longer matches its fields means one was altered: ``verify`` names the
first such entry. Entries are appended inside the transaction of the change they describe, so a
refused or failed operation leaves none.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import pandas as pd
from sqlalchemy import insert, select, text
from sqlalchemy.orm import Session

from ..core.masking import MASK, MaskingRule
from ..core.times import as_utc, utcnow
from .notes import NOTE_FIELDS, ref_id
from .store import ACTIVITY_LOG, ActivityEntry, Ledger

GENESIS = "0" * 64
TARGET_TYPES = ("job", "schedule", "task", "queue")
LOG_COLUMNS = ("at", "operator", "action", "target_type", "target_id", "account", "change", "reason")

# One advisory-lock key for the whole log: appends from every process take turns on PostgreSQL.
_PG_LOCK_KEY = int.from_bytes(hashlib.sha256(b"sgen_ops.activity_log").digest()[:8], "big", signed=True)

# Keys of a change record holding payloads, text a task produced (which may quote a payload's secrets), and
# operator-written text, which the log holds only as a reference to its note (``notes.ref``).
PAYLOAD_KEYS = frozenset({"payload", "payload_template"})
TEXT_KEYS = frozenset({"last_error_detail", "error_log", "error"})
NOTE_KEYS = frozenset(NOTE_FIELDS)

RuleFor = Callable[[str | None], MaskingRule]



# The change's key that names a target without an id: a paused task by its name, a paused queue by its priority.
_NAMED_BY = {"task": "task", "queue": "priority"}


def target_label(kind: Any, target_id: Any, change: Any = None) -> str:
    """'job 42', 'schedule 3', 'task webhook.dispatch', 'queue low' (a pause names its task or queue in
    the change), or the kind alone for an entry about no one row."""
    kind = kind if isinstance(kind, str) else ""
    if pd.notna(target_id):
        return f"{kind} {int(target_id)}".strip()
    name = change.get(_NAMED_BY.get(kind, "")) if isinstance(change, dict) else None
    return f"{kind} {name}" if isinstance(name, str) and name else kind


@dataclass(frozen=True)
class Entry:
    """An Activity Log entry to append: who did what to which record, and the change it made.

    ``context`` is the target's payload, used to scrub its secrets out of text in the change; it is not
    stored. ``append`` masks every change, whoever the operator: the log never holds a secret."""

    operator: str
    action: str
    target_type: str
    target_id: int | None
    account: str | None
    change: Any = None
    context: Any = field(default=None, compare=False, repr=False)
    # When it happened, if before the append (a view logged in a later batch); None: the append's time.
    at: datetime | None = field(default=None, compare=False)


@dataclass(frozen=True)
class VerifyResult:
    """The outcome of checking the chain: ``first_bad_id`` names the first removed or altered entry."""

    ok: bool
    checked: int
    first_bad_id: int | None
    message: str
    # The newest entry's hash: kept elsewhere, it also reveals entries cut off the end of the log.
    last_hash: str | None = None


_PLAIN = frozenset({str, int, float, bool, type(None)})


def jsonable(value: Any) -> Any:
    """``value`` as plain JSON data: datetimes as ISO text in UTC, timedeltas as seconds, tuples and sets as
    lists, keys as text, anything else as its ``str``."""
    if type(value) in _PLAIN:
        return value
    try:
        # The C encoder and decoder walk a snapshot with its payload and attempts several times faster.
        return json.loads(json.dumps(value, default=_json_other, check_circular=False))
    except TypeError:
        return _walk(value)  # keys the encoder refuses (tuples, say) become their str() there


def _json_other(value: Any) -> Any:
    if isinstance(value, datetime):
        return as_utc(value).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, Mapping):
        return {str(k): v for k, v in value.items()}
    if isinstance(value, set | frozenset):
        return list(value)
    return str(value)


def _walk(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, datetime | date | timedelta):
        return _json_other(value)
    if isinstance(value, Mapping):
        return {str(k): _walk(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_walk(v) for v in value]
    return str(value)


def _canonical(fields: Mapping[str, Any]) -> str:
    return json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _hash(prev_hash: str, id: int, at: datetime, operator: str, action: str, target_type: str,
          target_id: int | None, account: str | None, change: Any, reason: str | None) -> str:
    """sha256 of prev_hash followed by the canonical JSON of every other column but the hash itself."""
    fields = {
        "id": id,
        "at": as_utc(at).isoformat(timespec="microseconds"),
        "operator": operator,
        "action": action,
        "target_type": target_type,
        "target_id": target_id,
        "account": account,
        "change": change,
        "reason": reason,
    }
    return hashlib.sha256((prev_hash + _canonical(fields)).encode()).hexdigest()


def entry_hash(row: ActivityEntry) -> str:
    """sha256 of the entry's prev_hash followed by the canonical JSON of its fields."""
    return _hash(row.prev_hash, row.id, row.at, row.operator, row.action, row.target_type, row.target_id,
                 row.account, row.change, row.reason)


def lock_chain(session: Session) -> None:
    """Take the append lock for this transaction; call it before locking any other row.

    SQLite write transactions are BEGIN IMMEDIATE, already exclusive. PostgreSQL takes a
    transaction-scoped advisory lock. Taking it first in every audited write keeps the lock order
    fixed (chain, then rows), so operator writes never deadlock one another.
    """
    conn = session.connection()  # starts the transaction now, so the SQLite write lock is held
    dialect = conn.dialect.name
    if dialect == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
    elif dialect != "sqlite":
        session.execute(select(ActivityEntry.id).order_by(ActivityEntry.id.desc()).limit(1).with_for_update())


def append(
    session: Session, entries: Sequence[Entry], rule_for: RuleFor, at: datetime | None = None
) -> list[dict[str, Any]]:
    """Append ``entries`` to the chain in the caller's transaction (which must hold ``lock_chain``);
    returns the rows written, as column values.

    Each change is stored masked by its task's rule (``rule_for``), for every operator: the log can never
    be edited, so a secret written there could never be removed. Operator-written text is stored only as
    a reference to its note."""
    if not entries:
        return []
    last = session.execute(
        select(ActivityEntry.id, ActivityEntry.hash).order_by(ActivityEntry.id.desc()).limit(1)
    ).first()
    next_id, prev_hash = (last.id + 1, last.hash) if last else (1, GENESIS)
    when = as_utc(at or utcnow())
    rows = []
    for entry in entries:
        if entry.target_type not in TARGET_TYPES:  # raised before anything is written
            raise ValueError(f"target_type {entry.target_type!r} is not one of {TARGET_TYPES}")
        change = mask_change(jsonable(entry.change), rule_for, entry.context)
        at = as_utc(entry.at) if entry.at is not None else when
        digest = _hash(prev_hash, next_id, at, entry.operator, entry.action, entry.target_type, entry.target_id,
                       entry.account, change, None)
        rows.append(
            {
                "id": next_id,
                "at": at,
                "operator": entry.operator,
                "action": entry.action,
                "target_type": entry.target_type,
                "target_id": entry.target_id,
                "account": entry.account,
                "change": change,
                "reason": None,
                "prev_hash": prev_hash,
                "hash": digest,
            }
        )
        next_id, prev_hash = next_id + 1, digest
    session.execute(insert(ACTIVITY_LOG), rows)  # one executemany
    return rows


def verify(ledger: Ledger, batch: int = 5000) -> VerifyResult:
    """Walk the whole chain; report the first entry removed (gap or broken link) or altered (hash)."""
    expected, prev, checked = 1, GENESIS, 0
    while True:
        with ledger.read() as session:
            rows = session.scalars(
                select(ActivityEntry).where(ActivityEntry.id >= expected).order_by(ActivityEntry.id).limit(batch)
            ).all()
        if not rows:
            break
        for row in rows:
            if row.id != expected:
                return VerifyResult(
                    False, checked, expected,
                    f"entry {expected} was removed: the log jumps from entry {expected - 1} to entry {row.id}",
                )
            # The link first: a removal with the rest renumbered also changes the ids, hence the hashes.
            if row.prev_hash != prev:
                return VerifyResult(
                    False, checked, row.id,
                    f"entry {row.id} does not chain to entry {row.id - 1}: an entry was removed at {row.id} and "
                    "the rest renumbered, or one of the two was altered",
                )
            if entry_hash(row) != row.hash:
                return VerifyResult(
                    False, checked, row.id, f"entry {row.id} was altered: its fields no longer match its hash"
                )
            prev, expected, checked = row.hash, expected + 1, checked + 1
    if expected == 1:
        return VerifyResult(True, 0, None, "the Activity Log is empty", None)
    return VerifyResult(True, checked, None, f"all {checked} entries are intact and chained", prev)


def mask_change(change: Any, rule_for: RuleFor, payload: Any = None) -> Any:
    """A change record with payloads masked, their secrets scrubbed out of task-produced text, and any
    operator-written text that is not a note reference hidden whole (fail closed).

    Each part is masked by the rule of the task named beside it (a change of a schedule's task holds the
    old task in "before" and the new one in "after"), else by the one named above it. ``payload`` is the
    record's current payload, used to scrub text when the change itself carries none. Masking a masked
    record changes nothing, so it is applied on write and again on read."""
    return _mask_node(change, rule_for, None, payload)


def _mask_node(node: Any, rule_for: RuleFor, task: str | None, payload: Any) -> Any:
    if isinstance(node, list):
        return [_mask_node(v, rule_for, task, payload) for v in node]
    if not isinstance(node, dict):
        return node
    here_task = node["task"] if isinstance(node.get("task"), str) else task
    rule = rule_for(here_task)
    # Scrub text at this level with the payload found beside it, else the one from above.
    here = next((node[k] for k in PAYLOAD_KEYS if k in node and node[k] is not None), payload)
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in PAYLOAD_KEYS:
            out[key] = rule.mask_payload(value)
        elif key in TEXT_KEYS and isinstance(value, str):
            out[key] = rule.mask_text(value, here)
        elif key in NOTE_KEYS and value is not None and ref_id(value) is None:
            out[key] = MASK
        else:
            out[key] = _mask_node(value, rule_for, here_task, here)
    return out


def read_entries(
    ledger: Ledger,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    operator: str | None = None,
    account: str | None = None,
) -> list[ActivityEntry]:
    """The log's entries, oldest first; ``account`` limits it to one account's entries."""
    stmt = select(ActivityEntry).order_by(ActivityEntry.id)
    if since is not None:
        stmt = stmt.where(ActivityEntry.at >= since)
    if until is not None:
        stmt = stmt.where(ActivityEntry.at <= until)
    if operator is not None:
        stmt = stmt.where(ActivityEntry.operator == operator)
    if account is not None:
        stmt = stmt.where(ActivityEntry.account == account)
    with ledger.read() as session:
        return list(session.scalars(stmt))


def log_frame(rows: Sequence[ActivityEntry], shown: Sequence[tuple[Any, str | None]]) -> pd.DataFrame:
    """The entries as a DataFrame, each with the (change, reason) its reader may see."""
    records = [
        {"at": row.at, "operator": row.operator, "action": row.action, "target_type": row.target_type,
         "target_id": row.target_id, "account": row.account, "change": change, "reason": reason}
        for row, (change, reason) in zip(rows, shown, strict=True)
    ]
    frame = pd.DataFrame(records, columns=list(LOG_COLUMNS))
    frame["at"] = pd.to_datetime(frame["at"], utc=True)
    return frame
