"""The queue list's totals, however they are computed (the default view counted part by part, a text
search read once on SQLite), against a plain evaluation in Python of what each job's row says."""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import update

import sgen_ops
from sgen_ops.core.states import ALL_STATES
from sgen_ops.core.times import utcnow
from sgen_ops.ledger.store import Job

from ..helpers import bring_to
from .test_surface_fixtures import add_operators

TASKS = ("test.ok", "test.flaky", "test.boom")
ACCOUNTS = ("acme", "globex", None)
CODES = (None, "timeout", "bad_row")


NOTES = ("alpha beta", "Gamma_delta", "50% off")


@pytest.fixture
def ledger_rows(hub: sgen_ops.Hub) -> list[dict[str, Any]]:
    """120 jobs in every state, with ages around the 7-day window, their own retention or none."""
    rng = random.Random(4)
    now = utcnow()
    rows = []
    for i in range(120):
        task, account, note = rng.choice(TASKS), rng.choice(ACCOUNTS), rng.choice(NOTES)
        own = rng.choice([None, None, 1.0, 30.0])
        job = hub.book.prepare(task, {"n": i, "note": note}, account=account, retention_days=own, now=now)
        [job_id] = hub.book.create([job])
        updated = now - timedelta(days=rng.choice([0.2, 0.9, 1.1, 6.9, 7.1, 29, 31]))
        row = {"id": job_id, "task": task, "account": account, "retention_days": own, "note": note,
               "state": rng.choice(ALL_STATES), "updated_at": updated, "created_at": updated - timedelta(hours=1),
               "last_error_code": rng.choice(CODES),
               "last_error_detail": rng.choice([None, "POST timed out", "50% off"])}
        bring_to(hub, job_id, row["state"])
        with hub.ledger.write() as session:
            session.execute(update(Job).where(Job.id == job_id).values(
                updated_at=updated, created_at=row["created_at"],
                last_error_code=row["last_error_code"], last_error_detail=row["last_error_detail"]))
        rows.append(row)
    return rows


def _visible(row: dict[str, Any], now: datetime) -> bool:
    if row["state"] != "succeeded":
        return True
    days = row["retention_days"] if row["retention_days"] is not None else 7.0
    return bool(row["updated_at"] + timedelta(days=days) >= now)


def _matches(row: dict[str, Any], now: datetime, account: str | None, f: dict[str, Any]) -> bool:
    if account is not None and row["account"] != account:
        return False
    if "state" in f:
        if row["state"] != f["state"]:
            return False
    elif not _visible(row, now):
        return False
    if "task" in f and row["task"] != f["task"]:
        return False
    if "error_code" in f and row["last_error_code"] != f["error_code"]:
        return False
    if "text" in f:
        needle = f["text"].lower()
        return needle in row["note"].lower() or needle in (row["last_error_detail"] or "").lower()
    return True


FILTERS: list[dict[str, Any]] = [
    {}, {"task": "test.ok"}, {"state": "succeeded"}, {"state": "dead-letter", "task": "test.boom"},
    {"error_code": "timeout"}, {"text": "timed out"}, {"text": "50% OFF"}, {"text": "gamma_"}, {"text": "a_d"},
]


def test_totals_and_pages_match_the_rows(hub: sgen_ops.Hub, ledger_rows: list[dict[str, Any]]) -> None:
    """Every filter, for an administrator of every account and one of acme's, on one ledger: the cases only
    read it, so it is built once rather than once per case."""
    admins = {None: add_operators(hub)["administrator"],
              "acme": add_operators(hub, account="acme", suffix="-acme")["administrator"]}
    for account, ops in admins.items():
        for filters in FILTERS:
            case = f"account {account}, filters {filters}"
            now = utcnow()
            wanted = sorted((r for r in ledger_rows if _matches(r, now, account, filters)),
                            key=lambda r: (r["created_at"], r["id"]), reverse=True)
            page = ops.list_jobs(**filters, per_page=7)
            assert page.total == len(wanted), case
            listed = [row.id for p in range(1, page.pages + 1)
                      for row in ops.list_jobs(**filters, per_page=7, page=p).items]
            assert listed == [r["id"] for r in wanted], case
