"""One service per store: an exclusive lock that the service owning a store holds while it runs.

Two services on one store would each follow the other's clusters as their own: the second to
start recovers the first one's running clusters and marks their workers lost. So
``clientswarm serve`` claims the store before it reads anything (:meth:`Store.claim`), and a
second service on the same store stops with :class:`~clientswarm.store.records.StoreInUse`.

- **SQLite file**: an OS lock (``flock``) on ``<database>.lock`` beside the database file, which
  says who holds it (pid, host, since when). The file is never deleted (deleting it would let
  two services lock two different files of the same name); only the lock on it counts.
- **PostgreSQL**: a session-level advisory lock (:data:`ADVISORY_KEY`, per database) taken on
  a connection of its own that stays open while the service runs; its ``application_name``
  says who holds it.
- **In-memory SQLite** (and any other backend): nothing to share, no lock.

A PostgreSQL session can also end under a running service (the server restarted, the
connection was cut): the lock goes with it. :meth:`OwnerLock.keep`, called every few seconds
by the service, notices, and takes the lock again on a new connection; when another service
took it in between, it raises StoreInUse and the service stops rather than share the store.

Either lock belongs to the process, not to a file's content: when the service dies, even by
SIGKILL, the kernel drops the ``flock`` and PostgreSQL ends the session and its locks, so a
successor is never refused by a stale lock. (A PostgreSQL server notices a vanished host only
when its TCP keepalive gives up.) Worker processes do not inherit either: Python opens files and
libpq opens sockets close-on-exec.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import os
import socket
from typing import Protocol

from sqlalchemy import Connection, Engine, text
from sqlalchemy.engine import URL

from clientswarm.store.engine import sqlite_file
from clientswarm.store.records import StoreInUse, StoreUnavailable

_ADVISORY_HIGH = int.from_bytes(b"clsw")  # both halves below 2**31: plain int4 to pg_locks
_ADVISORY_LOW = int.from_bytes(b"stor")
ADVISORY_KEY = _ADVISORY_HIGH << 32 | _ADVISORY_LOW
"""The PostgreSQL advisory lock (bigint form) that the owner of a store holds."""


class OwnerLock(Protocol):
    """A claim on a store, held until :meth:`release`."""

    def release(self) -> None:
        """Give the store up (idempotent)."""

    def keep(self) -> bool:
        """Make sure the lock is still held, taking it again if it was lost: True when it was
        taken again. StoreInUse when another process holds it now; StoreUnavailable when the
        database cannot be reached to tell (try again later)."""


def owner_tag() -> str:
    """Who claims: this process, its host and the time, e.g. ``pid 42 on node1 since …``."""
    since = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    return f"pid {os.getpid()} on {socket.gethostname()} since {since}"


def claim(url: URL, engine: Engine, store_name: str) -> OwnerLock | None:
    """Take the owner lock of the store at ``url`` (None where there is none to take).

    StoreInUse names the holder when another process has it; ``store_name`` is how the
    message names the store.
    """
    path = sqlite_file(url)
    if path is not None:
        return FileLock.acquire(path + ".lock", store_name)
    if url.get_backend_name() == "postgresql":
        return AdvisoryLock.acquire(engine, store_name)
    return None


def _in_use(store_name: str, holder: str) -> StoreInUse:
    return StoreInUse(
        f"the store {store_name} is in use by another clientswarm service ({holder}); "
        "a store has one service at a time: stop that one first, or give this one another "
        "--store"
    )


class FileLock:
    """An exclusive ``flock`` on a file beside a SQLite database."""

    def __init__(self, fd: int) -> None:
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, path: str, store_name: str) -> FileLock:
        """Lock ``path`` (created when missing) and write who holds it into it."""
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise StoreUnavailable(
                f"cannot create the store's lock file {path}: {exc.strerror or exc}"
            ) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 300, 0).decode(errors="replace").strip()
            os.close(fd)
            raise _in_use(store_name, holder or f"it holds {path}") from None
        except OSError as exc:
            os.close(fd)
            raise StoreUnavailable(f"cannot lock {path}: {exc.strerror or exc}") from exc
        with contextlib.suppress(OSError):  # who holds it is a courtesy to the next one
            os.ftruncate(fd, 0)
            os.pwrite(fd, (owner_tag() + "\n").encode(), 0)
        return cls(fd)

    def release(self) -> None:
        """Unlock (closing the file drops the lock)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def keep(self) -> bool:
        """An open file's lock cannot be lost: nothing to do."""
        return False


