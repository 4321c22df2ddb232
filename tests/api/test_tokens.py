"""Bearer tokens: random, shown once, stored as a hash, expiring, revocable, last use recorded; the
``sgen-ops tokens`` commands; and JupyterHub's tokens when the server is a Hub service."""

from __future__ import annotations

import json
import re
import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from sqlalchemy import select, text, update

import sgen_ops
from sgen_ops import AccessDenied, ValidationError
from sgen_ops.api import create_app
from sgen_ops.api.auth import TOKEN_CHECK_SECONDS, HubUsers
from sgen_ops.core.times import utcnow
from sgen_ops.ledger import tokens
from sgen_ops.ledger.store import ApiToken
from tests.integration.test_surface_fixtures import add_operators

from ..conftest import Stack
from ..helpers import run_cli
from .conftest import IN_PROCESS_URL, Api, InProcess


def table_rows(out: str) -> list[dict[str, str]]:
    """The rows of an aligned table (`tokens list`), each cell read at its column's place in the header."""
    header, *lines = out.rstrip("\n").splitlines()
    titles = re.findall(r"\S+(?: \S+)*", header)
    starts = [header.index(t) for t in titles]
    # A right-aligned first column (ID) may start left of its title: read it from the line's start.
    bounds = list(zip([0, *starts[1:]], [*starts[1:], None], strict=True))
    return [{t: line[a:b].strip() for t, (a, b) in zip(titles, bounds, strict=True)} for line in lines]

def refused(api: Api, token: str | None) -> str:
    answer = api.http(token=token).get("/api/me") if token else api.http().get("/api/me")
    assert answer.status_code == 401, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    return str(answer.json()["detail"])


def test_tokens_are_random_hashed_and_name_their_operator(hub: sgen_ops.Hub, api: Api) -> None:
    add_operators(hub)
    first, second = hub.create_token("viewer"), hub.create_token("viewer")
    assert first != second and first.startswith("sgo_") and len(first) >= 40
    with hub.ledger.read() as session:
        stored = [t.token_hash for t in session.scalars(select(ApiToken))]
        everything = json.dumps([list(r) for r in session.execute(text("SELECT * FROM api_tokens"))], default=str)
    assert stored == [tokens.digest(first), tokens.digest(second)]
    assert first not in everything and second not in everything
    assert api.http(token=first).get("/api/me").json()["operator"] == "viewer"
    with pytest.raises(ValidationError, match="'mallory' is not registered"):
        hub.create_token("mallory")


def test_missing_unknown_expired_and_revoked_tokens_are_refused(hub: sgen_ops.Hub, api: Api) -> None:
    add_operators(hub)
    assert "no bearer token" in refused(api, None)
    assert refused(api, "sgo_" + "x" * 43) == "the bearer token is not valid"
    assert refused(api, "not-even-ours") == "the bearer token is not valid"

    expiring = hub.create_token("editor", expires_in="1h")
    assert api.http(token=expiring).get("/api/me").status_code == 200
    with hub.ledger.write() as session:
        session.execute(update(ApiToken).where(ApiToken.token_hash == tokens.digest(expiring))
                        .values(expires_at=utcnow() - timedelta(seconds=1)))
    time.sleep(TOKEN_CHECK_SECONDS)  # an expiry moved in the ledger (not reached by time) is read again then
    assert refused(api, expiring) == "the bearer token has expired"

    revoked = hub.create_token("editor")
    [info] = [t for t in tokens.list_tokens(hub.ledger) if t.status() == "active"]
    tokens.revoke(hub.ledger, info.id)
    assert refused(api, revoked) == "the bearer token was revoked"

    # A disabled operator's token opens nothing either (the admin gate).
    kept = hub.create_token("viewer")
    hub.set_operator_enabled("viewer", False)
    assert "not registered or is disabled" in refused(api, kept)
    with pytest.raises(ValidationError, match="expires_in"):
        hub.create_token("viewer", expires_in="-5m")


def test_last_use_is_recorded(hub: sgen_ops.Hub, api: Api) -> None:
    add_operators(hub)
    token = hub.create_token("viewer")
    [info] = tokens.list_tokens(hub.ledger)
    assert info.last_used_at is None
    api.http(token=token).get("/api/me")
    [info] = tokens.list_tokens(hub.ledger)
    assert info.last_used_at is not None and info.last_used_at <= utcnow()


