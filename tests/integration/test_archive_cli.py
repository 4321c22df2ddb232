"""``sgen-ops archive [--dry-run]``, the archive's lines in ``sgen-ops info``, and the scheduler archiving and
rolling up by itself."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import sgen_ops
from sgen_ops.ledger import rollups
from sgen_ops.ledger.store import RollupMark
from sgen_ops.runtime import scheduler
from tests.conftest import Stack
from tests.helpers import wait_for
from tests.integration.test_cli import cli

# About a second: jobs done a moment ago are due, without moving the clock.
MOMENT = {"archive_after_days": 1.5e-5, "retention_days": 1e-5}


def test_archive_command_dry_run_then_run_and_info_shows_the_run(stack: Stack) -> None:
    hub = stack.hub(**MOMENT)
    hub.add_operator("dana", "administrator")
    hub.add_operator("ana", "viewer", account="acme")
    for n in range(3):
        hub.enqueue("test.ok", {"n": n}, account="acme")
    hub.work()
    out = cli(stack, "info", "--operator", "dana")
    assert out.returncode == 0, out.stderr
    assert "archive: no run yet; 0 job(s) archived in 0 file(s)" in out.stdout
    time.sleep(2)
    out = cli(stack, "archive", "--dry-run", **MOMENT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("DRY RUN: would archive 3 job(s) last changed before ")
    out = cli(stack, "archive", **MOMENT)
    assert out.returncode == 0, out.stderr
    assert "archived 3 job(s)" in out.stdout and "into 1 file(s)" in out.stdout and "(run 1)" in out.stdout
    out = cli(stack, "archive", "--json", **MOMENT)
    assert json.loads(out.stdout)["jobs"] == 0
    out = cli(stack, "info", "--operator", "dana")
    line = next(line for line in out.stdout.splitlines() if line.startswith("archive:"))
    assert "last run 1 done" in line and ": 3 job(s) (last changes " in line and "in 1 file(s), sha256 " in line
    assert "; 3 job(s) archived in 1 file(s)" in line
    info = json.loads(cli(stack, "info", "--operator", "dana", "--json").stdout)
    assert info["archive"]["last_run"]["jobs"] == 3 and len(info["archive"]["last_run"]["checksum"]) == 64
    # Stack-wide counts are not shown to an operator bound to one account.
    assert "archive:" not in cli(stack, "info", "--operator", "ana").stdout
    out = cli(stack, "archive", archive_after_days=0)
    assert out.stdout.strip() == "archiving is off (archive_after_days = 0)"


def test_the_scheduler_rolls_up_and_archives_by_itself(stack: Stack) -> None:
    hub = stack.hub(**MOMENT)
    ids = [hub.enqueue("test.ok", {"n": n}) for n in range(4)]
    hub.work()
    stop = threading.Event()
    thread = threading.Thread(target=scheduler.run_forever, args=(hub,),
                              kwargs={"interval": 0.1, "stop": stop, "rollup_every": 0.2, "archive_every": 0.5})
    thread.start()
    try:
        def archived() -> Any:
            return hub.as_operator("dana").history()["archived"].all() and len(hub.as_operator("dana").history())

        hub.add_operator("dana", "administrator")
        assert wait_for(archived, timeout=60, what="the scheduler's archive run") == len(ids)
        with hub.ledger.read() as session:
            mark = session.get(RollupMark, rollups.MARK)
            assert mark is not None and mark.events_through > 0
    finally:
        stop.set()
        thread.join(60)
    assert not thread.is_alive()


def test_a_scheduler_leaves_the_archive_to_a_run_in_progress(stack: Stack) -> None:
    from sgen_ops.ledger import archive

    hub: sgen_ops.Hub = stack.hub(**MOMENT)
    hub.enqueue("test.ok")
    hub.work()
    time.sleep(2)
    with archive.archive_lock(hub.ledger):
        result = archive.run(hub.ledger, hub.settings, wait=False)
    assert result.jobs == 0 and result.run_id is None
    assert hub.archive() == 1
