"""A task only worker subprocesses import: the test process reads its jobs knowing nothing of it, as a
notebook or the API server would. Its failure quotes every sensitive value of its payload."""

from __future__ import annotations

from typing import Any

import sgen_ops
from sgen_ops import TaskError

SENSITIVE = ["credentials.api_key", "customer.email", "vault.*", "blob"]


@sgen_ops.task("private.leaky", sensitive=SENSITIVE, max_attempts=1)
def leaky(ctx: Any, payload: dict[str, Any]) -> None:
    """Fails with an error that quotes the secrets, placed to straddle every cut (120, 500 and 4,000)."""
    secrets = [
        payload["credentials"]["api_key"],
        payload["customer.email"],
        *payload["vault"].values(),
        payload["blob"],
    ]
    pad = payload.get("pad", 0)
    detail = "x" * pad + " | ".join(f"rejected {s}" for s in secrets)
    raise TaskError("leaky", detail)
