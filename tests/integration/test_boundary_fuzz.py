"""Property-based tests of every public entry point: whatever the arguments, a call either succeeds or
raises a ``SgenOpsError`` saying why -- and a refused call changes nothing in the ledger.

Each operation's arguments are drawn from the values a form, a script or an HTTP client may send: the
valid ones, and the hostile ones (NUL and lone surrogates, huge and negative numbers, NaN and infinity,
absurd durations and dates, deep nesting, wrong types, the mask itself). The figures of each run (calls
per operation, refused, crashes) are written to ``test-artifacts/boundary-fuzz-<backend>.json``.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from filelock import FileLock
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

import sgen_ops
from sgen_ops.core.masking import MASK
from sgen_ops.core.validate import describe
from sgen_ops.ledger.store import ActivityEntry, Attempt, Job, JobEvent, Operator, Pause, Schedule
from sgen_ops.surface.operations import Operations

from ..conftest import ROOT
from .test_surface_fixtures import Jobs, add_operators

EXAMPLES = int(os.environ.get("SGEN_OPS_FUZZ_EXAMPLES", "12"))


def nested(depth: int, leaf: Any = 1) -> Any:
    value = leaf
    for i in range(depth):
        value = [value] if i % 2 else {"k": value}
    return value


HOSTILE_TEXT = st.sampled_from(
    ["", " ", "\x00", "a\x00b", "\ud800", "x\udfffy", "é", "日本", "x" * 250, "y" * 5000, MASK, "%_\\", "'\";--",
     "nan", "inf", "-1", "0", "99999999999w", "1h", "15m", "7d", "2026-01-01T00:00:00Z", "9999-12-31T23:59:59",
     "0001-01-01", "*/5 * * * *", "0 6 * * 1", "Europe/Paris", "UTC", "Mars/Olympus"]
)
NUMBERS = st.one_of(
    st.sampled_from([0, 1, -1, 2, 3, 2**31 - 1, 2**31, 2**63, -(2**63) - 1, 10**18]),
    st.builds(lambda: 10**5000),  # past the int-to-text limit (built, since hypothesis would print it)
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([float("nan"), float("inf"), -float("inf"), 1e308, -0.0, 0.5]),
)
TIMES = st.one_of(
    st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)),
    st.datetimes(timezones=st.just(UTC)),
    st.timedeltas(),
    st.sampled_from([timedelta.max, timedelta.min, timedelta(0), timedelta(days=-1)]),
)
JSONISH = st.recursive(
    st.one_of(st.none(), st.booleans(), NUMBERS, st.text(max_size=20), HOSTILE_TEXT),
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.one_of(st.text(max_size=8), HOSTILE_TEXT), children, max_size=4),
    ),
    max_leaves=12,
)
HOSTILE = st.one_of(
    st.none(), st.booleans(), NUMBERS, HOSTILE_TEXT, st.text(max_size=30), TIMES, JSONISH,
    st.builds(lambda: nested(1200)), st.builds(lambda: nested(40)),
    st.sampled_from([[["a"]], {"state": "queued"}, ("a", "b"), {1, 2}, b"bytes", object()]),
)


def either(*valid: Any) -> st.SearchStrategy[Any]:
    """A valid value most of the time, a hostile one otherwise (hypothesis leans to the later, richer
    branches of a ``one_of``, so the choice is drawn first)."""
    if not valid:
        return HOSTILE
    return st.integers(0, 3).flatmap(lambda i: HOSTILE if i == 3 else st.sampled_from(valid))


def maybe(*valid: Any) -> st.SearchStrategy[Any]:
    """Like ``either``, or the argument left out (None)."""
    return either(None, *valid)


def kwargs(open_ended: bool = False, **fields: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    """Keyword arguments, each present or not; for a function taking ``**fields``, now and then an unknown one
    (a fixed signature refuses those itself, with Python's TypeError)."""
    optional = st.fixed_dictionaries({}, optional=fields)
    if not open_ended:
        return optional
    extra = st.dictionaries(st.sampled_from(["colour", "state", "id", "\x00", "payload"]), HOSTILE, max_size=1)
    return st.one_of(optional, st.tuples(optional, extra).map(lambda t: {**t[1], **t[0]}))


def fingerprint(hub: sgen_ops.Hub) -> dict[str, Any]:
    """What any operation could change: every job row, attempts, events, schedules, pauses, operators, the log."""
    with hub.ledger.read() as session:
        jobs = [tuple(getattr(j, c.key) for c in Job.__mapper__.column_attrs if c.key != "lease_until")
                for j in session.scalars(select(Job).order_by(Job.id))]
        schedules = [tuple(getattr(s, c.key) for c in Schedule.__mapper__.column_attrs)
                     for s in session.scalars(select(Schedule).order_by(Schedule.id))]
        counts = {m.__name__: session.scalar(select(func.count()).select_from(m))
                  for m in (Attempt, JobEvent, Operator, ActivityEntry)}
        pauses = sorted(tuple(row) for row in session.execute(select(Pause.kind, Pause.name)))
        last = session.execute(select(ActivityEntry.id, ActivityEntry.hash).order_by(ActivityEntry.id.desc())).first()
    return {"jobs": jobs, "schedules": schedules, "pauses": pauses, "counts": counts,
            "log": tuple(last) if last else None}


class Harness:
    """Calls one entry point with drawn arguments and checks the outcome; keeps the run's figures."""

    def __init__(self, hub: sgen_ops.Hub, backend: str) -> None:
        self.hub = hub
        self.backend = backend
        self.figures: dict[str, Counter[str]] = {}

    def call(self, name: str, fn: Callable[..., Any], *args: Any, **kw: Any) -> None:
        figures = self.figures.setdefault(name, Counter())
        before = fingerprint(self.hub)
        try:
            fn(*args, **kw)
        except sgen_ops.SgenOpsError as exc:
            figures["refused"] += 1
            refusal = str(exc)
            after = fingerprint(self.hub)
        except BaseException as exc:
            figures["crashed"] += 1
            raise AssertionError(
                f"{name}(*{describe(args)}, **{describe(kw)}) raised {type(exc).__name__}: {describe(str(exc))}"
            ) from exc
        else:
            figures["ok"] += 1
            figures["tried"] += 1
            return
        figures["tried"] += 1
        assert refusal, f"{name} refused with an empty message"
        assert after == before, f"{name}{describe(args)}{describe(kw)} was refused ({refusal}) but changed the ledger"

    def save(self, test: str) -> None:
        out = ROOT / "test-artifacts"
        out.mkdir(exist_ok=True)
        path = out / f"boundary-fuzz-{self.backend}.json"
        # Tests on other xdist workers add to the same file.
        with FileLock(f"{path}.lock"):
            data = json.loads(path.read_text()) if path.exists() else {}
            data[test] = {name: dict(c) for name, c in sorted(self.figures.items())}
            path.write_text(json.dumps(data, indent=1, sort_keys=True))


@pytest.fixture
def world(hub: sgen_ops.Hub, database_url: str) -> dict[str, Any]:
    ops = add_operators(hub)
    hub.add_operator("bound", "editor", account="acme")
    ids = Jobs(hub, ops["administrator"]).make_all()
    ids["acme"] = hub.enqueue("test.secret", {"credentials": {"api_key": "sk-live-51HxQ"}}, account="acme")
    schedule = ops["administrator"].create_schedule("test.ok", every="1h", payload={"n": 1})
    backend = "postgresql" if database_url.startswith("postgresql") else "sqlite"
    return {"ops": ops, "ids": list(ids.values()), "schedule": schedule, "harness": Harness(hub, backend)}


FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True,
                database=None)
