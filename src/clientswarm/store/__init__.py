"""Persistence of clusters, workers, clients, samples and events (SQLAlchemy Core).

:class:`Store` works on any SQLAlchemy URL: a SQLite file by default (WAL, one writer at a
time), PostgreSQL through ``postgresql+psycopg://``. It is safe to call from many threads.
"""

from clientswarm.store.records import (
    UNFINISHED_STATUSES,
    ClientRecord,
    ClusterRecord,
    EventRecord,
    StoreError,
    WorkerRecord,
)
from clientswarm.store.store import Store

__all__ = [
    "UNFINISHED_STATUSES",
    "ClientRecord",
    "ClusterRecord",
    "EventRecord",
    "Store",
    "StoreError",
    "WorkerRecord",
]
