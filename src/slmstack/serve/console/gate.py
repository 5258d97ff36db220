"""The console's door: a sign-in cookie for browsers, CSRF tokens, and security headers.

The method:

- **Same keys, same check.** A browser cannot send ``Authorization: Bearer`` by itself,
  so the sign-in form takes the API key once and keeps it in an ``HttpOnly``,
  ``SameSite=Strict`` cookie scoped to ``/console`` (``Secure`` over HTTPS). On each
  console request this middleware checks the cookie with :meth:`ApiKeys.identify` (the
  same constant-time compare as the API), then hands the request on with the key as its
  ``Authorization`` header, so the API's own :class:`AuthMiddleware` still decides (and
  rate-limits the key) as for any client. Only ``/console`` paths read the cookie: the
  API stays Bearer-only, so no cookie can authorise an API call a foreign page forges.
- **401 on every console path without a key**, the sign-in page included: a browser
  gets the form as the body of the 401 (its CSS inline, so nothing else needs a key),
  anything else the API's JSON ``{"detail": ...}``.
- **CSRF.** Beside ``SameSite=Strict``, every form carries a token that must equal a
  random ``HttpOnly`` cookie (double submit), and a POST whose ``Origin`` names another
  host is refused. Requests with their own ``Authorization: Bearer`` key (scripts) need
  neither; any other scheme (a proxy's ``Basic`` login, which a browser sends by itself)
  counts as a browser.
- **Headers.** Every console answer gets a Content-Security-Policy that allows this
  server only (no CDN could load even by mistake), ``nosniff``, a same-origin referrer, no
  framing and ``no-store``.

Keys are 16+ random characters, so sign-in attempts are not rate-limited here; the
API's per-key limit applies once signed in.
"""

from __future__ import annotations

import contextlib
import hmac
import secrets
from http.cookies import CookieError, SimpleCookie
from typing import Any
from urllib.parse import parse_qs, quote, unquote

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from slmstack.errors import Unauthorized
from slmstack.serve.console.render import SIGN_IN, login_page

PREFIX = "/console"
LOGIN = f"{PREFIX}/login"
SESSION_COOKIE = "slmstack_console"
AGENT_COOKIE = "slmstack_agent"  # the name an agent gave, without keys (percent-encoded)
CSRF_COOKIE = "slmstack_csrf"
CSRF_FIELD = "csrf"
_MAX_LOGIN_BODY = 8192
POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
_HEADERS = {
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",  # no-referrer would send `Origin: null` on POSTs
    "x-frame-options": "DENY",
    "cache-control": "no-store",
}


def is_console(path: str) -> bool:
    """Whether ``path`` is the console's (``/console`` or under it)."""
    return path == PREFIX or path.startswith(PREFIX + "/")


def cookies(scope: Scope) -> dict[str, str]:
    """The request's cookies, by name."""
    jar: SimpleCookie = SimpleCookie()
    for key, value in scope.get("headers", ()):
        if key.lower() == b"cookie":
            with contextlib.suppress(CookieError):  # a malformed header is no cookie
                jar.load(bytes(value).decode("latin-1"))
    return {name: morsel.value for name, morsel in jar.items()}


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None


def _is_bearer(authorization: str | None) -> bool:
    return (authorization or "").strip().partition(" ")[0].lower() == "bearer"


def same_origin(scope: Scope) -> bool:
    """False when the request's ``Origin`` names another host than its ``Host``."""
    origin = _header(scope, b"origin")
    if origin is None or origin == "null":
        return origin is None
    host = _header(scope, b"host") or ""
    return origin.partition("://")[2].rstrip("/") == host


def origin_problem(scope: Scope) -> str | None:
    """Why the request's ``Origin`` is not its ``Host``, in words, when it is not."""
    if same_origin(scope):
        return None
    origin, host = _header(scope, b"origin"), _header(scope, b"host") or "?"
    return (
        f"the page came from {origin} but this server was reached as {host}; if a proxy "
        "stands in front of it, have it pass the browser's Host header through (nginx: "
        "proxy_set_header Host $host)"
    )


def csrf_ok(scope: Scope, submitted: str | None) -> bool:
    """Whether a form's CSRF token matches the request's cookie, from this origin."""
    expected = cookies(scope).get(CSRF_COOKIE, "")
    return bool(
        submitted and expected and same_origin(scope)
        and hmac.compare_digest(submitted.encode(), expected.encode())
    )  # fmt: skip


def cookie_header(name: str, value: str, scope: Scope, *, max_age: int | None = None) -> str:
    """A ``Set-Cookie`` value: HttpOnly, SameSite=Strict, Path=/console, Secure over HTTPS."""
    parts = [f"{name}={quote(value, safe='')}", f"Path={PREFIX}", "HttpOnly", "SameSite=Strict"]
    if max_age is not None:
        parts.append(f"Max-Age={max_age}")
    if scope.get("scheme") == "https":
        parts.append("Secure")
    return "; ".join(parts)


def safe_next(value: str | None) -> str:
    """Where to go after signing in: a console path, never another site."""
    if value and is_console(value.split("?")[0]) and not value.startswith("//"):
        return value
    return f"{PREFIX}/inbox"


