"""Where sample batches are committed: threads of their own, and a bounded backlog.

A batch is committed (and its statistics fed) in a thread, so that the event loop keeps
answering. Those commits used to share the default thread pool with everything else the
service writes: when a hundred workers shipped batches, the pool's threads all waited for the
store's write lock, and a worker's registration or a stop queued behind them
(bench/RESULTS-fleet-heartbeats.md). :class:`Ingest` gives them their own few threads — a
database takes one writer at a time (SQLite) or a handful (PostgreSQL), so more threads would
only wait — and bounds what waits for them: beyond ``backlog_bytes`` of batches received and
not yet committed, :meth:`Ingest.admit` says no and the route answers 503 with Retry-After.
The worker keeps the batch and sends it again later (nothing unacknowledged is lost), instead
of its request waiting past its timeout in a queue, being sent again meanwhile, and the
service holding both copies.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from clientswarm.errors import ClientswarmError
from clientswarm.store import Store
from clientswarm.store.engine import sqlite_file

T = TypeVar("T")

SQLITE_THREADS = 2
"""Commit threads on SQLite: one writes while the other derives its batch's statistics."""
SERVER_THREADS = 4
"""Commit threads on a database server (PostgreSQL), which takes several writers at once."""


class IngestBusy(ClientswarmError):
    """The backlog is full: send the batch again after :attr:`retry_after_s`."""

    def __init__(self, backlog_bytes: int, limit_bytes: int, retry_after_s: float) -> None:
        super().__init__(
            f"the service is still committing {backlog_bytes / 2**20:.0f} MiB of sample batches "
            f"(its limit is {limit_bytes / 2**20:.0f} MiB); the batch was not taken, send it "
            "again later"
        )
        self.retry_after_s = retry_after_s


class Ingest:
    """The commit threads of sample batches and the bytes waiting for them."""

    def __init__(self, store: Store, backlog_bytes: int) -> None:
        threads = SQLITE_THREADS if sqlite_file(store.url) else SERVER_THREADS
        self.limit_bytes = backlog_bytes
        self.backlog_bytes = 0
        """Bytes of the batches admitted and not yet committed."""
        self.committed_bytes_per_s = 0.0
        """How fast batches were committed lately (bytes a second, smoothed)."""
        self._threads = ThreadPoolExecutor(threads, thread_name_prefix="ingest")

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

    async def run(self, size_bytes: int, work: Callable[[], T]) -> T:
        """``work()`` (a commit of ``size_bytes``) in a commit thread."""

        def timed() -> tuple[T, float]:
            started = time.perf_counter()
            return work(), time.perf_counter() - started

        result, took_s = await asyncio.get_running_loop().run_in_executor(self._threads, timed)
        rate = size_bytes / max(took_s, 1e-4)  # one writer at a time: its own rate
        self.committed_bytes_per_s = (
            rate
            if not self.committed_bytes_per_s
            else 0.8 * self.committed_bytes_per_s + 0.2 * rate
        )
        return result

    def close(self) -> None:
        """Let the commit threads end once their work is done."""
        self._threads.shutdown(wait=False)

    def _drain_s(self) -> float:
        """About how long the backlog takes to commit (1 to 30 s)."""
        rate = self.committed_bytes_per_s
        return 1.0 if rate <= 0 else min(30.0, max(1.0, self.backlog_bytes / rate))


__all__ = ["SERVER_THREADS", "SQLITE_THREADS", "Ingest", "IngestBusy"]
