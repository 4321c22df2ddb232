"""The endpoints, generated: one handler per route ``api.routes.ROUTES`` declares, calling the public
``Operations`` method of the operation's name with the route's path segments and arguments, and answering
in the shape of the method's return annotation (``wire.codec``). Capability, account scope, masking, state
checks and the Activity Log stay in the surface; here are only the admin gate (``caller``), the account of
the path (``Operations.within``), the translation to and from JSON, and for bulk writes the count before
the change and the idempotency key. A handler written here with ``served`` replaces the generated one.
"""

# No ``from __future__ import annotations``: FastAPI reads these signatures at run time.

import inspect
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, Path, Query, Request
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import create_model
from starlette.concurrency import run_in_threadpool

from ..errors import NotFound
from ..surface.operations import Operations
from . import idempotency, wire
from .problems import problem_responses
from .routes import ROUTES, Route
from .schemas import MAX_INT, Account, Created, FireTimes, Frame, HistoryQuery, IdempotencyKey, Me, Name, Params

EVERY_ACCOUNT = "*"

# Handlers written by hand (``served``), by (action, route index): they replace the generated ones.
_WRITTEN: dict[tuple[str, int], tuple[Callable[..., Any], dict[str, Any]]] = {}
bearer = HTTPBearer(auto_error=False, description="a token from `sgen-ops tokens create`, or a JupyterHub token")


async def caller(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
) -> Operations:
    """The admin gate: the operator the bearer token names, or 401 before anything else runs. A token checked
    within the last ``auth.TOKEN_CHECK_SECONDS`` is answered from memory, without a thread or a query."""
    gate = request.app.state.gate
    token = credentials.credentials if credentials else None
    known = gate.remembered(token) if token else None
    if known is not None:
        return known  # type: ignore[no-any-return]
    return await run_in_threadpool(gate.operations, token)


Ops = Annotated[Operations, Depends(caller)]
AccountId = Annotated[Account, Path(description="an account, or * for every account the operator may see")]
JobId = Annotated[int, Path(description="a job id")]
ScheduleId = Annotated[int, Path(description="a schedule id")]
TaskName = Annotated[Name, Path(description="a registered task")]
Priority = Annotated[Name, Path(description="a priority queue: high, normal or low")]
IdemKey = Annotated[IdempotencyKey | None, Header(alias="Idempotency-Key")]

_READ = (401, 403, 404, 422)
_WRITE = (401, 403, 404, 409, 422)


