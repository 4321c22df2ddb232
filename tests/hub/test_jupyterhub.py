"""``sgen-ops serve`` as the service of a real JupyterHub (the ``jupyterhub`` package, ``configurable-http-proxy``
from npm), configured with the README's own ``jupyterhub_config.py``: a process holding a Hub user's token and
``SGEN_OPS_API_URL`` acts as the operator of that name and no other; a Hub user who is no operator is refused,
and so is one removed from the Hub within the documented cache time; a browser reaching the service through
the Hub's proxy signs in with Hub OAuth, and the sign-in cookie neither writes nor lets another page read.

The Hub, its proxy and the service run on free ports in the test's own directory, with a dummy authenticator
(any password) and an administrative service of the test's own, and are all stopped at the end, even on failure.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

import sgen_ops
from sgen_ops.api.auth import HUB_CACHE_SECONDS
from sgen_ops.ledger.store import ActivityEntry

from ..api.conftest import free_port
from ..browser.test_voila_app import CHROMIUM, CHROMIUM_ARGS, require_chromium
from ..conftest import ROOT, Stack
from ..helpers import job_row, wait_for

README = ROOT / "README.md"
SERVICE = "sgen-ops"
SERVICE_SCOPE = f"access:services!service={SERVICE}"
# The scopes the README's configuration gives a user's server token.
SERVER_TOKEN_SCOPES = ["users:activity!user", SERVICE_SCOPE]
STARTUP_SECONDS = 120
PAGE_TIMEOUT_MS = 60_000


def _required(tool: str, found: str | None, package: str) -> str:
    """A tool the test needs; missing, the test is skipped (failed under CI, which installs it)."""
    if found:
        return found
    reason = f"{tool} is not installed ({package})"
    if os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no"):
        pytest.fail(f"CI must run the JupyterHub tests: {reason}")
    pytest.skip(reason)


def readme_hub_config() -> str:
    """The README's ``jupyterhub_config.py``: its Python block that starts with that name."""
    from ..readme.blocks import blocks

    found = [b.code for b in blocks(README) if b.language == "python" and b.code.startswith("# jupyterhub_config.py")]
    assert len(found) == 1, "the README has no (or several) jupyterhub_config.py blocks"
    return found[0] + "\n"


@dataclass
class RealHub:
    """A running JupyterHub: its public URL (the proxy), its REST API as the test's administrative service, and
    the sgen-ops service's own address."""

    url: str
    admin: httpx.Client
    service_url: str
    process: subprocess.Popen[bytes]
    log: Path

    def add_user(self, name: str) -> None:
        answer = self.admin.post(f"/users/{name}")
        assert answer.status_code == 201, answer.text

    def token_of(self, name: str, scopes: list[str]) -> str:
        """A token of user ``name`` with ``scopes``, as the Hub gives a user's server (JUPYTERHUB_API_TOKEN)."""
        answer = self.admin.post(f"/users/{name}/tokens", json={"scopes": scopes, "note": "test"})
        assert answer.status_code == 201, answer.text
        return str(answer.json()["token"])

    def remove_user(self, name: str) -> None:
        answer = self.admin.delete(f"/users/{name}")
        assert answer.status_code == 204, answer.text

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def _stop(process: subprocess.Popen[bytes], started: list[psutil.Process]) -> None:
    """Stop the Hub (which stops its proxy and services), then anything it started that is still running."""
    with contextlib.suppress(psutil.NoSuchProcess):
        started += psutil.Process(process.pid).children(recursive=True)
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
    _gone, alive = psutil.wait_procs(started, timeout=10)
    for proc in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.kill()
    psutil.wait_procs(alive, timeout=10)


