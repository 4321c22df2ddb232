"""The Activity Log entries of masked views, appended in batches off the read's path.

Seed 000: "the audit log records the masked shape for non-administrator views". A view is a read; writing
its entry in the read's own transaction would make every masked detail a write transaction holding the
Activity Log's append lock (twice the cost of the read, and serialised with every operator write). So
``record`` queues the entry, stamped with the view's time, and a daemon thread appends what is queued every
``FLUSH_SECONDS`` (or at once past ``MAX_PENDING``), in one transaction per batch, through
``audit.append`` like every other entry: masked, chained, never holding a secret.

The guarantee: a view is in the Activity Log within ``FLUSH_SECONDS`` (plus the time of a ledger outage,
during which the batch waits and is tried again), and at once for a reader of the log in the same process
(``flush``), which the surface calls before it reads the log; ``close`` and the interpreter's exit flush
what is left. A process killed outright loses the views of its last ``FLUSH_SECONDS``.
"""

from __future__ import annotations

import atexit
import logging
import threading
import weakref
from typing import TYPE_CHECKING

from .store import Ledger

if TYPE_CHECKING:  # the Activity Log module brings pandas, which a worker never loads
    from .audit import Entry, RuleFor

FLUSH_SECONDS = 0.5
MAX_PENDING = 200

log = logging.getLogger("sgen_ops.viewlog")


class ViewLog:
    """Queued Activity Log entries of views, appended by a daemon thread (started on the first view)."""

    def __init__(self, ledger: Ledger, rule_for: RuleFor) -> None:
        self.ledger = ledger
        self.rule_for = rule_for
        self._pending: list[Entry] = []
        self._lock = threading.Lock()
        self._appending = threading.Lock()  # one batch at a time, so that batches keep their order
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False

    def record(self, entry: Entry) -> None:
        """Queue ``entry`` (its ``at`` set to the view's time) for the next batch."""
        if self._closed:  # no thread any more: straight to the log
            with self._lock:
                self._pending.append(entry)
            self.flush()
            return
        with self._lock:
            self._pending.append(entry)
            many = len(self._pending) >= MAX_PENDING
            if self._thread is None and not self._closed:
                self._thread = threading.Thread(target=self._run, name="sgen-ops view log", daemon=True)
                self._thread.start()
                atexit.register(_flush_at_exit, weakref.ref(self))
        if many:
            self._wake.set()

    def flush(self) -> None:
        """Append every queued entry now (a reader of the Activity Log in this process calls this first)."""
        with self._appending:
            with self._lock:
                batch, self._pending = self._pending, []
            if not batch:
                return
            from .audit import append, lock_chain

            try:
                with self.ledger.write() as session:
                    lock_chain(session)
                    append(session, batch, self.rule_for)
            except Exception:
                with self._lock:  # kept, in order, for the next try
                    self._pending[:0] = batch
                raise

    def close(self) -> None:
        """Stop the thread and append what is left."""
        self._closed = True
        self._wake.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=10)
        self.flush()

    def _run(self) -> None:
        while not self._closed:
            self._wake.wait(FLUSH_SECONDS)
            self._wake.clear()
            try:
                self.flush()
            except Exception:
                log.warning("could not append %d view(s) to the Activity Log; trying again", len(self._pending),
                            exc_info=True)


def _flush_at_exit(ref: weakref.ReferenceType[ViewLog]) -> None:
    views = ref()
    if views is not None and not views._closed:
        try:
            views.close()
        except Exception:
            log.warning("views not appended to the Activity Log at exit", exc_info=True)
