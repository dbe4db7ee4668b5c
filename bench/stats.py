"""Percentiles and rates."""

from __future__ import annotations

import math
from collections.abc import Sequence


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) of ``values`` by the nearest-rank method."""
    if not values:
        raise ValueError("percentile of no values")
    if not 0 <= q <= 100 or math.isnan(q):
        raise ValueError(f"percentile must be within 0..100, got {q}")
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def latency_summary(seconds: Sequence[float]) -> dict[str, float]:
    """p50/p95/p99 (and max) of latencies given in seconds, in milliseconds."""
    return {
        name: round(percentile(seconds, q) * 1000, 2)
        for name, q in (("p50", 50), ("p95", 95), ("p99", 99), ("max", 100))
    }


def rate(count: int, elapsed_s: float) -> float:
    """``count`` per second over ``elapsed_s``."""
    if elapsed_s <= 0:
        raise ValueError(f"elapsed time must be positive, got {elapsed_s}")
    return round(count / elapsed_s, 1)
