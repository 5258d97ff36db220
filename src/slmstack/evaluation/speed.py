"""Latency, throughput and peak memory of a predict function."""

from __future__ import annotations

import resource
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np


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
    """Single-query p50/p95 latency (ms) and batch throughput (texts/s)."""
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
