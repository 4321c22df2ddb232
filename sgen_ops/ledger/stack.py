"""What the layers below the hub need of one sgen-ops stack, as a protocol: the hub is one.

``hub.py`` composes everything; execution, workers, the scheduler, schedules and the surface are handed
a stack and never import the hub, so layers import downward only.
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

import redis

from ..config import Settings
from ..transport.queue import Transport
from .jobs import JobBook
from .store import Ledger
from .viewlog import ViewLog


class Stack(Protocol):
    settings: Settings
    ledger: Ledger
    redis: redis.Redis
    transport: Transport
    book: JobBook
    view_log: ViewLog

    def recover_lost(self, now: datetime | None = None) -> int: ...

    def reconcile(self) -> int: ...

    def reattach_redis(self) -> None: ...

    def after_fork(self) -> None: ...
