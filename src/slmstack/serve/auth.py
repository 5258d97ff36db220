"""API keys as Bearer tokens, compared in constant time, with a token bucket per key.

The method:

- **Keys come from the environment or a file, never from the repository.** The config
  names an environment variable (``"name:key,name2:key2"``) and/or a file of ``name key``
  lines; it never holds a key itself, and a keys file that git tracks is refused.
- **Constant time.** The presented token and every key are hashed with SHA-256 and the
  digests compared with :func:`hmac.compare_digest`, against *every* key with no early
  exit: the time taken says neither which key nearly matched nor how long the keys are.
- **One check for every route.** :class:`AuthMiddleware` runs before the router, so a
  route added later, the OpenAPI page, even a path that does not exist, all need a key
  unless the config lists the route template under ``auth.public``. A per-route
  dependency would leave whatever a developer forgot to decorate open.
- **Rate limits per key** (:class:`RateLimiter`): a token bucket that holds one minute's
  allowance and refills continuously, so a client may burst and then keeps the rate. Above
  it: 429 with ``Retry-After``, the seconds until the next request would pass. With one
  worker the buckets live in the process; with ``--workers N`` the app puts a
  :class:`~slmstack.serve.rates.SharedRateLimiter` at ``app.state.rate_limiter`` (the same
  bucket, kept in a database the workers share), so a key gets its rate once in all.

The key's *name* (never the key) is put on ``request.state.api_key`` for the routes, which
pass it on so the ledger records each key's spend.

Example:
    >>> keys = ApiKeys.parse_env("ops:0123456789abcdef0123", var="KEYS")
    >>> keys.identify("Bearer 0123456789abcdef0123")
    'ops'
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import math
import os
import re
import threading
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from pathlib import Path
from typing import Any, Protocol

from starlette.types import ASGIApp, Receive, Scope, Send

from slmstack.errors import ConfigError, Unauthorized, Unavailable
from slmstack.serve._key_sources import MAKE_KEY, check_pair, parse_env, parse_file
from slmstack.serve.asgi import error_body, route_template
from slmstack.serve.rates import rate_and_burst

_SCHEME = re.compile(r"[A-Za-z]{1,10}")  # Basic, Digest, Token: shorter than any key


class AuthSettings(Protocol):
    """The ``auth:`` section of the serve config, as :class:`ApiKeys` reads it."""

    @property
    def keys_env(self) -> str | None: ...  # noqa: D102
    @property
    def keys_file(self) -> str | Path | None: ...  # noqa: D102
    @property
    def public(self) -> Collection[str]: ...  # noqa: D102
    @property
    def rate_per_minute(self) -> float | None: ...  # noqa: D102


# Routes a key reaches without spending its rate: health probes and the metrics scrape,
# which an operator polls every few seconds and which run no model.
UNMETERED = frozenset({"/livez", "/readyz", "/metrics"})


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


def check_names(listed: Iterable[str], names: Iterable[str], key: str) -> None:
    """Refuse a name under ``auth.<key>`` that is no key's name (a typo would grant nothing)."""
    import difflib

    known = sorted(names)
    for name in listed:
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(
                f"auth.{key}: {name!r} is no key's name{hint}; the keys are "
                f"{', '.join(known)}; list key names, not keys"
            )


