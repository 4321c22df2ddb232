"""The append-only event log the soak's and the outage scenarios' tasks write: one JSON line per event, written
with a single ``write`` on an ``O_APPEND`` descriptor and fsynced before the caller goes on, so a line a checker
reads was on disk before whatever the handler did next. A SIGKILLed process leaves a start without a finish."""

from __future__ import annotations

import json
import os
from typing import Any


def append_line(path: str, record: dict[str, Any]) -> None:
    """Append one event to the log: one write of one line, on disk when this returns."""
    line = (json.dumps(record, separators=(",", ":")) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)
