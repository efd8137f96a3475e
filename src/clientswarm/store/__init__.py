"""Persistence of clusters, workers, clients, samples and events (SQLAlchemy Core).

:class:`Store` works on any SQLAlchemy URL: a SQLite file by default (WAL, one writer at a
time), PostgreSQL through ``postgresql+psycopg://``. It is safe to call from many threads.
A service claims its store (:meth:`Store.claim`, one service per store) and learns from
:attr:`Store.health` whether the database works.
"""

from clientswarm.store.health import StoreHealth, StoreProblem
from clientswarm.store.records import (
    UNFINISHED_STATUSES,
    BatchRejected,
    ClientRecord,
    ClusterRecord,
    EventRecord,
    StoreError,
    StoreInUse,
    StoreUnavailable,
    WorkerRecord,
)
from clientswarm.store.store import Arrival, Store

__all__ = [
    "UNFINISHED_STATUSES",
    "Arrival",
    "BatchRejected",
    "ClientRecord",
    "ClusterRecord",
    "EventRecord",
    "Store",
    "StoreError",
    "StoreHealth",
    "StoreInUse",
    "StoreProblem",
    "StoreUnavailable",
    "WorkerRecord",
]
