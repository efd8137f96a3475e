"""Heartbeats answered from memory, their columns written to the store a second at a time.

A heartbeat says a worker is alive and reports its in-flight count and loop lag. The service
follows workers from memory (``WorkerStatus.last_seen``); the store's ``last_heartbeat_at``,
``in_flight`` and ``loop_lag_p99_s`` columns are only for readers (the worker list, the
summary's loop-lag warnings). Writing them on every beat put each heartbeat's reply behind
the store's write lock, which sample batches hold: with 100 workers shipping batches to
SQLite a heartbeat waited 4.5 s (p50) for 8 ms of work (bench/RESULTS-fleet-heartbeats.md).

:class:`HeartbeatLog` keeps the latest columns of each worker and writes all of them in one
transaction every ``interval_s``, on its own thread (never the default pool, which batches and
state changes share). A cluster's columns are written before its summary is made
(:meth:`HeartbeatLog.flush`), so the summary sees every beat it was sent. A write that fails
is kept and tried again with the next one: later columns replace earlier ones, nothing grows.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from clientswarm.store import Store, StoreUnavailable

log = logging.getLogger(__name__)

WorkerKey = tuple[str, int]
"""A worker: its cluster's id and its index."""


class HeartbeatLog:
    """The latest heartbeat columns of each worker, written to ``store`` in the background."""

    def __init__(self, store: Store, interval_s: float = 1.0) -> None:
        self.store = store
        self.interval_s = interval_s
        self._pending: dict[WorkerKey, dict[str, Any]] = {}
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="heartbeats")
        self._writing = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    def note(self, cluster_id: str, index: int, **fields: Any) -> None:
        """Keep ``fields`` of a worker for the next write (replacing older values)."""
        self._pending.setdefault((cluster_id, index), {}).update(fields)

    def start(self) -> None:
        """Write every ``interval_s`` from now on (in the running event loop)."""
        if self._task is None:
            self._task = asyncio.create_task(self._every_interval(), name="heartbeat-log")

    async def flush(self, cluster_id: str | None = None) -> None:
        """Write what is kept (of one cluster, or of all) now; StoreUnavailable when the
        store fails (what was taken is kept for the next try)."""
        async with self._writing:
            keys = [k for k in self._pending if cluster_id is None or k[0] == cluster_id]
            if not keys:
                return
            taken = {key: self._pending.pop(key) for key in keys}
            try:
                await asyncio.get_running_loop().run_in_executor(self._thread, self._write, taken)
            except BaseException:
                for key, fields in taken.items():  # newer beats win over the ones taken
                    self._pending[key] = {**fields, **self._pending.get(key, {})}
                raise

    def discard(self, cluster_id: str, index: int, *names: str) -> None:
        """Drop the fields ``names`` kept of one worker (its final report's values win)."""
        kept = self._pending.get((cluster_id, index), {})
        for name in names:
            kept.pop(name, None)

    def forget(self, cluster_id: str) -> None:
        """Drop what is kept of a cluster (it was deleted)."""
        for key in [k for k in self._pending if k[0] == cluster_id]:
            del self._pending[key]

    async def close(self) -> None:
        """Stop the background writes and write what is left (once, if the store works)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        try:
            await self.flush()
        except StoreUnavailable:
            log.warning(
                "the last heartbeat columns of %d worker(s) were not written", len(self._pending)
            )
        self._thread.shutdown(wait=False)

    def _write(self, taken: dict[WorkerKey, dict[str, Any]]) -> None:
        self.store.update_workers(
            [(cluster_id, index, fields) for (cluster_id, index), fields in taken.items()]
        )

    async def _every_interval(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.flush()
            except StoreUnavailable:
                pass  # said by the store's health watch; the next interval tries again
            except Exception:
                log.exception("writing heartbeat columns failed")


__all__ = ["HeartbeatLog", "WorkerKey"]
