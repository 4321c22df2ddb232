"""Text search through migration 0003's trigram index (SQLite): the same jobs as a plain reading of the
searched texts, kept right by the triggers through every write, and the migration over existing rows.

The reference is computed here, in Python, from the texts as the database holds them (``CAST(payload AS
TEXT)``, the error detail, the masked copy): a job matches if the lower-cased term is in the lower-cased
text, which is PostgreSQL's ILIKE (a UTF-8 ctype), and, for ASCII terms, SQLite's LIKE as text search
read before the index. The same tests run on PostgreSQL, where migration 0003 does nothing.
"""

from __future__ import annotations

from typing import Any

import pytest
from alembic import command
from sqlalchemy import Text, cast, func, or_, select, text

import sgen_ops
from sgen_ops import TaskError
from sgen_ops.core.times import utcnow
from sgen_ops.ledger import query
from sgen_ops.ledger.store import Job
from sgen_ops.ledger.store.db import alembic_config
from sgen_ops.surface.operations import Operations

from .test_surface_fixtures import add_operators


@sgen_ops.task("test.search_fails", sensitive=["token"], max_attempts=2, backoff=0)
def search_fails(ctx: Any, payload: dict[str, Any]) -> None:
    """Fails every attempt with the payload's error text, the attempt number and the (sensitive) token."""
    raise TaskError("search", f"{payload['error']} attempt-{ctx.attempt} token={payload.get('token')}")


PAYLOADS: list[Any] = [
    {"ref": "evt_1a2b3c", "note": "Connection timed out"},
    {"ref": "evtX1a2b3c", "note": "timed-out"},  # '_' must not match any character
    {"discount": "100% off", "code": "a_b"},
    {"discount": "1000 off", "code": "aXb"},  # '%' must not match any run of characters
    {"city": "Zürich", "word": "ÉCOLE"},  # stored as \u escapes in SQLite's JSON text
    {"quote": 'say "hi"', "path": "C:\\tmp\\x", "expr": "x OR y NEAR(z) a*b {payload}: ^col"},
    12345,
    3.25,
    None,
    ["TIMED OUT", "plain"],
]
ERRORS = [
    "upstream TIMED OUT after 30 s",
    "école fermée: Ärger mit Жук",
    'he said "hi" twice; 50%_done',
    "ΣΊΣΥΦΟΣ rolled the stone",
]
TERMS = [
    # three characters or more: the trigram index on SQLite
    "evt_1a2b", "100%", "0% o", "a_b", "timed out", "TIMED OUT", "Timed-Out", "zürich", "u00fc", "ÉCOLE",
    "école", "ÉCOLE FERMÉE", "ärger", "жук", "σίσυφοσ", "ΣΊΣΥΦΟΣ", '"hi"', 'say \\"hi', "%_d", "C:\\\\tmp", "x OR y",
    "NEAR(z)", "a*b", "{payload}:", "^col", "2345", "3.25", "null", '"n', "zzz-nothing", "attempt-1",
    "attempt-2", "token=", "s3cr3t-tok", "*",
    # under three characters: a scan
    "%", "_", "a_", "0%", "é", "É", "ж", "Σ", "ü", "12", "O", '"', "\\",
]


@pytest.fixture
def jobs(hub: sgen_ops.Hub) -> list[int]:
    """Waiting jobs with the payloads above, and failed ones whose error details (and tokens) are above."""
    ids = hub.enqueue_many("test.ok", PAYLOADS, delay=3600)
    for i, error in enumerate(ERRORS):
        ids.append(hub.enqueue("test.search_fails", {"error": error, "token": f"s3cr3t-tok{i}"}))
    hub.work()
    return ids


@pytest.fixture
def ops(hub: sgen_ops.Hub) -> dict[str, Operations]:
    return add_operators(hub)


def texts(hub: sgen_ops.Hub) -> list[tuple[int, str | None, str | None, str | None]]:
    """Each job's searched texts as the database holds them."""
    with hub.ledger.read() as session:
        rows = session.execute(
            select(Job.id, cast(Job.payload, Text), Job.last_error_detail, Job.search_masked).order_by(Job.id)
        ).all()
    return [(r[0], r[1], r[2], r[3]) for r in rows]


def lower(value: str) -> str:
    """Each character in lower case on its own, as PostgreSQL's lower() (no final-sigma rule)."""
    return "".join(c.lower() for c in value)


def reference(hub: sgen_ops.Hub, term: str, *, masked: bool) -> set[int]:
    """The jobs whose searched texts hold ``term``, ignoring case (Unicode lower case, as ILIKE)."""
    needle = lower(term)
    out = set()
    for job_id, payload, detail, masked_text in texts(hub):
        haystacks = [masked_text] if masked else [payload, detail]
        if any(h is not None and needle in lower(h) for h in haystacks):
            out.add(job_id)
    return out


