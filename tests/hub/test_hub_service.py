"""The app as a JupyterHub service, in this process (no Hub needed): served under the service prefix and on its
own address, browsers sent to the Hub to sign in, the sign-in's state checked, and the sign-in cookie accepted
for page visits only. ``test_jupyterhub.py`` runs the whole flow against a real Hub."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

import sgen_ops
from sgen_ops.api import create_app

from ..api.conftest import IN_PROCESS_URL, InProcess

pytest.importorskip("jupyterhub.services.auth")

PREFIX = "/services/sgen-ops"
HUB_SERVICE = {
    "JUPYTERHUB_SERVICE_PREFIX": f"{PREFIX}/",
    "JUPYTERHUB_API_URL": "http://127.0.0.1:9/hub/api",
    "JUPYTERHUB_API_TOKEN": "the-service-token",
    "JUPYTERHUB_CLIENT_ID": "service-sgen-ops",
    "JUPYTERHUB_OAUTH_CALLBACK_URL": f"{PREFIX}/oauth_callback",
}
PAGE = {"accept": "text/html,application/xhtml+xml", "sec-fetch-mode": "navigate"}
COOKIE = "service-sgen-ops"


@pytest.fixture
def service(hub: sgen_ops.Hub, monkeypatch: pytest.MonkeyPatch) -> Iterator[httpx.Client]:
    """The app with a Hub service's environment; tokens of this server stand in for Hub tokens."""
    for name, value in HUB_SERVICE.items():
        monkeypatch.setenv(name, value)
    transport = InProcess(create_app(hub, hub_users=None))
    client = httpx.Client(base_url=IN_PROCESS_URL, transport=transport, follow_redirects=False)
    try:
        yield client
    finally:
        client.close()
        transport.shutdown()


def test_served_under_the_prefix_and_on_its_own_address(hub: sgen_ops.Hub, service: httpx.Client) -> None:
    hub.add_operator("vera", "viewer")
    bearer = {"authorization": f"Bearer {hub.create_token('vera')}"}
    assert service.get(f"{PREFIX}/healthz").status_code == 200
    assert service.get("/healthz").status_code == 200
    assert service.get(f"{PREFIX}/api/me", headers=bearer).json()["operator"] == "vera"
    assert service.get("/api/me", headers=bearer).json()["operator"] == "vera"
    # The API's own pages know where they are.
    assert f"{PREFIX}/openapi.json" in service.get(f"{PREFIX}/docs").text


def test_a_browser_without_credentials_is_sent_to_the_hub(service: httpx.Client) -> None:
    answer = service.get(f"{PREFIX}/api/jobs/7?x=1", headers=PAGE)
    assert answer.status_code == 302
    target = urlsplit(answer.headers["location"])
    query = {k: v[0] for k, v in parse_qs(target.query).items()}
    assert target.path == "/hub/api/oauth2/authorize"
    assert query["client_id"] == "service-sgen-ops" and query["redirect_uri"] == f"{PREFIX}/oauth_callback"
    assert query["response_type"] == "code" and query["code_challenge_method"] == "S256" and query["state"]
    state_cookie = answer.headers["set-cookie"]
    assert state_cookie.startswith(f"{COOKIE}-oauth-state=") and "HttpOnly" in state_cookie
    assert f"Path={PREFIX}/" in state_cookie
    # The service's root lands on who you are; a script, an API client, or the direct address get a 401.
    assert service.get(f"{PREFIX}/", headers=PAGE).headers["location"] == f"{PREFIX}/api/me"
    assert service.get(f"{PREFIX}/api/me", headers={"accept": "application/json"}).status_code == 401
    assert service.get(f"{PREFIX}/api/me", headers={**PAGE, "sec-fetch-mode": "cors"}).status_code == 401
    assert service.get("/api/me", headers=PAGE).status_code == 401


def test_a_callback_must_match_the_sign_in_this_server_started(service: httpx.Client) -> None:
    started = service.get(f"{PREFIX}/api/me", headers=PAGE)
    state = parse_qs(urlsplit(started.headers["location"]).query)["state"][0]
    cookie = started.headers["set-cookie"].split(";", 1)[0]
    callback = f"{PREFIX}/oauth_callback"
    wrong = service.get(callback, params={"code": "c", "state": "another"}, headers={"cookie": cookie})
    assert wrong.status_code == 403 and "sign in again" in wrong.json()["detail"]
    assert service.get(callback, params={"code": "c", "state": state}).status_code == 403  # no state cookie
    refused = service.get(callback, params={"error": "access_denied"}, headers={"cookie": cookie})
    assert refused.status_code == 400 and "access_denied" in refused.json()["detail"]


def test_the_sign_in_cookie_reads_pages_only(hub: sgen_ops.Hub, service: httpx.Client) -> None:
    hub.add_operator("vera", "administrator")
    job = hub.enqueue("test.ok", {"n": 1}, account="acme", delay=3600)
    session = {"cookie": f"{COOKIE}={hub.create_token('vera')}"}
    page = service.get(f"{PREFIX}/api/jobs/{job}", headers={**PAGE, **session})
    assert page.status_code == 200 and page.json()["id"] == job
    assert page.headers["content-security-policy"] == "sandbox"
    script = service.get(f"{PREFIX}/api/jobs/{job}", headers={**PAGE, **session, "sec-fetch-mode": "cors"})
    assert script.status_code == 401
    write = service.post(f"{PREFIX}/api/jobs/{job}/cancel", headers={**PAGE, **session})
    assert write.status_code == 401
    assert hub.as_operator("vera").get_job(job).state == "queued"
    # A cookie the gate refuses is cleared, so that the next visit signs in again.
    stale = service.get(f"{PREFIX}/api/me", headers={**PAGE, "cookie": f"{COOKIE}=sgo_not-a-token"})
    assert stale.status_code == 401 and stale.headers["set-cookie"].startswith(f"{COOKIE}=;")
    assert "Max-Age=0" in stale.headers["set-cookie"]
