"""Reading the ledger for operators: job filters (built once, shared by list, delete and bulk triage),
the paginated queue list, and the job detail record.

Masking is applied here, before data leaves for the surface: callers pass ``rule_for(task)``, which
returns the task's masking rule for a masked viewer and None for one who sees payloads in clear.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import closing
from dataclasses import asdict, dataclass, fields
from datetime import datetime, timedelta
from functools import cache
from types import SimpleNamespace
from typing import Any

import pandas as pd
from sqlalchemy import (
    ColumnElement,
    DateTime,
    Select,
    Text,
    and_,
    bindparam,
    cast,
    extract,
    func,
    literal_column,
    or_,
    select,
    tuple_,
)
from sqlalchemy import column as sql_column
from sqlalchemy import table as sql_table
from sqlalchemy.orm import Session

from ..core import validate
from ..core.masking import MaskingRule
from ..core.states import ALL_STATES, WAITING, State
from ..core.times import as_utc
from ..errors import ValidationError
from .store import Attempt, Job, Operator, Schedule

FILTERS = ("state", "task", "since", "until", "error_code", "text", "include_old_succeeded")
EXCERPT_CHARS = 120
MAX_PER_PAGE = 10_000

RuleFor = Callable[[str], MaskingRule | None]


def parse_job_id(value: Any, what: str = "job") -> int:
    """A job or schedule id as int: numpy integers from a DataFrame are fine, text and floats are not; an id
    no row can have is NotFound."""
    return validate.ident(value, what)


def parse_time(value: Any, name: str, now: datetime) -> datetime:
    """A datetime (naive is UTC), an ISO 8601 string, or a timedelta meaning that long before now."""
    return validate.moment(value, name, now)


@dataclass(frozen=True)
class JobFilter:
    """The filters of the queue list, validated; None means not filtered on."""

    states: tuple[str, ...] | None = None
    tasks: tuple[str, ...] | None = None
    since: datetime | None = None
    until: datetime | None = None
    error_codes: tuple[str, ...] | None = None
    text: str | None = None
    include_old_succeeded: bool = False

    @property
    def narrows(self) -> bool:
        """True if some filter limits which jobs match (include_old_succeeded only widens)."""
        return any(
            v is not None for v in (self.states, self.tasks, self.since, self.until, self.error_codes, self.text)
        )


def parse_filters(filters: Mapping[str, Any], now: datetime, allowed: Sequence[str] = FILTERS) -> JobFilter:
    """Validate list/search filters: unknown names, states and malformed values raise ValidationError."""
    unknown = sorted(set(filters) - set(allowed))
    if unknown:
        raise ValidationError(f"unknown filter(s) {', '.join(unknown)}; allowed filters: {', '.join(allowed)}")
    states = validate.names(filters.get("state"), "state")
    if states:
        bad = [s for s in states if s not in ALL_STATES]
        if bad:
            raise ValidationError(f"unknown state(s) {', '.join(bad)}; states are: {', '.join(ALL_STATES)}")
    text = filters.get("text")
    if text is not None:
        text = validate.text(text, "text", max_chars=validate.TERM_CHARS, allowed="the text to search for",
                             empty=True, eq=True)
    old = filters.get("include_old_succeeded", False)
    old = validate.flag(old, "include_old_succeeded") if old is not None else False
    since = filters.get("since")
    until = filters.get("until")
    return JobFilter(
        states=states,
        tasks=validate.names(filters.get("task"), "task"),
        since=parse_time(since, "since", now) if since is not None else None,
        until=parse_time(until, "until", now) if until is not None else None,
        error_codes=validate.names(filters.get("error_code"), "error_code", max_chars=validate.ERROR_CODE_CHARS),
        text=(text.strip() or None) if text is not None else None,
        include_old_succeeded=old,
    )


def epoch_seconds(column: Any, dialect: str) -> ColumnElement[Any]:
    """Seconds since 1970 of a (naive UTC) timestamp column, in the backend's own SQL."""
    if dialect == "sqlite":
        return (func.julianday(column) - literal_column("2440587.5")) * literal_column("86400.0")
    return extract("epoch", column)


