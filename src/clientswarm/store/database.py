"""Connections and transactions of the store, and the care of a SQLite file's WAL.

SQLite has one writer at a time. Threads of this process queue on a lock of ours for it,
woken the moment it is free; SQLite's own busy handler (still there for other processes)
would poll with sleeps of up to 100 ms. An in-memory database is one connection shared by
every thread, so there reads take the lock too. PostgreSQL needs no lock of ours.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.engine import URL

from clientswarm.store.checkpoint import Checkpointer
from clientswarm.store.engine import BEGIN_OPTION, is_memory_sqlite, make_engine


class Database:
    """An engine plus the locking and WAL upkeep its backend needs; thread-safe."""

    def __init__(self, url: URL) -> None:
        self.url = url
        sqlite = url.get_backend_name() == "sqlite"
        memory = is_memory_sqlite(url)
        # A SQLite file gets its WAL checkpoints from a thread of ours, started on first write.
        self._checkpoints = sqlite and not memory
        self._checkpointer: Checkpointer | None = None
        self.engine = make_engine(url, background_checkpoints=self._checkpoints)
        # Writes on SQLite take the write lock at BEGIN (see clientswarm.store.engine).
        self._writer = (
            self.engine.execution_options(**{BEGIN_OPTION: "IMMEDIATE"}) if sqlite else self.engine
        )
        self._write_lock: AbstractContextManager[Any] | None = None
        self._read_lock: AbstractContextManager[Any] | None = None
        if memory:
            self._write_lock = self._read_lock = threading.RLock()
        elif sqlite:
            self._write_lock = threading.Lock()

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        """A write transaction, committed on leaving (rolled back on an exception)."""
        with self._write_lock or nullcontext():
            if self._checkpoints:
                self._tend_wal()
            with self._writer.begin() as conn:
                yield conn

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A connection for reads; its transaction ends on leaving."""
        with self._read_lock or nullcontext(), self.engine.connect() as conn:
            yield conn

    def close(self) -> None:
        """Stop background checkpoints (after a last one) and close every pooled connection."""
        if self._checkpointer is not None:
            self._checkpointer.stop()
            self._checkpointer = None
        self.engine.dispose()

    def _tend_wal(self) -> None:
        """Start background checkpoints on the first write; restart a long WAL when due."""
        if self._checkpointer is None:
            assert self.url.database
            checkpointer = Checkpointer(self.url.database)
            checkpointer.start()
            # A database dropped without close() still stops its thread (after a last checkpoint).
            weakref.finalize(self, checkpointer.stop)
            self._checkpointer = checkpointer
        elif self._checkpointer.restart_due:
            raw = self.engine.raw_connection()
            try:
                self._checkpointer.restart(raw.driver_connection)  # type: ignore[arg-type]
            finally:
                raw.close()


__all__ = ["Database"]