class ApiKeys:
    """The keys a server accepts, by name; only their SHA-256 digests are kept.

    Args:
        keys: name → key.

    Raises:
        ConfigError: no keys, a name that is not ``[A-Za-z0-9_.@-]``, a key shorter than
            16 characters or holding whitespace, or one key under two names.
    """

    def __init__(self, keys: Mapping[str, str]):
        if not keys:
            raise ConfigError(f"no API keys; make one with {MAKE_KEY}")
        seen: dict[bytes, str] = {}
        for name, key in keys.items():
            check_pair(name, key, where=f"key {name!r}")
            digest = _digest(key)
            if digest in seen:
                raise ConfigError(
                    f"keys {seen[digest]!r} and {name!r} are the same key; give every client "
                    "its own, so that its spend and rate limit are its own"
                )
            seen[digest] = name
        self._digests = [(name, digest) for digest, name in seen.items()]

    @property
    def names(self) -> list[str]:
        """The key names, in the order they were given."""
        return [name for name, _ in self._digests]

    def __len__(self) -> int:
        return len(self._digests)

    def __repr__(self) -> str:
        return f"ApiKeys(names={self.names!r})"  # never the keys

    # ------------------------------------------------------------------ sources
    @classmethod
    def from_config(
        cls, auth: AuthSettings, *, environ: Mapping[str, str] | None = None
    ) -> ApiKeys:
        """The keys of ``auth.keys_env`` and ``auth.keys_file`` together.

        Args:
            auth: the config's ``auth:`` section (``keys_file`` already resolved against
                the config's folder).
            environ: the environment to read (default ``os.environ``).

        Raises:
            ConfigError: neither source is named, the variable is unset or empty, the file
                is missing, malformed or tracked by git, a name appears in both, or
                ``inbox_act_for_others`` lists a name no key has.
        """
        environ = os.environ if environ is None else environ
        if not auth.keys_env and not auth.keys_file:
            raise ConfigError(
                "auth: name where the keys are, keys_env (an environment variable) and/or "
                "keys_file (a file outside the repository); remove `auth:` to serve "
                "without keys"
            )
        found: dict[str, str] = {}
        sources: list[tuple[str, dict[str, str]]] = []
        if auth.keys_env:
            raw = environ.get(auth.keys_env, "")
            if not raw.strip():
                raise ConfigError(
                    f"auth.keys_env: the environment variable {auth.keys_env} is "
                    f"{'empty' if auth.keys_env in environ else 'not set'}; export "
                    f"{auth.keys_env}='name:KEY,name2:KEY2' (make a key with {MAKE_KEY})"
                )
            sources.append((f"${auth.keys_env}", parse_env(raw, auth.keys_env)))
        if auth.keys_file:
            path = Path(auth.keys_file)
            sources.append((str(path), parse_file(path)))
        for where, pairs in sources:
            for name in pairs.keys() & found.keys():
                raise ConfigError(
                    f"{where}: the key name {name!r} is also given elsewhere; names must be "
                    "unique across keys_env and keys_file"
                )
            found.update(pairs)
        check_names(getattr(auth, "inbox_act_for_others", ()), found, "inbox_act_for_others")
        return cls(found)

    @classmethod
    def parse_env(cls, value: str, *, var: str = "SLMSTACK_API_KEYS") -> ApiKeys:
        """Keys from a ``"name:key,name2:key2"`` string (the value of ``var``)."""
        return cls(parse_env(value, var))

    @classmethod
    def read_file(cls, path: str | Path) -> ApiKeys:
        """Keys from a file of ``name key`` lines (``#`` comments and blank lines allowed)."""
        return cls(parse_file(Path(path)))

    # ------------------------------------------------------------------ checking
    def identify(self, authorization: str | None) -> str:
        """The name of the key in an ``Authorization: Bearer KEY`` header value.

        Raises:
            Unauthorized: no header, another scheme, or a key the server does not know.
        """
        if not authorization or not authorization.strip():
            raise Unauthorized("no API key; send the header `Authorization: Bearer KEY`")
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() != "bearer":
            # Name the scheme only when it looks like one: a bare key must not be echoed.
            named = f", not the {scheme!r} scheme" if token and _SCHEME.fullmatch(scheme) else ""
            raise Unauthorized(f"the Authorization header must be `Bearer KEY`{named}")
        probe = _digest(token.strip())
        found: str | None = None
        for name, digest in self._digests:  # every key, no early exit: constant time
            if hmac.compare_digest(probe, digest) and found is None:
                found = name
        if found is None:
            raise Unauthorized("unknown API key; check the key, or ask for one")
        return found


