"""Connections and transactions of the store, and the care of a SQLite file's WAL.

SQLite has one writer at a time. Threads of this process queue on a lock of ours for it,
woken the moment it is free; SQLite's own busy handler (still there for other processes)
would poll with sleeps of up to 100 ms. An in-memory database is one connection shared by
every thread, so there reads take the lock too. PostgreSQL needs no lock of ours.

Every transaction is named after the store's operation it serves: a failure of the database
itself (a full disk, a read-only file, a lost server) is reported to :attr:`Database.health`
and raised as :class:`~clientswarm.store.records.StoreUnavailable`, one line that says why,
with nothing of the transaction committed.
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
from clientswarm.store.engine import BEGIN_OPTION, is_memory_sqlite, make_engine, sqlite_file
from clientswarm.store.health import StoreHealth, is_database_failure, one_line
from clientswarm.store.records import StoreUnavailable


class Database:
    """An engine plus the locking and WAL upkeep its backend needs; thread-safe."""

    def __init__(self, url: URL) -> None:
        self.url = url
        sqlite = url.get_backend_name() == "sqlite"
        memory = is_memory_sqlite(url)
        # A SQLite file gets its WAL checkpoints from a thread of ours, from its first commit.
        self._checkpoints = sqlite_file(url) is not None
        self._checkpointer: Checkpointer | None = None
        self.engine = make_engine(url, background_checkpoints=self._checkpoints)
        self.health = StoreHealth()
        dbapi = self.engine.dialect.loaded_dbapi
        self._dbapi_failures: tuple[type[Exception], ...] = tuple(
            getattr(dbapi, name) for name in ("OperationalError", "InterfaceError")
        )
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
    def begin(self, operation: str) -> Iterator[Connection]:
        """A write transaction of ``operation``, committed on leaving (rolled back on an
        exception; StoreUnavailable when the database failed)."""
        with self.tracked(operation), self._write_lock or nullcontext():
            if self._checkpointer is not None and self._checkpointer.restart_due:
                self._restart_wal(self._checkpointer)
            with self._writer.begin() as conn:
                yield conn
            if self._checkpoints and self._checkpointer is None:
                self._start_checkpoints()  # after a first commit: the file is a database

    @contextmanager
    def read(self, operation: str) -> Iterator[Connection]:
        """A connection for the reads of ``operation``; its transaction ends on leaving."""
        with (
            self.tracked(operation),
            self._read_lock or nullcontext(),
            self.engine.connect() as conn,
        ):
            yield conn

    @contextmanager
    def tracked(self, operation: str) -> Iterator[None]:
        """Report how ``operation`` went to :attr:`health`; a database failure becomes
        StoreUnavailable (other errors, such as a violated constraint, pass unchanged)."""
        try:
            yield
        except Exception as exc:
            if not is_database_failure(exc, self._dbapi_failures):
                raise
            message = one_line(exc)
            self.health.failed(operation, message)
            raise StoreUnavailable(f"the store failed ({operation}): {message}") from exc
        self.health.succeeded(operation)

    def close(self) -> None:
        """Stop background checkpoints (after a last one) and close every pooled connection."""
        if self._checkpointer is not None:
            self._checkpointer.stop()
            self._checkpointer = None
        self.engine.dispose()

    def _start_checkpoints(self) -> None:
        path = sqlite_file(self.url)
        assert path
        checkpointer = Checkpointer(path)
        checkpointer.start()
        # A database dropped without close() still stops its thread (after a last checkpoint).
        weakref.finalize(self, checkpointer.stop)
        self._checkpointer = checkpointer

    def _restart_wal(self, checkpointer: Checkpointer) -> None:
        """Let a long WAL start over (see :mod:`clientswarm.store.checkpoint`)."""
        raw = self.engine.raw_connection()
        try:
            checkpointer.restart(raw.driver_connection)  # type: ignore[arg-type]
        finally:
            raw.close()


__all__ = ["Database"]
