"""Per-token request budgets: a token bucket per token, in this process.

Each dashboard replica keeps its own buckets, so with N replicas behind a balancer a token gets
up to N times the rate: a bound on what one token can cost, not an exact quota.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

MAX_TOKENS_TRACKED = 10_000


@dataclass
class _Bucket:
    level: float
    at: float


class RateLimiter:
    def __init__(self, rate_per_s: float, burst: int, now: Callable[[], float]) -> None:
        self._rate = rate_per_s
        self._burst = burst
        self._now = now
        self._buckets: dict[str, _Bucket] = {}

    def take(self, key: str) -> float | None:
        """None when the request may go; else the seconds until it could (``Retry-After``)."""
        now = self._now()
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= MAX_TOKENS_TRACKED:
                self._forget_full(now)
            bucket = self._buckets[key] = _Bucket(float(self._burst), now)
        bucket.level = min(self._burst, bucket.level + (now - bucket.at) * self._rate)
        bucket.at = now
        if bucket.level >= 1:
            bucket.level -= 1
            return None
        return (1 - bucket.level) / self._rate

    def _forget_full(self, now: float) -> None:
        # a bucket refilled to the brim holds nothing worth keeping
        for key, bucket in list(self._buckets.items()):
            if bucket.level + (now - bucket.at) * self._rate >= self._burst:
                del self._buckets[key]


def retry_after_header(wait_s: float) -> str:
    return str(max(1, math.ceil(wait_s)))
