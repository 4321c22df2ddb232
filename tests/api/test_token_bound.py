"""The gate remembers a checked token for ``TOKEN_CHECK_SECONDS`` (docs/totals.md, "The HTTP path"): a
request then reads nothing before its own work. What that bound allows and what it never does: a revoked
token, or a disabled operator's, is refused once the bound has passed; an expired token is refused on its
next request, however long the bound."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

import sgen_ops
from sgen_ops.api import create_app
from sgen_ops.api.auth import TOKEN_CHECK_SECONDS
from sgen_ops.ledger import tokens
from tests.integration.test_surface_fixtures import add_operators

from .conftest import IN_PROCESS_URL, Api, InProcess


@pytest.fixture
def served(hub: sgen_ops.Hub) -> Iterator[tuple[Api, object]]:
    app = create_app(hub, hub_users=None)
    api = Api(hub, IN_PROCESS_URL, InProcess(app))
    yield api, app.state.gate
    api.close()


def _status(api: Api, token: str) -> tuple[int, str]:
    answer = api.http(token=token).get("/api/me")
    return answer.status_code, answer.json().get("detail", "")


def test_a_revoked_token_is_refused_once_the_bound_has_passed(hub: sgen_ops.Hub, served: tuple[Api, object]) -> None:
    api, gate = served
    add_operators(hub)
    token = hub.create_token("editor")
    assert _status(api, token)[0] == 200
    [info] = tokens.list_tokens(hub.ledger)
    tokens.revoke(hub.ledger, info.id)
    gate.check_seconds = 3600.0  # type: ignore[attr-defined]
    assert _status(api, token)[0] == 200  # remembered: within the bound, the revocation is not read yet
    gate.check_seconds = TOKEN_CHECK_SECONDS  # type: ignore[attr-defined]
    time.sleep(TOKEN_CHECK_SECONDS)
    assert _status(api, token) == (401, "the bearer token was revoked")
    assert _status(api, token)[0] == 401  # and stays refused


def test_a_disabled_operator_is_refused_once_the_bound_has_passed(hub: sgen_ops.Hub,
                                                                   served: tuple[Api, object]) -> None:
    api, _ = served
    add_operators(hub)
    token = hub.create_token("viewer")
    assert _status(api, token)[0] == 200
    hub.set_operator_enabled("viewer", False)
    time.sleep(TOKEN_CHECK_SECONDS)
    status, detail = _status(api, token)
    assert status == 401 and "not registered or is disabled" in detail


def test_an_expired_token_is_refused_on_its_next_request_whatever_the_bound(
        hub: sgen_ops.Hub, served: tuple[Api, object]) -> None:
    api, gate = served
    add_operators(hub)
    gate.check_seconds = 3600.0  # type: ignore[attr-defined]
    token = hub.create_token("editor", expires_in="2s")
    assert _status(api, token)[0] == 200
    time.sleep(2.2)
    assert _status(api, token) == (401, "the bearer token has expired")
