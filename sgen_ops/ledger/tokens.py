"""Bearer tokens of the HTTP API: each names one operator; random, shown once, stored as a hash.

A token is ``sgo_`` and 43 URL-safe characters (256 random bits), so its SHA-256 is all the ledger needs
to recognise it (no salt or slow hash: nobody can guess such a token from its hash). A token may expire,
is revoked by id or all of one operator's at once, and records when it was last used (at most once a
minute, so that reads do not turn into writes).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update

from ..core import validate
from ..core.durations import as_timedelta
from ..core.times import utcnow
from ..errors import ValidationError
from .store import ApiToken, Ledger, Operator

PREFIX = "sgo_"
# Last use is written when the one recorded is older than this.
LAST_USE_EVERY = timedelta(seconds=60)


def digest(token: str) -> str:
    """The SHA-256 of ``token``, as the ledger keeps it."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def parse_expiry(expires_in: float | timedelta | str | None) -> timedelta | None:
    """'30d', '12h', '90m' (s, m, h, d, w), seconds, or a timedelta; None: never expires."""
    if expires_in is None:
        return None
    return as_timedelta(expires_in, "expires_in")


def create(ledger: Ledger, operator: str, expires_in: float | timedelta | str | None = None) -> str:
    """Make a token for ``operator`` (registered and enabled) and return it; only its hash is stored."""
    life = parse_expiry(expires_in)
    operator = validate.text(operator, "operator", max_chars=validate.OPERATOR_CHARS, allowed="an operator's name")
    now = utcnow()
    token = PREFIX + secrets.token_urlsafe(32)
    with ledger.write() as session:
        op = session.scalar(select(Operator).where(Operator.name == operator))
        if op is None:
            raise ValidationError(
                f"operator {operator!r} is not registered; register one with "
                f"`sgen-ops operators add {operator} --role administrator|editor|viewer`"
            )
        session.add(ApiToken(operator_id=op.id, token_hash=digest(token), created_at=now,
                             expires_at=now + life if life is not None else None))
    return token


@dataclass(frozen=True)
class TokenInfo:
    """What ``tokens list`` shows of a token: never the token or its hash."""

    id: int
    operator: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None

    def status(self, now: datetime | None = None) -> str:
        """'active', 'expired' or 'revoked'."""
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= (now or utcnow()):
            return "expired"
        return "active"


def list_tokens(ledger: Ledger, operator: str | None = None) -> list[TokenInfo]:
    """Every token (or ``operator``'s), oldest first."""
    stmt = select(ApiToken, Operator.name).join(Operator, Operator.id == ApiToken.operator_id).order_by(ApiToken.id)
    if operator is not None:
        stmt = stmt.where(Operator.name == operator)
    with ledger.read() as session:
        return [
            TokenInfo(t.id, name, t.created_at, t.expires_at, t.revoked_at, t.last_used_at)
            for t, name in session.execute(stmt)
        ]


def revoke(ledger: Ledger, token_id: int) -> None:
    """Revoke one token by id; ValidationError if there is no such token."""
    with ledger.write() as session:
        token = session.get(ApiToken, token_id)
        if token is None:
            raise ValidationError(f"no token with id {token_id}; `sgen-ops tokens list` shows them")
        if token.revoked_at is None:
            token.revoked_at = utcnow()


def revoke_digest(ledger: Ledger, token_hash: str) -> bool:
    """Revoke the token whose hash is ``token_hash`` (``digest``), if it is not revoked yet; True if it was."""
    with ledger.write() as session:
        result: Any = session.execute(
            update(ApiToken).where(ApiToken.token_hash == token_hash, ApiToken.revoked_at.is_(None))
            .values(revoked_at=utcnow())
        )
        return bool(result.rowcount)


def revoke_all(ledger: Ledger, operator: str) -> int:
    """Revoke every token of ``operator`` not revoked yet; returns how many."""
    with ledger.write() as session:
        op_id = session.scalar(select(Operator.id).where(Operator.name == operator))
        if op_id is None:
            raise ValidationError(f"operator {operator!r} is not registered")
        result: Any = session.execute(
            update(ApiToken).where(ApiToken.operator_id == op_id, ApiToken.revoked_at.is_(None))
            .values(revoked_at=utcnow())
        )
        return int(result.rowcount or 0)


class Refused(Exception):
    """The token is not one this ledger accepts; the message says why (missing, unknown, expired, revoked)."""


def authenticate(ledger: Ledger, token: str, now: datetime | None = None) -> Operator:
    """The operator ``token`` belongs to (read with the token, in one query), recording its use;
    ``Refused`` otherwise. Whether the operator is enabled is the admin gate's to say."""
    return check(ledger, token, now)[0]


def check(ledger: Ledger, token: str, now: datetime | None = None) -> tuple[Operator, datetime | None]:
    """``authenticate``, with the token's expiry (None: never), for a caller that remembers the answer."""
    now = now or utcnow()
    with ledger.read() as session:
        found = session.execute(
            select(ApiToken.id, ApiToken.expires_at, ApiToken.revoked_at, ApiToken.last_used_at, Operator)
            .join(Operator, Operator.id == ApiToken.operator_id)
            .where(ApiToken.token_hash == digest(token))
        ).first()
    if found is None:
        raise Refused("the bearer token is not valid")
    if found.revoked_at is not None:
        raise Refused("the bearer token was revoked")
    if found.expires_at is not None and found.expires_at <= now:
        raise Refused("the bearer token has expired")
    if found.last_used_at is None or found.last_used_at < now - LAST_USE_EVERY:
        with ledger.write() as session:
            session.execute(update(ApiToken).where(ApiToken.id == found.id).values(last_used_at=now))
    operator: Operator = found.Operator
    return operator, found.expires_at
