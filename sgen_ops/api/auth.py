"""Who is calling: the admin gate of the HTTP API (seed 000's layer 1), before any operation runs.

A request carries ``Authorization: Bearer TOKEN``. A token of this server (``sgo_...``, see
``sgen_ops.ledger.tokens``) names its operator. When the server runs as a JupyterHub service
(``JUPYTERHUB_API_URL`` and the service's ``JUPYTERHUB_API_TOKEN`` in its environment) any other token is
asked of the Hub (``GET {JUPYTERHUB_API_URL}/user`` with that token), and the Hub user is the operator of
the same name: a notebook in a user's server then authenticates with its own ``JUPYTERHUB_API_TOKEN``.
Either way the operator passes ``Hub.as_operator`` (registered and enabled) or the request is refused
with 401, and never reaches the surface.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Mapping

import httpx

from ..errors import AccessDenied
from ..hub import Hub
from ..ledger import tokens
from ..surface.operations import Operations
from .problems import Unauthenticated

# How long a Hub token's user is remembered (JupyterHub's own HubAuth keeps them 5 minutes).
HUB_CACHE_SECONDS = 60.0


class HubUsers:
    """Asks a JupyterHub who a token belongs to, remembering the answers for a minute."""

    def __init__(self, api_url: str, timeout: float = 5.0, access_scopes: frozenset[str] = frozenset()) -> None:
        self.api_url = api_url.rstrip("/")
        self.timeout = timeout
        # A token must hold one of these (JupyterHub's JUPYTERHUB_OAUTH_ACCESS_SCOPES: access to this service).
        self.access_scopes = access_scopes
        self._known: dict[str, tuple[float, str]] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_environment(cls, env: Mapping[str, str] | None = None) -> HubUsers | None:
        """The Hub this server is a service of, if its environment says so."""
        env = os.environ if env is None else env
        url, own_token = env.get("JUPYTERHUB_API_URL", "").strip(), env.get("JUPYTERHUB_API_TOKEN", "").strip()
        try:
            scopes = frozenset(json.loads(env.get("JUPYTERHUB_OAUTH_ACCESS_SCOPES") or "[]"))
        except (TypeError, ValueError):
            scopes = frozenset()
        return cls(url, access_scopes=scopes) if url and own_token else None

    def user_of(self, token: str) -> str:
        """The Hub user's name; ``Unauthenticated`` if the Hub does not know the token."""
        key = tokens.digest(token)
        now = time.monotonic()
        with self._lock:
            known = self._known.get(key)
        if known is not None and known[0] > now:
            return known[1]
        try:
            answer = httpx.get(f"{self.api_url}/user", headers={"Authorization": f"token {token}"},
                               timeout=self.timeout)
        except httpx.HTTPError as exc:
            raise Unauthenticated(f"JupyterHub could not be asked about the token: {exc}") from None
        if answer.status_code != 200:
            raise Unauthenticated("the bearer token is not valid (neither this server's nor JupyterHub's)")
        try:
            model = answer.json()
        except ValueError:
            model = {}
        name = model.get("name") if isinstance(model, dict) else None
        if not isinstance(name, str) or not name:
            raise Unauthenticated("JupyterHub's answer about the token names no user")
        if self.access_scopes and not (self.access_scopes | {"access:services"}) & set(model.get("scopes") or ()):
            raise Unauthenticated(f"the JupyterHub token of {name!r} may not use this service: it holds none of "
                                  f"the scopes {', '.join(sorted(self.access_scopes))}")
        with self._lock:
            self._known = {k: v for k, v in self._known.items() if v[0] > now}
            self._known[key] = (now + HUB_CACHE_SECONDS, name)
        return name


class Gate:
    """Turns a request's bearer token into the caller's ``Operations``, or refuses it (401)."""

    def __init__(self, hub: Hub, hub_users: HubUsers | None = None) -> None:
        self.hub = hub
        self.hub_users = hub_users

    def operations(self, token: str | None) -> Operations:
        """The ``Operations`` of the operator a token stands for, through the admin gate."""
        if not token:
            raise Unauthenticated("no bearer token: send the header 'Authorization: Bearer TOKEN' "
                                  "(`sgen-ops tokens create OPERATOR` makes one)")
        try:
            if token.startswith(tokens.PREFIX) or self.hub_users is None:
                try:
                    op = tokens.authenticate(self.hub.ledger, token)  # the operator comes with the token
                except tokens.Refused as exc:
                    raise Unauthenticated(str(exc)) from None
                return self.hub.operations_of(op, op.name)
            return self.hub.as_operator(self.hub_users.user_of(token))
        except AccessDenied as exc:
            raise Unauthenticated(str(exc)) from None
