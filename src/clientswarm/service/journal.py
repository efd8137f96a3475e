"""Where the changes of clusters and workers are written: the store, then whoever waits.

A status change and its event go in one transaction (:meth:`~clientswarm.store.Store.record_move`):
the store never shows one without the other. The store is called in a worker thread, so a slow
commit never stalls the event loop. :attr:`Journal.changed` wakes whoever waits for a change
(``clientswarm run`` waits there for its cluster to end).
"""

from __future__ import annotations

import asyncio
from typing import Any

from clientswarm.store import Store

Event = tuple[str, str, dict[str, Any] | None]
"""An event of a cluster's log: kind, message, data."""


class Journal:
    """Writes transitions and events of clusters to one store, off the event loop."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.changed = asyncio.Condition()
        """Notified after every change of a status or a worker's state."""

    async def move(
        self,
        cluster_id: str,
        fields: dict[str, Any],
        *,
        worker: int | None = None,
        event: Event | None = None,
    ) -> None:
        """Write ``fields`` of a cluster (or of its worker ``worker``) and ``event`` in one
        transaction; StoreUnavailable when the database failed (then nothing is written)."""
        await asyncio.to_thread(
            self.store.record_move, cluster_id, fields, worker=worker, event=event
        )

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
