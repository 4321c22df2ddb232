"""The hub: one connection to the ledger and to Redis, and the entry points the contract names."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import redis
from sqlalchemy import select

from .config import Settings, load_settings
from .core import validate
from .core.permissions import ROLES
from .core.tasks import import_task_modules
from .core.times import utcnow
from .embedded import ensure_redis, home_lock, private_file, private_home, repoint
from .errors import AccessDenied, ValidationError
from .ledger.jobs import JobBook
from .ledger.store import Ledger, Operator
from .ledger.viewlog import ViewLog
from .runtime import execution, workers
from .transport.queue import Transport

if TYPE_CHECKING:
    from .surface.operations import Operations


class Hub:
    """Everything a process needs to reach one sgen-ops stack."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        import_task_modules(settings.task_modules)
        if settings.is_embedded_db:
            private_file(private_home(settings.home) / "ledger.db")
        self.ledger = Ledger(settings.effective_database_url)
        try:
            self._prepare_schema()
        except BaseException:
            self.ledger.close()  # a refused ledger leaves no open connection behind
            raise
        redis_url = settings.redis_url or ensure_redis(settings.home)
        self.redis: redis.Redis = redis.Redis.from_url(redis_url)
        self.transport = Transport(self.redis, settings.queue_prefix)
        self.book = JobBook(settings, self.ledger, self.transport)
        # The Activity Log entries of masked views, appended in batches (docs/totals.md).
        self.view_log = ViewLog(self.ledger, self.book.masking_rule)
        # Every process that registers tasks publishes their masking rules, for the processes that do not.
        self.book.rules.publish()

    def _prepare_schema(self) -> None:
        if self.ledger.at_head():
            # The common case, checked with one query; Alembic is imported only when there is work for it.
            return
        if self.settings.is_embedded_db:
            # An embedded ledger upgrades itself; the lock keeps concurrent first starts apart.
            with home_lock(self.settings.home, "ledger"):
                self.ledger.upgrade()
        elif self.settings.auto_upgrade:
            self.ledger.upgrade()
        elif self.ledger.current_revision() != self.ledger.head_revision():
            raise RuntimeError(
                f"the ledger at {self.ledger.engine.url!r} is at schema {self.ledger.current_revision()}, "
                f"this sgen-ops needs {self.ledger.head_revision()}: run `sgen-ops db upgrade`"
            )

    # -- jobs ---------------------------------------------------------------------------------
    def enqueue(
        self,
        task: str,
        payload: Any = None,
        *,
        account: str | None = None,
        priority: str | None = None,
        delay: float | timedelta | None = None,
        max_attempts: int | None = None,
    ) -> int:
        """Record a job in the ledger and queue it; returns its id. Bad input raises and records nothing; so does
        an unreachable ledger (``Unavailable``). With Redis down the job is recorded and sent once Redis is back."""
        rows = self.book.prepare_rows(
            task, [payload], account=account, priority=priority, delay=delay, max_attempts=max_attempts
        )
        return self.book.create_rows(rows)[0]

    def enqueue_many(
        self,
        task: str,
        payloads: Sequence[Any],
        *,
        account: str | None = None,
        priority: str | None = None,
        delay: float | timedelta | None = None,
        max_attempts: int | None = None,
    ) -> list[int]:
        """Bulk enqueue: one transaction and one Redis pipeline for all; all or nothing on bad input."""
        rows = self.book.prepare_rows(
            task, payloads, account=account, priority=priority, delay=delay, max_attempts=max_attempts
        )
        return self.book.create_rows(rows)

    def work(
        self,
        burst: bool = True,
        *,
        concurrency: int | None = None,
        logging_level: str = "WARNING",
        worker_class: str = "simple",
    ) -> None:
        """Run a worker in this process; with ``burst`` until nothing is due (delayed jobs stay put)."""
        if not burst:
            workers.run(
                self, burst=False, concurrency=concurrency, logging_level=logging_level, worker_class=worker_class
            )
            return
        execution.bind_hub(self)
        while True:
            self.recover_lost()
            self.transport.move_due()
            worker = workers.WORKER_CLASSES[worker_class](
                self.transport.ordered_queues,
                connection=self.redis,
                name=workers.worker_name(self.settings.queue_prefix),
            )
            worker.work(burst=True, with_scheduler=False, logging_level=logging_level)
            if not self.transport.has_due_work():
                return

    def tick(self, now: datetime | None = None) -> list[int]:
        """One scheduler pass: emit every due schedule tick; returns the new job ids."""
        from .runtime.scheduler import tick

        return tick(self, now=validate.moment(now, "now", utcnow()) if now is not None else None)

    def archive(self, now: datetime | None = None, *, dry_run: bool = False) -> int:
        """Move terminal jobs (succeeded, cancelled, resolved) whose last change is older than
        ``archive_after_days`` before ``now`` (default: the clock), with their attempts and events, out of the
        live ledger into the Parquet archive; returns how many (``dry_run``: how many would move)."""
        from .ledger import archive

        moment = validate.moment(now, "now", utcnow()) if now is not None else None
        dry_run = validate.flag(dry_run, "dry_run", "True (only count) or False")
        return archive.run(self.ledger, self.settings, now=moment, dry_run=dry_run).jobs

    def reconcile(self) -> int:
        """Re-enqueue ledger jobs that Redis lost; returns how many."""
        return self.book.reconcile()

    def recover_lost(self, now: datetime | None = None) -> int:
        """Record attempts whose worker vanished (lease expired) as worker-lost and retry them."""
        return self.book.recover_lost(validate.moment(now, "now", utcnow()) if now is not None else None)

    # -- operators ----------------------------------------------------------------------------
    def add_operator(self, name: str, role: str, account: str | None = None) -> int:
        """Register an operator; ``account`` None sees every account."""
        name = _operator_name(name)
        if not isinstance(role, str) or role not in ROLES:
            raise ValidationError(f"role {validate.describe(role)} is not valid; allowed: {', '.join(ROLES)}")
        account = validate.account(account)
        with self.ledger.write() as session:
            if session.scalar(select(Operator.id).where(Operator.name == name)) is not None:
                raise ValidationError(f"operator {name!r} already exists")
            op = Operator(name=name, role=role, account=account, enabled=True, created_at=utcnow())
            session.add(op)
            session.flush()
            return op.id

    def set_operator_enabled(self, name: str, enabled: bool) -> None:
        """Disable an operator (the admin gate then refuses them) or enable them again."""
        name = _operator_name(name)
        enabled = validate.flag(enabled, "enabled", "True (enable) or False (disable)")
        with self.ledger.write() as session:
            op = session.scalar(select(Operator).where(Operator.name == name))
            if op is None:
                raise ValidationError(f"operator {name!r} is not registered")
            op.enabled = enabled
        self.access_changed()

    def create_token(self, operator: str, expires_in: float | timedelta | str | None = None) -> str:
        """A new bearer token of the HTTP API for ``operator`` ('30d', '12h', seconds; None: never expires).
        The token is returned once; the ledger keeps only its hash."""
        from .ledger import tokens

        return tokens.create(self.ledger, operator, expires_in)

    def revoke_token(self, token_id: int) -> None:
        """Revoke one token by id (``sgen-ops tokens list`` shows them): every server refuses it at once."""
        from .ledger import tokens

        tokens.revoke(self.ledger, token_id)
        self.access_changed()

    def revoke_tokens(self, operator: str) -> int:
        """Revoke every token of ``operator`` not revoked yet; returns how many."""
        from .ledger import tokens

        n = tokens.revoke_all(self.ledger, operator)
        self.access_changed()
        return n

    # The access epoch: a counter in Redis that every change of who may use the API (a token revoked, an
    # operator disabled or enabled) raises after its commit. A server's admin gate remembers the epoch with
    # each token it checked and checks again once it moved, so a change takes effect on the next request of
    # every server process (api/auth.py; docs/totals.md, "The HTTP path").
    @property
    def _access_epoch_key(self) -> str:
        return f"{self.settings.queue_prefix}:ops:access-epoch"

    def access_changed(self) -> None:
        """Raise the access epoch (a Redis that cannot be reached leaves the gates' time bound alone to act)."""
        with contextlib.suppress(redis.RedisError):
            self.redis.incr(self._access_epoch_key)

    def access_epoch(self) -> int | None:
        """The access epoch; None if Redis cannot say (a gate then checks the token in the ledger)."""
        try:
            value = self.redis.get(self._access_epoch_key)
        except redis.RedisError:
            return None
        return int(value or 0)

    def as_operator(self, name: str | None) -> Operations:
        """The Jobs surface as operator ``name`` (the admin gate: unknown or disabled -> AccessDenied)."""

        if not name:
            raise AccessDenied(
                "no operator given: set SGEN_OPS_OPERATOR (or sign in through JupyterHub), and register "
                "operators with `sgen-ops operators add NAME --role administrator|editor|viewer`"
            )
        if not isinstance(name, str) or len(name) > validate.OPERATOR_CHARS:
            raise AccessDenied(f"operator {validate.describe(name)} is not registered")
        validate.storable(name, "operator name")
        with self.ledger.read() as session:
            op = session.scalar(select(Operator).where(Operator.name == name))
        return self.operations_of(op, name)

    def operations_of(self, op: Operator | None, name: str) -> Operations:
        """The admin gate for an operator record already read (``None``: no such operator)."""
        from .surface.operations import Operations

        if op is None or not op.enabled:
            raise AccessDenied(
                f"operator {name!r} is not registered or is disabled; register one with "
                f"`sgen-ops operators add {name} --role administrator|editor|viewer`"
            )
        return Operations(self, op)

    # -- lifecycle ----------------------------------------------------------------------------
    @property
    def home(self) -> Path:
        return self.settings.home

    def reattach_redis(self) -> None:
        """After a Redis outage: follow the embedded stack's Redis to the address it answers on now
        (starting it if it is down); a configured ``redis_url`` stays as it is."""
        if self.settings.redis_url is None:
            repoint(self.redis, ensure_redis(self.settings.home))

    def after_fork(self) -> None:
        self.ledger.after_fork()
        self.redis.connection_pool.reset()
        self.view_log = ViewLog(self.ledger, self.book.masking_rule)  # the parent's thread is not here

    def close(self) -> None:
        self.view_log.close()
        self.redis.close()
        self.ledger.close()

    def __enter__(self) -> Hub:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _operator_name(name: Any) -> str:
    return validate.text(
        name, "operator name", max_chars=validate.OPERATOR_CHARS, allowed="a non-empty name such as 'dana'"
    ).strip()


def connect(
    database_url: str | None = None, redis_url: str | None = None, home: str | Path | None = None, **settings: Any
) -> Hub:
    """Connect to a stack: the embedded one of ``home`` by default, or the given services."""
    return Hub(load_settings(database_url=database_url, redis_url=redis_url, home=home, **settings))


# A process given no hub (a worker of RQ's pool) makes one from the environment: handed down, not imported.
execution.RUNTIME.connect = connect