def found(op: Operations, term: str) -> set[int]:
    page = op.list_jobs(text=term, include_old_succeeded=True, per_page=1000)
    assert page.total == len(page.items)
    return {r.id for r in page.items}


def like_scan(hub: sgen_ops.Hub, term: str) -> set[int]:
    """What text search read before the index on SQLite: LIKE over every row (ASCII case only)."""
    with hub.ledger.read() as session:
        return set(session.scalars(select(Job.id).where(or_(
            cast(Job.payload, Text).contains(term, autoescape=True),
            Job.last_error_detail.contains(term, autoescape=True)))))


def is_sqlite(hub: sgen_ops.Hub) -> bool:
    return hub.ledger.engine.dialect.name == "sqlite"


def assert_index_consistent(hub: sgen_ops.Hub) -> None:
    """SQLite: FTS5's own check of the index against the jobs table. PostgreSQL: migration 0004's
    ``job_texts`` holds exactly each job's searched texts, one row per job."""
    if is_sqlite(hub):
        if query.sqlite_trigram():
            with hub.ledger.write() as session:
                session.execute(text("INSERT INTO jobs_fts (jobs_fts, rank) VALUES ('integrity-check', 1)"))
        return
    with hub.ledger.read() as session:
        copied = session.execute(
            text("SELECT job_id, payload, last_error_detail, search_masked FROM job_texts ORDER BY job_id")
        ).all()
    assert [tuple(r) for r in copied] == texts(hub)


def plan(hub: sgen_ops.Hub, conds: list[Any]) -> list[str]:
    """The steps of SQLite's plan for counting the jobs ``conds`` match."""
    with hub.ledger.engine.connect() as conn:
        compiled = select(func.count()).select_from(Job).where(*conds).compile(conn)
        steps = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}", tuple(compiled.params.values()))
        return [row[3] for row in steps]


# -- what is found ---------------------------------------------------------------------------------
def test_search_finds_what_the_texts_hold(hub: sgen_ops.Hub, jobs: list[int], ops: dict[str, Operations]) -> None:
    for term in TERMS:
        assert found(ops["administrator"], term) == reference(hub, term, masked=False), term
        assert found(ops["viewer"], term) == reference(hub, term, masked=True), term
    # Spot checks of the reference itself: wildcards are literal, case is folded beyond ASCII.
    assert found(ops["administrator"], "evt_1a2b") == {jobs[0]}
    assert found(ops["administrator"], "100%") == {jobs[2]}
    assert found(ops["administrator"], "ÉCOLE FERMÉE") == {jobs[-3]}
    assert found(ops["administrator"], "σίσυφοσ") == {jobs[-1]}


def test_ascii_search_is_what_the_like_scan_found(hub: sgen_ops.Hub, jobs: list[int],
                                                  ops: dict[str, Operations]) -> None:
    if not is_sqlite(hub):
        pytest.skip("the LIKE scan is how SQLite searched before migration 0003")
    for term in (t for t in TERMS if t.isascii()):
        assert found(ops["administrator"], term) == like_scan(hub, term), term


def test_masked_values_are_never_found_by_non_administrators(hub: sgen_ops.Hub, jobs: list[int],
                                                            ops: dict[str, Operations]) -> None:
    failed = jobs[len(PAYLOADS):]
    for i, job_id in enumerate(failed):
        secret = f"s3cr3t-tok{i}"
        assert found(ops["administrator"], secret) == {job_id}  # in the error detail, in clear
        assert found(ops["editor"], secret) == set()
        assert found(ops["viewer"], secret) == set()
    assert found(ops["viewer"], "s3c") == set()  # not even a part of it
    assert found(ops["viewer"], "token=") == set(failed)  # the rest of the masked detail stays searchable
    assert found(ops["viewer"], "upstream timed out") == {failed[0]}


def test_the_index_answers_terms_of_three_characters_or_more(hub: sgen_ops.Hub, jobs: list[int]) -> None:
    if not (is_sqlite(hub) and query.sqlite_trigram()):
        pytest.skip("the trigram index is SQLite's (3.34 or later)")
    now = utcnow()
    for unmasked in (True, False):
        conds = query.job_conditions(query.parse_filters({"text": "timed out"}, now), now=now,
                                     retention_seconds=7 * 86400, account=None, unmasked=unmasked, dialect="sqlite")
        steps = plan(hub, conds)
        assert any("jobs_fts VIRTUAL TABLE INDEX" in s and ":M" in s for s in steps), steps
        assert not any(s.startswith("SCAN jobs") and "jobs_fts" not in s for s in steps), steps
        short = query.job_conditions(query.parse_filters({"text": "ti"}, now), now=now,
                                     retention_seconds=7 * 86400, account=None, unmasked=unmasked, dialect="sqlite")
        assert not any("jobs_fts" in s for s in plan(hub, short))


