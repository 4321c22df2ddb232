"""Fixtures for the HTTP API tests: the app in this process behind an httpx transport (no socket), for
speed, and ``sgen-ops serve`` as a real uvicorn process on a free port."""

from __future__ import annotations

import socket
import sys
from collections.abc import Iterator
from typing import Any

import anyio.from_thread
import httpx
import pytest

import sgen_ops
from sgen_ops.api import create_app
from sgen_ops.api.client import RemoteOperations, remote

from ..conftest import Stack
from ..helpers import Process, wait_for

IN_PROCESS_URL = "http://sgen-ops.test"


class _Body(httpx.SyncByteStream):
    """An answer's bytes, read by the client as from a socket (so that it times the response)."""

    def __init__(self, content: bytes) -> None:
        self.content = content

    def __iter__(self) -> Iterator[bytes]:
        yield self.content


class InProcess(httpx.BaseTransport):
    """A synchronous httpx transport that hands each request to an ASGI app in this process."""

    def __init__(self, app: Any) -> None:
        # A 500 comes back as the answer a client would get (Starlette re-raises after sending it).
        self._app = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        self._portal_cm = anyio.from_thread.start_blocking_portal()
        self._portal = self._portal_cm.__enter__()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        body = request.read()

        async def send() -> tuple[int, list[tuple[bytes, bytes]], bytes]:
            inner = httpx.Request(request.method, request.url, headers=request.headers, content=body)
            answer = await self._app.handle_async_request(inner)
            content = await answer.aread()
            return answer.status_code, answer.headers.raw, content

        status, headers, content = self._portal.call(send)
        return httpx.Response(status, headers=headers, stream=_Body(content), request=request)

    def close(self) -> None:
        """Clients close their transport; this one is shared, and ends with ``shutdown``."""

    def shutdown(self) -> None:
        self._portal_cm.__exit__(None, None, None)


class Api:
    """A hub's API: tokens per operator, raw HTTP clients and remote clients, in process or over a socket."""

    def __init__(self, hub: sgen_ops.Hub, url: str, transport: httpx.BaseTransport | None) -> None:
        self.hub = hub
        self.url = url
        self.transport = transport
        self._tokens: dict[str, str] = {}
        self._open: list[Any] = []

    def token(self, operator: str) -> str:
        if operator not in self._tokens:
            self._tokens[operator] = self.hub.create_token(operator)
        return self._tokens[operator]

    def http(self, operator: str | None = None, token: str | None = None) -> httpx.Client:
        """A plain HTTP client, with the operator's (or the given) token, or none."""
        token = token or (self.token(operator) if operator else None)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        client = httpx.Client(base_url=self.url, headers=headers, transport=self.transport, timeout=120)
        self._open.append(client)
        return client

    def remote(self, operator: str) -> RemoteOperations:
        ops = remote(self.url, self.token(operator), transport=self.transport)
        self._open.append(ops)
        return ops

    def close(self) -> None:
        for client in self._open:
            client.close()
        if isinstance(self.transport, InProcess):
            self.transport.shutdown()


@pytest.fixture
def api(hub: sgen_ops.Hub) -> Iterator[Api]:
    """The app of ``hub``, in this process."""
    served = Api(hub, IN_PROCESS_URL, InProcess(create_app(hub, hub_users=None)))
    yield served
    served.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(stack: Stack, *args: str, env: dict[str, str] | None = None) -> tuple[Process, str]:
    """``sgen-ops serve`` on the test's stack, listening on a free port; returns it and its URL once
    ``/healthz`` answers."""
    port = free_port()
    stack.home.mkdir(parents=True, exist_ok=True)
    log = stack.home / f"serve-{port}.log"
    proc = Process([sys.executable, "-m", "sgen_ops.cli", "serve", "--port", str(port), *args],
                   env or stack.env(), log)
    url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        if proc.popen.poll() is not None:
            raise AssertionError(f"sgen-ops serve exited with {proc.popen.returncode}:\n{proc.output()[-4000:]}")
        try:
            return httpx.get(f"{url}/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_for(healthy, timeout=60, what="sgen-ops serve to answer /healthz")
    except BaseException:
        proc.stop()
        raise
    return proc, url


@pytest.fixture
def server(stack: Stack, hub: sgen_ops.Hub) -> Iterator[Api]:
    """``sgen-ops serve`` (uvicorn) on the test's stack, as a separate process on a free port."""
    proc, url = start_server(stack)
    served = Api(hub, url, None)
    try:
        yield served
    finally:
        served.close()
        proc.stop()
