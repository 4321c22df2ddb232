"""The HTTP API of the Jobs surface: ``create_app(hub)`` returns the ASGI app ``sgen-ops serve`` runs.

See ``sgen_ops.api.app`` (the app), ``endpoints`` (one handler per operation, at the routes the surface
declares), ``auth`` (tokens and JupyterHub), ``problems`` (RFC 9457 errors), ``idempotency`` and ``metrics``.
"""

from .app import create_app

__all__ = ["create_app"]
