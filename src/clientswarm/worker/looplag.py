"""Measures how late the worker's event loop runs its callbacks (a sign of an overloaded worker)."""

from __future__ import annotations

import asyncio
import time


class LoopLagMonitor:
    """Sleeps ``interval_s`` repeatedly and records how much longer each sleep took."""

    def __init__(self, interval_s: float = 0.05) -> None:
        self._interval_s = interval_s
        self.lags_s: list[float] = []

    async def run(self) -> None:
        """Measure until cancelled."""
        while True:
            before = time.perf_counter()
            await asyncio.sleep(self._interval_s)
            self.lags_s.append(max(0.0, time.perf_counter() - before - self._interval_s))
            if len(self.lags_s) > 100_000:  # bounded memory on very long runs
                del self.lags_s[:50_000]

    def p99_s(self) -> float:
        """99th percentile of the measured lags (0 when none)."""
        if not self.lags_s:
            return 0.0
        ordered = sorted(self.lags_s)
        return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]

    def max_s(self) -> float:
        """Largest measured lag (0 when none)."""
        return max(self.lags_s, default=0.0)