# -- the index through every write -------------------------------------------------------------------
def test_index_follows_enqueue_update_failure_and_deletes(hub: sgen_ops.Hub, ops: dict[str, Operations]) -> None:
    admin = ops["administrator"]
    waiting = hub.enqueue("test.ok", {"word": "periwinkle"}, delay=3600)
    assert found(admin, "periwinkle") == {waiting}
    admin.update_job(waiting, payload={"word": "marigold"})
    assert found(admin, "periwinkle") == set() and found(admin, "marigold") == {waiting}
    admin.update_job(waiting, priority="high")  # no searched column: the index is untouched
    assert found(admin, "marigold") == {waiting}
    assert_index_consistent(hub)

    # A worker's failures write the error detail (and the masked copy), attempt after attempt.
    failing = hub.enqueue("test.search_fails", {"error": "quokka exploded", "token": "tk-1"})
    hub.work()
    assert found(admin, "quokka exploded attempt-2") == {failing}
    assert found(admin, "attempt-1") == set()  # the first attempt's detail was replaced
    assert found(ops["viewer"], "quokka exploded attempt-2") == {failing}
    assert_index_consistent(hub)

    replayed = admin.edit_and_replay(failing, {"error": "wombat", "token": "tk-2"})
    assert found(admin, "quokka") == {failing}
    assert found(admin, "wombat") == {replayed}

    admin.delete_job(waiting)
    assert found(admin, "marigold") == set()
    admin.delete_job(failing)  # the replaced original, kept for audit until deleted
    assert found(admin, "quokka") == set()
    dismissed = hub.enqueue("test.search_fails", {"error": "platypus exploded", "token": "tk-3"})
    hub.work()
    assert found(admin, "platypus exploded attempt-2") == {dismissed}
    admin.dismiss(dismissed)
    assert found(admin, "platypus") == set()
    assert_index_consistent(hub)

    # Bulk delete selects its jobs through the index too.
    doomed = hub.enqueue_many("test.ok", [{"word": f"capybara-{i}"} for i in range(5)], delay=3600)
    kept = hub.enqueue("test.ok", {"word": "capybaras"}, delay=3600)
    assert admin.delete_jobs(text="capybara-", dry_run=True) == 5
    assert admin.delete_jobs(text="capybara-", batch_size=2) == 5
    assert found(admin, "capybara") == {kept}
    assert not set(doomed) & found(admin, "capybara")
    assert_index_consistent(hub)


def test_worker_state_changes_leave_the_index_alone(hub: sgen_ops.Hub) -> None:
    if not (is_sqlite(hub) and query.sqlite_trigram()):
        pytest.skip("the trigram index is SQLite's (3.34 or later)")
    with hub.ledger.read() as session:
        [trigger] = session.scalars(text("SELECT sql FROM sqlite_master WHERE name = 'jobs_fts_after_update'"))
    assert "AFTER UPDATE OF id, payload, last_error_detail, search_masked ON jobs" in trigger

    def index_data() -> tuple[Any, ...]:
        with hub.ledger.read() as session:
            return tuple(session.execute(text("SELECT count(*), max(id), sum(length(block)) FROM jobs_fts_data")).one())

    hub.enqueue_many("test.ok", [{"n": i} for i in range(20)])
    hub.enqueue("test.flaky", {"succeed_on": 2})
    before = index_data()
    hub.work()  # claims, runs and records: state, attempts, worker, updated_at, lease; no searched column...
    with hub.ledger.read() as session:
        assert session.scalar(select(func.count()).select_from(Job).where(Job.state == "succeeded")) == 21
    after = index_data()
    # ...but for the flaky job's one failure (its error detail and masked copy): one delete and one insert.
    assert after != before
    hub.enqueue_many("test.ok", [{"n": i} for i in range(20)], delay=3600)
    before = index_data()
    hub.work()
    assert index_data() == before
    assert_index_consistent(hub)


