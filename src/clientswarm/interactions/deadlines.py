"""Request timeouts at thousands of requests a second: one heap and one timer, not a timer each.

``asyncio.timeout`` schedules and cancels an event-loop timer per use, about 10 µs on uvloop
here: as much as reading a whole 128-token stream's bytes. :class:`Deadlines` keeps every
deadline of a worker in one heap and runs a single timer for the earliest of them. Entering
and leaving a :class:`Deadline` costs a heap push and a few attribute writes; an entry whose
block ended stays in the heap until it is popped or the heap is rebuilt (when ended entries
outnumber the live ones), so its size stays bounded by about twice the requests in flight.

A deadline that passes cancels its task, and the block raises ``TimeoutError``, exactly as
``asyncio.timeout`` does (other cancellations pass through untouched). It fires when the
single timer next runs: at most ``resolution_s`` after the deadline.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from types import TracebackType

_ENTERED, _EXPIRING, _EXITED = 0, 1, 2


class Deadline:
    """``async with deadlines.within(timeout_s):`` — TimeoutError once ``timeout_s`` passed."""

    __slots__ = ("_cancelling", "_owner", "_state", "_task", "_timeout_s")

    def __init__(self, owner: Deadlines, timeout_s: float) -> None:
        self._owner = owner
        self._timeout_s = timeout_s
        self._state = _EXITED
        self._task: asyncio.Task[object] | None = None
        self._cancelling = 0

    async def __aenter__(self) -> Deadline:
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("a Deadline must be used inside a task")
        self._task = task
        self._cancelling = task.cancelling()
        self._state = _ENTERED
        self._owner._add(self)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._owner.live -= 1
        expired, self._state = self._state == _EXPIRING, _EXITED
        if expired:
            assert self._task is not None
            if self._task.uncancel() <= self._cancelling and exc_type is asyncio.CancelledError:
                raise TimeoutError from exc
        return None

    def _expire(self) -> None:
        if self._state == _ENTERED and self._task is not None:
            self._state = _EXPIRING
            self._task.cancel()


class Deadlines:
    """The deadlines of one event loop's requests (a worker's HTTP client holds one)."""

    def __init__(self, resolution_s: float = 0.01) -> None:
        self.resolution_s = resolution_s
        self.live = 0  # blocks entered and not left
        self._heap: list[tuple[float, int, Deadline]] = []
        self._order = itertools.count()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0

    def within(self, timeout_s: float) -> Deadline:
        """A block that must end within ``timeout_s`` seconds of its start."""
        return Deadline(self, timeout_s)

    def __len__(self) -> int:
        return len(self._heap)

    def _add(self, deadline: Deadline) -> None:
        loop = asyncio.get_running_loop()
        when = loop.time() + deadline._timeout_s
        heap = self._heap
        self.live += 1
        if len(heap) > 2 * self.live + 64:  # mostly ended entries: keep the live ones
            heap[:] = [e for e in heap if e[2]._state == _ENTERED]
            heapq.heapify(heap)
        heapq.heappush(heap, (when, next(self._order), deadline))
        timer = self._timer
        if timer is None or when < self._timer_at - self.resolution_s:
            if timer is not None:
                timer.cancel()
            self._schedule(loop, when)

    def _schedule(self, loop: asyncio.AbstractEventLoop, when: float) -> None:
        self._timer_at = when
        self._timer = loop.call_at(when, self._fire, loop)

    def _fire(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timer = None
        heap = self._heap
        now = loop.time()
        while heap and heap[0][0] <= now:
            heapq.heappop(heap)[2]._expire()
        if heap:
            self._schedule(loop, max(heap[0][0], now + self.resolution_s))


__all__ = ["Deadline", "Deadlines"]
