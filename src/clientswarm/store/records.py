"""The records the store reads and writes: one frozen dataclass per row kind.

JSON columns stay JSON text (``config_json``, ``spawner_state_json``, ``summary_json``,
``report_json``): the service owns their shape. Event data is the exception: it goes in as a
dict through :meth:`Store.add_event` and comes back as one.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from clientswarm.errors import ClientswarmError

UNFINISHED_STATUSES: tuple[str, ...] = ("pending", "starting", "running")
"""Cluster statuses that a restarted service must pick up again."""


class StoreError(ClientswarmError):
    """The store refused an operation (a duplicate id, an incompatible database).

    The tree::

        StoreError
        ├── StoreUnavailable   the database failed (full disk, read-only, unreachable): retry
        ├── StoreInUse         another service owns the store (see clientswarm.store.owner)
        └── BatchRejected      the database refused a value of a sample batch: do not retry
    """


class StoreUnavailable(StoreError):
    """The database failed to read or write (a full disk, a read-only file, a lost server).

    Nothing of the failed call was committed: the same call may succeed once it works again.
    """


class StoreInUse(StoreError):
    """Another service owns the store: one store has one service at a time."""


class BatchRejected(StoreError):
    """The database refused a value of a sample batch (out of its column's range, too long)."""


@dataclass(frozen=True, slots=True)
class ClusterRecord:
    """One client cluster."""

    id: str
    name: str
    status: str
    config_json: str
    token_hash: str
    spawner_kind: str
    reason: str | None = None
    spawner_state_json: str | None = None
    created_at: float = field(default_factory=time.time)
    started_at: float | None = None
    finished_at: float | None = None
    start_ns: int | None = None
    summary_json: str | None = None


@dataclass(frozen=True, slots=True)
class WorkerRecord:
    """One worker process of a cluster."""

    cluster_id: str
    index: int
    state: str = "pending"
    pid: int | None = None
    host: str | None = None
    exit_code: int | None = None
    error: str | None = None
    registered_at: float | None = None
    last_heartbeat_at: float | None = None
    finished_at: float | None = None
    samples: int = 0
    in_flight: int = 0
    loop_lag_p99_s: float | None = None
    report_json: str | None = None


@dataclass(frozen=True, slots=True)
class ClientRecord:
    """One logical client of a cluster, hosted by ``worker``."""

    cluster_id: str
    id: int
    group: str
    worker: int
    state: str = "pending"
    succeeded: int = 0
    failed: int = 0


@dataclass(frozen=True, slots=True)
class EventRecord:
    """One entry of a cluster's event log; ``id`` grows with time across the store."""

    id: int
    cluster_id: str
    ts: float
    kind: str
    message: str
    data: dict[str, Any] | None = None


__all__ = [
    "UNFINISHED_STATUSES",
    "BatchRejected",
    "ClientRecord",
    "ClusterRecord",
    "EventRecord",
    "StoreError",
    "StoreInUse",
    "StoreUnavailable",
    "WorkerRecord",
]