TASKS = ("test.ok", "test.secret", "test.boom", "no.such.task")
FILTERS = {
    "state": maybe("dead-letter", ["queued", "failed"], "nonsense"),
    "task": maybe("test.ok", ["test.boom"], "no.such.task"),
    "since": maybe("24h", timedelta(hours=1), "2026-01-01T00:00:00Z"),
    "until": maybe(datetime.now(UTC)),
    "error_code": maybe("kaboom", ["later"]),
    "text": maybe("kaboom", "é", "ka"),
    "include_old_succeeded": maybe(True, False),
}
TRIAGE = {k: FILTERS[k] for k in ("task", "error_code", "since", "until")}
TIMING = {"cron": maybe("*/5 * * * *", "0 6 * * 1", "61 * * * *"), "every": maybe("5m", 300, timedelta(hours=1)),
          "timezone": maybe("UTC", "Europe/Paris")}
# Exactly one of cron and every, as a schedule needs, most of the time; any mix otherwise.
ONE_TIMING = st.one_of(
    st.fixed_dictionaries({"cron": either("*/5 * * * *", "0 6 * * 1")}, optional={"timezone": TIMING["timezone"]}),
    st.fixed_dictionaries({"every": either("5m", 300, timedelta(hours=1))}),
    st.fixed_dictionaries({}, optional=TIMING),
)


