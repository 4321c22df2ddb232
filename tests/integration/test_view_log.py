"""A masked view's Activity Log entry (seed 000) is written off the read's path, in batches
(``sgen_ops.ledger.viewlog``): at once for a reader of the log in the same process, within
``FLUSH_SECONDS`` for any other, at the moment of the view, masked and chained like every entry."""

from __future__ import annotations

from sqlalchemy import func, select

import sgen_ops
from sgen_ops.core.times import utcnow
from sgen_ops.ledger.store import ActivityEntry

from ..conftest import Stack
from ..helpers import wait_for
from .test_surface_fixtures import SECRET_PAYLOAD, SECRET_VALUES, add_operators


def _logged_views(hub: sgen_ops.Hub) -> list[ActivityEntry]:
    with hub.ledger.read() as session:
        return list(session.scalars(select(ActivityEntry).where(ActivityEntry.action == "get_job")))


def test_a_masked_view_is_logged_at_its_moment_masked_and_chained(hub: sgen_ops.Hub, stack: Stack) -> None:
    everyone = add_operators(hub)
    job_id = hub.enqueue("test.secret", SECRET_PAYLOAD, delay=3600)
    before = utcnow()
    detail = everyone["editor"].get_job(job_id)
    assert not any(secret in str(detail.payload) for secret in SECRET_VALUES)
    everyone["administrator"].get_job(job_id)  # an administrator's view shows everything and is not logged
    log = everyone["administrator"].activity_log()  # this process's views are appended before it reads
    views = log[log["action"] == "get_job"]
    assert views["operator"].tolist() == ["editor"] and views["target_id"].tolist() == [job_id]
    [entry] = _logged_views(hub)
    assert before <= entry.at.replace(tzinfo=before.tzinfo) <= utcnow()
    assert not any(secret in str(entry.change) for secret in SECRET_VALUES)
    assert everyone["administrator"].verify_audit().ok


def test_another_process_sees_the_view_within_the_bound(hub: sgen_ops.Hub, stack: Stack) -> None:
    everyone = add_operators(hub)
    job_id = hub.enqueue("test.ok", delay=3600)
    other = stack.hub()  # another connection to the ledger, as another process has
    for _ in range(3):
        everyone["viewer"].get_job(job_id)
    # Appended by the view log's thread, not by a reader here: a bound far above FLUSH_SECONDS, never a hang.
    wait_for(lambda: len(_logged_views(other)) == 3, timeout=30, what="the views in the Activity Log")
    with other.ledger.read() as session:
        assert session.scalar(select(func.count()).select_from(ActivityEntry)) == 3
