"""An archive run in a process of its own that SIGKILLs itself at a chosen point (tests/integration/
test_archive_kills.py): ``python -m tests.archive_child POINT N NOW BATCH``. POINT is where (before, during or
after writing a file; before or after deleting a batch's rows; before marking the run done; ``none``), N
which occurrence of it; the stack comes from the environment."""

from __future__ import annotations

import os
import signal
import sys
from datetime import datetime
from typing import Any

import sgen_ops
from sgen_ops.ledger import archive


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def main(point: str, nth: int, now: str, batch: int) -> None:
    seen = {"count": 0}

    def reached() -> bool:
        seen["count"] += 1
        return seen["count"] == nth

    write, fold, move, finish = archive.Store.write, archive._fold, archive._move_batch, archive._finish

    def writing(self: archive.Store, relative: str, data: bytes) -> None:
        if point == "before-write" and reached():
            die()
        if point == "during-write" and reached():
            write(self, relative, data[: len(data) // 2])  # a torn file where the whole one was to be
            die()
        write(self, relative, data)
        if point == "after-write" and reached():
            die()

    def folding(*args: Any) -> None:
        if point == "before-delete" and reached():
            die()
        fold(*args)

    def moving(*args: Any) -> Any:
        done = move(*args)
        if point == "after-delete" and reached():
            die()
        return done

    def finishing(ledger: Any, run_id: int, state: str) -> None:
        if point == "before-finish" and state == archive.DONE:
            die()
        finish(ledger, run_id, state)

    archive.Store.write = writing  # type: ignore[method-assign]
    archive._fold = folding
    archive._move_batch = moving
    archive._finish = finishing
    hub = sgen_ops.connect()
    result = archive.run(hub.ledger, hub.settings, now=datetime.fromisoformat(now), batch=batch)
    print(f"moved {result.jobs}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]))