class RateLimiter:
    """A token bucket per key name: ``rate_per_minute`` sustained, one minute's worth at once.

    Args:
        rate_per_minute: requests a key may make per minute, > 0.
        burst: the bucket's size; default ``rate_per_minute`` (a minute's allowance).
        clock: seconds, monotonic (injected by tests).

    Example:
        >>> limiter = RateLimiter(60, burst=1, clock=lambda: 0.0)
        >>> limiter.check("ops") is None, limiter.check("ops")
        (True, 1.0)
    """

    def __init__(
        self,
        rate_per_minute: float,
        *,
        burst: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.rate_per_minute, self.burst = rate_and_burst(rate_per_minute, burst)
        self._per_second = self.rate_per_minute / 60.0
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # name -> (tokens, at)
        self._lock = threading.Lock()

    def check(self, name: str) -> float | None:
        """Take one request from ``name``'s bucket: ``None`` when allowed, else seconds to wait."""
        with self._lock:
            now = self._clock()
            tokens, at = self._buckets.get(name, (self.burst, now))
            tokens = min(self.burst, tokens + (now - at) * self._per_second)
            if tokens >= 1.0:
                self._buckets[name] = (tokens - 1.0, now)
                return None
            self._buckets[name] = (tokens, now)
            return (1.0 - tokens) / self._per_second


class AuthMiddleware:
    """Require a key on every request whose route template is not in ``auth.public``.

    Reads ``scope["app"].state.serve`` on each request: ``keys`` (``None``: no auth, every
    request passes) and ``config.auth`` (``public``, ``rate_per_minute``). Answers 401 with
    ``WWW-Authenticate: Bearer`` for a missing or unknown key, 429 with ``Retry-After``
    above the key's rate; otherwise sets ``request.state.api_key`` to the key's name
    (``None`` on public routes and without auth) and calls the app.

    Args:
        app: the ASGI app inside.
        clock: for the rate limiter (tests).
    """

    def __init__(self, app: ASGIApp, *, clock: Callable[[], float] = time.monotonic):
        self.app = app
        self._clock = clock
        self._limiter: RateLimiter | None = None

    def _limiter_for(self, rate: float | None) -> RateLimiter | None:
        if rate is None:
            return None
        if self._limiter is None or self._limiter.rate_per_minute != rate:
            self._limiter = RateLimiter(rate, clock=self._clock)
        return self._limiter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer 401 or 429 here, or pass the request on with its key's name."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        state["api_key"] = None
        serve = scope["app"].state.serve
        keys: ApiKeys | None = serve.keys
        auth = serve.config.auth
        if keys is None or auth is None or route_template(scope) in auth.public:
            await self.app(scope, receive, send)
            return
        headers = _headers(scope, b"authorization")
        if len(headers) > 1:  # which one counts is ambiguous: a proxy may have added one
            await _reply(scope, send, 400, f"the request has {len(headers)} Authorization "
                         "headers; send one", {})  # fmt: skip
            return
        header = headers[0] if headers else None
        try:
            name = keys.identify(header)
        except Unauthorized as exc:
            challenge = 'Bearer error="invalid_token"' if header else "Bearer"
            await _reply(scope, send, 401, str(exc), {"www-authenticate": challenge})
            return
        if route_template(scope) in UNMETERED:  # probes and scrapes spend no model time
            state["api_key"] = name
            await self.app(scope, receive, send)
            return
        shared = getattr(scope["app"].state, "rate_limiter", None)
        if shared is not None:  # a database statement: off the event loop
            try:
                wait = await asyncio.to_thread(shared.check, name)
            except Unavailable as exc:  # the store failed: refuse, never pass unchecked
                retry = {"retry-after": str(max(1, math.ceil(exc.retry_after_s)))}
                await _reply(scope, send, 503, str(exc), retry)
                return
        else:
            limiter = self._limiter_for(auth.rate_per_minute)
            wait = None if limiter is None else limiter.check(name)
        if wait is not None:
            seconds = max(1, math.ceil(wait))
            await _reply(
                scope,
                send,
                429,
                f"key {name!r} is over its rate of {auth.rate_per_minute:g} requests a "
                f"minute; retry in {seconds} s",
                {"retry-after": str(seconds)},
            )
            return
        state["api_key"] = name
        await self.app(scope, receive, send)


def _headers(scope: Scope, name: bytes) -> list[str]:
    return [bytes(v).decode("latin-1") for k, v in scope.get("headers", ()) if k.lower() == name]


async def _reply(
    scope: Scope, send: Send, status: int, detail: str, headers: dict[str, str]
) -> None:
    """A JSON ``{"detail": ...}`` answer, the shape FastAPI gives its own errors."""
    body = error_body(scope, status, detail)
    raw: list[tuple[bytes, bytes]] = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    raw += [(k.encode(), v.encode()) for k, v in headers.items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


def bearer_security(schema: dict[str, Any], public: Collection[str]) -> dict[str, Any]:
    """Document the Bearer scheme in an OpenAPI ``schema``; returns ``schema``.

    Every operation needs a key but those under a ``public`` path, which get
    ``security: []``.
    """
    schema.setdefault("components", {}).setdefault("securitySchemes", {})["bearer"] = {
        "type": "http",
        "scheme": "bearer",
        "description": "An API key from the server's keys_env or keys_file.",
    }
    schema["security"] = [{"bearer": []}]
    for path, operations in schema.get("paths", {}).items():
        if path in public:
            for operation in operations.values():
                operation["security"] = []
    return schema