def timed(strategy: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[dict[str, Any]]:
    """``strategy``'s keyword arguments with a timing drawn from ONE_TIMING."""
    return st.tuples(ONE_TIMING, strategy).map(lambda t: {**t[1], **t[0]})
Draw = Callable[[st.DataObject, dict[str, Any]], tuple[tuple[Any, ...], dict[str, Any]]]


def job_id(data: st.DataObject, w: dict[str, Any]) -> Any:
    return data.draw(either(*w["ids"], *w["ids"], 10**6, 0, -5, "3", 3.0, 2**31, 2**64))


def schedule_id(data: st.DataObject, w: dict[str, Any]) -> Any:
    return data.draw(either(*[w["schedule"]] * 6, 10**6, -1, 2**40, "1"))


def only_id(pick: Callable[[st.DataObject, dict[str, Any]], Any]) -> Draw:
    return lambda data, w: ((pick(data, w),), {})


def with_kwargs(strategy: st.SearchStrategy[dict[str, Any]]) -> Draw:
    return lambda data, w: ((), data.draw(strategy))


# Operation name -> how to draw its arguments, for every operation of the surface (``hub.as_operator``).
SURFACE: dict[str, Draw] = {
    "get_job": only_id(job_id),
    "rerun": only_id(job_id),
    "cancel": only_id(job_id),
    "retry_now": only_id(job_id),
    "replay": only_id(job_id),
    "dismiss": only_id(job_id),
    "trigger": only_id(job_id),
    "delete_job": only_id(job_id),
    "send_to_dead_letter": lambda data, w: ((job_id(data, w),), data.draw(kwargs(reason=maybe("bad feed")))),
    "edit_and_replay": lambda data, w: ((job_id(data, w), data.draw(either({"n": 5}, {"credentials": {
        "api_key": MASK}}, {"password": MASK}))), {}),
    "resolve": lambda data, w: ((job_id(data, w), data.draw(either("handled by hand"))), {}),
    "update_job": lambda data, w: ((job_id(data, w),), data.draw(kwargs(
        True, priority=either("high", "low"), max_attempts=either(2, 5),
        scheduled_for=either(timedelta(minutes=5), "2030-01-01T00:00:00Z"),
        payload=either({"n": 9}, {"password": MASK})))),
    "list_jobs": with_kwargs(kwargs(True, **FILTERS, page=either(1, 2), per_page=either(10, 50))),
    "delete_jobs": with_kwargs(kwargs(True, **FILTERS, dry_run=either(True), batch_size=either(2, 500))),
    "replay_dead_letters": with_kwargs(kwargs(**TRIAGE, dry_run=either(True, False), batch_size=either(1, 100))),
    "dismiss_dead_letters": with_kwargs(kwargs(**TRIAGE, dry_run=either(True, False), batch_size=either(1, 100))),
    "dead_letter_groups": with_kwargs(kwargs(task=FILTERS["task"], since=FILTERS["since"], until=FILTERS["until"])),
    "throughput": with_kwargs(kwargs(window=either("1h", "24h", "15m"), by=either("task", "account"))),
    "throughput_series": with_kwargs(kwargs(window=either("24h"), interval=either("1h", "15m"))),
    "run_time_percentiles": with_kwargs(kwargs(window=either("24h"))),
    "activity_log": with_kwargs(kwargs(since=FILTERS["since"], until=FILTERS["until"],
                                       operator=maybe("administrator"))),
    "verify_audit": lambda data, w: ((), {}),
    "within": lambda data, w: ((data.draw(either(None, "acme", "globex", "*")),), {}),
    "enqueue": lambda data, w: ((data.draw(either(*TASKS)), data.draw(either({"n": 1}, None))), data.draw(kwargs(
        account=maybe("acme", "globex"), priority=maybe("high"), delay=maybe(0, 3600), max_attempts=maybe(2)))),
    "create_schedule": lambda data, w: ((data.draw(either(*TASKS)),), data.draw(timed(kwargs(
        payload=maybe({"n": 1}, {"day": "{tick:%Y-%m-%d}"}), max_attempts=maybe(1, 3),
        retention=maybe("7d", 3), priority=maybe("high"), account=maybe("acme"))))),
    "edit_schedule": lambda data, w: ((schedule_id(data, w),), data.draw(timed(kwargs(
        True, task=either("test.ok"), payload=maybe({"n": 2}), enabled=either(True),
        max_attempts=maybe(2), retention=maybe("1d"), priority=maybe("low"))))),
    "pause_schedule": only_id(schedule_id),
    "resume_schedule": only_id(schedule_id),
    "run_schedule_now": only_id(schedule_id),
    "list_schedules": lambda data, w: ((), {}),
    "pause_task": lambda data, w: ((data.draw(either(*TASKS)),), {}),
    "resume_task": lambda data, w: ((data.draw(either(*TASKS)),), {}),
    "pause_queue": lambda data, w: ((data.draw(either("high", "normal", "low")),), {}),
    "resume_queue": lambda data, w: ((data.draw(either("high", "normal", "low")),), {}),
    "paused": lambda data, w: ((), {}),
    "workers": lambda data, w: ((), {}),
    "history": with_kwargs(kwargs(since=FILTERS["since"], until=FILTERS["until"], task=FILTERS["task"],
                                  state=FILTERS["state"], account=maybe("acme", "globex"))),
    "archive_runs": with_kwargs(kwargs(since=FILTERS["since"])),
    "preview_schedule": with_kwargs(timed(kwargs(count=either(1, 5)))),
}

HUB: dict[str, Draw] = {
    "enqueue": lambda data, w: ((data.draw(either(*TASKS)), data.draw(either({"n": 1}, None, [1, 2]))), data.draw(
        kwargs(account=maybe("acme", "globex"), priority=maybe("high", "low"),
               delay=maybe(0, 5, 3600, timedelta(minutes=1)), max_attempts=maybe(1, 3)))),
    "enqueue_many": lambda data, w: ((data.draw(either(*TASKS)), data.draw(st.one_of(
        st.lists(either({"n": 1}), max_size=3), HOSTILE))), data.draw(kwargs(account=maybe("acme"),
                                                                            max_attempts=maybe(2)))),
    "add_operator": lambda data, w: ((data.draw(either("dana", "erin")), data.draw(either("viewer", "editor"))),
                                     data.draw(kwargs(account=maybe("acme")))),
    "as_operator": lambda data, w: ((data.draw(either("administrator", "viewer", "nobody")),), {}),
    "set_operator_enabled": lambda data, w: ((data.draw(either("bound", "nobody")), data.draw(either(True))), {}),
    "tick": lambda data, w: ((data.draw(maybe(datetime.now(UTC))),), {}),
    "create_token": lambda data, w: ((data.draw(either("viewer", "nobody")),), data.draw(kwargs(
        expires_in=maybe("30d", 3600, timedelta(hours=1))))),
    "recover_lost": lambda data, w: ((data.draw(maybe(datetime.now(UTC))),), {}),
    "archive": lambda data, w: ((data.draw(maybe(datetime.now(UTC))),), data.draw(kwargs(dry_run=maybe(True)))),
}


def test_every_operation_is_fuzzed(hub: sgen_ops.Hub) -> None:
    public = {n for n in dir(Operations) if not n.startswith("_") and callable(getattr(Operations, n))}
    assert public - {"can"} == set(SURFACE), "an operation of the surface is missing from the fuzz table"


@pytest.mark.parametrize("name", sorted(HUB))
def test_hub_entry_points_refuse_bad_input_cleanly(hub: sgen_ops.Hub, world: dict[str, Any], name: str) -> None:
    h: Harness = world["harness"]

    @FUZZ
    @given(data=st.data())
    def run(data: st.DataObject) -> None:
        args, kw = HUB[name](data, world)
        h.call(name, getattr(hub, name), *args, **kw)

    run()
    h.save(f"hub.{name}")


@pytest.mark.parametrize("role", ["administrator", "editor", "viewer"])
@pytest.mark.parametrize("name", sorted(SURFACE))
def test_operations_refuse_bad_input_cleanly(
    hub: sgen_ops.Hub, world: dict[str, Any], name: str, role: str
) -> None:
    """Every operation as each role (the editor bound to one account): succeeds or refuses cleanly."""
    h: Harness = world["harness"]
    ops = world["ops"][role] if role != "editor" else hub.as_operator("bound")

    @FUZZ
    @given(data=st.data())
    def run(data: st.DataObject) -> None:
        args, kw = SURFACE[name](data, world)
        h.call(name, getattr(ops, name), *args, **kw)

    run()
    h.save(f"{role}.{name}")
