"""The remote client: ``sgen_ops.remote(url, token)`` is the Jobs surface of an ``sgen-ops serve`` server,
with the methods, arguments, return types (``JobPage``, ``JobDetail``, DataFrames) and errors of a local
``hub.as_operator(name)``, so notebooks, views and runbooks run unchanged against a server they cannot
bypass. Each call is one request to the route ``api.routes.ROUTES`` declares for the operation.

The methods are generated, one per declared route, from the local ``Operations`` method of the same name:
its signature and docstring, its arguments sent where the route takes them, its answer decoded by its return
annotation (``wire.codec``). Only what is not an operation is written here: who the operator is, ``can``
(the server's policy, read once), ``within``, and closing.
"""

from __future__ import annotations

import inspect
import math
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import httpx

from ..config import API_URL_VARIABLE
from ..core import validate
from ..core.durations import format_duration
from ..core.permissions import DEFAULT_CAPABILITIES, Policy
from ..errors import AccessDenied, InvalidTransition, NotFound, SgenOpsError, Unavailable, ValidationError
from ..ledger.jobs import encode_payload
from ..ledger.query import parse_job_id
from ..surface.operations import Operations
from . import wire
from .routes import ROUTES, Route

TOKEN_VARIABLES = ("SGEN_OPS_API_TOKEN", "JUPYTERHUB_API_TOKEN")
EVERY_ACCOUNT = "*"
# Problem ``error`` -> the error raised here (the admin gate's refusal is AccessDenied, as locally).
_ERRORS: dict[str, type[SgenOpsError]] = {
    "AccessDenied": AccessDenied,
    "Unauthenticated": AccessDenied,
    "NotFound": NotFound,
    "InvalidTransition": InvalidTransition,
    "ValidationError": ValidationError,
    "Unavailable": Unavailable,
}
_BY_STATUS: dict[int, type[SgenOpsError]] = {401: AccessDenied, 403: AccessDenied, 404: NotFound,
                                             409: InvalidTransition, 422: ValidationError, 503: Unavailable}
ProgressFn = Callable[[int, int], Any]


class ServerError(SgenOpsError):
    """The server failed to answer (5xx), or answered something that is not the API's."""


def _time(value: Any, *, ahead: bool = False) -> Any:
    """A time argument as the API takes it: ISO text; a timedelta means that long ago (or ahead)."""
    if isinstance(value, timedelta):
        now = datetime.now(UTC)
        return wire.timestamp(now + value if ahead else now - value)
    if isinstance(value, datetime):
        return wire.timestamp(value)
    return value


def _payload(value: Any) -> Any:
    encode_payload(value, sys.maxsize)  # the local surface's check and words: JSON or ValidationError
    return value


# To a type checker the client is what it mirrors: every operation of ``Operations``, with its types.
if TYPE_CHECKING:
    _Surface = Operations
else:
    _Surface = object


