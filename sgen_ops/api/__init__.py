"""The HTTP API of the Jobs surface, and its remote twin.

``create_app(hub)`` returns the ASGI app ``sgen-ops serve`` runs (``app``; ``endpoints``: one handler per
operation, at the routes the surface declares; ``auth``: tokens and JupyterHub; ``problems``: RFC 9457 errors;
``idempotency``; ``metrics``). ``client`` is ``sgen_ops.remote``, reading back the JSON shapes of ``wire``.
The server's modules (FastAPI) are imported on first use, so the client starts without them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .app import create_app

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    if name != "create_app":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from .app import create_app

    return create_app
