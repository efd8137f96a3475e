"""Where the changes of clusters and workers are written: the store, then whoever waits.

A status change and its event go in one transaction (:meth:`~clientswarm.store.Store.record_move`):
the store never shows one without the other. The store is called in a worker thread, so a slow
commit never stalls the event loop. :attr:`Journal.changed` wakes whoever waits for a change
(``clientswarm run`` waits there for its cluster to end).

Moves are written by one writer, all those waiting at once in one transaction
(:meth:`~clientswarm.store.Store.record_moves`), in the order they were asked for: a thousand
workers registering at once are a few commits, not a thousand transactions queued for the
thread pool (where they held up everything else the service writes).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from clientswarm.store import Store

Event = tuple[str, str, dict[str, Any] | None]
"""An event of a cluster's log: kind, message, data."""

MOVES_PER_COMMIT = 1000
"""The most moves one transaction writes."""


@dataclass(slots=True)
class _Move:
    cluster_id: str
    fields: dict[str, Any]
    worker: int | None
    event: Event | None
    written: asyncio.Future[None]


class Journal:
    """Writes transitions and events of clusters to one store, off the event loop."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.changed = asyncio.Condition()
        """Notified after every change of a status or a worker's state."""
        self._moves: list[_Move] = []
        self._writer: asyncio.Task[None] | None = None

    async def move(
        self,
        cluster_id: str,
        fields: dict[str, Any],
        *,
        worker: int | None = None,
        event: Event | None = None,
    ) -> None:
        """Write ``fields`` of a cluster (or of its worker ``worker``) and ``event`` in one
        transaction (with the other moves waiting then); StoreUnavailable when the database
        failed (then nothing is written)."""
        written = asyncio.get_running_loop().create_future()
        self._moves.append(_Move(cluster_id, fields, worker, event, written))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_moves())
        await asyncio.shield(written)  # a caller's cancellation does not unwrite it

    async def _write_moves(self) -> None:
        while self._moves:
            taken = self._moves[:MOVES_PER_COMMIT]
            del self._moves[:MOVES_PER_COMMIT]
            rows = [(m.cluster_id, m.fields, m.worker, m.event) for m in taken]
            try:
                await asyncio.to_thread(self.store.record_moves, rows)
            except Exception as exc:  # each mover hears of the failure (StoreUnavailable, …)
                for m in taken:
                    if not m.written.done():
                        m.written.set_exception(exc)
                        m.written.exception()  # retrieved: no "never retrieved" warning
                continue
            for m in taken:
                if not m.written.done():
                    m.written.set_result(None)

    async def update_worker(self, cluster_id: str, index: int, **fields: Any) -> None:
        """Write columns of a worker that change no state (its heartbeat's, an error)."""
        await asyncio.to_thread(self.store.update_worker, cluster_id, index, **fields)

    async def event(
        self, cluster_id: str, kind: str, message: str, data: dict[str, Any] | None = None
    ) -> None:
        """Append an event to a cluster's log."""
        await asyncio.to_thread(self.store.add_event, cluster_id, kind, message, data)

    async def notify(self) -> None:
        """Wake whoever waits on :attr:`changed`."""
        async with self.changed:
            self.changed.notify_all()


__all__ = ["Event", "Journal"]