def cli(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli(["--log-level", "WARNING", "tokens", *args], stack.env())


def test_tokens_commands(stack: Stack, hub: sgen_ops.Hub, api: Api) -> None:
    add_operators(hub)
    made = cli(stack, "create", "editor", "--expires-in", "30d")
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip().splitlines()[-1]
    assert api.http(token=token).get("/api/me").json()["role"] == "editor"
    other = cli(stack, "create", "editor").stdout.strip().splitlines()[-1]
    third = cli(stack, "create", "viewer").stdout.strip().splitlines()[-1]

    listed = cli(stack, "list")
    assert listed.returncode == 0, listed.stderr
    for secret in (token, other, third):
        assert secret not in listed.stdout and tokens.digest(secret) not in listed.stdout
        assert secret[4:12] not in listed.stdout  # not even a fragment
    rows = table_rows(listed.stdout)
    assert [(r["OPERATOR"], r["STATUS"]) for r in rows] == [("editor", "active"), ("editor", "active"),
                                                            ("viewer", "active")]
    assert rows[0]["EXPIRES"].startswith("in ") and rows[1]["EXPIRES"] == ""  # the first expires, the second never
    assert rows[0]["LAST USED"] != "" and rows[1]["LAST USED"] == ""  # only the first asked for /api/me

    assert cli(stack, "revoke", rows[2]["ID"]).returncode == 0
    assert "revoked 2 token(s) of operator 'editor'" in cli(stack, "revoke", "--operator", "editor", "--all").stdout
    for secret in (token, other, third):
        assert refused(api, secret) == "the bearer token was revoked"
    assert [r["STATUS"] for r in table_rows(cli(stack, "list").stdout)] == ["revoked"] * 3
    bad = cli(stack, "revoke", "999")
    assert bad.returncode == 1 and "no token with id 999" in bad.stderr
    assert cli(stack, "revoke", "--all").returncode == 2


# -- JupyterHub --------------------------------------------------------------------------------------
class HubStandIn:
    """A small stand-in for JupyterHub's ``GET /hub/api/user``: answers the owner of a known token."""

    def __init__(self, users: dict[str, str]) -> None:
        users_by_token = users
        asked: list[str] = []
        self.asked = asked

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                scheme, _, token = (self.headers.get("Authorization") or "").partition(" ")
                asked.append(token)
                name = users_by_token.get(token) if scheme == "token" else None
                if self.path != "/hub/api/user" or name is None:
                    self.send_response(403)
                    self.end_headers()
                    return
                body = json.dumps({"kind": "user", "name": name, "admin": False}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hub/api"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)


@pytest.fixture
def jupyterhub() -> Iterator[HubStandIn]:
    stand_in = HubStandIn({"hub-token-of-dana": "dana", "hub-token-of-eve": "eve"})
    yield stand_in
    stand_in.close()


def test_a_jupyterhub_token_acts_as_the_hub_user(hub: sgen_ops.Hub, jupyterhub: HubStandIn) -> None:
    hub.add_operator("dana", "editor")
    users = HubUsers.from_environment({"JUPYTERHUB_API_URL": jupyterhub.url, "JUPYTERHUB_API_TOKEN": "svc"})
    assert users is not None
    assert HubUsers.from_environment({"JUPYTERHUB_API_URL": jupyterhub.url}) is None  # not a service
    api = Api(hub, IN_PROCESS_URL, InProcess(create_app(hub, hub_users=users)))
    try:
        ops = sgen_ops.remote(api.url, "hub-token-of-dana", transport=api.transport)
        assert (ops.name, ops.role) == ("dana", "editor")
        ops.list_jobs()
        ops.close()
        assert jupyterhub.asked.count("hub-token-of-dana") == 1  # remembered after the first answer
        # A Hub user who is not a registered operator is refused by the admin gate.
        assert "'eve' is not registered" in refused(api, "hub-token-of-eve")
        assert refused(api, "hub-token-of-nobody") == (
            "the bearer token is not valid (neither this server's nor JupyterHub's)")
        # This server's own tokens still work beside the Hub's.
        hub.add_operator("viewer", "viewer")
        assert api.http(token=hub.create_token("viewer")).get("/api/me").json()["operator"] == "viewer"
        with pytest.raises(AccessDenied):
            sgen_ops.remote(api.url, "hub-token-of-nobody", transport=api.transport)
    finally:
        api.close()


def test_a_notebook_needs_only_its_jupyterhub_token(
    hub: sgen_ops.Hub, jupyterhub: HubStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    """operator_session() in a user's server: SGEN_OPS_API_URL and JupyterHub's own token, nothing else."""
    from sgen_ops.ui import operator_session

    hub.add_operator("dana", "viewer")
    users = HubUsers(jupyterhub.url)
    transport = InProcess(create_app(hub, hub_users=users))
    for name in ("SGEN_OPS_API_TOKEN", "SGEN_OPS_OPERATOR", "SGEN_OPS_DATABASE_URL", "SGEN_OPS_REDIS_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SGEN_OPS_API_URL", IN_PROCESS_URL)
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", "hub-token-of-dana")
    monkeypatch.setattr(sgen_ops.api.client, "remote", _with_transport(transport))
    try:
        ops = operator_session()
        assert (ops.name, ops.role) == ("dana", "viewer")
        assert ops.list_jobs().total == 0
        ops.close()  # type: ignore[union-attr]
    finally:
        transport.shutdown()


def _with_transport(transport: InProcess) -> Any:
    original = sgen_ops.api.client.remote

    def remote(url: str, token: str | None = None, **options: Any) -> Any:
        return original(url, token, transport=transport, **options)

    return remote


def test_the_demo_revokes_the_token_its_last_run_made(hub: sgen_ops.Hub) -> None:
    """Each `make demo` makes a 30-day administrator token; the run before's is revoked, and a headless run's
    (never shown to anyone) when it ends: no pile of live administrator tokens."""
    from sgen_ops.ops import demo

    hub.add_operator(demo.DEMO_OPERATOR, "administrator")
    first = demo.demo_token(hub)
    second = demo.demo_token(hub)
    assert [t.status() for t in tokens.list_tokens(hub.ledger, demo.DEMO_OPERATOR)] == ["revoked", "active"]
    with pytest.raises(tokens.Refused):
        tokens.authenticate(hub.ledger, first)
    assert tokens.authenticate(hub.ledger, second).name == demo.DEMO_OPERATOR
    assert tokens.digest(second) in (hub.home / demo.DEMO_TOKEN_FILE).read_text()
    assert second not in (hub.home / demo.DEMO_TOKEN_FILE).read_text()
    assert demo.revoke_demo_token(hub) and not demo.revoke_demo_token(hub)
    assert [t.status() for t in tokens.list_tokens(hub.ledger, demo.DEMO_OPERATOR)] == ["revoked", "revoked"]
