"""The Jobs surface as one operator: ``Operations``, every operator operation on one request path.

    admin gate (``Hub.as_operator``) -> capability check -> target loaded within the operator's
    account -> state check -> the change -> masked Activity Log entry, in the change's transaction
    -> RQ deliveries withdrawn and sent after commit

Each write is declared once in ``declarations.OPERATIONS``; a public method only names its operation and
passes its arguments; ``Operations._run`` (one record) and ``Operations._bulk`` (many, in batches) compose
the rest, with the unit of work of ``write.Write``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import pandas as pd
from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session

from ..core import validate
from ..core.masking import MaskingRule
from ..core.permissions import Policy
from ..core.tasks import get_task
from ..core.times import utcnow
from ..errors import AccessDenied, InvalidTransition, NotFound, ValidationError
from ..ledger import archive, audit, notes, pauses, query, schedules, stats
from ..ledger.jobs import check_priority
from ..ledger.store import Attempt, Job, Operator, Schedule
from ..runtime import workers_info
from .declarations import _DEAD, _RUNNING, CREATED, OPERATIONS, Operation, replaced
from .resolver import Resolver, note_ids
from .write import Write, changed, chunks, full_snapshot, snapshot

if TYPE_CHECKING:
    from ..ledger.stack import Stack


_TARGETS: Mapping[str, type[Job] | type[Schedule]] = {"job": Job, "schedule": Schedule}


_TRIAGE_FILTERS = ("task", "error_code", "since", "until")
_ID_PAGE = 20_000  # ids read ahead by a bulk operation
MAX_BATCH = 10_000  # jobs changed in one transaction of a bulk operation
ProgressFn = Callable[[int, int], Any]


class Operations:
    """The Jobs surface as one operator: each method checks the capability, scopes to the operator's
    account, masks for their role and records operator writes in the Activity Log."""

    def __init__(self, hub: Stack, operator: Operator) -> None:
        self.hub = hub
        self.operator = operator
        self.policy = Policy(hub.settings.capabilities)
        # May they, and how is each record shown to them: capability, account scope, masking.
        self.resolver = Resolver(operator, self.policy, hub.book.rules)
        self._unmasked = self.resolver.unmasked

    @property
    def name(self) -> str:
        return self.operator.name

    @property
    def role(self) -> str:
        return self.operator.role

    @property
    def account(self) -> str | None:
        """The account this operator is bound to; None: every account."""
        return self.operator.account

    def can(self, action: str) -> bool:
        """Whether this operator's role may perform ``action`` (a method name)."""
        return self.resolver.can(action)

    def within(self, account: str | None) -> Operations:
        """This operator acting inside one account (None: as they are), as the HTTP API's
        ``/api/accounts/{account_id}/...`` does: an operator of every account is narrowed to ``account``; one
        bound to another account gets NotFound, as for that account's jobs (existence never leaks)."""
        if account is None or account == self.account:
            return self
        account = validate.account(account)
        if account == self.account:
            return self
        if self.account is not None:
            raise NotFound(f"account {validate.describe(account)} not found")
        op = self.operator
        narrowed = Operator(id=op.id, name=op.name, role=op.role, account=account, enabled=op.enabled,
                            created_at=op.created_at)
        return Operations(self.hub, narrowed)

    def _own_account(self, account: str | None, what: str) -> str | None:
        """The account a new job or schedule belongs to: ``account``, within the operator's own."""
        account = validate.account(account)
        if self.account is None:
            return account
        if account not in (None, self.account):
            raise AccessDenied(
                f"operator {self.name!r} is bound to account {self.account!r} and may not {what} "
                f"for account {account!r}"
            )
        return self.account

    def __repr__(self) -> str:
        scope = f", account={self.account!r}" if self.account is not None else ""
        return f"<Operations as {self.name!r} ({self.role}{scope})>"

    # -- the request path ---------------------------------------------------------------------
    def _allow(self, action: str) -> None:
        self.resolver.check(action)

    def _rule(self, task: str) -> MaskingRule | None:
        """The masking rule this operator sees ``task`` through; None: in clear (administrator)."""
        return self.resolver.rule(task)

    def _entry(self, action: str, target_type: str, target: Any, change: Any) -> audit.Entry:
        context = getattr(target, "payload", None) or getattr(target, "payload_template", None)
        return audit.Entry(self.name, action, target_type, target.id, target.account, change, context=context)

    @contextmanager
    def _writing(self) -> Iterator[Write]:
        """A write transaction holding the Activity Log's append lock; entries are appended (masked) before
        commit, deliveries leave for RQ after it."""
        with self.hub.ledger.write() as session:
            audit.lock_chain(session)
            w = Write(self, session, utcnow())
            yield w
            w.finish()
            audit.append(session, w.entries, self.hub.book.masking_rule, at=w.now)
        self.hub.book.withdraw(w.withdrawn)
        self.hub.book.send(w.deliveries)

    def _load(self, session: Session, target_type: str, target_id: Any, *, lock: bool) -> Any:
        """The job or schedule, if this operator's account may see it; NotFound alike otherwise. A task or
        priority queue (a pause's target) is named, and checked against the registered tasks or the
        priorities."""
        if target_type in pauses.KINDS:
            return self._load_pause_target(session, target_type, target_id, lock=lock)
        model = _TARGETS[target_type]
        ident = query.parse_job_id(target_id, target_type)
        stmt = select(model).where(model.id == ident, *self.resolver.scope(model))
        if lock:
            stmt = stmt.with_for_update()
        found = session.scalars(stmt).first()
        if found is None:
            raise NotFound(f"{target_type} {ident} not found")
        return found

    def _load_pause_target(self, session: Session, kind: str, name: Any, *, lock: bool) -> pauses.PauseTarget:
        if self.account is not None:
            # A pause holds for every account: it is not one account's to set.
            raise AccessDenied(
                f"operator {self.name!r} is bound to account {self.account!r}; pausing or resuming a {kind} "
                "holds for every account and needs an operator of every account"
            )
        if kind == pauses.QUEUE:
            return pauses.load(session, kind, check_priority(name), lock=lock)
        if not isinstance(name, str):
            get_task(name)  # refuses it, naming the registered tasks
        target = pauses.load(session, kind, name, lock=lock)
        if target.state != pauses.PAUSED:  # a paused task can be resumed even if no longer registered
            get_task(name)
        return target

    def _apply(self, w: Write, op: Operation, target: Any, args: dict[str, Any]) -> Any:
        """State check, the change, and its Activity Log entry."""
        if op.accepts is not None and target.state not in op.accepts:
            ident = target.name if isinstance(target, pauses.PauseTarget) else target.id
            raise InvalidTransition(
                f"cannot {op.action} {op.target_type} {ident}: it is {target.state}; "
                f"{op.action} accepts {op.target_type}s that are {', '.join(sorted(op.accepts))}"
            )
        if replaced(target) and not op.takes_replaced:
            raise InvalidTransition(
                f"cannot {op.action} job {target.id}: it was edited and replayed as job {target.replayed_as_id} "
                f"and is kept for audit only (out of the dead letter); work on job {target.replayed_as_id}"
            )
        fields = (("state",) if hasattr(target, "state") else ()) + op.audits

        def view() -> dict[str, Any]:
            # A schedule is logged in the shape operators create and edit it in.
            record = schedules.record(target) if op.target_type == "schedule" else snapshot(target, fields)
            return w.note_refs(target, op.target_type, record)

        before = (
            w.note_refs(target, op.target_type, full_snapshot(target, w.history(target))) if op.purges else view()
        )
        result = op.apply(w, target, **args)
        note_id = None
        if op.reason and args.get(op.reason) is not None:
            # The audited field that holds the text (dead_letter_reason, resolution_note) keeps it as a note.
            [field] = [f for f in op.audits if f in notes.NOTE_FIELDS]
            note_id = w.add_note(target, op.target_type, field, args[op.reason])
        after: dict[str, Any] | None = None
        if not op.purges:
            before, after = changed(before, view())
            if op.result_key:
                after[op.result_key] = result
        w.record(op.action, op.target_type, target, before, after, note_id)
        return result

    def _run(self, action: str, target_id: Any, **args: Any) -> Any:
        """The request path for one record: capability, arguments, load, state, change, audit."""
        op = OPERATIONS[action]
        self._allow(action)
        self.resolver.check_arguments(action, args)
        if op.check is not None:
            args = op.check(self.hub.settings, args)
        with self._writing() as w:
            try:
                target = self._load(w.session, op.target_type, target_id, lock=True)
            except NotFound:
                if op.target_type != "job":
                    raise
            else:
                return self._apply(w, op, target, args)
        return self._on_archived(op, target_id)

    # -- archived jobs ------------------------------------------------------------------------
    def _archived(self, job_id: Any) -> tuple[Job, list[Attempt]]:
        """A job moved to the archive, within this operator's account, as records outside the ledger (with its
        attempts); NotFound as for any job otherwise."""
        ident = query.parse_job_id(job_id)
        record = archive.find(self.hub.ledger, self.hub.settings, ident)
        if record is None or (self.account is not None and record["account"] != self.account):
            raise NotFound(f"job {ident} not found")
        attempts = [Attempt(job_id=ident, task=record["task"], **a) for a in record.pop("attempt_history")]
        record.pop("events")
        return Job(**record), attempts

    def _on_archived(self, op: Operation, job_id: Any) -> Any:
        """A write to a job not in the ledger: NotFound unless it is archived; an archived job takes delete_job
        only (out of the archive too, the Activity Log keeping its snapshot)."""
        job, attempts = self._archived(job_id)
        if op.action != "delete_job":
            raise InvalidTransition(
                f"cannot {op.action} job {job.id}: it is archived ({job.state}, last changed "
                f"{job.updated_at:%Y-%m-%d}) and archived jobs are read-only; get_job and history read it, "
                "delete_job deletes it"
            )
        file_id = archive.owner_file(self.hub.ledger, self.hub.settings, job.id)
        if file_id is None:
            raise NotFound(f"job {job.id} not found")
        with self._writing() as w:
            if not archive.claim_deletion(w.session, job.id, file_id, w.now):
                raise NotFound(f"job {job.id} not found")
            before = w.note_refs(job, "job", full_snapshot(job, attempts))
            w.record(op.action, "job", job, before, None)
        archive.compact_now(self.hub.ledger, self.hub.settings)
        return None

    def _conditions(self, f: query.JobFilter, now: datetime) -> list[ColumnElement[bool]]:
        return query.job_conditions(
            f, now=now, retention_seconds=self.hub.settings.retention_seconds, account=self.account,
            unmasked=self._unmasked, dialect=self.hub.ledger.engine.dialect.name,
        )

    def _bulk(
        self,
        action: str,
        conds: list[ColumnElement[bool]],
        *,
        dry_run: bool,
        batch_size: int,
        progress: ProgressFn | None,
        show_progress: bool,
    ) -> int:
        """The request path for many jobs: one transaction per batch, one Activity Log entry per job.

        Each batch re-reads its jobs under lock with the same conditions, so a job that changed since
        it was counted is skipped rather than refused. Returns how many jobs were changed.
        """
        op = OPERATIONS[action]
        batch_size = validate.whole(batch_size, "batch_size", lo=1, hi=MAX_BATCH)
        dry_run = validate.flag(dry_run, "dry_run", "True (only count) or False")
        with self.hub.ledger.read() as session:
            total = int(session.scalar(select(func.count()).select_from(Job).where(*conds)) or 0)
        if dry_run or not total:
            return total
        report, close = _progress_reporter(progress, show_progress, total, action)
        done = 0
        try:
            for ids in self._matching_ids(conds, batch_size):
                with self._writing() as w:
                    jobs = w.session.scalars(
                        select(Job).where(Job.id.in_(ids), *conds).order_by(Job.id).with_for_update()
                    ).all()
                    if op.purges:
                        w.read_histories([job.id for job in jobs])
                    for job in jobs:
                        if op.admits(job.state, replaced(job)):
                            self._apply(w, op, job, {})
                done += len(w.entries)
                report(done)
        finally:
            close()
        return done

    def _matching_ids(self, conds: list[ColumnElement[bool]], batch_size: int) -> Iterator[Sequence[int]]:
        """The ids matching ``conds`` in batches, read ahead in pages of many batches (each read of a filter
        at a million jobs costs tens of milliseconds, whatever its limit)."""
        last_id, page = 0, max(batch_size, _ID_PAGE)
        while True:
            with self.hub.ledger.read() as session:
                ids = session.scalars(select(Job.id).where(*conds, Job.id > last_id).order_by(Job.id).limit(page)).all()
            if not ids:
                return
            last_id = ids[-1]
            yield from chunks(ids, batch_size)
            if len(ids) < page:
                return

    def _filters(self, filters: Mapping[str, Any], now: datetime, allowed: tuple[str, ...] = query.FILTERS) -> (
        query.JobFilter
    ):
        return query.parse_filters({k: v for k, v in filters.items() if v is not None}, now, allowed)

    # -- reads --------------------------------------------------------------------------------
    def list_jobs(
        self,
        state: str | list[str] | None = None,
        task: str | list[str] | None = None,
        since: datetime | str | timedelta | None = None,
        until: datetime | str | timedelta | None = None,
        error_code: str | list[str] | None = None,
        text: str | None = None,
        include_old_succeeded: bool = False,
        page: int = 1,
        per_page: int = 50,
        after_id: int | None = None,
        **unknown: Any,
    ) -> query.JobPage:
        """The queue, newest first, one page at a time, with the total the filters match.

        ``state``, ``task`` and ``error_code`` take one name or a list; ``since``/``until`` bound
        created_at (datetime, ISO string, or a timedelta meaning that long ago); ``text`` searches
        payload and error detail (masked text for non-administrators). Succeeded jobs older than the
        retention window are left out unless ``include_old_succeeded`` or ``state='succeeded'``.
        ``after_id`` pages by keyset instead of ``page``: the ``per_page`` jobs listed after that job (the
        last one of the page before), as cheap deep in the list as at its start.
        """
        self._allow("list_jobs")
        now = utcnow()
        f = self._filters(
            {"state": state, "task": task, "since": since, "until": until, "error_code": error_code, "text": text,
             "include_old_succeeded": include_old_succeeded or None, **unknown},
            now,
        )
        with self.hub.ledger.read() as session:
            after = None
            if after_id is not None:
                if page != 1:
                    raise ValidationError(f"give page or after_id, not both (page={page!r}, after_id={after_id!r})")
                anchor = self._load(session, "job", after_id, lock=False)
                after = (anchor.created_at, anchor.id)
            return query.list_page(
                session, self._conditions(f, now), page=page, per_page=per_page, rule_for=self._rule, after=after
            )

    def get_job(self, job_id: int) -> query.JobDetail:
        """The full record of one job, in the ledger or the archive (``archived``), masked for non-administrators
        (whose view is logged)."""
        self._allow("get_job")
        ident = query.parse_job_id(job_id)
        with self.hub.ledger.read() as session:
            found = query.read_detail(session, ident, self.account, self._rule)
            if found is None:
                archived, attempts = self._archived(ident)  # NotFound unless archived, within the account
                found = archived, query.archived_detail(session, archived, attempts, self._rule(archived.task))
            job, detail = found
            if self._unmasked:
                return detail
            latest = notes.latest(session, "job", [job.id]) if job.dead_letter_reason or job.resolution_note else {}

        def note(name: str) -> str | None:
            return self.resolver.note(job.task, getattr(job, name), job.payload, latest.get((job.id, name)))

        detail = replace(detail, dead_letter_reason=note("dead_letter_reason"), resolution_note=note("resolution_note"))
        shown = {"payload": detail.payload, "last_error_detail": detail.last_error_detail}
        # The masked view is logged (seed 000), in the next batch of views, stamped with this moment.
        self.hub.view_log.record(audit.Entry(self.name, "get_job", "job", job.id, job.account,
                                             {"task": job.task, "shown": shown}, context=job.payload, at=utcnow()))
        return detail

    def history(
        self,
        since: datetime | str | timedelta | None = None,
        until: datetime | str | timedelta | None = None,
        task: str | list[str] | None = None,
        state: str | list[str] | None = None,
        account: str | None = None,
    ) -> pd.DataFrame:
        """Every job, the live ledger's and the archive's together, oldest first: one row per job (id, task,
        state, account, priority, attempts, max_attempts, created_at, updated_at, scheduled_for,
        last_error_code, payload, archived), masked as ``get_job`` masks. ``since``/``until`` bound created_at
        (a datetime, ISO text, or a timedelta meaning that long ago); ``task`` and ``state`` take one name or a
        list; ``account`` narrows an operator of every account to one. The archive is read through DuckDB."""
        self._allow("history")
        now = utcnow()
        f = self._filters({"since": since, "until": until, "task": task, "state": state}, now,
                          ("since", "until", "task", "state"))
        scope = self._own_account(account, "read the history of jobs")
        frame = archive.history(self.hub.ledger, self.hub.settings, since=f.since, until=f.until, tasks=f.tasks,
                                states=f.states, account=scope)
        if not self._unmasked:
            frame["payload"] = [self.resolver.payload(t, p) for t, p in zip(frame["task"], frame["payload"],
                                                                            strict=True)]
        return frame

    def archive_runs(self, since: datetime | str | timedelta | None = None) -> pd.DataFrame:
        """The archive's runs, newest first: when, the cutoff, the range of last changes moved, how many jobs and
        files, the checksum, and the live ledger's jobs and bytes before and after. Stack-wide, so for
        operators of every account."""
        self._allow("archive_runs")
        if self.account is not None:
            raise AccessDenied(
                f"operator {self.name!r} is bound to account {self.account!r}; the archive's runs count every "
                "account's jobs and need an operator of every account"
            )
        start = query.parse_time(since, "since", utcnow()) if since is not None else None
        return archive.runs(self.hub.ledger, start)

    def throughput(self, window: str | timedelta = "1h", by: str = "task") -> pd.DataFrame:
        """Succeeded, failed, dead-lettered and cancelled counts per task inside ``window`` ('15m', '1h', '7d')."""
        self._allow("throughput")
        return stats.throughput(self.hub.ledger, window, by, account=self.account)

    def throughput_series(self, window: str | timedelta = "24h", interval: str | timedelta = "1h") -> pd.DataFrame:
        """Event counts per interval, task and state over ``window``, in long form for charts."""
        self._allow("throughput_series")
        return stats.throughput_series(self.hub.ledger, window, interval, account=self.account)

    def run_time_percentiles(self, window: str | timedelta = "24h") -> pd.DataFrame:
        """Per task, p50/p95/p99 of attempt run time and queue wait (seconds) over ``window``."""
        self._allow("run_time_percentiles")
        return stats.run_time_percentiles(self.hub.ledger, window, account=self.account)

    def activity_log(
        self,
        since: datetime | str | timedelta | None = None,
        until: datetime | str | timedelta | None = None,
        operator: str | None = None,
    ) -> pd.DataFrame:
        """The Activity Log, oldest first: at, operator, action, target_type, target_id, account, change, reason."""
        self._allow("activity_log")
        self.hub.view_log.flush()  # this process's views, before the log is read
        now = utcnow()
        if operator is not None:
            operator = validate.text(operator, "operator", max_chars=validate.OPERATOR_CHARS,
                                     allowed="an operator's name")
        rows = audit.read_entries(
            self.hub.ledger,
            since=query.parse_time(since, "since", now) if since is not None else None,
            until=query.parse_time(until, "until", now) if until is not None else None,
            operator=operator,
            account=self.account,
        )
        with self.hub.ledger.read() as session:
            found = notes.by_id(session, (n for row in rows for n in note_ids(row.change)))
        return audit.log_frame(rows, [self.resolver.entry(row, found) for row in rows])

    def verify_audit(self) -> audit.VerifyResult:
        """Check the Activity Log's hash chain; names the first removed or altered entry."""
        self._allow("verify_audit")
        self.hub.view_log.flush()
        return audit.verify(self.hub.ledger)

    def paused(self) -> pd.DataFrame:
        """The paused tasks and priority queues: kind ("task" or "queue"), name, paused_at, paused_by."""
        self._allow("paused")
        return pd.DataFrame.from_records(pauses.rows(self.hub.ledger), columns=list(pauses.COLUMNS))

    def workers(self) -> workers_info.Snapshot:
        """The live workers of the stack (host, pid, state, current job, last heartbeat, jobs done and failed;
        stale ones flagged), each priority queue's depth and oldest due job, the scheduler's last tick and the
        enabled schedules: what ``sgen-ops info`` and the Workers view show. Ledger counts are of the operator's
        account, and a worker's job of another account is not named; the archive's totals are for operators
        of every account only."""
        self._allow("workers")
        return workers_info.snapshot(self.hub, jobs=self.resolver.scope(Job), schedules=self.resolver.scope(Schedule),
                                     stack_wide=self.account is None)

    # -- pauses -------------------------------------------------------------------------------
    def pause_task(self, task: str) -> None:
        """Pause a task: its waiting jobs stay queued, with no attempt, until ``resume_task``."""
        self._run("pause_task", task)

    def resume_task(self, task: str) -> None:
        """Resume a paused task: its waiting jobs are delivered to workers again."""
        self._run("resume_task", task)

    def pause_queue(self, priority: str) -> None:
        """Pause a priority queue ("high", "normal", "low"): its waiting jobs stay queued until ``resume_queue``."""
        self._run("pause_queue", priority)

    def resume_queue(self, priority: str) -> None:
        """Resume a paused priority queue: its waiting jobs are delivered to workers again."""
        self._run("resume_queue", priority)

    # -- writes on one job --------------------------------------------------------------------
    def rerun(self, job_id: int) -> None:
        """Re-run a failed, succeeded or dead-letter job: queued again with a fresh attempt counter."""
        self._run("rerun", job_id)

    def cancel(self, job_id: int) -> None:
        """Cancel a queued or retrying job at once; a running one is flagged and stops at its next checkpoint."""
        self._run("cancel", job_id)

    def retry_now(self, job_id: int) -> None:
        """Bring a retrying job's future retry forward to now; the retry budget is not consumed."""
        self._run("retry_now", job_id)

    def send_to_dead_letter(self, job_id: int, reason: str | None = None) -> None:
        """Move a queued, retrying or failed job to the dead letter without further retries."""
        self._run("send_to_dead_letter", job_id, reason=reason)

    def replay(self, job_id: int) -> None:
        """Return a dead-lettered job to the queue with a fresh attempt counter."""
        self._run("replay", job_id)

    def edit_and_replay(self, job_id: int, payload: Any) -> int:
        """Queue a new job from a dead letter with an edited payload; the original is kept for audit, linked both
        ways (``replayed_as_id``, ``replayed_from_id``), and leaves the live dead letter. Returns the new id."""
        return int(self._run("edit_and_replay", job_id, payload=payload))

    def dismiss(self, job_id: int) -> None:
        """Purge a dead-lettered job and its attempts (irreversible); the Activity Log keeps a snapshot."""
        self._run("dismiss", job_id)

    def resolve(self, job_id: int, note: str) -> None:
        """Mark a failed, retrying or dead-letter job as handled, with a note saying how."""
        self._run("resolve", job_id, note=note)

    def trigger(self, job_id: int) -> None:
        """Run a queued or retrying job now, whatever its scheduled time."""
        self._run("trigger", job_id)

    def update_job(self, job_id: int, **fields: Any) -> None:
        """Change a waiting job's priority, scheduled_for, max_attempts, or payload (only before its first attempt)."""
        self._run("update_job", job_id, **fields)

    def delete_job(self, job_id: int) -> None:
        """Delete a job in any state but running; the Activity Log keeps a snapshot."""
        self._run("delete_job", job_id)

    def enqueue(
        self,
        task: str,
        payload: Any = None,
        *,
        priority: str | None = None,
        delay: float | timedelta | None = None,
        max_attempts: int | None = None,
        account: str | None = None,
    ) -> int:
        """Queue a new job as this operator, as an integration does over HTTP: in the operator's account (or
        ``account``, if they may see every account), with them as its originating user, and logged. Returns
        the job id."""
        self._allow("enqueue")
        account = self._own_account(account, "enqueue jobs")
        with self._writing() as w:
            job = w.book.prepare(
                task, payload, account=account, priority=priority, delay=delay, max_attempts=max_attempts,
                originating_user_id=self.operator.id, now=w.now,
            )
            w.insert(job)
            w.record("enqueue", "job", job, None, {"state": job.state, **snapshot(job, CREATED)})
            return int(job.id)

    # -- schedules ----------------------------------------------------------------------------
    def create_schedule(
        self,
        task: str,
        *,
        cron: str | None = None,
        every: float | timedelta | str | None = None,
        timezone: str | None = None,
        payload: Any = None,
        max_attempts: int | None = None,
        retention: float | timedelta | str | None = None,
        priority: str | None = None,
        account: str | None = None,
    ) -> int:
        """Register a recurring job: exactly one of ``cron`` (in ``timezone``, UTC by default) or ``every``
        ("15m", seconds, a timedelta); ``payload`` is a template where ``{tick:%Y-%m-%d}`` places the tick's
        time. Returns the schedule id."""
        self._allow("create_schedule")
        account = self._own_account(account, "create schedules")
        with self._writing() as w:
            schedule = schedules.create(
                self.hub, w.session, task=task, cron=cron, every=every, timezone=timezone, payload=payload,
                max_attempts=max_attempts, retention=retention, priority=priority, account=account,
                created_by=self.operator.id, now=w.now,
            )
            w.record("create_schedule", "schedule", schedule, None, schedules.record(schedule))
            return int(schedule.id)

    def edit_schedule(self, schedule_id: int, **changes: Any) -> None:
        """Change a schedule's task, cron, every, timezone, payload, max_attempts, retention, priority or
        enabled (False pauses it)."""
        self._run("edit_schedule", schedule_id, **changes)

    def pause_schedule(self, schedule_id: int) -> None:
        """Stop a schedule's ticks; it stays registered until resumed."""
        self._run("pause_schedule", schedule_id)

    def resume_schedule(self, schedule_id: int) -> None:
        """Start a paused schedule again from its next fire time (missed ticks are not replayed)."""
        self._run("resume_schedule", schedule_id)

    def run_schedule_now(self, schedule_id: int) -> int:
        """Emit one job from the schedule now, out of band; the next regular tick is unaffected. Returns the job id."""
        return int(self._run("run_schedule_now", schedule_id))

    def list_schedules(self) -> pd.DataFrame:
        """The schedules this operator may see, with next and last run, the next five fire times and recent runs."""
        self._allow("list_schedules")

        with self.hub.ledger.read() as session:
            return schedules.rows(self.hub, session, account=self.account, mask=self.resolver.payload)

    def dead_letter_groups(
        self,
        task: str | list[str] | None = None,
        since: datetime | str | timedelta | None = None,
        until: datetime | str | timedelta | None = None,
    ) -> pd.DataFrame:
        """Dead letters counted per task and error code, biggest group first: task, error_code, count, newest,
        count_is_exact (each group is counted up to ``query.GROUP_COUNT_CAP``; past it, count is that cap and
        count_is_exact False)."""
        self._allow("dead_letter_groups")
        now = utcnow()
        f = self._filters({"state": _DEAD, "task": task, "since": since, "until": until}, now)
        with self.hub.ledger.read() as session:
            found = query.dead_letter_groups(session, self._conditions(f, now))
        return pd.DataFrame.from_records(
            [(g.task, g.error_code, g.count, g.newest, g.count_is_exact) for g in found],
            columns=["task", "error_code", "count", "newest", "count_is_exact"],
        )

    def preview_schedule(
        self,
        cron: str | None = None,
        every: float | timedelta | str | None = None,
        timezone: str | None = None,
        count: int = 5,
    ) -> list[datetime]:
        """The next fire times of a timing before it is saved.

        A bad cron raises ValidationError with croniter's reason.
        """
        self._allow("preview_schedule")
        return schedules.preview(cron=cron, every=every, timezone=timezone, count=count)

    # -- writes on many jobs ------------------------------------------------------------------
    def delete_jobs(
        self,
        dry_run: bool = False,
        *,
        all: bool = False,  # the HTTP body's name: "no filter, on purpose"
        batch_size: int = 500,
        progress: ProgressFn | None = None,
        show_progress: bool = False,
        **filters: Any,
    ) -> int:
        """Delete every job ``list_jobs(**filters)`` would show, except running ones; returns the count.

        At least one filter is required, unless ``all=True`` says that every job in view is meant.
        ``dry_run`` only counts.
        """
        self._allow("delete_jobs")
        now = utcnow()
        f = self._filters(filters, now)
        if not f.narrows and all is not True:
            raise ValidationError(
                f"delete_jobs needs at least one filter ({', '.join(query.FILTERS)}) so that it never "
                "deletes the whole queue by accident; all=True deletes every job in view on purpose"
            )
        conds = [*self._conditions(f, now), Job.state != _RUNNING]
        return self._bulk("delete_jobs", conds, dry_run=dry_run, batch_size=batch_size, progress=progress,
                          show_progress=show_progress)

    def replay_dead_letters(
        self,
        task: str | list[str] | None = None,
        error_code: str | list[str] | None = None,
        since: datetime | str | timedelta | None = None,
        until: datetime | str | timedelta | None = None,
        dry_run: bool = False,
        batch_size: int = 500,
        progress: ProgressFn | None = None,
        show_progress: bool = False,
    ) -> int:
        """Replay every matching dead letter, in batches; ``dry_run`` only counts. Returns the count."""
        return self._triage("replay_dead_letters", task, error_code, since, until, dry_run, batch_size, progress,
                            show_progress)

    def dismiss_dead_letters(
        self,
        task: str | list[str] | None = None,
        error_code: str | list[str] | None = None,
        since: datetime | str | timedelta | None = None,
        until: datetime | str | timedelta | None = None,
        dry_run: bool = False,
        batch_size: int = 500,
        progress: ProgressFn | None = None,
        show_progress: bool = False,
    ) -> int:
        """Dismiss (purge) every matching dead letter, in batches; ``dry_run`` only counts. Returns the count."""
        return self._triage("dismiss_dead_letters", task, error_code, since, until, dry_run, batch_size, progress,
                            show_progress)

    def _triage(
        self, action: str, task: Any, error_code: Any, since: Any, until: Any, dry_run: bool, batch_size: int,
        progress: ProgressFn | None, show_progress: bool,
    ) -> int:
        self._allow(action)
        now = utcnow()
        f = self._filters(
            {"task": task, "error_code": error_code, "since": since, "until": until, "state": _DEAD}, now,
            (*_TRIAGE_FILTERS, "state"),
        )
        return self._bulk(action, self._conditions(f, now), dry_run=dry_run, batch_size=batch_size,
                          progress=progress, show_progress=show_progress)


def _progress_reporter(
    progress: ProgressFn | None, show: bool, total: int, action: str
) -> tuple[Callable[[int], None], Callable[[], None]]:
    """(report(done), close()) for a bulk run: the caller's callback, a tqdm bar when asked, or nothing."""
    if progress is not None:
        callback = progress
        return (lambda done: callback(done, total)), (lambda: None)
    if show:
        try:
            from tqdm.auto import tqdm
        except ImportError:
            return (lambda done: None), (lambda: None)
        bar = tqdm(total=total, desc=action, unit="job")

        def report(done: int) -> None:
            bar.update(done - bar.n)

        return report, bar.close
    return (lambda done: None), (lambda: None)