def job_conditions(
    f: JobFilter,
    *,
    now: datetime,
    retention_seconds: float,
    account: str | None,
    unmasked: bool,
    dialect: str,
) -> list[ColumnElement[bool]]:
    """The WHERE clauses for ``f``: account scope, filters, and the retention rule of the default view."""
    conds: list[ColumnElement[bool]] = []
    if account is not None:
        conds.append(Job.account == account)
    if f.states:
        # States as literals (validated names): a partial index's predicate matches only a literal.
        conds.append(Job.state == state_literal(f.states[0]) if len(f.states) == 1
                     else Job.state.in_([state_literal(s) for s in f.states]))
        if _DEAD in f.states:
            # The dead letter is the live one: an edited-and-replayed original is kept for audit, out of it.
            live = Job.replayed_as_id.is_(None)
            conds.append(live if len(f.states) == 1 else or_(Job.state != state_literal(_DEAD), live))
    if f.tasks:
        conds.append(Job.task == f.tasks[0] if len(f.tasks) == 1 else Job.task.in_(f.tasks))
    if f.error_codes:
        conds.append(Job.last_error_code.in_(f.error_codes))
    if f.since is not None:
        conds.append(Job.created_at >= f.since)
    if f.until is not None:
        conds.append(Job.created_at <= f.until)
    if f.text:
        conds.append(text_condition(f.text, unmasked=unmasked, dialect=dialect))
    # An explicit state filter either asks for succeeded jobs (old ones too) or leaves them all out.
    if f.states is None and not f.include_old_succeeded:
        view = default_view(now, retention_seconds, dialect)
        if not f.text:
            # Without a text search each part of the view is counted as ranges of one index (docs/totals.md).
            setattr(view, _COUNT_PARTS, getattr(view, _PARTS))
        conds.append(view)
    return conds


def state_literal(state: str) -> ColumnElement[str]:
    """A state name (one of ``ALL_STATES``, checked) as an SQL literal."""
    if state not in ALL_STATES:
        raise ValueError(f"{state!r} is not a state")
    return literal_column(f"'{state}'")


# Attributes set on conditions built here, read by ``count_matches``.
_PARTS = "_sgen_view_parts"  # the default view's disjoint parts, whose OR it is
_COUNT_PARTS = "_sgen_count_parts"  # set when counting the parts one by one is the cheaper way

_SUCCEEDED: ColumnElement[str] = literal_column(f"'{State.SUCCEEDED.value}'")
_DEAD = State.DEAD_LETTER.value
_NOT_SUCCEEDED = tuple(s for s in ALL_STATES if s != State.SUCCEEDED.value)


# Migration 0003's FTS5 table on SQLite: a trigram index of payload, last_error_detail and search_masked
# (columns of those names), whose rowid is the job id.
_FTS = sql_table("jobs_fts", sql_column("rowid"))
# Migration 0004's table on PostgreSQL: the searched texts of each job, with their pg_trgm indexes.
_JOB_TEXTS = sql_table(
    "job_texts", sql_column("job_id"), sql_column("payload", Text), sql_column("last_error_detail", Text),
    sql_column("search_masked", Text),
)
# The trigram tokenizer finds substrings of three characters or more; shorter ones match no row.
TRIGRAM_MIN_CHARS = 3


@cache
def sqlite_trigram() -> bool:
    """True if this process's SQLite has FTS5 with the trigram tokenizer (3.34 and later), as migration 0003
    requires to create ``jobs_fts``; without it text search on SQLite scans."""
    import sqlite3  # the SQLite driver, on a SQLite ledger only

    try:
        with closing(sqlite3.connect(":memory:")) as conn:
            conn.execute("CREATE VIRTUAL TABLE probe USING fts5(t, tokenize='trigram')")
    except sqlite3.Error:
        return False
    return True


