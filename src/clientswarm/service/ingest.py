"""Where sample batches and ticks are committed: a thread of their own, group commits, and a
bounded backlog.

A batch is committed (and its statistics fed) in a thread, so that the event loop keeps
answering. Those commits used to share the default thread pool with everything else the
service writes: when a hundred workers shipped batches, the pool's threads all waited for the
store's write lock, and a worker's registration or a stop queued behind them
(bench/RESULTS-fleet-heartbeats.md). :class:`Ingest` gives them a thread of their own and
commits them in groups: the batches and ticks that arrive while one commit runs are committed
together in the next, one transaction however many
(:meth:`~clientswarm.store.Store.add_arrivals`: a thousand workers' small batches were a
thousand transactions a second, more than SQLite commits). Only then are the new ones fed to
the statistics, once, those of one cluster together: derived once for the group, since
deriving a small batch costs about as much as a large one.

It bounds what waits: beyond ``backlog_bytes`` of batches received and not yet committed,
:meth:`Ingest.admit` says no and the route answers 503 with Retry-After. The worker keeps the
batch and sends it again later (nothing unacknowledged is lost), instead of its request
waiting past its timeout in a queue, being sent again meanwhile, and the service holding both
copies.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Hashable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from clientswarm.errors import ClientswarmError
from clientswarm.store import Arrival, Store

GROUP_MAX = 500
"""The most batches and ticks one group commit takes."""


class IngestBusy(ClientswarmError):
    """The backlog is full: send the batch again after :attr:`retry_after_s`."""

    def __init__(self, backlog_bytes: int, limit_bytes: int, retry_after_s: float) -> None:
        super().__init__(
            f"the service is still committing {backlog_bytes / 2**20:.0f} MiB of sample batches "
            f"(its limit is {limit_bytes / 2**20:.0f} MiB); the batch was not taken, send it "
            "again later"
        )
        self.retry_after_s = retry_after_s


Feed = Callable[[list[Any]], None]
"""Feeds the payloads of the new arrivals of one key (one cluster's batches, or its ticks) to
the statistics, in the order they arrived."""


@dataclass(slots=True)
class _Waiting:
    arrival: Arrival
    size_bytes: int
    key: Hashable
    feed: Feed
    payload: Any
    done: asyncio.Future[bool]


def _settle(done: asyncio.Future[bool], outcome: bool | BaseException) -> None:
    if done.done():
        return
    if isinstance(outcome, BaseException):
        done.set_exception(outcome)
        done.exception()  # retrieved: a cancelled caller leaves no "never retrieved" warning
    else:
        done.set_result(outcome)


class Ingest:
    """The commit thread of sample batches and ticks, and the bytes waiting for it."""

    def __init__(self, store: Store, backlog_bytes: int) -> None:
        self.store = store
        self.limit_bytes = backlog_bytes
        self.backlog_bytes = 0
        """Bytes of the batches admitted and not yet committed."""
        self.committed_bytes_per_s = 0.0
        """How fast batches were committed lately (bytes a second, smoothed)."""
        self.groups = 0
        """Group commits so far."""
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="ingest")
        self._waiting: list[_Waiting] = []
        self._writer: asyncio.Task[None] | None = None

    @contextlib.contextmanager
    def admit(self, size_bytes: int) -> Iterator[None]:
        """Hold ``size_bytes`` of the backlog for the block; IngestBusy when it is full (a
        batch is always admitted into an empty backlog, however large)."""
        if self.backlog_bytes and self.backlog_bytes + size_bytes > self.limit_bytes:
            raise IngestBusy(self.backlog_bytes, self.limit_bytes, self._drain_s())
        self.backlog_bytes += size_bytes
        try:
            yield
        finally:
            self.backlog_bytes -= size_bytes

    async def commit(
        self, arrival: Arrival, size_bytes: int, key: Hashable, feed: Feed, payload: Any
    ) -> bool:
        """Commit ``arrival`` (``size_bytes`` of body) with the others waiting then; once it
        is committed, if it was new, ``payload`` goes to ``feed`` in the commit thread, with
        the payloads of the group's other new arrivals of the same ``key`` (the first one's
        ``feed`` is called). True when new, False for a seq seen before; else the store's
        error for it (StoreUnavailable, BatchRejected, …) or the feed's."""
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._waiting.append(_Waiting(arrival, size_bytes, key, feed, payload, done))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write())
        return await asyncio.shield(done)  # a caller's cancellation does not uncommit it

    async def _write(self) -> None:
        loop = asyncio.get_running_loop()
        while self._waiting:
            group = self._waiting[:GROUP_MAX]
            del self._waiting[:GROUP_MAX]
            try:
                outcomes, took_s = await loop.run_in_executor(self._thread, self._group, group)
            except Exception as exc:  # StoreUnavailable: nothing of the group was stored
                for w in group:
                    _settle(w.done, exc)
                continue
            self.groups += 1
            rate = sum(w.size_bytes for w in group) / max(took_s, 1e-4)
            self.committed_bytes_per_s = (
                rate
                if not self.committed_bytes_per_s
                else 0.8 * self.committed_bytes_per_s + 0.2 * rate
            )
            for w, outcome in zip(group, outcomes, strict=True):
                _settle(w.done, outcome)

    def _group(self, group: list[_Waiting]) -> tuple[list[bool | Exception], float]:
        """Commit a group, then feed the new ones, key by key (in the commit thread)."""
        started = time.perf_counter()
        outcomes = self.store.add_arrivals([w.arrival for w in group])
        fresh: dict[Hashable, list[int]] = {}
        for i, outcome in enumerate(outcomes):
            if outcome is True:
                fresh.setdefault(group[i].key, []).append(i)
        for indices in fresh.values():
            try:
                group[indices[0]].feed([group[i].payload for i in indices])
            except Exception as exc:  # stored, not fed: their workers hear of it
                for i in indices:
                    outcomes[i] = exc
        return outcomes, time.perf_counter() - started

    def close(self) -> None:
        """Let the commit thread end once its work is done."""
        self._thread.shutdown(wait=False)

    def _drain_s(self) -> float:
        """About how long the backlog takes to commit (1 to 30 s)."""
        rate = self.committed_bytes_per_s
        return 1.0 if rate <= 0 else min(30.0, max(1.0, self.backlog_bytes / rate))


__all__ = ["GROUP_MAX", "Feed", "Ingest", "IngestBusy"]