class ConsoleGate:
    """Authenticate console requests by cookie; add CSRF cookies and security headers.

    Reads ``scope["app"].state.serve.keys`` (``None``: no auth, every request passes).
    Sets ``scope["state"]["csrf"]`` (the token forms carry) and
    ``scope["state"]["console_browser"]`` (``True`` unless the client sent its own
    ``Authorization: Bearer`` header: then forms need no CSRF token).
    """

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer 401 (the sign-in page) or pass the request on with its key."""
        if scope["type"] != "http" or not is_console(scope["path"]):
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        jar = cookies(scope)
        token = jar.get(CSRF_COOKIE) or secrets.token_urlsafe(24)
        state["csrf"] = token
        extra = [] if CSRF_COOKIE in jar else [cookie_header(CSRF_COOKIE, token, scope)]
        send = _decorated(send, extra)
        keys = scope["app"].state.serve.keys
        # Only a Bearer key marks a script: a browser adds `Basic` (a proxy's login) to
        # every request by itself, a forged cross-site form included.
        state["console_browser"] = not _is_bearer(_header(scope, b"authorization"))
        if keys is None or not state["console_browser"]:
            await self.app(scope, receive, send)
            return
        if scope["path"] == LOGIN and scope["method"] == "POST":
            await self._login(scope, receive, send, keys)
            return
        session = jar.get(SESSION_COOKIE)
        if not session:
            await _refuse(scope, send, token, SIGN_IN)
            return
        key = unquote(session)
        try:
            keys.identify(f"Bearer {key}")
        except Unauthorized:
            await _refuse(
                scope, send, token,
                "Your key is no longer accepted (it was changed or removed). Sign in with "
                "a current key.", clear=True,
            )  # fmt: skip
            return
        headers = [h for h in scope.get("headers", ()) if h[0].lower() != b"authorization"]
        scope["headers"] = [*headers, (b"authorization", f"Bearer {key}".encode("latin-1"))]
        await self.app(scope, receive, send)

    async def _login(self, scope: Scope, receive: Receive, send: Send, keys: Any) -> None:
        body = b""
        more = True
        while more:
            chunk = await receive()
            body += chunk.get("body", b"")
            more = chunk.get("more_body", False)
            if len(body) > _MAX_LOGIN_BODY:
                await _refuse(
                    scope,
                    send,
                    scope["state"]["csrf"],
                    "That form was too large; enter only your key.",
                )
                return
        form = {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}
        where = safe_next(form.get("next"))
        token = scope["state"]["csrf"]
        key = form.get("key", "").strip()
        try:  # the key first: without a valid one the answer is 401, as on every route
            keys.identify(f"Bearer {key}")
        except Unauthorized:
            refusal = (
                "Enter your API key." if not key else
                "That key was not accepted. Check it (keys are case-sensitive), or ask "
                "whoever runs this server for one."
            )  # fmt: skip
            await _refuse(scope, send, token, refusal, next_path=where)
            return
        if not csrf_ok(scope, form.get(CSRF_FIELD)):
            why = origin_problem(scope)
            await _refuse(
                scope, send, token,
                f"Sign-in refused: {why}." if why else
                "The sign-in form had expired (or came from another site). Sign in again "
                "from this page.", status=403, next_path=where,
            )  # fmt: skip
            return
        # Percent-encoded as Starlette's RedirectResponse does: the page signed in from may
        # have any character in its path (a report named 报告.html), a header only Latin-1.
        location = quote(where, safe=":/%#?=@[]!$&'()*+,;")
        headers = [
            (b"location", location.encode("latin-1")),
            (b"set-cookie", cookie_header(SESSION_COOKIE, key, scope).encode("latin-1")),
            (b"content-length", b"0"),
        ]
        await send({"type": "http.response.start", "status": 303, "headers": headers})
        await send({"type": "http.response.body", "body": b""})


def _wants_html(scope: Scope) -> bool:
    return "text/html" in (_header(scope, b"accept") or "")


async def _refuse(
    scope: Scope,
    send: Send,
    token: str,
    message: str,
    *,
    status: int = 401,
    clear: bool = False,
    next_path: str | None = None,
) -> None:
    """401 (or 403): the sign-in page for a browser, ``{"detail": ...}`` for anything else."""
    import json

    headers: list[tuple[bytes, bytes]] = [(b"www-authenticate", b"Bearer")]
    if clear:
        gone = cookie_header(SESSION_COOKIE, "", scope, max_age=0)
        headers.append((b"set-cookie", gone.encode("latin-1")))
    if _wants_html(scope):
        here = scope["path"] + (
            ("?" + scope["query_string"].decode()) if scope.get("query_string") else ""
        )
        page = login_page(message=message, next_path=next_path or safe_next(here), csrf=token)
        body = page.html.encode()
        headers += [
            (b"content-type", b"text/html; charset=utf-8"),
            (b"content-security-policy", page.policy.encode()),
        ]
    else:
        detail = f"{message} (sign in at {LOGIN}, or send the header `Authorization: Bearer KEY`)"
        body = json.dumps({"detail": detail}).encode()
        headers.append((b"content-type", b"application/json"))
    headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _decorated(send: Send, cookies_to_set: list[str]) -> Send:
    """``send`` adding the security headers (a route's own CSP wins) and new cookies."""

    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = list(message.get("headers", ()))
            present = {bytes(k).lower() for k, _ in headers}
            for name, value in _HEADERS.items():
                if name.encode() not in present:
                    headers.append((name.encode(), value.encode()))
            if b"content-security-policy" not in present:
                headers.append((b"content-security-policy", POLICY.encode()))
            headers += [(b"set-cookie", c.encode("latin-1")) for c in cookies_to_set]
            message = {**message, "headers": headers}
        await send(message)

    return wrapped


__all__ = [
    "AGENT_COOKIE",
    "CSRF_FIELD",
    "LOGIN",
    "PREFIX",
    "ConsoleGate",
    "csrf_ok",
    "is_console",
    "safe_next",
]
