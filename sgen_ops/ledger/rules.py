"""Masking rules as every process must apply them, whatever it imported.

A task declares its sensitive paths where it registers (``@sgen_ops.task(..., sensitive=[...])``), in the
worker's process. A notebook, the API server or a runbook kernel may never import that module, so the
declaration is published to the ledger (``task_rules``) by every process that registers the task, and a
process masks a task by the union of what its own registry and the ledger say. A task known to neither is
masked whole (``MaskingRule(everything=True)``): masking fails closed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from ..core.masking import MaskingRule
from ..core.tasks import TaskSpec, find_task, registered
from ..core.times import utcnow
from .store import Ledger, TaskRule

# How long a process trusts its copy of the ledger's rules before it reads them again.
REFRESH_SECONDS = 30.0


class MaskingRules:
    """The masking rule of each task for this process: its registry's paths and the ledger's, unioned."""

    def __init__(self, ledger: Ledger, global_keys: Sequence[str]) -> None:
        self.ledger = ledger
        self.global_keys = tuple(global_keys)
        self._lock = threading.Lock()
        self._stored: dict[str, tuple[str, ...]] = {}
        self._read_at = -float("inf")
        self._rules: dict[tuple[str, ...] | None, MaskingRule] = {}
        # task -> (the registry's spec and the ledger's paths it was made from, its rule): the hot paths
        # (enqueue, every masked read) ask for the same few tasks' rules over and over.
        self._by_task: dict[str | None, tuple[TaskSpec | None, tuple[str, ...] | None, MaskingRule]] = {}
        self._published: dict[str, tuple[str, ...]] = {}

    def rule(self, task: str | None) -> MaskingRule:
        """The rule ``task`` is masked by (everything, if no process ever declared the task)."""
        spec = find_task(task) if task else None
        stored = self._stored_paths(task, refresh_if_missing=spec is None)
        known = self._by_task.get(task)
        if known is not None and known[0] is spec and known[1] == stored:
            return known[2]
        if spec is None and stored is None:
            rule = self._rule_of(None)
        else:
            rule = self._rule_of(tuple(sorted({*(spec.sensitive if spec else ()), *(stored or ())})))
        self._by_task[task] = (spec, stored, rule)
        return rule

    def _rule_of(self, paths: tuple[str, ...] | None) -> MaskingRule:
        rule = self._rules.get(paths)
        if rule is None:
            rule = MaskingRule(paths or (), self.global_keys, everything=paths is None)
            self._rules[paths] = rule
        return rule

    def _stored_paths(self, task: str | None, *, refresh_if_missing: bool) -> tuple[str, ...] | None:
        now = time.monotonic()
        stale = now - self._read_at > REFRESH_SECONDS
        if stale or (refresh_if_missing and task not in self._stored and now - self._read_at > 1.0):
            self._reload(now)
        return self._stored.get(task) if task else None

    def _reload(self, now: float) -> None:
        with self.ledger.read() as session:
            rows = session.execute(select(TaskRule.task, TaskRule.sensitive)).all()
        with self._lock:
            self._stored = {r.task: tuple(r.sensitive or ()) for r in rows}
            self._read_at = now

    def publish(self, specs: Mapping[str, TaskSpec] | None = None) -> int:
        """Write the registry's declarations the ledger lacks or holds differently; returns how many."""
        specs = registered() if specs is None else specs
        wanted = {name: tuple(sorted(spec.sensitive)) for name, spec in specs.items()
                  if self._published.get(name) != tuple(sorted(spec.sensitive))}
        if not wanted:
            return 0
        # Read first: every process publishes on connect, and the ledger nearly always holds these rules
        # already; a write transaction (SQLite's write lock) is taken only for a rule that differs.
        with self.ledger.read() as session:
            rows = session.execute(select(TaskRule.task, TaskRule.sensitive).where(TaskRule.task.in_(list(wanted))))
            held = {row.task: row.sensitive for row in rows}
        differing = {name: paths for name, paths in wanted.items()
                     if name not in held or tuple(sorted(held[name] or ())) != paths}
        changed = 0
        if differing:
            try:
                changed = self._write(differing)
            except IntegrityError:  # another process inserted one of them first: now it is an update
                changed = self._write(differing)
        self._published.update(wanted)
        with self._lock:
            self._stored.update(wanted)
        return changed

    def _write(self, wanted: dict[str, tuple[str, ...]]) -> int:
        changed = 0
        with self.ledger.write() as session:
            held = {r.task: r for r in session.scalars(select(TaskRule).where(TaskRule.task.in_(list(wanted))))}
            for name, paths in wanted.items():
                row = held.get(name)
                if row is None:
                    session.add(TaskRule(task=name, sensitive=list(paths), updated_at=utcnow()))
                    changed += 1
                elif tuple(sorted(row.sensitive or ())) != paths:
                    row.sensitive, row.updated_at = list(paths), utcnow()
                    changed += 1
        return changed

    def ensure_published(self, spec: TaskSpec) -> None:
        """Publish one task's declaration if this process has not yet (a task registered after connect)."""
        if spec.name not in self._published or self._published[spec.name] != tuple(sorted(spec.sensitive)):
            self.publish({spec.name: spec})
