"""The simulated inference engine's timing: absolute-deadline token pacing.

Once admitted at loop time ``t0`` (by :mod:`clientswarm.mock.scheduler`, which also models the
KV cache, the prefix cache and preemption) a sequence's token ``k`` (0-based) is due at
``t0 + ttft + prefill + itl_1 + ... + itl_k``; the server sleeps until each deadline rather than
for each gap, so timer lateness never accumulates. ``prefill`` is 0 unless
``--prefill-ms-per-token`` is set.

:class:`AdmissionQueue` is the plain FIFO slot limiter (``max_concurrency`` slots, no KV cache).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import numpy as np

from clientswarm.mock.sampling import DelaySampler
from clientswarm.mock.settings import MockSettings


class AdmissionQueue:
    """At most ``max_concurrency`` running sequences; the others wait, first come first served."""

    __slots__ = ("_max", "_running", "_waiters")

    def __init__(self, max_concurrency: int) -> None:
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be at least 1, got {max_concurrency}")
        self._max = max_concurrency
        self._running = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def running(self) -> int:
        """Sequences holding a slot now."""
        return self._running

    @property
    def waiting(self) -> int:
        """Requests queued for a slot now."""
        return len(self._waiters)

    async def acquire(self) -> None:
        """Wait for a slot (FIFO); a cancelled waiter leaves the queue or hands its slot on."""
        if self._running < self._max and not self._waiters:
            self._running += 1
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release()  # the slot was handed to us just as we were cancelled
            else:
                self._waiters.remove(waiter)
            raise

    def release(self) -> None:
        """Give a slot back: the oldest waiter gets it, or it becomes free."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot passes on; ``running`` is unchanged
                return
        self._running -= 1

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold a slot for the duration of the ``async with`` block."""
        await self.acquire()
        try:
            yield
        finally:
            self.release()


def chunk_bounds(tokens: int, tokens_per_chunk: int) -> list[tuple[int, int]]:
    """``[start, end)`` token ranges of the streamed chunks; the last one may be shorter."""
    return [
        (start, min(start + tokens_per_chunk, tokens))
        for start in range(0, tokens, tokens_per_chunk)
    ]


class Engine:
    """Token timing, drawn from seeded TTFT and ITL distributions.

    Admission, the KV cache and preemption are :class:`clientswarm.mock.scheduler.Scheduler`'s.
    """

    __slots__ = ("itl", "ttft")

    def __init__(self, settings: MockSettings, rng: np.random.Generator) -> None:
        self.ttft = DelaySampler(settings.distribution, settings.ttft_ms, settings.ttft_std_ms, rng)
        self.itl = DelaySampler(settings.distribution, settings.itl_ms, settings.itl_std_ms, rng)

    def token_deadlines(
        self, admitted_at: float, tokens: int, prefill_s: float = 0.0
    ) -> list[float]:
        """Loop times at which each of ``tokens`` tokens is due, for a sequence admitted then.

        ``prefill_s`` (the uncached prompt's prefill) is added to the first token's delay.
        """
        if tokens <= 0:
            return []
        offsets = np.empty(tokens, dtype=np.float64)
        offsets[0] = admitted_at + self.ttft.one_s() + prefill_s
        offsets[1:] = self.itl.sample_s(tokens - 1)
        return np.cumsum(offsets).tolist()  # type: ignore[no-any-return]

    def resumed_deadlines(
        self, readmitted_at: float, tokens: int, recompute_s: float
    ) -> list[float]:
        """Deadlines of the ``tokens`` tokens left to a preempted sequence re-admitted then.

        The first is due one inter-token gap plus ``recompute_s`` after re-admission.
        """
        if tokens <= 0:
            return []
        offsets = self.itl.sample_s(tokens)
        offsets[0] += readmitted_at + recompute_s
        return np.cumsum(offsets).tolist()  # type: ignore[no-any-return]
