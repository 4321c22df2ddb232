"""Who is operating: ``operator_session`` turns the notebook's user into an ``Operations``."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..hub import Hub
    from ..surface import Operations

OPERATOR_VARIABLES = ("SGEN_OPS_OPERATOR", "JUPYTERHUB_USER")


def operator_session(hub: Hub | None = None) -> Operations:
    """The Jobs surface as this notebook's operator: ``SGEN_OPS_OPERATOR``, else ``JUPYTERHUB_USER``.

    Connects with ``sgen_ops.connect()`` when no hub is given. With neither variable set, or an operator
    that is not registered, raises the admin gate's AccessDenied, which says how to register one.
    """
    name = next((os.environ[v].strip() for v in OPERATOR_VARIABLES if os.environ.get(v, "").strip()), None)
    if hub is not None:
        return hub.as_operator(name)
    from .. import connect

    own = connect()
    try:
        return own.as_operator(name)
    except BaseException:
        own.close()
        raise