def test_worker_state_changes_leave_job_texts_alone(hub: sgen_ops.Hub, ops: dict[str, Operations]) -> None:
    # PostgreSQL keeps the searched texts and their trigram indexes apart from jobs (migration 0004): a
    # state change writes no new version of a job's texts row, so none of its trigrams are indexed again.
    if is_sqlite(hub):
        pytest.skip("job_texts is PostgreSQL's")

    def versions() -> dict[int, str]:
        with hub.ledger.read() as session:
            return {r.job_id: r.xmin for r in session.execute(text("SELECT job_id, xmin::text AS xmin FROM job_texts"))}

    ok = hub.enqueue_many("test.ok", [{"n": i} for i in range(20)])
    flaky = hub.enqueue("test.flaky", {"succeed_on": 2})
    dead = hub.enqueue("test.boom")
    before = versions()
    assert set(ok) | {flaky, dead} <= set(before)
    hub.work()  # claims, runs, records; the flaky job fails once, the boom job twice
    after = versions()
    assert {i: after[i] for i in ok} == {i: before[i] for i in ok}
    assert after[flaky] != before[flaky] and after[dead] != before[dead]  # their error details were written
    ops["administrator"].replay_dead_letters(task="test.boom")  # a state change by an operator
    assert versions()[dead] == after[dead]
    assert_index_consistent(hub)
    ops["administrator"].delete_jobs(task="test.ok")
    assert not set(ok) & set(versions())
    assert_index_consistent(hub)


# -- the migration -------------------------------------------------------------------------------------
def _migrate(hub: sgen_ops.Hub, step: str, revision: str) -> None:
    with hub.ledger.engine.begin() as conn:
        getattr(command, step)(alembic_config(conn), revision)


def _fts_objects(hub: sgen_ops.Hub) -> set[str]:
    with hub.ledger.read() as session:
        if is_sqlite(hub):
            return set(session.scalars(text("SELECT name FROM sqlite_master WHERE name LIKE 'jobs_fts%'")))
        return set(session.scalars(text(
            "SELECT table_name FROM information_schema.tables WHERE table_name LIKE 'jobs_fts%' "
            "AND table_schema = current_schema()")))


def test_migration_indexes_existing_rows_and_downgrades(hub: sgen_ops.Hub, ops: dict[str, Operations]) -> None:
    admin = ops["administrator"]
    early = hub.enqueue_many("test.ok", [{"word": f"heron-{i}"} for i in range(30)], delay=3600)
    _migrate(hub, "downgrade", "0002")
    assert hub.ledger.current_revision() == "0002"
    assert _fts_objects(hub) == set()
    # Rows written while the ledger is at 0002 have no index entries (nor triggers to make them).
    late = hub.enqueue_many("test.ok", [{"word": f"heron-late-{i}"} for i in range(30)], delay=3600)
    failing = hub.enqueue("test.search_fails", {"error": "egret trouble"})
    hub.work()

    hub.ledger.upgrade()
    assert hub.ledger.current_revision() == hub.ledger.head_revision()
    if is_sqlite(hub) and query.sqlite_trigram():
        assert {"jobs_fts", "jobs_fts_after_insert", "jobs_fts_after_delete", "jobs_fts_after_update"} <= (
            _fts_objects(hub))
        with hub.ledger.read() as session:
            indexed = session.scalar(text("SELECT count(*) FROM jobs_fts_docsize"))
            assert indexed == session.scalar(select(func.count()).select_from(Job))
    else:
        assert _fts_objects(hub) == set()  # PostgreSQL: migration 0003 does nothing; 0004 copies the texts
    assert_index_consistent(hub)
    assert found(admin, "heron-") == {*early, *late}
    assert found(admin, "heron-late") == set(late)
    assert found(admin, "egret trouble") == {failing}

    _migrate(hub, "downgrade", "0002")
    assert _fts_objects(hub) == set()
    assert hub.ledger.current_revision() == "0002"
    with hub.ledger.read() as session:
        assert session.scalar(select(func.count()).select_from(Job)) == len(early) + len(late) + 1
    hub.ledger.upgrade()  # and up again, over the same rows
    assert_index_consistent(hub)
    assert found(admin, "heron-late") == set(late)


def test_truncating_jobs_empties_job_texts(hub: sgen_ops.Hub, ops: dict[str, Operations]) -> None:
    # TRUNCATE fires no delete triggers: without its own trigger, ids restarted by it would collide.
    if is_sqlite(hub):
        pytest.skip("job_texts is PostgreSQL's")
    hub.enqueue_many("test.ok", [{"word": f"ibis-{i}"} for i in range(3)], delay=3600)
    with hub.ledger.engine.begin() as conn:
        conn.execute(text("TRUNCATE jobs, attempts, job_events RESTART IDENTITY CASCADE"))
    assert_index_consistent(hub)
    again = hub.enqueue_many("test.ok", [{"word": f"ibis-{i}"} for i in range(3)], delay=3600)
    assert found(ops["administrator"], "ibis-") == set(again)
    assert_index_consistent(hub)
