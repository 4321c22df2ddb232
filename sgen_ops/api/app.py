"""The ASGI app: ``create_app(hub)`` serves the Jobs surface over HTTP (``sgen-ops serve`` runs it with
uvicorn). Handlers are plain ``def`` functions over the synchronous surface; the framework runs them in
its thread pool."""

from __future__ import annotations

import os
from typing import Any

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from sqlalchemy import text
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .. import __version__
from ..errors import AccessDenied, SgenOpsError
from ..hub import Hub
from ..transport.reach import unavailable as redis_unavailable
from . import problems
from .auth import Gate, HubUsers
from .endpoints import Ops, install
from .hub_auth import HubService
from .metrics import Metrics
from .routes import ROUTES
from .schemas import Health

DESCRIPTION = """The Jobs surface of sgen-ops: seed 003's account-scoped endpoints, then every seed 000
operation. Every request but `GET /healthz` (and this document) carries `Authorization: Bearer TOKEN`
naming one operator; the operator's role decides what they may do, their account what they may see, and
sensitive payload fields are masked for every role but administrator. Errors are RFC 9457
`application/problem+json`. `{account_id}` is an account, or `*` for every account the operator may see."""

_FROM_ENVIRONMENT: Any = object()


class CountAnswers:
    """Counts every answer by route and status (``sgen_ops_http_requests_total``, and per operation
    ``sgen_ops_operator_actions_total``), once routing has named the route; marks every answer no-store."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                # Answers hold operators' data: no cache keeps them.
                message["headers"] = [*message.get("headers", []), (b"cache-control", b"no-store")]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route = scope.get("route")
            name = getattr(route, "name", None)
            self.metrics.answered(scope["method"], getattr(route, "path", "unmatched"),
                                  name if name in ROUTES else None, status)


def create_app(hub: Hub, *, hub_users: HubUsers | None = _FROM_ENVIRONMENT) -> FastAPI:
    """The ASGI app serving ``hub``'s Jobs surface. ``hub_users``: the JupyterHub whose tokens are also
    accepted (default: the one ``JUPYTERHUB_API_URL`` and ``JUPYTERHUB_API_TOKEN`` name, if set)."""
    app = FastAPI(title="sgen-ops", version=__version__, description=DESCRIPTION, openapi_url="/openapi.json",
                  docs_url="/docs", redoc_url=None)
    app.state.hub = hub
    app.state.gate = Gate(hub, HubUsers.from_environment() if hub_users is _FROM_ENVIRONMENT else hub_users)
    metrics = Metrics(hub)
    app.state.metrics = metrics

    app.add_exception_handler(SgenOpsError, problems.on_sgen_error)
    app.add_exception_handler(RequestValidationError, problems.on_invalid_request)
    app.add_exception_handler(StarletteHTTPException, problems.on_http_error)
    app.add_exception_handler(Exception, problems.on_unexpected)
    app.add_middleware(CountAnswers, metrics=metrics)
    service = HubService.settings_from(os.environ)  # a JupyterHub service: its prefix, and browsers' Hub OAuth
    if service is not None:
        app.add_middleware(HubService, prefix=service[0], oauth=service[1])
    install(app)

    @app.get("/healthz", response_model=Health, tags=["service"], responses={503: {"model": Health}})
    def healthz() -> Any:
        """Whether the server reaches its ledger and Redis (no token needed)."""
        ledger = redis = "ok"
        try:
            with hub.ledger.read() as session:
                session.execute(text("SELECT 1"))
        except Exception as exc:  # noqa: BLE001 - reported, not raised
            gone = hub.ledger.unavailable(exc)
            ledger = f"unreachable: {gone.reason if gone else type(exc).__name__}"
        try:
            hub.redis.ping()
        except Exception as exc:  # noqa: BLE001 - reported, not raised
            gone = redis_unavailable(exc, hub.redis)
            redis = f"unreachable: {gone.reason if gone else type(exc).__name__}"
        ok = ledger == redis == "ok"
        body = {"status": "ok" if ok else "unavailable", "ledger": ledger, "redis": redis}
        return body if ok else JSONResponse(body, status_code=503)

    @app.get("/metrics", tags=["service"], response_class=Response,
             responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}},
                        **problems.problem_responses(401, 403)})
    def prometheus(ops: Ops) -> Response:
        """The queue in Prometheus' text format (an operator of every account)."""
        if ops.account is not None:
            raise AccessDenied(f"operator {ops.name!r} is bound to account {ops.account!r}; the metrics count "
                               "every account, so they are for operators of every account")
        return Response(metrics.exposition(), media_type="text/plain; version=0.0.4; charset=utf-8")

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description,
                                 routes=app.routes)
            schema.setdefault("components", {}).setdefault("schemas", {})["Problem"] = (
                problems.Problem.model_json_schema())
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

    return app
