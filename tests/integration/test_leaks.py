"""The leak suite: seeded secrets of every shape never reach a viewer or an editor, by any read path, and
never reach the Activity Log -- not even an 8-character fragment.

The secret jobs belong to ``private.leaky`` (tests/tasks_private.py), which only worker subprocesses
import: the test process reads them as a notebook or the API server would, knowing the task's masking
rule only from the ledger. The secrets are short, long, non-ASCII, under a literal dotted key, and quoted
in the task's error so that one straddles each cut (the list's 120-character excerpt, an attempt's
500-character error, the 4,000-character detail).
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from typing import Any

import pytest
from sqlalchemy import delete, select

import sgen_ops
from sgen_ops.core.masking import MASK
from sgen_ops.core.tasks import registered
from sgen_ops.ledger.store import ActivityEntry, TaskRule

from ..conftest import ROOT, TASK_MODULES, Stack
from ..helpers import run_cli
from .test_surface_fixtures import add_operators

SECRETS = {
    "short": "Zq7#xK2",
    "long": "".join("ABCDEFGHJKLMNPQRSTUVWXYZ"[(i * 7 + i // 5) % 24] for i in range(300)),
    "email": "ada.lovelace+ops@example.org",
    "unicode": "пароль-Ωmega-秘密-42",
    "vault": "vault-BBBB-2222-hidden",
}
# Pads put one secret across each cut of the error text: 120 (list excerpt), 500 (attempt), 4,000 (detail).
PADS = (0, 110, 492, 3990)


def payload(pad: int = 0, **extra: Any) -> dict[str, Any]:
    return {
        "credentials": {"api_key": SECRETS["short"], "user": "bob"},
        "customer.email": SECRETS["email"],
        "vault": {"a": SECRETS["unicode"], "b": SECRETS["vault"]},
        "blob": SECRETS["long"],
        "region": "eu-west-1",
        "pad": pad,
        **extra,
    }


def fragments(secret: str, n: int = 8) -> set[str]:
    return {secret} if len(secret) <= n else {secret[i:i + n] for i in range(len(secret) - n + 1)}


ALL_FRAGMENTS = {(name, f) for name, secret in SECRETS.items() for f in fragments(secret)}


def leaked(value: Any) -> list[str]:
    """The secrets (by name) of which any 8-character fragment appears in ``value``, however encoded."""
    texts = [json.dumps(value, default=str, ensure_ascii=False), json.dumps(value, default=str), str(value)]
    return sorted({name for name, f in ALL_FRAGMENTS if any(f in t for t in texts)})


def as_data(value: Any) -> Any:
    return dataclasses.asdict(value) if dataclasses.is_dataclass(value) and not isinstance(value, type) else value


@pytest.fixture
def private_jobs(stack: Stack, hub: sgen_ops.Hub) -> dict[str, Any]:
    """Secret jobs enqueued and run by a subprocess that imports ``private.leaky``; this process does not."""
    assert "private.leaky" not in registered(), "the test process must not know the private task"
    script = (
        "import json, sys\n"
        "import sgen_ops\n"
        "hub = sgen_ops.connect()\n"
        "payloads = json.loads(sys.stdin.read())\n"
        "failed = [hub.enqueue('private.leaky', p, account='acme') for p in payloads['failed']]\n"
        "waiting = hub.enqueue('private.leaky', payloads['waiting'], account='acme', delay=3600)\n"
        "hub.work()\n"
        "print(json.dumps({'failed': failed, 'waiting': waiting}))\n"
    )
    given = json.dumps({"failed": [payload(p) for p in PADS], "waiting": payload()})
    done = subprocess.run(
        [sys.executable, "-c", script], input=given, capture_output=True, text=True, cwd=ROOT, timeout=120,
        env=stack.env(task_modules=f"{TASK_MODULES},tests.tasks_private"),
    )
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def reads(ops: Any, ids: list[int]) -> dict[str, Any]:
    """Everything one operator can read about the jobs, by every read path of the surface."""
    page = ops.list_jobs(per_page=100)
    return {
        "list": [as_data(r) for r in page.items],
        "frame": page.to_frame().to_dict("records"),
        "filtered": [as_data(r) for r in ops.list_jobs(task="private.leaky", state="dead-letter").items],
        "details": [as_data(ops.get_job(i)) for i in ids],
        "groups": ops.dead_letter_groups().to_dict("records"),
        "schedules": ops.list_schedules().to_dict("records"),
        "log": ops.activity_log().to_dict("records") if ops.can("activity_log") else [],
    }


def test_the_private_task_is_masked_from_the_ledgers_rule(hub: sgen_ops.Hub, private_jobs: dict[str, Any]) -> None:
    ops = add_operators(hub, account="acme")
    detail = ops["viewer"].get_job(private_jobs["failed"][0])
    assert detail.payload["credentials"] == {"api_key": MASK, "user": "bob"}
    assert detail.payload["customer.email"] == MASK and detail.payload["vault"] == {"a": MASK, "b": MASK}
    assert detail.payload["region"] == "eu-west-1"
    assert detail.last_error_detail is not None and MASK in detail.last_error_detail


@pytest.mark.parametrize("role", ["viewer", "editor"])
def test_no_read_path_shows_a_fragment_of_a_secret(
    hub: sgen_ops.Hub, private_jobs: dict[str, Any], role: str
) -> None:
    admin = add_operators(hub)["administrator"]
    ops = add_operators(hub, account="acme", suffix="-acme")[role]
    ids = [*private_jobs["failed"], private_jobs["waiting"]]
    # Administrators write: notes and reasons quoting the secrets, a payload edit, a dismissal's snapshot.
    admin.resolve(private_jobs["failed"][0], note=f"rotated key {SECRETS['short']} for {SECRETS['email']}")
    admin.send_to_dead_letter(private_jobs["waiting"], reason=f"vault {SECRETS['vault']} revoked")
    admin.dismiss(private_jobs["failed"][3])
    ids.remove(private_jobs["failed"][3])
    seen = reads(ops, ids)
    assert leaked(seen) == []
    assert len(seen["details"]) == 4 and seen["details"][0]["resolution_note"] == MASK
    assert next(d for d in seen["details"] if d["id"] == private_jobs["waiting"])["dead_letter_reason"] == MASK
    # Search finds nothing by a secret (nor by the mask), and still finds what is visible.
    for name, secret in SECRETS.items():
        for term in [*sorted(fragments(secret))[:3], secret]:
            assert ops.list_jobs(text=term).total == 0, (name, term)
    for term in (MASK, MASK[:2], "u2022", "\\u2022"):
        assert ops.list_jobs(text=term).total == 0, term
    assert ops.list_jobs(text="rejected").total == 3  # the visible words of the errors, in the jobs left


def test_the_activity_log_holds_no_secret_after_administrator_writes(
    hub: sgen_ops.Hub, private_jobs: dict[str, Any]
) -> None:
    admin = add_operators(hub)["administrator"]
    admin.resolve(private_jobs["failed"][0], note=f"key {SECRETS['short']} and {SECRETS['unicode']} rotated")
    admin.send_to_dead_letter(private_jobs["waiting"], reason=f"{SECRETS['long']} leaked")
    admin.dismiss(private_jobs["failed"][1])
    admin.dismiss_dead_letters(task="private.leaky")
    # Tasks this process knows: a schedule, a payload update, an edit-and-replay, all holding secrets.
    known = {"credentials": {"api_key": SECRETS["short"]}, "rows": [{"card": SECRETS["vault"]}],
             "headers": {"X": SECRETS["email"]}, "password": SECRETS["unicode"]}
    schedule = admin.create_schedule("test.secret", every="1h", payload=known)
    admin.edit_schedule(schedule, payload={**known, "password": SECRETS["long"]})
    admin.run_schedule_now(schedule)
    waiting = hub.enqueue("test.secret", known, delay=3600)
    admin.update_job(waiting, payload={**known, "credentials": {"api_key": SECRETS["long"]}})
    hub.enqueue("test.secret", known)
    hub.work()
    dead = admin.list_jobs(task="test.secret", state="dead-letter").items
    assert len(dead) >= 2
    new_id = admin.edit_and_replay(dead[0].id, {**known, "password": SECRETS["email"]})
    admin.dismiss(dead[1].id)
    admin.delete_job(new_id)
    with hub.ledger.read() as session:
        rows = [{c.key: getattr(r, c.key) for c in ActivityEntry.__mapper__.column_attrs}
                for r in session.scalars(select(ActivityEntry))]
    assert len(rows) >= 10
    assert leaked(rows) == []
    # The administrator reads the log with the notes as written; the chain still verifies.
    shown = admin.activity_log()
    assert SECRETS["short"] in " ".join(str(r) for r in shown["reason"].tolist())
    assert admin.verify_audit().ok


def test_notes_are_never_an_oracle(hub: sgen_ops.Hub, private_jobs: dict[str, Any]) -> None:
    """An editor's own note comes back as written, even when it guesses a secret right; others never see it."""
    ops = add_operators(hub, account="acme")
    guess, wrong = f"is it {SECRETS['short']}?", "is it Zq7#xK3?"
    ops["editor"].resolve(private_jobs["failed"][0], note=guess)
    ops["editor"].resolve(private_jobs["failed"][1], note=wrong)
    mine = ops["editor"].get_job(private_jobs["failed"][0]).resolution_note
    assert (mine, ops["editor"].get_job(private_jobs["failed"][1]).resolution_note) == (guess, wrong)
    log = ops["editor"].activity_log()
    assert log[log["action"] == "resolve"]["reason"].tolist() == [guess, wrong]
    assert ops["viewer"].get_job(private_jobs["failed"][0]).resolution_note == MASK
    assert ops["viewer"].get_job(private_jobs["failed"][1]).resolution_note == wrong
    with hub.ledger.read() as session:
        assert leaked([r.change for r in session.scalars(select(ActivityEntry))]) == []


def test_a_task_no_process_declared_is_masked_whole(hub: sgen_ops.Hub, private_jobs: dict[str, Any]) -> None:
    with hub.ledger.write() as session:
        session.execute(delete(TaskRule).where(TaskRule.task == "private.leaky"))
    fresh = sgen_ops.connect(**{**hub.settings.__dict__, "home": hub.settings.home})  # a cold rule cache
    try:
        ops = add_operators(fresh, account="acme")
        detail = ops["viewer"].get_job(private_jobs["failed"][0])
        assert detail.payload == MASK
        assert leaked(as_data(detail)) == []
        assert ops["administrator"].get_job(private_jobs["failed"][0]).payload["blob"] == SECRETS["long"]
    finally:
        fresh.close()


def test_cli_json_shows_no_fragment(stack: Stack, hub: sgen_ops.Hub, private_jobs: dict[str, Any]) -> None:
    add_operators(hub, account="acme")
    done = run_cli(["jobs", "list", "--json", "--operator", "viewer"], stack.env())
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)
    assert len(rows) == len(PADS) + 1 and leaked(rows) == []