def text_condition(text: str, *, unmasked: bool, dialect: str) -> ColumnElement[bool]:
    """Case-insensitive substring search of ``text`` in the payload (its JSON text) and the error detail,
    or, for viewers who see payloads masked, in the masked copy JobBook maintains (and nothing else, so a
    masked value is never found). ``%`` and ``_`` are matched as themselves.

    Case is folded for all of Unicode, as PostgreSQL's ILIKE does under a UTF-8 ctype: ``café`` finds
    ``CAFÉ``. On SQLite a term of three characters or more is looked up in migration 0003's trigram
    index, whose tokenizer folds Unicode case; a shorter one scans with LIKE, which folds ASCII only, so
    it is also tried with each non-ASCII letter in its other case. (Without the trigram tokenizer SQLite
    scans with LIKE for every term, folding ASCII only. And SQLite stores a payload as JSON with non-ASCII
    characters escaped, ``"caf\\u00e9"``: there a payload is found by its non-ASCII text only as written
    so, while PostgreSQL's JSONB text holds the characters themselves.)
    """
    names = ("payload", "last_error_detail") if unmasked else ("search_masked",)
    if dialect == "postgresql":
        return _job_texts_contain(text, names)
    if dialect == "sqlite" and sqlite_trigram():
        if len(text) >= TRIGRAM_MIN_CHARS:
            return _indexed_contains(names, text)
        terms = _case_variants(text)
    else:
        terms = [text]
    columns = (cast(Job.payload, Text), Job.last_error_detail) if unmasked else (Job.search_masked,)
    return or_(*(_contains(c, t, dialect) for c in columns for t in terms))


def _job_texts_contain(text: str, columns: Sequence[str]) -> ColumnElement[bool]:
    """PostgreSQL: the jobs whose texts in migration 0004's ``job_texts`` contain ``text`` (ILIKE, which its
    pg_trgm indexes serve; the texts live apart from ``jobs`` so that a job's state changes leave them be)."""
    return Job.id.in_(
        select(_JOB_TEXTS.c.job_id).where(or_(*(_contains(_JOB_TEXTS.c[name], text, "postgresql") for name in columns)))
    )


def _indexed_contains(columns: Sequence[str], text: str) -> ColumnElement[bool]:
    """The jobs whose ``columns`` contain ``text`` (three characters or more), from the trigram index.

    Written as an FTS5 phrase, not as LIKE: a trigram phrase matches a contiguous substring, taken
    literally (LIKE's wildcards are plain characters in it), with case folded as the tokenizer folds it.
    The index would serve LIKE only without an ESCAPE clause, and SQLite then re-checks every candidate
    with its own LIKE (ASCII-only folding), reading the row from ``jobs``."""
    phrase = '"' + text.replace('"', '""') + '"'
    query = "{" + " ".join(columns) + "}: " + phrase
    match = literal_column(_FTS.name).match(bindparam("text_match", query, unique=True))
    return Job.id.in_(select(_FTS.c.rowid).where(match))


def _contains(column: Any, text: str, dialect: str) -> ColumnElement[bool]:
    """Case-insensitive substring match: ILIKE on PostgreSQL (which the pg_trgm indexes of ``job_texts``
    serve). SQLite's LIKE already ignores (ASCII) case, as its lower() only folds
    ASCII, so the lower() calls, which cost a copy of every value read, are left out there."""
    if dialect == "sqlite":
        return column.contains(text, autoescape=True)  # type: ignore[no-any-return]
    return column.icontains(text, autoescape=True)  # type: ignore[no-any-return]


def _case_variants(text: str) -> list[str]:
    """``text`` (a term under three characters) with each non-ASCII character in each of its one-character
    case forms: what SQLite's LIKE, folding ASCII only, must be asked for to ignore case as ILIKE does."""
    forms = [[c] if c.isascii() else sorted({c, *(v for v in (c.lower(), c.upper()) if len(v) == 1)})
             for c in text]
    return ["".join(p) for p in itertools.product(*forms)]


def expiry_reached(now: datetime, dialect: str) -> ColumnElement[bool]:
    """A succeeded job with its own ``retention_days`` is still inside it: updated_at + retention >= now.

    Written as migration 0010's expression index ``ix_jobs_kept_own`` is, so that index answers it."""
    if dialect == "sqlite":
        julian_now = now.timestamp() / 86400.0 + 2440587.5
        return literal_column("julianday(jobs.updated_at) + jobs.retention_days") >= julian_now
    if dialect == "postgresql":
        return literal_column("(jobs.updated_at + jobs.retention_days * interval '1 day')") >= bindparam(
            "view_now", as_utc(now).replace(tzinfo=None), type_=DateTime(), unique=True)
    return epoch_seconds(Job.updated_at, dialect) + Job.retention_days * 86400.0 >= now.timestamp()


