"""Latency, throughput and peak memory of a predict function."""

from __future__ import annotations

import resource
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from slmstack.errors import ConfigError


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes.
    return peak / 1e6 if sys.platform == "darwin" else peak / 1024


def measure_speed(
    predict: Callable[[Sequence[str]], Sequence[Any]],
    texts: Sequence[str],
    *,
    single_queries: int = 100,
    warmup: int = 5,
) -> dict[str, float]:
    """Single-query p50/p95 latency (ms) and batch throughput (texts/s).

    Raises:
        ConfigError: no text, or ``single_queries`` below 1 (no latency to measure).
    """
    if not texts:
        raise ConfigError("measure_speed needs at least one text to time; got none")
    if single_queries < 1:
        raise ConfigError(
            f"single_queries must be at least 1 (the latency percentiles need a timed "
            f"query); got {single_queries}"
        )
    sample = list(texts[: max(single_queries, warmup)])
    for t in sample[:warmup]:
        predict([t])
    times = []
    for t in sample[:single_queries]:
        start = time.perf_counter()
        predict([t])
        times.append((time.perf_counter() - start) * 1000)
    start = time.perf_counter()
    predict(list(texts))
    batch_s = time.perf_counter() - start
    return {
        "latency_p50_ms": float(np.percentile(times, 50)),
        "latency_p95_ms": float(np.percentile(times, 95)),
        "throughput_per_s": len(texts) / batch_s if batch_s > 0 else float("inf"),
        "batch_size": float(len(texts)),
        "peak_rss_mb": peak_rss_mb(),
    }
