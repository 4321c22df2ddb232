"""Who is operating: ``operator_session`` turns the notebook's user into an ``Operations``, local or remote.

Served (``SGEN_OPS_API_URL`` set): the Jobs surface of that ``sgen-ops serve`` server, as the operator its
token names (``SGEN_OPS_API_TOKEN``, else JupyterHub's ``JUPYTERHUB_API_TOKEN``); the notebook holds no
ledger or Redis credentials. Local: the ledger itself, as ``SGEN_OPS_OPERATOR`` (else ``JUPYTERHUB_USER``).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..api.client import RemoteOperations
    from ..hub import Hub
    from ..surface.operations import Operations

OPERATOR_VARIABLES = ("SGEN_OPS_OPERATOR", "JUPYTERHUB_USER")


def operator_session(hub: Hub | None = None, *, operator: str | None = None) -> Operations | RemoteOperations:
    """The Jobs surface as this notebook's operator.

    With ``SGEN_OPS_API_URL`` set (and no ``hub`` given): the remote client of that server. Otherwise the
    local surface as ``operator``, else ``SGEN_OPS_OPERATOR``, else ``JUPYTERHUB_USER``, connecting with
    ``sgen_ops.connect()`` when no hub is given. With no operator, or one that is not registered, raises the
    admin gate's AccessDenied, which says how to register one.
    """
    if hub is None:
        from ..api.client import served_session

        served = served_session(operator)
        if served is not None:
            return served
    name = operator or next(
        (os.environ[v].strip() for v in OPERATOR_VARIABLES if os.environ.get(v, "").strip()), None
    )
    if hub is not None:
        return hub.as_operator(name)
    from .. import connect

    own = connect()
    try:
        return own.as_operator(name)
    except BaseException:
        own.close()
        raise
