"""A token bucket per worker for its sample batches (``serve --max-batches-per-s``).

A worker sends about one batch per tick (a few a second); a worker that sends far more — a
bug, or code that reads its token and floods the service — gets HTTP 429 with ``Retry-After``.
Its batches are not lost: a 429 is transient for a worker, which keeps the batch (and its
``seq``) and sends it again after the delay.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class TokenBucket:
    """``rate_per_s`` tokens a second, at most ``burst`` saved up."""

    rate_per_s: float
    burst: float
    clock: Callable[[], float] = time.monotonic
    _tokens: float = field(init=False)
    _at: float = field(init=False)

    def __post_init__(self) -> None:
        self._tokens = self.burst
        self._at = self.clock()

    def take(self) -> float:
        """Take one token: 0.0 when there was one, else the seconds until there is."""
        now = self.clock()
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate_per_s)
        self._at = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return 0.0
        return (1.0 - self._tokens) / self.rate_per_s


class BatchLimiter:
    """One :class:`TokenBucket` per worker of every cluster (a burst of a few seconds' worth,
    so the flush at a worker's end is not throttled)."""

    def __init__(self, rate_per_s: float | None, burst_s: float = 5.0) -> None:
        self.rate_per_s = rate_per_s
        self.burst = max(1.0, (rate_per_s or 0.0) * burst_s)
        self._buckets: dict[tuple[str, int], TokenBucket] = {}

    def wait_s(self, cluster_id: str, worker: int) -> float:
        """0.0 when the worker may post a batch now, else how long it should wait."""
        if self.rate_per_s is None:
            return 0.0
        bucket = self._buckets.get((cluster_id, worker))
        if bucket is None:
            bucket = TokenBucket(self.rate_per_s, self.burst)
            self._buckets[(cluster_id, worker)] = bucket
        return bucket.take()

    def forget(self, cluster_id: str) -> None:
        """Drop the buckets of a finished cluster."""
        for key in [key for key in self._buckets if key[0] == cluster_id]:
            del self._buckets[key]


def retry_after(wait_s: float) -> str:
    """A ``Retry-After`` value (whole seconds, at least 1)."""
    return str(max(1, math.ceil(wait_s)))


__all__ = ["BatchLimiter", "TokenBucket", "retry_after"]
