"""Who is calling: the admin gate of the HTTP API (seed 000's layer 1), before any operation runs.

A request carries ``Authorization: Bearer TOKEN``. A token of this server (``sgo_...``, see
``sgen_ops.ledger.tokens``) names its operator. When the server runs as a JupyterHub service
(``JUPYTERHUB_API_URL`` and the service's ``JUPYTERHUB_API_TOKEN`` in its environment) any other token is
asked of the Hub (``GET {JUPYTERHUB_API_URL}/user`` with that token), and the Hub user is the operator of
the same name: a notebook in a user's server then authenticates with its own ``JUPYTERHUB_API_TOKEN``.
Either way the operator passes ``Hub.as_operator`` (registered and enabled) or the request is refused
with 401, and never reaches the surface.

The gate remembers each token's answer for ``TOKEN_CHECK_SECONDS``, with the access epoch it read before
the check (``Hub.access_epoch``: a Redis counter that revoking a token or disabling an operator raises), so
that a request whose token was just checked reads one Redis key and no table before its own work. A token
revoked, or an operator disabled, through sgen-ops is refused on the next request; a change made around it
(SQL by hand) at most ``TOKEN_CHECK_SECONDS`` later; an expired token on its next request (its expiry is
remembered with the answer). See docs/totals.md, "The HTTP path".
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Mapping
from datetime import datetime

import httpx

from ..core.times import utcnow
from ..errors import AccessDenied
from ..hub import Hub
from ..ledger import tokens
from ..surface.operations import Operations
from .problems import Unauthenticated

# How long a Hub token's user is remembered (JupyterHub's own HubAuth keeps them 5 minutes).
HUB_CACHE_SECONDS = 60.0
# How long the gate trusts a token's answer before asking the ledger again: the bound within which a
# revocation, or a change to its operator, takes effect.
TOKEN_CHECK_SECONDS = 1.0
# Answers kept at most; past this, those too old are let go.
_KEPT_ANSWERS = 1000


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

    def __init__(self, hub: Hub, hub_users: HubUsers | None = None,
                 check_seconds: float = TOKEN_CHECK_SECONDS) -> None:
        self.hub = hub
        self.hub_users = hub_users
        self.check_seconds = check_seconds
        # token digest -> (when checked, on the monotonic clock; the token's expiry; the access epoch read
        # before the check; the caller's Operations)
        self._known: dict[str, tuple[float, datetime | None, int | None, Operations]] = {}
        self._lock = threading.Lock()

    def remembered(self, token: str) -> Operations | None:
        """The ``Operations`` of a token checked less than ``check_seconds`` ago, not expired since, and with
        no change of access since (the access epoch has not moved); None: ask ``operations``. Reads one Redis
        key and no table, so the API calls it without leaving its event loop."""
        key = tokens.digest(token)
        with self._lock:
            known = self._known.get(key)
        if known is None or known[2] is None or time.monotonic() - known[0] >= self.check_seconds:
            return None
        if known[1] is not None and known[1] <= utcnow():
            return None  # expired: the full check refuses it, saying so
        if self.hub.access_epoch() != known[2]:
            return None  # a token revoked or an operator disabled since: check again
        return known[3]

    def operations(self, token: str | None) -> Operations:
        """The ``Operations`` of the operator a token stands for, through the admin gate."""
        if not token:
            raise Unauthenticated("no bearer token: send the header 'Authorization: Bearer TOKEN' "
                                  "(`sgen-ops tokens create OPERATOR` makes one)")
        checked = time.monotonic()
        epoch = self.hub.access_epoch()  # before the check: a change committed after it moves the epoch again
        expires: datetime | None = None
        try:
            if token.startswith(tokens.PREFIX) or self.hub_users is None:
                try:
                    op, expires = tokens.check(self.hub.ledger, token)  # the operator comes with the token
                except tokens.Refused as exc:
                    raise Unauthenticated(str(exc)) from None
                ops = self.hub.operations_of(op, op.name)
            else:
                ops = self.hub.as_operator(self.hub_users.user_of(token))
        except AccessDenied as exc:
            raise Unauthenticated(str(exc)) from None
        self._remember(tokens.digest(token), (checked, expires, epoch, ops))
        return ops

    def _remember(self, key: str, answer: tuple[float, datetime | None, int | None, Operations]) -> None:
        with self._lock:
            if len(self._known) >= _KEPT_ANSWERS:
                now = time.monotonic()
                self._known = {k: v for k, v in self._known.items() if now - v[0] < self.check_seconds}
            self._known[key] = answer
