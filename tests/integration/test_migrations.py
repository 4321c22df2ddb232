"""Every migration comes down and goes up again on both backends, and the ledger it leaves works."""

from __future__ import annotations

import pytest
from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import inspect

import sgen_ops
from sgen_ops.ledger.store import Ledger
from sgen_ops.ledger.store.db import HEAD_REVISION, alembic_config

from ..conftest import Stack


def test_each_revision_downgrades_and_upgrades(hub: sgen_ops.Hub) -> None:
    script = ScriptDirectory.from_config(alembic_config(None))
    revisions = [r.revision for r in script.walk_revisions()]  # head first
    full = set(inspect(hub.ledger.engine).get_table_names())
    assert {"task_rules", "operator_notes"} <= full
    for below in revisions[1:]:
        with hub.ledger.engine.begin() as conn:
            command.downgrade(alembic_config(conn), below)
        assert hub.ledger.current_revision() == below
    assert "task_rules" not in set(inspect(hub.ledger.engine).get_table_names())
    hub.ledger.upgrade()
    assert hub.ledger.current_revision() == hub.ledger.head_revision()
    assert set(inspect(hub.ledger.engine).get_table_names()) == full
    hub.book.rules.publish()
    hub.add_operator("dana", "administrator")
    job_id = hub.enqueue("test.secret", {"credentials": {"api_key": "sk-1"}, "rows": []}, delay=60)
    hub.as_operator("dana").cancel(job_id)
    assert hub.as_operator("dana").activity_log()["action"].tolist() == ["cancel"]


def test_the_pinned_head_is_alembics_head() -> None:
    """``HEAD_REVISION`` lets a process skip Alembic when the ledger is current: it must name the newest
    migration, or a ledger one migration behind would be taken for current."""
    assert ScriptDirectory.from_config(alembic_config(None)).get_current_head() == HEAD_REVISION


def _downgrade(ledger: Ledger, revision: str) -> None:
    with ledger.engine.begin() as conn:
        command.downgrade(alembic_config(conn), revision)


def test_a_ledger_behind_head_is_upgraded_or_refused_on_connect(stack: Stack) -> None:
    hub = stack.hub()
    assert hub.ledger.at_head()
    _downgrade(hub.ledger, "base")
    with hub.ledger.engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE alembic_version")
    assert not hub.ledger.at_head()  # no alembic_version table: a ledger never upgraded
    hub.ledger.upgrade()
    assert hub.ledger.at_head()
    _downgrade(hub.ledger, "0007")
    assert not hub.ledger.at_head()
    with pytest.raises(RuntimeError, match=r"is at schema 0007, this sgen-ops needs .*sgen-ops db upgrade"):
        stack.hub(auto_upgrade=False)
    upgraded = stack.hub(auto_upgrade=True)
    assert upgraded.ledger.current_revision() == HEAD_REVISION and upgraded.ledger.at_head()
    # A ledger at head is taken as it is, without a migration run.
    assert stack.hub(auto_upgrade=False).ledger.at_head()


def test_an_embedded_ledger_behind_head_upgrades_itself(stack: Stack) -> None:
    if not stack.database_url.startswith("sqlite"):
        pytest.skip("the embedded stack's ledger is SQLite")
    hub = stack.hub(database_url=None)
    _downgrade(hub.ledger, "0006")
    assert hub.ledger.current_revision() == "0006"
    again = stack.hub(database_url=None)
    assert again.ledger.current_revision() == HEAD_REVISION
    job_id = again.enqueue("test.ok")
    again.work(burst=True)
    assert stack.runs() == [f"{job_id}:1:1"]
