"""The Activity Log's chain on a bare SQLite ledger: hashing, appending, verifying, masking changes."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import delete, select, update

from sgen_ops.core.masking import MASK, MaskingRule
from sgen_ops.ledger import audit
from sgen_ops.ledger.store import ActivityEntry, Ledger


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    ledger.upgrade()
    yield ledger
    ledger.close()


def entry(n: int, **extra: object) -> audit.Entry:
    return audit.Entry("ada", "rerun", "job", n, "acme", {"task": "t", "before": {"state": "failed"}}, **extra)  # type: ignore[arg-type]


def append(ledger: Ledger, *entries: audit.Entry) -> list[ActivityEntry]:
    """Append, then read the entries back as stored."""
    with ledger.write() as session:
        audit.lock_chain(session)
        ids = [row["id"] for row in audit.append(session, entries, lambda task: MaskingRule(["token"]))]
    with ledger.read() as session:
        return list(session.scalars(select(ActivityEntry).where(ActivityEntry.id.in_(ids)).order_by(ActivityEntry.id)))


def test_entries_chain_from_genesis(ledger: Ledger) -> None:
    first, second = append(ledger, entry(1), entry(2))
    [third] = append(ledger, entry(3, context={"token": "abc"}))
    assert [first.id, second.id, third.id] == [1, 2, 3]
    assert first.prev_hash == audit.GENESIS
    assert second.prev_hash == first.hash and third.prev_hash == second.hash
    assert len({first.hash, second.hash, third.hash}) == 3
    assert audit.verify(ledger) == audit.VerifyResult(True, 3, None, "all 3 entries are intact and chained",
                                                      third.hash)


def test_the_hash_covers_every_field(ledger: Ledger) -> None:
    [row] = append(ledger, entry(1))
    base = audit.entry_hash(row)
    for field, value in [("operator", "eve"), ("action", "dismiss"), ("target_type", "schedule"), ("target_id", 2),
                         ("account", None), ("change", {"task": "t"}), ("reason", "x"), ("prev_hash", "f" * 64),
                         ("at", row.at + timedelta(microseconds=1)), ("id", 2)]:
        original = getattr(row, field)
        setattr(row, field, value)
        assert audit.entry_hash(row) != base, field
        setattr(row, field, original)
    assert audit.entry_hash(row) == base


def test_the_hash_ignores_key_order_and_time_zone(ledger: Ledger) -> None:
    # PostgreSQL's JSONB reorders keys, and times come back in UTC: neither may break the chain.
    [row] = append(ledger, audit.Entry("ada", "x", "job", 1, None, {"b": 1, "a": {"d": 2, "c": 3}}))
    base = audit.entry_hash(row)
    row.change = {"a": {"c": 3, "d": 2}, "b": 1}
    row.at = row.at.astimezone(timezone(timedelta(hours=5)))
    assert audit.entry_hash(row) == base


def test_changes_are_stored_as_plain_json(ledger: Ledger) -> None:
    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    [row] = append(ledger, audit.Entry("ada", "x", "job", 1, None, {"when": when, "ids": (1, 2), "wait": timedelta(
        seconds=90)}))
    with ledger.read() as session:
        stored = session.get(ActivityEntry, row.id)
    assert stored is not None
    assert stored.change == {"when": "2026-01-02T03:04:05+00:00", "ids": [1, 2], "wait": 90.0}
    assert audit.verify(ledger).ok


def test_unknown_target_type_is_refused(ledger: Ledger) -> None:
    with pytest.raises(ValueError, match="target_type 'worker'"):
        append(ledger, audit.Entry("ada", "x", "worker", 1, None))
    with ledger.read() as session:
        assert session.scalars(select(ActivityEntry)).all() == []


def test_verify_names_the_first_bad_entry(ledger: Ledger) -> None:
    append(ledger, *(entry(i) for i in range(1, 7)))
    with ledger.write() as session:
        session.execute(update(ActivityEntry).where(ActivityEntry.id == 5).values(reason="edited"))
        session.execute(delete(ActivityEntry).where(ActivityEntry.id == 3))
    result = audit.verify(ledger, batch=2)  # small batches: the walk crosses batch boundaries
    assert (result.ok, result.checked, result.first_bad_id) == (False, 2, 3)
    assert result.message == "entry 3 was removed: the log jumps from entry 2 to entry 4"


def test_verify_an_empty_log(ledger: Ledger) -> None:
    assert audit.verify(ledger) == audit.VerifyResult(True, 0, None, "the Activity Log is empty")


def test_verify_catches_a_rewritten_hash(ledger: Ledger) -> None:
    append(ledger, *(entry(i) for i in range(1, 4)))
    with ledger.write() as session:
        session.execute(update(ActivityEntry).where(ActivityEntry.id == 3).values(hash="0" * 64))
    result = audit.verify(ledger)
    assert (result.ok, result.first_bad_id) == (False, 3) and "altered" in result.message


def test_mask_change_masks_payloads_and_text_and_is_idempotent() -> None:
    rule = MaskingRule(["credentials.api_key", "rows.*.card"], ("password",))
    change = {
        "task": "t",
        "before": {
            "payload": {"credentials": {"api_key": "sk-1234"}, "rows": [{"card": "4111"}], "password": "pw1"},
            "last_error_detail": "key sk-1234 refused; password=pw1",
            "attempt_history": [{"error": "card 4111 declined", "exit": "failed"}],
            "state": "failed",
        },
        "after": None,
    }
    masked = audit.mask_change(change, lambda task: rule)
    assert masked["before"]["payload"] == {"credentials": {"api_key": MASK}, "rows": [{"card": MASK}],
                                           "password": MASK}
    assert masked["before"]["last_error_detail"] == f"key {MASK} refused; password={MASK}"
    assert masked["before"]["attempt_history"] == [{"error": f"card {MASK} declined", "exit": "failed"}]
    assert masked["before"]["state"] == "failed" and masked["after"] is None
    assert audit.mask_change(masked, lambda task: rule) == masked
    assert change["before"]["payload"]["credentials"]["api_key"] == "sk-1234"  # the input is not touched


def test_mask_change_uses_the_given_payload_for_text_without_one() -> None:
    rule = MaskingRule(["token"])
    change = {"task": "t", "before": {"last_error_detail": "rotated abc-999"}, "after": None}
    masked = audit.mask_change(change, lambda task: rule, {"token": "abc-999"})
    assert masked["before"]["last_error_detail"] == f"rotated {MASK}"


def test_mask_change_keeps_note_references_and_hides_note_text_whole() -> None:
    """Operator-written text belongs in a note; text that reaches the log anyway is hidden whole, never in part."""
    rule = MaskingRule(["token"])
    change = {"task": "t", "before": {"resolution_note": {"note_id": 4}, "dead_letter_reason": "key abc-999 leaked"},
              "after": {"resolution_note": None}}
    masked = audit.mask_change(change, lambda task: rule, {"token": "abc-999"})
    assert masked["before"] == {"resolution_note": {"note_id": 4}, "dead_letter_reason": MASK}
    assert masked["after"] == {"resolution_note": None}


def test_mask_change_masks_each_part_by_the_task_named_beside_it() -> None:
    """A schedule moved from one task to another: its old template is masked by the old task's rule."""
    rules = {"old": MaskingRule(["key"]), "new": MaskingRule(["other"])}
    change = {"task": "new", "before": {"task": "old", "payload_template": {"key": "k-1", "other": "o-1"}},
              "after": {"task": "new", "payload_template": {"key": "k-2", "other": "o-2"}}}
    masked = audit.mask_change(change, lambda task: rules[task or "new"])
    assert masked["before"]["payload_template"] == {"key": MASK, "other": "o-1"}
    assert masked["after"]["payload_template"] == {"key": "k-2", "other": MASK}


def test_append_stores_every_change_masked_whoever_writes(ledger: Ledger) -> None:
    """The write path itself masks: an entry handed over in clear is stored masked."""
    change = {"task": "t", "before": None, "after": {"payload": {"token": "tok-12345678"}}}
    [row] = append(ledger, audit.Entry("admin", "edit_and_replay", "job", 1, None, change))
    assert row.change["after"]["payload"] == {"token": MASK}
    assert "tok-12345678" not in str(row.change)