@pytest.fixture
def jupyterhub(stack: Stack, tmp_path: Path) -> Iterator[RealHub]:
    """JupyterHub with the README's configuration, on free ports, sgen-ops serving the test's stack."""
    jupyterhub_bin = _required("jupyterhub", shutil.which("jupyterhub", path=str(Path(sys.executable).parent))
                               or shutil.which("jupyterhub"), "pip install 'sgen-ops[hub]'")
    _required("configurable-http-proxy", shutil.which("configurable-http-proxy"),
              "npm install -g configurable-http-proxy")
    public, hub_api, proxy_api, service = (free_port() for _ in range(4))
    admin_token = secrets.token_hex(32)
    config = readme_hub_config()
    assert config.count("sgen_ops_port = 8765\n") == 1
    config = config.replace("sgen_ops_port = 8765\n", f"sgen_ops_port = {service}\n")
    config += f"""
# The test's own: free ports, its own files, a dummy authenticator, and an administrative service for the test.
c.JupyterHub.ip = "127.0.0.1"
c.JupyterHub.port = {public}
c.JupyterHub.hub_port = {hub_api}
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{proxy_api}"
c.JupyterHub.authenticator_class = "dummy"
c.JupyterHub.services.append({{"name": "test-admin", "api_token": "{admin_token}"}})
c.JupyterHub.load_roles.append(
    {{"name": "test-admin", "scopes": ["admin:users", "tokens"], "services": ["test-admin"]}}
)
"""
    home = tmp_path / "jupyterhub"
    home.mkdir()
    (home / "jupyterhub_config.py").write_text(config)
    env = stack.env()
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"  # sgen-ops, as installed
    log = home / "jupyterhub.log"
    with log.open("wb") as out:
        process = subprocess.Popen([jupyterhub_bin, "-f", "jupyterhub_config.py"], cwd=home, env=env, stdout=out,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    started: list[psutil.Process] = []
    url = f"http://127.0.0.1:{public}"
    admin = httpx.Client(base_url=f"{url}/hub/api", headers={"Authorization": f"token {admin_token}"}, timeout=60)
    running = RealHub(url, admin, f"http://127.0.0.1:{service}", process, log)

    def serving() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"jupyterhub exited with {process.returncode}:\n{running.output()[-4000:]}")
        try:
            return httpx.get(f"{url}/services/{SERVICE}/healthz", timeout=5).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_for(serving, timeout=STARTUP_SECONDS, what="JupyterHub to serve sgen-ops through its proxy")
        started += psutil.Process(process.pid).children(recursive=True)
        yield running
    finally:
        admin.close()
        _stop(process, started)