class AdvisoryLock:
    """PostgreSQL's session-level advisory lock :data:`ADVISORY_KEY` on a dedicated connection."""

    def __init__(self, conn: Connection, engine: Engine, store_name: str) -> None:
        self._conn: Connection | None = conn
        self._engine = engine
        self._store_name = store_name

    @classmethod
    def acquire(cls, engine: Engine, store_name: str) -> AdvisoryLock:
        """Take the lock, or raise StoreInUse naming the session that holds it."""
        return cls(cls._take(engine, store_name), engine, store_name)

    @staticmethod
    def _take(engine: Engine, store_name: str) -> Connection:
        # Autocommit: the session holds the lock, no transaction stays open for hours.
        conn = engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        try:
            tag = f"clientswarm serve {owner_tag()}"[:63]  # PostgreSQL keeps 63 bytes
            conn.execute(text("SELECT set_config('application_name', :tag, false)"), {"tag": tag})
            taken = conn.execute(
                text("SELECT pg_try_advisory_lock(:key)"), {"key": ADVISORY_KEY}
            ).scalar_one()
            if not taken:
                raise _in_use(store_name, _advisory_holder(conn))
        except BaseException:
            conn.close()
            raise
        return conn

    def keep(self) -> bool:
        """Check the session still holds the lock; on a new session take it again."""
        if self._conn is None:
            return False
        try:
            held = self._conn.execute(
                text(
                    "SELECT count(*) FROM pg_locks WHERE pid = pg_backend_pid() "
                    "AND locktype = 'advisory' AND granted AND classid = :high AND objid = :low"
                ),
                {"high": _ADVISORY_HIGH, "low": _ADVISORY_LOW},
            ).scalar_one()
        except Exception:  # the session is gone, and its lock with it
            held = 0
        if held:
            return False
        with contextlib.suppress(Exception):
            self._conn.close()
        try:
            self._conn = self._take(self._engine, self._store_name)
        except StoreInUse:
            self._conn = None
            raise
        except Exception as exc:  # the server is not back yet: the next call tries again
            raise StoreUnavailable(
                f"the store's owner lock was lost and cannot be taken again yet: "
                f"{type(exc).__name__}"
            ) from exc
        return True

    def release(self) -> None:
        """Unlock and close the connection (a lost connection has dropped the lock already)."""
        if self._conn is not None:
            conn, self._conn = self._conn, None
            with contextlib.suppress(Exception):
                conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": ADVISORY_KEY})
            with contextlib.suppress(Exception):
                conn.close()


def _advisory_holder(conn: Connection) -> str:
    """Who holds the advisory lock, as far as this role may see in ``pg_stat_activity``."""
    row = conn.execute(
        text(
            "SELECT a.pid, a.application_name, a.client_addr FROM pg_locks l "
            "JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 "
            "AND l.classid = :high AND l.objid = :low AND l.database = "
            "(SELECT oid FROM pg_database WHERE datname = current_database())"
        ),
        {"high": _ADVISORY_HIGH, "low": _ADVISORY_LOW},
    ).first()
    if row is None:
        return "a session that has just ended: try again"
    who = row.application_name or "a session"
    where = f" from {row.client_addr}" if row.client_addr else ""
    return f"{who}; PostgreSQL backend pid {row.pid}{where}"


__all__ = ["ADVISORY_KEY", "AdvisoryLock", "FileLock", "OwnerLock", "claim", "owner_tag"]
