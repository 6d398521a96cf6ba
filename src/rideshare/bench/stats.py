"""Latency percentiles and throughput, computed the same way for every cell."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any


def percentile(ordered: list[float], p: float) -> float:
    """Nearest-rank percentile of an ascending list: a latency some request really had."""
    if not ordered:
        return math.nan
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass(frozen=True)
class Summary:
    """One cell's figures: answered requests per second and latencies in milliseconds."""

    ok: int
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    max_ms: float

    def as_json(self) -> dict[str, Any]:
        return {k: (None if isinstance(v, float) and math.isnan(v) else round(v, 3))
                for k, v in asdict(self).items()}


def summarize(latencies_s: list[float], elapsed_s: float) -> Summary:
    """Summarize the latencies (seconds) of the requests that got the answer expected."""
    ordered = sorted(latencies_s)
    ms = [x * 1000 for x in ordered]
    n = len(ms)
    return Summary(
        ok=n,
        rps=n / elapsed_s if elapsed_s > 0 else 0.0,
        p50_ms=percentile(ms, 50),
        p90_ms=percentile(ms, 90),
        p99_ms=percentile(ms, 99),
        mean_ms=sum(ms) / n if n else math.nan,
        max_ms=ms[-1] if n else math.nan,
    )


def ratio(a: float, b: float) -> float:
    """a / b, NaN when b is zero or either is unknown (no division error in a report)."""
    if not b or math.isnan(a) or math.isnan(b):
        return math.nan
    return a / b