class RemoteOperations(_Surface):
    """The Jobs surface of a server, as one operator (the token's)."""

    def __init__(self, http: httpx.Client, me: dict[str, Any], account: str | None = None) -> None:
        self._http = http
        self._me = me
        self._scope = account
        overrides = {role: [a for a in actions if a in DEFAULT_CAPABILITIES]
                     for role, actions in me["capabilities"].items()}
        self.policy = Policy(overrides)

    # -- who ------------------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return str(self._me["operator"])

    @property
    def role(self) -> str:
        return str(self._me["role"])

    @property
    def account(self) -> str | None:
        """The account this operator is bound to (or acts within); None: every account."""
        return self._scope if self._scope is not None else self._me.get("account")

    @property
    def url(self) -> str:
        return str(self._http.base_url)

    def can(self, action: str) -> bool:
        """Whether this operator's role may perform ``action`` (a method name), as the server's policy says."""
        return self.policy.allows(self.role, action)

    def within(self, account: str | None) -> RemoteOperations:
        """This operator acting inside one account, as ``Operations.within``."""
        if account is None or account == self.account:
            return self
        account = validate.account(account)
        if account == self.account:
            return self
        if self.account is not None:
            raise NotFound(f"account {validate.describe(account)} not found")
        return RemoteOperations(self._http, self._me, account)

    def __repr__(self) -> str:
        scope = f", account={self.account!r}" if self.account is not None else ""
        return f"<RemoteOperations as {self.name!r} ({self.role}{scope}) at {self.url}>"

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> RemoteOperations:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- one request ----------------------------------------------------------------------------------
    def _send(self, call: _Call, arguments: dict[str, Any]) -> Any:
        """One operation's request: its arguments placed in the path, the query or the body as its route
        declares, the answer decoded as the local method returns it."""
        route = call.route
        segments: dict[str, Any] = {}
        sent: dict[str, Any] = {}
        account: str | None = None
        keywords = arguments.get(call.var_keyword, {}) if call.var_keyword else {}
        for name, value in arguments.items():
            if name in _IDS:
                segments[name] = parse_job_id(value, _IDS[name])
            elif name in call.named:
                segments[name] = quote(_named(value, name), safe="")
            elif name == "account" and call.scoped:
                account = validate.account(value)
            elif name in call.fields:
                sent[name] = _encode(name, value, in_query=call.in_query)
        for name, value in keywords.items():
            sent[name] = _encode(name, value, in_query=call.in_query)
        if call.scoped:
            segment = account if account is not None else (self.account or EVERY_ACCOUNT)
            segments["account_id"] = quote(segment, safe="")
        kwargs: dict[str, Any] = {}
        if call.in_query:
            kwargs["params"] = {k: v for k, v in sent.items() if v is not None}
        elif route.method in ("POST", "PATCH"):
            kwargs["json"] = sent
        data = _answer(self._http.request(route.method, route.path.format(**segments), **kwargs))
        if route.bulk is not None:
            return _bulk_done(data, route.bulk, arguments.get("dry_run", False), arguments.get("progress"))
        return call.codec.decode(data)


# -- the generated methods ----------------------------------------------------------------------------
# Path segments filled by an id, checked here as the local surface checks it (the name is the record's).
_IDS = {"job_id": "job", "schedule_id": "schedule"}
# Time and span arguments: a timedelta means that long ago (``_AGO``) or from now (``_AHEAD``).
_AGO = frozenset({"since", "until"})
_AHEAD = frozenset({"scheduled_for"})
_SPANS = frozenset({"window", "interval", "every", "retention", "delay"})


@dataclass(frozen=True)
class _Call:
    """What the client knows of one operation: the route it calls and how its arguments travel."""

    route: Route
    codec: wire.Codec
    fields: frozenset[str]  # the arguments the route's model takes (others stay here: ``progress``)
    named: frozenset[str]  # task or priority path segments
    scoped: bool  # the path has ``{account_id}``
    in_query: bool
    var_keyword: str | None  # the method's ``**keywords``, sent as they are (the server refuses strangers)


def _encode(name: str, value: Any, *, in_query: bool) -> Any:
    """An argument as the API takes it: times as ISO text, spans as seconds (as text in a query: ``"1h30m"``),
    payloads checked as JSON with the local surface's words."""
    if name in _AGO or name in _AHEAD:
        return _time(value, ahead=name in _AHEAD)
    if name in _SPANS:
        seconds = value.total_seconds() if isinstance(value, timedelta) else value
        numeric = isinstance(seconds, int | float) and not isinstance(seconds, bool)
        return format_duration(seconds) if in_query and numeric and math.isfinite(seconds) else seconds
    if name == "payload":
        return _payload(value)
    return value