def default_view(now: datetime, retention_seconds: float, dialect: str) -> ColumnElement[bool]:
    """The default queue view: every job that did not succeed, and the succeeded ones still inside their
    retention window (the global one, or the job's own ``retention_days``).

    The three parts are disjoint and each matches an index of migration 0002 (the state literals are
    part of the partial indexes' predicates, so they are written as literals, not parameters).
    """
    cutoff = now - timedelta(seconds=retention_seconds)
    kept = and_(Job.state == _SUCCEEDED, Job.retention_days.is_(None), Job.updated_at >= cutoff)
    kept_own = and_(Job.state == _SUCCEEDED, Job.retention_days.is_not(None), expiry_reached(now, dialect))
    # Listing walks created_at newest first and stops at the page: "not succeeded" must stay a term no index
    # answers, or SQLite turns the OR into a union of index searches and sorts all of it.
    view = or_(Job.state != _SUCCEEDED, kept, kept_own)
    # Counting: the live part as an IN list (one index range per state); the kept parts are the partial
    # indexes' predicates, which lead with state so that SQLite, without ANALYZE statistics, prefers them.
    parts = (and_(Job.state != _SUCCEEDED, Job.state.in_([state_literal(s) for s in _NOT_SUCCEEDED])), kept, kept_own)
    setattr(view, _PARTS, parts)
    return view


# A total is counted exactly up to this many matches; beyond it the page says "more than COUNT_CAP"
# (``JobPage.total_is_exact`` False), so that no count reads more than COUNT_CAP + 1 index entries.
COUNT_CAP = 10_000
# Each dead-letter group is counted up to this many (a dozen groups read at most 12,000 entries).
GROUP_COUNT_CAP = 1_000


def capped_count(session: Session, conds: Sequence[ColumnElement[bool]], limit: int) -> int:
    """How many jobs match ``conds``, counting at most ``limit``: the index range stops there."""
    if limit <= 0:
        return 0
    found = select(literal_column("1").label("one")).select_from(Job).where(*conds).limit(limit).subquery()
    return int(session.scalar(select(func.count()).select_from(found)) or 0)


def count_matches(session: Session, conds: Sequence[ColumnElement[bool]], cap: int | None = None) -> tuple[int, bool]:
    """(total, exact): the number of jobs matching ``conds`` if it is at most ``cap``, else ``(cap, False)``:
    more than ``cap`` match.

    The default view is counted as the sum of its disjoint parts, each a range of one index (docs/totals.md);
    each part counts only what the parts before it left of the cap. ``cap`` defaults to ``COUNT_CAP``."""
    cap = COUNT_CAP if cap is None else cap
    parts: Sequence[ColumnElement[bool]] = ()
    rest = list(conds)
    for i, cond in enumerate(conds):
        parts = getattr(cond, _COUNT_PARTS, None) or ()
        if parts:
            rest = [*conds[:i], *conds[i + 1:]]
            break
    found = 0
    for part in parts or (None,):
        found += capped_count(session, rest if part is None else [*rest, part], cap + 1 - found)
        if found > cap:
            return cap, False
    return found, True


# -- dead-letter groups -------------------------------------------------------------------------
# The group key of a dead letter: its error code, none as ''; migration 0010's partial indexes of the live
# dead letters are on this expression, written the same way.
def error_code_key(model: Any = Job) -> ColumnElement[str]:
    """A dead letter's group key of its error code (``model``: the jobs table or an alias of it)."""
    return func.coalesce(model.last_error_code, literal_column("''"))


@dataclass(frozen=True)
class DeadLetterGroup:
    """The live dead letters of one task and error code: how many (exact up to ``GROUP_COUNT_CAP``, else at
    least that many), and the newest one's last change."""

    task: str
    error_code: str | None
    count: int
    count_is_exact: bool
    newest: datetime | None


