"""The statistics from rollups: counts equal to the raw computation on small ledgers, percentiles within the
stated relative error of the exact ones, whatever is rolled up, open, back-dated or archived. Both backends."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import insert, select

import sgen_ops
from sgen_ops.ledger import rollups, stats
from sgen_ops.ledger.store import ATTEMPTS, EVENTS, EventCount, Job, RollupMark
from tests.helpers import race

TASKS = ("test.ok", "test.flaky", "test.boom")
ACCOUNTS = ("acme", "globex", None)
STATES = ("queued", "running", "succeeded", "failed", "dead-letter", "cancelled", "retrying")
NOW = datetime.now(UTC).replace(microsecond=0)


class Ledger:
    """Events and attempts written straight into the ledger at chosen times, and the same rows kept here, for
    the raw computation the statistics must agree with."""

    def __init__(self, hub: sgen_ops.Hub, seed: int) -> None:
        self.hub = hub
        self.rng = random.Random(seed)
        self.events: list[dict[str, Any]] = []
        self.attempts: list[dict[str, Any]] = []
        self.jobs = {(t, a): hub.enqueue(t, account=a, delay=86400) for t in TASKS for a in ACCOUNTS}
        with hub.ledger.read() as session:
            self.events += [{"at": e.at, "task": e.task, "account": e.account, "to_state": e.to_state}
                            for e in session.execute(select(EVENTS))]
        self.numbers: dict[int, int] = {}

    def moment(self, days: float) -> datetime:
        return NOW - timedelta(seconds=self.rng.uniform(0, days * 86400), microseconds=self.rng.randrange(10**6))

    def add(self, n: int, days: float = 10) -> None:
        events, attempts = [], []
        for _ in range(n):
            task, account = self.rng.choice(TASKS), self.rng.choice(ACCOUNTS)
            events.append({"job_id": 0, "task": task, "account": account, "from_state": None,
                           "to_state": self.rng.choice(STATES), "at": self.moment(days)})
            job_id = self.jobs[(task, account)]
            self.numbers[job_id] = number = self.numbers.get(job_id, 0) + 1
            started = self.moment(days)
            finished = started + timedelta(seconds=self.rng.lognormvariate(0, 1.5)) if self.rng.random() < 0.9 else None
            ready = started - timedelta(seconds=self.rng.uniform(0.001, 30)) if self.rng.random() < 0.9 else None
            attempts.append({"job_id": job_id, "task": task, "run": 1, "number": number, "ready_at": ready,
                             "started_at": started, "finished_at": finished, "exit": "succeeded" if finished else None})
        with self.hub.ledger.write() as session:
            session.execute(insert(EVENTS), events)
            session.execute(insert(ATTEMPTS), attempts)
        self.events += events
        self.attempts += [{**a, "account": a_acct} for a, a_acct in zip(attempts, (
            next(acct for (t, acct), j in self.jobs.items() if j == a["job_id"]) for a in attempts), strict=True)]

    def finish_pending(self) -> None:
        """Attempts that were running when rolled up finish now."""
        with self.hub.ledger.write() as session:
            for a in self.attempts:
                if a["finished_at"] is None:
                    a["finished_at"] = a["started_at"] + timedelta(seconds=2.5)
                    session.execute(ATTEMPTS.update().where(
                        ATTEMPTS.c.job_id == a["job_id"], ATTEMPTS.c.number == a["number"]
                    ).values(finished_at=a["finished_at"]))

    # -- the raw computation ----------------------------------------------------------------------
    def throughput(self, start: datetime, end: datetime, by: str, account: str | None) -> dict[Any, dict[str, int]]:
        out: dict[Any, dict[str, int]] = {}
        for e in self.events:
            if start <= e["at"] <= end and e["to_state"] in stats.COUNTED and account in (None, e["account"]):
                row = out.setdefault(e[by], dict.fromkeys(stats.THROUGHPUT_COLUMNS, 0))
                row[stats.COUNTED[e["to_state"]]] += 1
        return out

    def series(self, start: datetime, end: datetime, step: int) -> dict[tuple[Any, str, str], int]:
        out: dict[tuple[Any, str, str], int] = {}
        for e in self.events:
            if start <= e["at"] <= end and e["to_state"] in stats.COUNTED:
                at = pd.Timestamp(int(e["at"].timestamp()) // step * step, unit="s", tz="UTC")
                key = (at, e["task"], e["to_state"])
                out[key] = out.get(key, 0) + 1
        return out

    def durations(self, start: datetime, end: datetime, account: str | None) -> pd.DataFrame:
        rows = [
            {"task": a["task"], "run": (a["finished_at"] - a["started_at"]).total_seconds(),
             "wait": (a["started_at"] - a["ready_at"]).total_seconds() if a["ready_at"] else math.nan}
            for a in self.attempts
            if a["finished_at"] is not None and start <= a["started_at"] <= end and account in (None, a["account"])
        ]
        return pd.DataFrame(rows, columns=["task", "run", "wait"])


def frame_counts(frame: pd.DataFrame, by: str) -> dict[Any, dict[str, int]]:
    return {None if pd.isna(row[by]) else row[by]: {c: int(row[c]) for c in stats.THROUGHPUT_COLUMNS}
            for row in frame.to_dict("records")}


def series_counts(frame: pd.DataFrame) -> dict[tuple[Any, str, str], int]:
    return {(r["at"], r["task"], r["state"]): int(r["count"]) for r in frame.to_dict("records")}


def within_error(got: pd.DataFrame, raw: pd.DataFrame) -> None:
    """Each percentile lies between the exact order statistics around q(n-1), widened by the stated error."""
    assert sorted(got["task"]) == sorted(raw["task"].unique())
    for row in got.to_dict("records"):
        values = raw[raw["task"] == row["task"]]
        assert row["attempts"] == len(values)
        for kind in ("run", "wait"):
            exact = np.sort(values[kind].dropna().to_numpy())
            for q in stats.PERCENTILES:
                got_q = row[f"{kind}_p{round(q * 100)}"]
                position = q * (len(exact) - 1)
                low, high = exact[math.floor(position)], exact[math.ceil(position)]
                assert low * (1 - rollups.ALPHA) - 1e-9 <= got_q <= high * (1 + rollups.ALPHA) + 1e-9, (
                    row["task"], kind, q, got_q, low, high)


WINDOWS = [timedelta(hours=1), timedelta(hours=5, minutes=17), timedelta(days=1), timedelta(days=3, hours=7),
           timedelta(days=30), timedelta(days=90)]


def check(ledger: Ledger, *, exact_timing: bool) -> None:
    hub = ledger.hub
    for window in WINDOWS:
        for shift in (timedelta(0), timedelta(hours=2, minutes=31, seconds=7), timedelta(days=1, minutes=3)):
            end = NOW - shift
            start = end - window
            for by, account in (("task", None), ("account", None), ("task", "acme")):
                got = stats.throughput(hub.ledger, window, by, account=account, now=end)
                assert frame_counts(got, by) == ledger.throughput(start, end, by, account), (window, shift, by)
            for step in (3600, 86400, 900):
                got = stats.throughput_series(hub.ledger, window, timedelta(seconds=step), now=end)
                assert series_counts(got) == ledger.series(start, end, step), (window, shift, step)
            for account in (None, "globex"):
                got = stats.run_time_percentiles(hub.ledger, window, account=account, now=end)
                raw = ledger.durations(start, end, account)
                if exact_timing:
                    expected = stats._exact_percentiles(raw)
                    pd.testing.assert_frame_equal(got, expected)
                else:
                    within_error(got, raw)


def test_counts_equal_the_raw_computation_rolled_up_or_not(hub: sgen_ops.Hub) -> None:
    ledger = Ledger(hub, seed=7)
    ledger.add(400)
    check(ledger, exact_timing=True)  # nothing rolled up: all raw, exact as before
    assert rollups.roll(hub.ledger) > 0
    check(ledger, exact_timing=False)  # closed part from the rollups
    ledger.add(150)  # the open part, after the marks
    check(ledger, exact_timing=False)
    ledger.finish_pending()  # attempts that were running when rolled up
    check(ledger, exact_timing=False)
    rollups.roll(hub.ledger)
    check(ledger, exact_timing=False)
    with hub.ledger.read() as session:
        assert not session.scalar(select(rollups.RollupPendingAttempt.attempt_id).limit(1))


def test_a_back_dated_row_is_counted_once(hub: sgen_ops.Hub) -> None:
    ledger = Ledger(hub, seed=11)
    ledger.add(100, days=2)
    rollups.roll(hub.ledger)
    ledger.add(20, days=5)  # after the marks, but at times the rollups already cover
    check_counts(ledger)
    rollups.roll(hub.ledger)
    check_counts(ledger)


def check_counts(ledger: Ledger) -> None:
    for window in (timedelta(days=1), timedelta(days=7)):
        got = stats.throughput(ledger.hub.ledger, window, "task", now=NOW)
        assert frame_counts(got, "task") == ledger.throughput(NOW - window, NOW, "task", None)


def test_two_roll_ups_at_once_count_each_row_once(hub: sgen_ops.Hub) -> None:
    ledger = Ledger(hub, seed=3)
    ledger.add(300)
    results = race(*(lambda: rollups.roll(hub.ledger, batch=50) for _ in range(3)))
    assert not [r for r in results if isinstance(r, BaseException)], results
    check_counts(ledger)
    with hub.ledger.read() as session:
        assert sum(session.scalars(select(EventCount.count).where(EventCount.span == rollups.DAY))) == sum(
            1 for e in ledger.events if e["to_state"] in stats.COUNTED)
        mark = session.get(RollupMark, rollups.MARK)
        assert mark is not None and mark.events_through > 0


def test_archived_jobs_count_as_before(hub: sgen_ops.Hub) -> None:
    """Real jobs run by the worker, archived with a moved clock: every count is the same after as before, and
    the percentiles stay within the stated error of the exact ones."""
    for n in range(6):
        hub.enqueue("test.ok", {"n": n}, account=ACCOUNTS[n % 3])
    hub.enqueue("test.flaky", {"succeed_on": 2}, account="acme")
    cancelled = hub.enqueue("test.ok", delay=3600)
    hub.work()
    hub.add_operator("dana", "administrator")
    hub.as_operator("dana").cancel(cancelled)
    admin = hub.as_operator("dana")
    calls = {w: (admin.throughput(w), admin.throughput(w, by="account"), admin.throughput_series(w, "1h"),
                 admin.throughput_series(w, "1d"), admin.run_time_percentiles(w))
             for w in ("1h", "24h", "30d", "90d")}
    fine = admin.throughput_series("24h", "15m")
    assert calls["24h"][0]["succeeded"].sum() == 7
    assert hub.archive(now=datetime.now(UTC) + timedelta(days=40)) == 8
    with hub.ledger.read() as session:
        assert session.scalar(select(Job.id).where(Job.state == "succeeded")) is None
    for w, (by_task, by_account, hourly, daily, timing) in calls.items():
        pd.testing.assert_frame_equal(admin.throughput(w), by_task)
        pd.testing.assert_frame_equal(admin.throughput(w, by="account"), by_account)
        pd.testing.assert_frame_equal(admin.throughput_series(w, "1h"), hourly)
        pd.testing.assert_frame_equal(admin.throughput_series(w, "1d"), daily)
        after = admin.run_time_percentiles(w)
        assert after[["task", "attempts"]].equals(timing[["task", "attempts"]])
        for column in stats.TIMING_COLUMNS[2:]:
            assert np.allclose(after[column], timing[column], rtol=2 * rollups.ALPHA, atol=1e-6), column
    # Finer than an hour, an archived hour counts at the quarter holding its start: the same totals.
    totals = ["task", "state"]
    assert admin.throughput_series("24h", "15m").groupby(totals)["count"].sum().equals(
        fine.groupby(totals)["count"].sum())
    acme = hub.add_operator("ana", "viewer", account="acme")
    assert acme and hub.as_operator("ana").throughput("24h")["succeeded"].sum() == 3


def test_an_end_hour_with_archived_events_counts_whole(hub: sgen_ops.Hub) -> None:
    """The stated bound: after archiving, an hour at the window's end can no longer be cut, so it counts whole."""
    hub.enqueue("test.ok")
    hub.work()
    with hub.ledger.read() as session:
        [done] = session.scalars(select(Job.updated_at))
    assert hub.archive(now=datetime.now(UTC) + timedelta(days=40)) == 1
    just_before = done - timedelta(microseconds=1)
    # Before the job finished, yet its (archived) hour is counted whole.
    counts = stats.throughput(hub.ledger, "1h", now=just_before)
    assert counts["succeeded"].sum() == (1 if rollups.floor_to(just_before, 3600) == rollups.floor_to(done, 3600)
                                         else 0)


@pytest.mark.parametrize("values", [[0.5], [0.001, 0.002, 3.0, 400.0, 86400.0 * 3], [1e-7, 0.0, -1.0, 2.0]])
def test_histogram_values_within_the_stated_error(values: list[float]) -> None:
    bins, counts = rollups.histogram(np.asarray(values))
    back = rollups.values_of(bins)
    for value in values:
        representative = back[np.searchsorted(bins, rollups.bins_of(np.asarray([value]))[0])]
        if value < rollups.MIN_VALUE:
            assert representative == 0.0
        else:
            assert abs(representative - value) <= rollups.ALPHA * value
    packed = rollups.pack(bins, counts)
    assert [list(a) for a in rollups.unpack(packed)] == [list(bins), list(counts)]
