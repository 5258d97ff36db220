"""How a library error reaches an HTTP client: its status, headers and the words it sees.

One table for the JSON API, the chat stream and the console, so that the same error has
the same status everywhere. A backend's failure is logged in full and shown to the
client without its detail: that holds the backend's URL (with any credentials in it) and
the upstream's own error text, which are the operator's business, not the caller's.
"""

from __future__ import annotations

import logging
import math

from slmstack.errors import (
    BackendError,
    ConfigError,
    DataError,
    DeadlineExceeded,
    NotServed,
    Overloaded,
    PayloadTooLarge,
    ShuttingDown,
    SlmstackError,
    Unauthorized,
    Unavailable,
)

_log = logging.getLogger("slmstack.serve")

STATUS: tuple[tuple[type[SlmstackError], int], ...] = (
    (NotServed, 404),
    (PayloadTooLarge, 413),
    (Unauthorized, 401),
    (Overloaded, 429),
    (DeadlineExceeded, 504),
    (ShuttingDown, 503),
    (Unavailable, 503),
    (DataError, 422),
    (ConfigError, 422),
    (BackendError, 502),
)


def status_of(exc: BaseException) -> int:
    """The HTTP status of ``exc`` (500: not an error the table knows)."""
    return next((code for cls, code in STATUS if isinstance(exc, cls)), 500)


def headers_of(exc: BaseException) -> dict[str, str]:
    """``Retry-After`` for an overload, ``WWW-Authenticate`` for a missing key."""
    if isinstance(exc, Overloaded | Unavailable):
        return {"Retry-After": str(max(1, math.ceil(exc.retry_after_s)))}
    if isinstance(exc, Unauthorized):
        return {"WWW-Authenticate": "Bearer"}
    return {}


def shown(exc: BaseException, where: str) -> str:
    """What the client reads about ``exc``; a backend failure is logged here in full."""
    if isinstance(exc, BackendError):
        _log.error("the model backend failed on %s: %s", where, exc)
        return (
            "the model backend failed; the server's log has the detail (it names the "
            "backend, which is the operator's to see)"
        )
    return str(exc)


__all__ = ["STATUS", "headers_of", "shown", "status_of"]