def dead_letter_groups(
    session: Session, conds: Sequence[ColumnElement[bool]], cap: int | None = None
) -> list[DeadLetterGroup]:
    """The groups of the dead letters matching ``conds`` (which hold the live dead letter's terms), biggest
    first, in one statement whatever the number of dead letters or groups: the groups are found by a skip scan
    (one index seek per group: each step seeks the first key past the one before), and each group is counted up
    to ``cap`` (default ``GROUP_COUNT_CAP``) and its newest read from the end of its range, by subqueries of
    that group's key. Its text does not depend on the groups found, so the backend plans it once per
    connection (a statement per group, or a UNION of one arm per group, was planned anew at every call: on
    PostgreSQL the planning cost more than the counting)."""
    cap = GROUP_COUNT_CAP if cap is None else cap
    # Core aliases of the table: an ORM alias adapts every column it is asked for, which cost more than the
    # statement's run on PostgreSQL.
    prev, group = Job.__table__.alias("prev"), Job.__table__.alias("grp")
    key = error_code_key()
    first = select(Job.id).where(*conds).order_by(Job.task, key).limit(1).scalar_subquery()
    seek = select(first.label("id")).cte("dead_letter_group_seek", recursive=True)
    following = (
        select(Job.id)
        .where(*conds, tuple_(Job.task, key) > tuple_(prev.c.task, error_code_key(prev.c)))
        .order_by(Job.task, key).limit(1).correlate(prev).scalar_subquery()
    )
    seek = seek.union_all(select(following).select_from(seek.join(prev, prev.c.id == seek.c.id)))
    keys = (
        select(group.c.task.label("task"), group.c.last_error_code.label("code"),
               error_code_key(group.c).label("code_key"))
        .join(seek, group.c.id == seek.c.id)
        .cte("dead_letter_group_keys")
    )
    of_group = [*conds, Job.task == keys.c.task, key == keys.c.code_key]
    limited = (
        select(literal_column("1").label("one")).select_from(Job).where(*of_group).limit(cap + 1)
        .correlate(keys).subquery()
    )
    counted = session.execute(select(
        keys.c.task, keys.c.code,
        select(func.count()).select_from(limited).correlate(keys).scalar_subquery().label("n"),
        select(func.max(Job.updated_at)).where(*of_group).correlate(keys).scalar_subquery().label("newest"),
    )).all()
    groups = [
        DeadLetterGroup(r.task, r.code, min(r.n, cap), r.n <= cap, as_utc(r.newest) if r.newest is not None else None)
        for r in counted
    ]
    return sorted(groups, key=lambda g: (-g.count, g.task, g.error_code or ""))


# -- the queue list -----------------------------------------------------------------------------
@dataclass(frozen=True)
class JobRow:
    """One line of the queue list."""

    id: int
    task: str
    state: str
    attempts: int
    max_attempts: int
    attempts_label: str
    next_run: datetime | None
    last_error_code: str | None
    last_error_excerpt: str | None
    originating_user: str | None
    account: str | None
    created_at: datetime
    updated_at: datetime


ROW_COLUMNS = tuple(f.name for f in fields(JobRow))


