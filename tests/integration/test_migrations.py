"""Every migration comes down and goes up again on both backends, and the ledger it leaves works."""

from __future__ import annotations

from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import inspect

import sgen_ops
from sgen_ops.store.db import alembic_config


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
