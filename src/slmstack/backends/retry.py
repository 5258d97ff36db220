"""When to retry a remote call and how long to wait: exponential back-off, ``Retry-After`` first.

Hosted APIs answer 429 (rate limited) and 5xx (overloaded) as a normal part of operation,
and a local server may be busy or still loading; a request that fails that way usually
succeeds a moment later. The wait before retry ``n`` (0-based) is ``backoff_s * 2**n``
capped at ``max_wait_s``, unless the server says how long to wait: ``Retry-After`` as
seconds or as an HTTP date (RFC 9110 §10.2.3), or OpenAI's ``retry-after-ms``; then that
wait is used exactly, because waiting less only earns another 429. A server that asks for
more than ``max_wait_s`` is not waited for: the endpoint counts as failed (so a fallback
endpoint, if any, is tried) and the message says how to wait longer.

There is no random jitter, so runs and tests are reproducible; the backend's concurrency
limit, not jitter, keeps many threads from hammering a server together. The clock and the
sleep are injected, so tests check the waits without sleeping.
"""

from __future__ import annotations

import email.utils
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC

from slmstack.errors import ConfigError

RETRYABLE_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})
"""Timeouts, lock conflicts, rate limits and server failures: worth another try."""


@dataclass(frozen=True)
class RetryPolicy:
    """How often to retry one endpoint and how long to wait in between.

    Attributes:
        retries: further attempts after the first one (0: try once).
        backoff_s: wait before the first retry; doubled before each further one.
        max_wait_s: longest single wait; a longer ``Retry-After`` ends the retries.

    Example:
        >>> policy = RetryPolicy(retries=3, backoff_s=0.5, max_wait_s=1.5)
        >>> [policy.wait_s(n, None) for n in range(3)], policy.wait_s(0, 7.0)
        ([0.5, 1.0, 1.5], 7.0)
    """

    retries: int = 2
    backoff_s: float = 0.5
    max_wait_s: float = 60.0

    def __post_init__(self) -> None:
        if isinstance(self.retries, bool) or not isinstance(self.retries, int) or self.retries < 0:
            raise ConfigError(f"retries must be an int >= 0, got {self.retries!r}")
        for name in ("backoff_s", "max_wait_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise ConfigError(f"{name} must be a number of seconds >= 0, got {value!r}")

    def wait_s(self, retry: int, retry_after: float | None) -> float:
        """Seconds to wait before retry number ``retry`` (0-based).

        ``retry_after`` (from :func:`retry_after_s`) wins over the back-off; it may
        exceed ``max_wait_s``, which the caller checks to give up instead of waiting.
        """
        if retry_after is not None:
            return retry_after
        return float(min(self.backoff_s * 2**retry, self.max_wait_s))


def retry_after_s(headers: Mapping[str, str], now: float) -> float | None:
    """The wait a response asks for, in seconds, or ``None`` when it names none.

    Args:
        headers: response headers (case-insensitive mapping, as httpx gives them).
        now: the current Unix time, to turn an HTTP date into a wait.

    Example:
        >>> retry_after_s({"retry-after": "Wed, 21 Oct 2015 07:28:10 GMT"}, 1445412480.0)
        10.0
    """
    millis = headers.get("retry-after-ms")
    if millis:
        try:
            return max(0.0, float(millis) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None  # unreadable: the caller backs off exponentially instead
    if when.tzinfo is None:  # "-0000" dates parse naive; HTTP dates are UTC
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now)