def _as_users_server(token: str, hub: RealHub, cwd: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    """``argv`` as a user's server runs it: JupyterHub's token and the README's SGEN_OPS_API_URL, nothing else of
    sgen-ops (no ledger, no Redis, no operator)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SGEN_OPS_", "JUPYTERHUB_"))}
    env |= {"JUPYTERHUB_API_TOKEN": token, "SGEN_OPS_API_URL": hub.service_url}
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False)


def _activity(hub: sgen_ops.Hub, action: str) -> list[tuple[str, int | None]]:
    with hub.ledger.read() as session:
        rows = session.query(ActivityEntry.operator, ActivityEntry.target_id).filter(ActivityEntry.action == action)
        return [(operator, target) for operator, target in rows]


@pytest.mark.slow
def test_a_hub_users_token_acts_as_that_operator_only(
    jupyterhub: RealHub, hub: sgen_ops.Hub, tmp_path: Path
) -> None:
    hub.add_operator("alice", "editor")
    hub.add_operator("carol", "viewer")
    failed = hub.enqueue("test.boom", {"n": 1}, account="acme", max_attempts=1)
    hub.work(burst=True)
    for name in ("alice", "bob", "carol"):
        jupyterhub.add_user(name)
    alice = jupyterhub.token_of("alice", SERVER_TOKEN_SCOPES)
    cwd = tmp_path / "alice-server"
    cwd.mkdir()
    cli = [sys.executable, "-m", "sgen_ops.cli"]

    # alice's server: the surface as alice, with her role's capabilities, in the Activity Log under her name.
    session = "from sgen_ops.ui import operator_session; ops = operator_session(); print(ops.name, ops.role)"
    who = _as_users_server(alice, jupyterhub, cwd, sys.executable, "-c", session)
    assert who.returncode == 0 and who.stdout.split() == ["alice", "editor"], who.stderr
    rerun = _as_users_server(alice, jupyterhub, cwd, *cli, "jobs", "rerun", str(failed))
    assert rerun.returncode == 0, rerun.stderr
    assert _activity(hub, "rerun") == [("alice", failed)]
    denied = _as_users_server(alice, jupyterhub, cwd, *cli, "jobs", "cancel", str(failed), "--operator", "carol")
    assert denied.returncode == 1 and "cannot act as 'carol'" in denied.stderr
    assert _as_users_server(alice, jupyterhub, cwd, *cli, "jobs", "dismiss", str(failed)).returncode == 1
    assert _activity(hub, "cancel") == [] and _activity(hub, "dismiss") == []
    # Through the Hub's proxy too, and the token is the only credential: without it, nothing.
    assert httpx.get(f"{jupyterhub.url}/services/{SERVICE}/api/me",
                     headers={"Authorization": f"Bearer {alice}"}).json()["operator"] == "alice"
    assert httpx.get(f"{jupyterhub.service_url}/api/me").status_code == 401

    # A Hub user who is no operator, and a token of alice's without access to the service, are refused.
    bob = _as_users_server(jupyterhub.token_of("bob", SERVER_TOKEN_SCOPES), jupyterhub, cwd, *cli, "jobs", "list")
    assert bob.returncode == 1 and "'bob' is not registered" in bob.stderr
    narrow = jupyterhub.token_of("alice", ["read:users:name!user"])
    answer = httpx.get(f"{jupyterhub.service_url}/api/me", headers={"Authorization": f"Bearer {narrow}"})
    assert answer.status_code == 401 and SERVICE_SCOPE in answer.json()["detail"]

    # alice leaves the Hub: her server's token is refused within the documented cache time.
    me = f"{jupyterhub.service_url}/api/me"
    assert httpx.get(me, headers={"Authorization": f"Bearer {alice}"}).status_code == 200  # remembered from now
    jupyterhub.remove_user("alice")
    removed = time.monotonic()
    while httpx.get(me, headers={"Authorization": f"Bearer {alice}"}).status_code != 401:
        # The documented minute, and a margin for a loaded machine.
        assert time.monotonic() - removed < HUB_CACHE_SECONDS + 30, "the removed user's token is still accepted"
        time.sleep(1)
    assert not list(cwd.iterdir()), "a user's server wrote under its working directory"


@pytest.mark.slow
@pytest.mark.browser
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_browser_signs_in_through_the_hub(jupyterhub: RealHub, hub: sgen_ops.Hub) -> None:
    """Through the Hub's proxy the service sends a browser to the Hub's login, and back signed in as the Hub user:
    no token pasted anywhere. The cookie reads pages only: a script of another Hub page gets nothing with it."""
    require_chromium()
    from playwright.sync_api import sync_playwright

    hub.add_operator("carol", "viewer")
    job = hub.enqueue("test.ok", {"n": 1}, account="acme", delay=3600)
    service = f"{jupyterhub.url}/services/{SERVICE}"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_context().new_page()
            page.set_default_timeout(PAGE_TIMEOUT_MS)
            page.goto(f"{service}/")
            assert "/hub/login" in page.url  # the Hub asks who this is
            page.fill("input[name=username]", "carol")
            page.fill("input[name=password]", "any password")
            page.click("#login_submit")
            page.wait_for_url(f"{service}/api/me")
            me: dict[str, Any] = page.evaluate("JSON.parse(document.body.innerText)")
            assert (me["operator"], me["role"]) == ("carol", "viewer")
            visit = page.goto(f"{service}/api/jobs/{job}")
            assert visit is not None and visit.status == 200 and visit.headers["content-security-policy"] == "sandbox"
            assert f'"id":{job}' in page.inner_text("body")
            session = [c for c in page.context.cookies() if c["name"] == f"service-{SERVICE}"]
            assert session and session[0]["httpOnly"] and session[0]["path"] == f"/services/{SERVICE}/"

            # A page of the Hub's origin (here the Hub's own) cannot use the cookie: not to read, not to write,
            # not by framing an answer.
            page.goto(f"{jupyterhub.url}/hub/home")
            fetch = "async ([u, m]) => (await fetch(u, {method: m, credentials: 'include'})).status"
            assert page.evaluate(fetch, [f"/services/{SERVICE}/api/me", "GET"]) == 401
            assert page.evaluate(fetch, [f"/services/{SERVICE}/api/jobs/{job}/cancel", "POST"]) == 401
            framed = page.evaluate("""u => new Promise(done => {
                const frame = document.createElement('iframe');
                frame.onload = () => { try { done(frame.contentDocument.body.innerText); } catch (e) { done(null); } };
                frame.src = u; document.body.appendChild(frame); })""", f"/services/{SERVICE}/api/me")
            assert framed is None
            # bob signs in with the Hub too, and is refused by sgen-ops: he is no operator.
            other = browser.new_context().new_page()
            other.set_default_timeout(PAGE_TIMEOUT_MS)
            other.goto(f"{service}/api/me")
            other.fill("input[name=username]", "bob")
            other.fill("input[name=password]", "any password")
            other.click("#login_submit")
            other.wait_for_url(f"{service}/api/me")
            assert "'bob' is not registered" in other.inner_text("body")
        finally:
            browser.close()
    assert _activity(hub, "cancel") == [] and job_row(hub, job).state == "queued"
