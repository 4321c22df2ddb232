"""Migration 0006: the tokens and idempotency keys tables come and go with it, and tokens go with their
operator."""

from __future__ import annotations

from alembic import command
from sqlalchemy import inspect, select

import sgen_ops
from sgen_ops.ledger import tokens
from sgen_ops.ledger.store import ApiToken, Operator
from sgen_ops.ledger.store.db import alembic_config


def tables(hub: sgen_ops.Hub) -> set[str]:
    return set(inspect(hub.ledger.engine).get_table_names())


def test_upgrade_downgrade_and_upgrade_again(hub: sgen_ops.Hub) -> None:
    assert {"api_tokens", "idempotency_keys"} <= tables(hub)
    hub.add_operator("dana", "viewer")
    hub.create_token("dana")
    with hub.ledger.engine.begin() as conn:
        command.downgrade(alembic_config(conn), "0005")
    assert not {"api_tokens", "idempotency_keys"} & tables(hub)
    assert "operators" in tables(hub)
    hub.ledger.upgrade()
    assert hub.ledger.current_revision() == hub.ledger.head_revision()
    assert tokens.list_tokens(hub.ledger) == []
    token = hub.create_token("dana")
    assert tokens.authenticate(hub.ledger, token).name == "dana"


def test_an_operators_tokens_go_with_them(hub: sgen_ops.Hub) -> None:
    hub.add_operator("dana", "viewer")
    hub.create_token("dana")
    with hub.ledger.write() as session:
        session.delete(session.scalars(select(Operator).where(Operator.name == "dana")).one())
    with hub.ledger.read() as session:
        assert session.scalars(select(ApiToken)).all() == []
