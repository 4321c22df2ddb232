"""``sgen-ops serve`` as a JupyterHub service: served under the Hub's proxy, and signing browsers in with Hub OAuth.

JupyterHub runs a service with ``JUPYTERHUB_SERVICE_PREFIX`` (the path its proxy forwards, e.g.
``/services/sgen-ops/``) and, for OAuth, ``JUPYTERHUB_CLIENT_ID`` and ``JUPYTERHUB_OAUTH_CALLBACK_URL``, besides the
``JUPYTERHUB_API_URL`` and ``JUPYTERHUB_API_TOKEN`` with which ``auth.HubUsers`` asks the Hub whose a token is.
``HubService`` is the middleware ``create_app`` adds then:

- **The prefix.** A request under the prefix is served as if at the root (the ASGI ``root_path``), so one server
  answers through the proxy and on its own address alike.
- **Browsers sign in through the Hub**, as JupyterHub's own services do (``jupyterhub.services.auth.HubOAuth``,
  whose URLs, PKCE and code exchange are used here): a page visit with no credentials goes to the Hub's authorize
  page; the Hub signs the user in and sends them back to ``{prefix}oauth_callback``, where the code becomes a Hub
  OAuth token kept in an HttpOnly cookie on the prefix. A page visit with that cookie then carries the token as
  its bearer: the admin gate asks the Hub whose it is, and the Hub user acts as the operator of the same name.
  The sign-in's state and PKCE verifier travel in a short-lived cookie rather than in HubOAuth's memory, so
  that any of the server's worker processes (``--workers``) can finish it.
- **The cookie only reads.** It authenticates page visits (GET or HEAD navigations, the requests JupyterHub
  accepts a cookie for without its XSRF token), never a script's request nor a write: every server of a Hub
  shares its origin, so a page of another user's server could otherwise act through the cookie. Its answers
  carry ``Content-Security-Policy: sandbox``, so that no page of that origin can read them either. Writes take a
  token: a notebook's ``JUPYTERHUB_API_TOKEN``, or one of ``sgen-ops tokens create``.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import logging
import secrets
from collections.abc import Mapping
from http.cookies import CookieError, SimpleCookie
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlencode

import anyio.to_thread
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

if TYPE_CHECKING:
    from jupyterhub.services.auth import HubOAuth

log = logging.getLogger(__name__)

SAFE_METHODS = ("GET", "HEAD")
CALLBACK = "/oauth_callback"
# Where a browser lands after signing in at the service's root: who they are, as this server sees them.
LANDING = "/api/me"
# Pages that need no operator: a browser reads them without signing in.
NO_SIGN_IN = ("/docs", "/openapi.json", "/healthz")
# Answers a page of the same origin must not be able to read (see the module's docstring).
SANDBOX = (b"content-security-policy", b"sandbox")


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode()


def _unb64(text: str) -> dict[str, Any]:
    try:
        value = json.loads(base64.urlsafe_b64decode(text.encode()))
    except (ValueError, binascii.Error):
        return {}
    return value if isinstance(value, dict) else {}


class HubService:
    """The ASGI middleware of a server running as a JupyterHub service (see the module's docstring). ``oauth``
    None: the prefix only (no browser sign-in)."""

    def __init__(self, app: ASGIApp, prefix: str, oauth: HubOAuth | None = None) -> None:
        self.app = app
        self.prefix = "/" + prefix.strip("/") if prefix.strip("/") else ""
        self.oauth = oauth

    @staticmethod
    def settings_from(env: Mapping[str, str]) -> tuple[str, HubOAuth | None] | None:
        """(the prefix, Hub OAuth or None) when ``env`` is a Hub service's, else None."""
        prefix = env.get("JUPYTERHUB_SERVICE_PREFIX", "").strip()
        if not prefix:
            return None
        needed = ("JUPYTERHUB_API_URL", "JUPYTERHUB_API_TOKEN", "JUPYTERHUB_CLIENT_ID")
        if not all(env.get(name, "").strip() for name in needed):
            return prefix, None
        try:
            from jupyterhub.services.auth import HubOAuth
        except ImportError:
            log.warning("browsers cannot sign in through JupyterHub: the jupyterhub package is missing "
                        "(pip install 'sgen-ops[hub]'); Hub tokens are accepted all the same")
            return prefix, None
        oauth = HubOAuth(
            api_url=env["JUPYTERHUB_API_URL"], api_token=env["JUPYTERHUB_API_TOKEN"],
            oauth_client_id=env["JUPYTERHUB_CLIENT_ID"], base_url=prefix,
            oauth_redirect_uri=env.get("JUPYTERHUB_OAUTH_CALLBACK_URL") or prefix.rstrip("/") + CALLBACK,
        )
        return prefix, oauth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or not self.prefix:
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        if not (path == self.prefix or path.startswith(self.prefix + "/")):
            await self.app(scope, receive, send)  # not through the proxy: no Hub sign-in on another address
            return
        scope = {**scope, "root_path": scope.get("root_path", "") + self.prefix}
        route = path[len(self.prefix):]
        if self.oauth is None or scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = MutableHeaders(scope=scope)
        if route == CALLBACK:
            await self._callback(scope, send)
            return
        page_visit = scope["method"] in SAFE_METHODS and headers.get("sec-fetch-mode", "navigate") == "navigate"
        if "authorization" in headers or not page_visit:
            await self.app(scope, receive, send)
            return
        if route in ("", "/"):
            await self._redirect(send, self._public(scope, LANDING))
            return
        session = self._cookies(headers).get(self.oauth.cookie_name)
        if session:
            headers["authorization"] = f"Bearer {session}"
            await self.app(scope, receive, self._by_cookie(scope, send))
        elif "text/html" in headers.get("accept", "") and not route.startswith(NO_SIGN_IN):
            await self._sign_in(scope, send, next_url=self._public(scope, route, scope.get("query_string", b"")))
        else:
            await self.app(scope, receive, send)

    # -- the OAuth steps ------------------------------------------------------------------------------------------

    async def _sign_in(self, scope: Scope, send: Send, *, next_url: str) -> None:
        """Send the browser to the Hub's authorize page, the state (and PKCE verifier) in a short-lived cookie."""
        assert self.oauth is not None
        state = {"id": secrets.token_urlsafe(16), "next": next_url}
        params = {"state": state["id"]}
        if self.oauth.pkce_enabled:
            verifier, challenge, method = self.oauth.generate_pkce_code_challenge()
            state["verifier"] = verifier
            params |= {"code_challenge": challenge, "code_challenge_method": method}
        separator = "&" if "?" in self.oauth.login_url else "?"
        cookie = self._cookie(scope, self.oauth.state_cookie_name, _b64(state),
                              max_age=self.oauth.oauth_state_max_age)
        await self._redirect(send, f"{self.oauth.login_url}{separator}{urlencode(params)}", cookie)

    async def _callback(self, scope: Scope, send: Send) -> None:
        """The Hub's answer: check the state, exchange the code for the user's token, keep it in the cookie."""
        assert self.oauth is not None
        query = {k: v[0] for k, v in parse_qs(scope.get("query_string", b"").decode()).items()}
        state = _unb64(self._cookies(MutableHeaders(scope=scope)).get(self.oauth.state_cookie_name, ""))
        if "error" in query:
            reason = query.get("error_description") or query["error"]
            await self._refuse(send, 400, f"JupyterHub refused the sign-in: {reason}")
            return
        if not query.get("code") or not query.get("state") or query["state"] != state.get("id"):
            await self._refuse(send, 403, "the sign-in does not match one this server started: sign in again")
            return
        oauth, code, verifier = self.oauth, query["code"], state.get("verifier")
        try:
            token = await anyio.to_thread.run_sync(lambda: oauth.token_for_code(code, code_verifier=verifier))
        except Exception as exc:  # noqa: BLE001 - the Hub's refusal, told to the browser
            log.warning("JupyterHub did not exchange the sign-in code: %s", exc)
            await self._refuse(send, 403, "JupyterHub did not accept the sign-in: sign in again")
            return
        next_url = str(state.get("next") or "")
        if not next_url.startswith(self._public(scope, "/")):
            next_url = self._public(scope, LANDING)
        await self._redirect(send, next_url, self._cookie(scope, oauth.cookie_name, token),
                             self._cookie(scope, oauth.state_cookie_name, "", max_age=0))

    # -- HTTP details ---------------------------------------------------------------------------------------------

    @staticmethod
    def _cookies(headers: MutableHeaders) -> dict[str, str]:
        jar: SimpleCookie = SimpleCookie()
        for value in headers.getlist("cookie"):
            with contextlib.suppress(CookieError):  # a malformed cookie header is no session
                jar.load(value)
        return {name: morsel.value for name, morsel in jar.items()}

    def _public(self, scope: Scope, route: str, query: bytes = b"") -> str:
        """The path of ``route`` as the browser sees it (under the prefix when it came through the proxy)."""
        path = scope.get("root_path", "") + route
        return f"{path}?{query.decode()}" if query else path

    def _cookie(self, scope: Scope, name: str, value: str, *, max_age: int | None = None) -> bytes:
        assert self.oauth is not None
        headers = MutableHeaders(scope=scope)
        secure = (self.oauth.cookie_host_prefix_enabled or scope.get("scheme") == "https"
                  or headers.get("x-forwarded-proto", "").split(",")[0].strip() == "https")
        parts = [f"{name}={value}", f"Path={self.oauth.cookie_path}", "HttpOnly", "SameSite=Lax"]
        if max_age is not None:
            parts.append(f"Max-Age={max_age}")
        if secure:
            parts.append("Secure")
        return "; ".join(parts).encode("latin-1")

    @staticmethod
    async def _redirect(send: Send, location: str, *cookies: bytes) -> None:
        headers = [(b"location", location.encode("latin-1")), (b"cache-control", b"no-store"),
                   (b"content-length", b"0")]
        headers += [(b"set-cookie", cookie) for cookie in cookies]
        await send({"type": "http.response.start", "status": 302, "headers": headers})
        await send({"type": "http.response.body", "body": b""})

    @staticmethod
    async def _refuse(send: Send, status: int, detail: str) -> None:
        body = json.dumps({"type": "about:blank", "title": "Sign-in refused", "status": status,
                           "detail": detail}).encode()
        await send({"type": "http.response.start", "status": status, "headers": [
            (b"content-type", b"application/problem+json"), (b"content-length", str(len(body)).encode()),
            (b"cache-control", b"no-store")]})
        await send({"type": "http.response.body", "body": body})

    def _by_cookie(self, scope: Scope, send: Send) -> Send:
        """The answer to a request the cookie authenticated: sandboxed; and when the gate refused the cookie's
        token (expired, revoked, its user gone), the cookie is cleared, so that the next visit signs in again."""
        assert self.oauth is not None
        clear = self._cookie(scope, self.oauth.cookie_name, "", max_age=0)

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), SANDBOX]
                if message["status"] == 401:
                    message["headers"].append((b"set-cookie", clear))
            await send(message)

        return sending
