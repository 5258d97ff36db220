"""The Wilson score interval's one-sided bounds, on which the promotion gate decides.

See :mod:`slmstack.proxy.promote` for why a bound and why Wilson's.
"""

from __future__ import annotations

import math
from statistics import NormalDist

from slmstack.errors import ConfigError


def _z(confidence: float) -> float:
    return NormalDist().inv_cdf(confidence)


def _check_k(k: int, n: int) -> None:
    if not 0 <= k <= n:
        raise ConfigError(f"successes must be within 0..n; got k={k}, n={n}")


def wilson_lower(k: int, n: int, confidence: float = 0.95) -> float:
    """The lower bound of the Wilson score interval for ``k`` successes in ``n`` (one-sided).

    Example:
        >>> round(wilson_lower(19, 20), 3)
        0.804
    """
    if n <= 0:
        return 0.0
    _check_k(k, n)
    z = _z(confidence)
    p = k / n
    centre = p + z * z / (2 * n)
    margin = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, (centre - margin) / (1 + z * z / n))


def wilson_upper(k: int, n: int, confidence: float = 0.95) -> float:
    """The upper bound of the Wilson score interval for ``k`` successes in ``n`` (one-sided).

    Example:
        >>> round(wilson_upper(1, 20), 3)
        0.196
    """
    if n <= 0:
        return 1.0
    _check_k(k, n)
    return 1.0 - wilson_lower(n - k, n, confidence)  # the interval is symmetric in k, n - k


__all__ = ["wilson_lower", "wilson_upper"]