@dataclass(frozen=True)
class JobPage:
    """One page of the queue list, newest first, with the total the filters match: exact when
    ``total_is_exact``, else a lower bound (more than ``COUNT_CAP`` match; shown "10,000+")."""

    items: list[JobRow]
    total: int
    page: int
    per_page: int
    total_is_exact: bool = True

    @property
    def pages(self) -> int:
        """The pages the total fills (with an inexact total: at least that many)."""
        return max(1, -(-self.total // self.per_page))

    @property
    def total_text(self) -> str:
        """The total as the views and the command line show it: '1,234', or '10,000+' past the cap."""
        return f"{self.total:,}" if self.total_is_exact else f"{self.total:,}+"

    def more_after(self, number: int | None = None) -> bool:
        """Whether jobs may follow this page, had it been page ``number`` (default ``page``; a page read by
        keyset knows its number only from its reader, and 0 says it is unknown: then any full page may have
        more after it); ``after_id`` of its last item reads them."""
        if len(self.items) < self.per_page:
            return False
        return not self.total_is_exact or (self.page if number is None else number) * self.per_page < self.total

    def to_frame(self) -> pd.DataFrame:
        """The page as a DataFrame, one row per job."""
        frame = pd.DataFrame([asdict(r) for r in self.items], columns=list(ROW_COLUMNS))
        for column in ("next_run", "created_at", "updated_at"):
            frame[column] = pd.to_datetime(frame[column], utc=True)
        return frame

    def _repr_html_(self) -> str:
        of = f" of {self.pages}" if self.total_is_exact else ""
        summary = f"<p>page {self.page}{of} &middot; {self.total_text} jobs</p>"
        return summary + str(self.to_frame()._repr_html_())


def excerpt(text: str | None, limit: int = EXCERPT_CHARS) -> str | None:
    """The start of ``text`` on one line, at most ``limit`` characters."""
    if not text:
        return None
    flat = re.sub(r"\s+", " ", text).strip()
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def list_page(
    session: Session,
    conds: Sequence[ColumnElement[bool]],
    *,
    page: int,
    per_page: int,
    rule_for: RuleFor,
    after: tuple[datetime, int] | None = None,
) -> JobPage:
    """Count the matches (up to ``COUNT_CAP``), fetch one page of them (newest first) and mask it for the viewer.

    ``after`` (created_at, id) of a job: the page is the matches listed after that job (keyset paging), and
    the total is still that of every match."""
    page = validate.whole(page, "page", lo=1, hi=validate.INT_MAX)
    per_page = validate.whole(per_page, "per_page", lo=1, hi=MAX_PER_PAGE)
    newest_first = (Job.created_at.desc(), Job.id.desc())
    columns = (
        Job.id, Job.task, Job.state, Job.attempts, Job.max_attempts, Job.scheduled_for,
        # The whole detail (the ledger keeps 4,000 characters): masked before the excerpt is cut from it.
        Job.last_error_code, Job.last_error_detail.label("detail"),
        Job.originating_user_id, Job.account, Job.created_at, Job.updated_at, Job.payload,
    )
    offset = (page - 1) * per_page
    keyset: list[ColumnElement[bool]] = []
    if after is not None:
        offset = 0
        # The plain bound starts the index walk at the anchor; the OR orders jobs created at the same moment.
        keyset += [Job.created_at <= after[0],
                   or_(Job.created_at < after[0], and_(Job.created_at == after[0], Job.id < after[1]))]
    total, exact = count_matches(session, conds)
    stmt: Select[Any] = select(*columns).where(*conds, *keyset).order_by(*newest_first).limit(per_page).offset(offset)
    rows = list(session.execute(stmt).all())
    users = {r.originating_user_id for r in rows if r.originating_user_id is not None}
    names: dict[int, str] = {}
    if users:
        found = session.execute(select(Operator.id, Operator.name).where(Operator.id.in_(users)))
        names = {u.id: u.name for u in found}
    items = []
    for r in rows:
        rule = rule_for(r.task)
        detail = rule.mask_text(r.detail, r.payload) if rule and r.detail else r.detail
        items.append(
            JobRow(
                id=r.id,
                task=r.task,
                state=r.state,
                attempts=r.attempts,
                max_attempts=r.max_attempts,
                attempts_label=f"{r.attempts} of {r.max_attempts}",
                next_run=r.scheduled_for if r.state in WAITING else None,
                last_error_code=r.last_error_code,
                last_error_excerpt=excerpt(detail),
                originating_user=names.get(r.originating_user_id),
                account=r.account,
                created_at=r.created_at,
                updated_at=r.updated_at,
            )
        )
    return JobPage(items=items, total=total, page=page, per_page=per_page, total_is_exact=exact)


# -- the detail view ----------------------------------------------------------------------------
@dataclass(frozen=True)
class AttemptRecord:
    """One attempt of a job: when, how it ended (exit) and its error excerpt."""

    number: int
    started_at: datetime
    finished_at: datetime | None
    exit: str | None
    error: str | None
    run: int
    error_code: str | None
    worker: str | None
    duration_s: float | None


@dataclass(frozen=True)
class JobDetail:
    """The full record of one job, masked for the viewer."""

    id: int
    task: str
    payload: Any
    state: str
    attempts: int
    max_attempts: int
    attempt_history: list[AttemptRecord]
    scheduled_for: datetime
    priority: str
    schedule_id: int | None
    originating_user: str | None
    account: str | None
    created_at: datetime
    updated_at: datetime
    last_error_code: str | None
    last_error_detail: str | None
    error_log: str | None
    worker: str | None
    replayed_from_id: int | None = None
    replayed_as_id: int | None = None
    cancel_requested: bool = False
    schedule: dict[str, Any] | None = None
    dead_letter_reason: str | None = None
    resolution_note: str | None = None
    # Moved out of the live ledger into the archive: read-only but for delete_job.
    archived: bool = False


# The detail's two statements, built once (SQLAlchemy then reuses their compiled form): the job with its
# originating operator's name and its schedule, within an account or not; and its attempts.
_SCHEDULE_COLUMNS = ("id", "task", "cron", "every_seconds", "enabled", "next_run", "last_run")
_DETAIL = (
    select(*Job.__table__.columns, Operator.name.label("originating_user_name"),
           *(Schedule.__table__.c[c].label(f"sched_{c}") for c in _SCHEDULE_COLUMNS))
    .outerjoin(Operator, Operator.id == Job.originating_user_id)
    .outerjoin(Schedule, Schedule.id == Job.schedule_id)
    .where(Job.id == bindparam("job_id"))
)
_DETAIL_IN_ACCOUNT = _DETAIL.where(Job.account == bindparam("account"))
_ATTEMPTS = select(*Attempt.__table__.columns).where(Attempt.job_id == bindparam("job_id")).order_by(
    Attempt.run, Attempt.number)



def read_detail(session: Session, job_id: int, account: str | None, rule_for: RuleFor) -> tuple[Any, JobDetail] | None:
    """The row of job ``job_id`` (within ``account``, if given) and its detail record masked by
    ``rule_for(task)``, in two statements: the job with its originating operator's name and its schedule,
    then its attempts. None: no such job there."""
    conn = session.connection()
    params = {"job_id": job_id} if account is None else {"job_id": job_id, "account": account}
    job = conn.execute(_DETAIL if account is None else _DETAIL_IN_ACCOUNT, params).first()
    if job is None:
        return None
    attempts = conn.execute(_ATTEMPTS, {"job_id": job_id})
    return job, _detail(job, attempts, job, rule_for(job.task), archived=False)


def archived_detail(session: Session, job: Job, attempts: Sequence[Attempt], rule: MaskingRule | None) -> JobDetail:
    """The detail record of an archived job, given as records outside the ledger with its attempts; its
    originating operator and schedule are read from the ledger."""
    user = (session.scalar(select(Operator.name).where(Operator.id == job.originating_user_id))
            if job.originating_user_id is not None else None)
    # Named as ``_DETAIL``'s row names them.
    origin: dict[str, Any] = {"originating_user_name": user}
    schedule = session.get(Schedule, job.schedule_id) if job.schedule_id is not None else None
    for c in _SCHEDULE_COLUMNS:
        origin[f"sched_{c}"] = getattr(schedule, c) if schedule is not None else None
    return _detail(job, attempts, SimpleNamespace(**origin), rule, archived=True)


def _detail(job: Any, attempts: Iterable[Any], origin: Any, rule: MaskingRule | None, *, archived: bool) -> JobDetail:
    """The detail record of ``job`` (a row or a record), its attempts and its origin (the originating
    operator's name, the schedule's columns ``sched_*``), masked by ``rule``."""
    schedule = None
    if job.schedule_id is not None and origin.sched_id is not None:
        schedule = {
            "id": origin.sched_id, "task": origin.sched_task, "cron": origin.sched_cron,
            "every": origin.sched_every_seconds, "enabled": origin.sched_enabled, "next_run": origin.sched_next_run,
            "last_run": origin.sched_last_run}

    def text(value: str | None) -> str | None:
        return rule.mask_text(value, job.payload) if rule and value else value

    history = [
        AttemptRecord(
            number=a.number, started_at=a.started_at, finished_at=a.finished_at, exit=a.exit,
            error=text(a.error), run=a.run, error_code=a.error_code, worker=a.worker,
            duration_s=(a.finished_at - a.started_at).total_seconds() if a.finished_at else None,
        )
        for a in attempts
    ]
    return JobDetail(
        id=job.id, task=job.task, payload=rule.mask_payload(job.payload) if rule else job.payload, state=job.state,
        attempts=job.attempts, max_attempts=job.max_attempts, attempt_history=history,
        scheduled_for=job.scheduled_for, priority=job.priority, schedule_id=job.schedule_id,
        originating_user=origin.originating_user_name, account=job.account, created_at=job.created_at,
        updated_at=job.updated_at, last_error_code=job.last_error_code, last_error_detail=text(job.last_error_detail),
        error_log=text(job.error_log), worker=job.worker, replayed_from_id=job.replayed_from_id,
        replayed_as_id=job.replayed_as_id, cancel_requested=bool(job.cancel_requested), schedule=schedule,
        dead_letter_reason=text(job.dead_letter_reason), resolution_note=text(job.resolution_note),
        archived=archived,
    )