def _options(action: str, n: int, route: Route, model: Any, errors: tuple[int, ...], doc: str | None,
             also: dict[int | str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """``add_api_route``'s arguments for route ``n`` of ``action`` (``also``: more OpenAPI responses, such as
    another media type)."""
    return {
        "methods": [route.method], "status_code": route.status, "response_model": model, "name": action,
        "operation_id": action if n == 0 else f"{action}_{route.method.lower()}",
        "responses": {**problem_responses(*errors), **(also or {})}, "summary": _first_sentence(doc or action),
    }


def _first_sentence(doc: str) -> str:
    paragraph = " ".join(inspect.cleandoc(doc).split("\n\n")[0].split())
    return paragraph.split(". ")[0].removesuffix(".")


def served(action: str, n: int = 0, *, model: Any = None, errors: tuple[int, ...] = _WRITE,
           also: dict[int | str, dict[str, Any]] | None = None) -> Callable[[Any], Any]:
    """Serve route ``n`` of ``action`` with the decorated handler instead of the generated one."""
    route = ROUTES[action][n]

    def register(handler: Callable[..., Any]) -> Callable[..., Any]:
        _WRITTEN[(action, n)] = (handler, _options(action, n, route, model, errors, handler.__doc__, also))
        return handler

    return register


def install(app: FastAPI) -> None:
    """Add every declared route to ``app``: the handler written for it, or the one generated."""
    for action, routes in ROUTES.items():
        for n, route in enumerate(routes):
            handler, options = _WRITTEN.get((action, n)) or generated(action, n, route)
            app.add_api_route(route.path, handler, **options)


def held(ops: Operations, action: str, target: str, ident: int) -> int:
    """An id the ledger's integer columns can hold; any other names no record. It is answered 404 here,
    as the surface answers a missing one, because PostgreSQL refuses to compare it ("integer out of
    range"); the capability is checked first, as the surface does (its refusal needs no lookup)."""
    if not 1 <= ident <= MAX_INT and ops.can(action):
        raise NotFound(f"{target} {ident} not found")
    return ident


def within(ops: Operations, account_id: str) -> Operations:
    return ops.within(None if account_id == EVERY_ACCOUNT else account_id)


def _given(args: Any) -> dict[str, Any]:
    """The arguments the request set (one left out takes the operation's default, or is not changed)."""
    return {} if args is None else {name: getattr(args, name) for name in args.model_fields_set}


def _once(request: Request, ops: Operations, key: str | None, body: Any,
          write: Callable[[], tuple[int, Any]]) -> JSONResponse:
    fp = idempotency.fingerprint(request.method, request.url.path,
                                 body.model_dump(mode="json") if body is not None else {})
    status, answer, replayed = idempotency.run_once(ops.hub.ledger, ops.operator.id, key, fp, write)
    return JSONResponse(answer, status_code=status, headers={"Idempotent-Replayed": "true"} if replayed else None)


@served("can", model=Me, errors=(401,))
def me(ops: Ops) -> Any:
    """The calling operator, their role and account, and what each role may do."""
    return {
        "operator": ops.name,
        "role": ops.role,
        "account": ops.account,
        "capabilities": {role: sorted(ops.policy.actions_for(role)) for role in ("administrator", "editor", "viewer")},
    }


@served("history", model=Frame, errors=_READ, also={200: {"content": {wire.PARQUET: {
    "schema": {"type": "string", "format": "binary"}}}}})
def history(ops: Ops, account_id: AccountId, request: Request, args: Annotated[HistoryQuery, Query()]) -> Any:
    """Every job of the account, ledger and archive together, masked; as JSON, or as Parquet for
    ``Accept: application/vnd.apache.parquet`` (payloads as JSON text)."""
    # The account goes to the operation itself, which refuses another account's history as the local call
    # does (403, naming the bound account), where ``within`` would answer 404.
    account = None if account_id == EVERY_ACCOUNT else account_id
    frame = ops.history(**_given(args), account=account)
    if wire.PARQUET in request.headers.get("accept", ""):
        return Response(wire.encode_parquet(frame), media_type=wire.PARQUET)
    return wire.encode_frame(frame)


# -- the generated handlers ---------------------------------------------------------------------------
# The path segments an operation's arguments fill, and how each is declared to the framework.
_SEGMENTS: dict[str, Any] = {"account_id": AccountId, "job_id": JobId, "schedule_id": ScheduleId,
                             "task": TaskName, "priority": Priority}
_HELD = {"job_id": "job", "schedule_id": "schedule"}
_KW = inspect.Parameter.KEYWORD_ONLY


def _response_model(codec: wire.Codec, route: Route) -> Any:
    if route.bulk is not None:
        counts: dict[str, Any] = {"matched": (int, ...), route.bulk: (int, ...)}
        return create_model(route.bulk.title(), **counts)
    return {"none": None, "id": Created, "frame": Frame, "fire_times": FireTimes}.get(codec.kind, codec.kind)


def _args_parameter(route: Route) -> inspect.Parameter | None:
    """The parameter carrying the arguments outside the path: a query model for a GET, else the JSON body
    (optional when every field of it is)."""
    model = route.args
    if model is None:
        return None
    if issubclass(model, Params):
        return inspect.Parameter("args", _KW, annotation=Annotated[model, Query()])
    if all(not field.is_required() for field in model.model_fields.values()):
        return inspect.Parameter("args", _KW, annotation=model | None, default=None)
    return inspect.Parameter("args", _KW, annotation=model)


def generated(action: str, n: int, route: Route) -> tuple[Callable[..., Any], dict[str, Any]]:
    """The handler of route ``n`` of ``action``, and its ``add_api_route`` arguments."""
    method = getattr(Operations, action)
    codec = wire.codec(method, route.status)
    segments = [name for name in _SEGMENTS if f"{{{name}}}" in route.path]
    targets = tuple(name for name in segments if name != "account_id")
    scoped = "account_id" in segments
    # A creation takes the account of the path as its own argument, so that a bound operator naming another
    # account is refused as the surface refuses it; anything else is narrowed to the account (``within``).
    takes_account = "account" in inspect.signature(method).parameters
    status = route.status
    bulk = route.bulk

    def handler(**values: Any) -> Any:
        ops: Operations = values["ops"]
        given = _given(values.get("args"))
        if scoped:
            account_id = values["account_id"]
            if takes_account:
                given["account"] = None if account_id == EVERY_ACCOUNT else account_id
            else:
                ops = within(ops, account_id)
        at = [held(ops, action, _HELD[name], values[name]) if name in _HELD else values[name] for name in targets]
        call = getattr(ops, action)
        if bulk is not None:
            dry_run = given.pop("dry_run", False)

            def bulk_write() -> tuple[int, Any]:
                matched = call(*at, dry_run=True, **given)
                done = call(*at, **given) if matched and not dry_run else 0
                return status, {"matched": matched, bulk: done}

            return _once(values["request"], ops, values["key"], values.get("args"), bulk_write)
        if route.idempotent:
            return _once(values["request"], ops, values["key"], values.get("args"),
                         lambda: (status, codec.encode(call(*at, **given))))
        result = call(*at, **given)
        return Response(status_code=status) if status == 204 else JSONResponse(codec.encode(result), status)

    parameters = [inspect.Parameter("ops", _KW, annotation=Ops)]
    parameters += [inspect.Parameter(name, _KW, annotation=_SEGMENTS[name]) for name in segments]
    args = _args_parameter(route)
    if args is not None:
        parameters.append(args)
    if bulk is not None or route.idempotent:
        parameters += [inspect.Parameter("request", _KW, annotation=Request),
                       inspect.Parameter("key", _KW, annotation=IdemKey, default=None)]
    handler.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    handler.__name__ = handler.__qualname__ = action
    handler.__doc__ = method.__doc__
    errors = _READ if route.method == "GET" else _WRITE
    return handler, _options(action, n, route, _response_model(codec, route), errors, method.__doc__)