def _method(action: str) -> Callable[..., Any]:
    """The remote twin of ``Operations.<action>``: the same signature and docstring, one request."""
    local = getattr(Operations, action)
    signature = inspect.signature(local)
    routes = ROUTES[action]
    route = next((r for r in routes if r.method != "GET"), routes[0])
    var_keyword = next((p.name for p in signature.parameters.values() if p.kind is p.VAR_KEYWORD), None)
    call = _Call(
        route=route,
        codec=wire.codec(local, route.status),
        fields=frozenset(route.args.model_fields) if route.args is not None else frozenset(),
        named=frozenset(n for n in ("task", "priority") if f"{{{n}}}" in route.path),
        scoped="{account_id}" in route.path,
        in_query=route.method == "GET",
        var_keyword=var_keyword,
    )

    def method(self: RemoteOperations, *args: Any, **kwargs: Any) -> Any:
        return self._send(call, signature.bind(self, *args, **kwargs).arguments)

    method.__name__ = action
    method.__qualname__ = f"RemoteOperations.{action}"
    method.__doc__ = local.__doc__
    method.__signature__ = signature  # type: ignore[attr-defined]
    return method


for _action in ROUTES:
    if _action not in vars(RemoteOperations):
        setattr(RemoteOperations, _action, _method(_action))


def _named(value: Any, what: str) -> str:
    """A task or priority as a path segment: ValidationError for one that is not text."""
    if not isinstance(value, str) or not value.strip():
        raise ValidationError(f"{what} {validate.describe(value)} is not valid: give a {what} name")
    return value


def _bulk_done(answer: dict[str, Any], key: str, dry_run: bool, progress: ProgressFn | None) -> int:
    """The count a bulk operation returns locally; the progress callback hears of the end (one request)."""
    matched, done = int(answer["matched"]), int(answer[key])
    if dry_run:
        return matched
    if progress is not None and matched:
        progress(done, matched)
    return done


def _answer(response: httpx.Response) -> Any:
    """The JSON answer, or the surface's error the problem names."""
    if response.status_code < 400:
        return response.json() if response.content else None
    try:
        problem = response.json()
    except ValueError:
        problem = {}
    detail = problem.get("detail") if isinstance(problem, dict) else None
    error = problem.get("error") if isinstance(problem, dict) else None
    cls = _ERRORS.get(str(error)) or _BY_STATUS.get(response.status_code)
    if cls is None:
        raise ServerError(f"the server answered {response.status_code}: {detail or response.text[:500]}")
    if cls is Unavailable:
        retry = response.headers.get("retry-after", "")
        raise Unavailable.said(str(detail or "the server cannot reach its ledger or Redis"),
                               int(retry) if retry.isdigit() else 5)
    raise cls(str(detail or f"the server answered {response.status_code}"))


def remote(
    url: str,
    token: str | None = None,
    *,
    account: str | None = None,
    timeout: float = 120.0,
    transport: httpx.BaseTransport | None = None,
) -> RemoteOperations:
    """The Jobs surface of the server at ``url`` as the operator ``token`` names (default:
    ``SGEN_OPS_API_TOKEN``, else JupyterHub's ``JUPYTERHUB_API_TOKEN``). Raises AccessDenied if the server
    refuses the token, as the admin gate refuses an unknown operator."""
    token = token or next((os.environ[v].strip() for v in TOKEN_VARIABLES if os.environ.get(v, "").strip()), None)
    if not token:
        raise AccessDenied(
            "no API token: set SGEN_OPS_API_TOKEN (an administrator makes one with `sgen-ops tokens create NAME`), "
            "or run inside JupyterHub"
        )
    http = httpx.Client(base_url=url.rstrip("/"), headers={"Authorization": f"Bearer {token}"}, timeout=timeout,
                        transport=transport)
    try:
        me = _answer(http.get(ROUTES["can"][0].path))
        return RemoteOperations(http, me).within(account)
    except BaseException:
        http.close()
        raise


def served_session(operator: str | None = None) -> RemoteOperations | None:
    """The remote Jobs surface when ``SGEN_OPS_API_URL`` is set, else None. ``operator``, if given, must be
    the one the token names (a token cannot act as anyone else)."""
    url = os.environ.get(API_URL_VARIABLE, "").strip()
    if not url:
        return None
    ops = remote(url)
    if operator and operator != ops.name:
        ops.close()
        raise AccessDenied(
            f"the API token in use is operator {ops.name!r}'s and cannot act as {operator!r}; "
            f"use a token of {operator!r} (SGEN_OPS_API_TOKEN)"
        )
    return ops
