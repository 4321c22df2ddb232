"""``Idempotency-Key`` on bulk writes and enqueue: the same key from the same operator within 24 hours
returns the first answer and changes nothing again.

The key is claimed (a row with no answer yet) before the write runs, so two requests racing with one key
run the write once: the other gets 409 until the first has answered. A refused write (an sgen-ops error)
frees its key, since it changed nothing and may be sent again once corrected. A key sent again with a
different request (method, path or body) is refused with 422.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from ..core.times import utcnow
from ..errors import InvalidTransition, ValidationError
from ..ledger.store import IdempotencyKey, Ledger

KEPT = timedelta(hours=24)


def fingerprint(method: str, path: str, body: Any) -> str:
    """What makes two requests the same request."""
    text = json.dumps([method.upper(), path, body], sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def run_once(ledger: Ledger, operator_id: int, key: str | None, fp: str,
             write: Callable[[], tuple[int, Any]]) -> tuple[int, Any, bool]:
    """Run ``write`` unless ``key`` already answered: (status, body, replayed)."""
    if key is None:
        status, body = write()
        return status, body, False
    now = utcnow()
    try:
        with ledger.write() as session:
            session.execute(delete(IdempotencyKey).where(IdempotencyKey.created_at < now - KEPT))
            found = session.scalar(
                select(IdempotencyKey).where(IdempotencyKey.operator_id == operator_id, IdempotencyKey.key == key)
            )
            if found is None:
                session.add(IdempotencyKey(operator_id=operator_id, key=key, fingerprint=fp, created_at=now))
                found_answer = None
            else:
                found_answer = (found.fingerprint, found.status, found.response)
    except IntegrityError:
        raise InvalidTransition(
            f"a request with Idempotency-Key {key!r} is still being answered; send it again in a moment"
        ) from None
    if found_answer is not None:
        stored_fp, stored_status, stored_body = found_answer
        if stored_fp != fp:
            raise ValidationError(
                f"Idempotency-Key {key!r} was already used for a different request in the last 24 hours; "
                "use a new key for a new request"
            )
        if stored_status is None:
            raise InvalidTransition(
                f"a request with Idempotency-Key {key!r} is still being answered; send it again in a moment"
            )
        return int(stored_status), stored_body, True
    try:
        status, body = write()
    except BaseException:
        # A refused write changed nothing (an unexpected failure is treated alike): the key is free again.
        _forget(ledger, operator_id, key)
        raise
    with ledger.write() as session:
        row = session.scalar(
            select(IdempotencyKey).where(IdempotencyKey.operator_id == operator_id, IdempotencyKey.key == key)
        )
        if row is not None:
            row.status, row.response = status, body
    return status, body, False


def _forget(ledger: Ledger, operator_id: int, key: str) -> None:
    with ledger.write() as session:
        session.execute(
            delete(IdempotencyKey).where(IdempotencyKey.operator_id == operator_id, IdempotencyKey.key == key)
        )
