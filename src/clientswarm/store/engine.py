"""Engines for the store: SQLite tuned for one writer at a time, PostgreSQL through psycopg 3.

psycopg comes with the ``postgres`` extra (:data:`POSTGRES_EXTRA`): without it, a PostgreSQL
URL fails in :func:`make_engine` with a :class:`~clientswarm.store.records.StoreError` that
says what to install.

SQLite connections run with WAL journaling (readers never block the writer), ``synchronous=
NORMAL`` (a commit survives a crash of the process, though not always a power cut), foreign
keys on (cascading deletes) and a busy timeout, so concurrent writers wait instead of failing.
pysqlite's own transaction handling is switched off: the store emits ``BEGIN`` itself, and
``BEGIN IMMEDIATE`` for writes, which takes the write lock up front — a deferred transaction
that reads and then writes could fail with ``SQLITE_BUSY`` instead of waiting.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.pool import ConnectionPoolEntry, StaticPool

from clientswarm.store.records import StoreError

BUSY_TIMEOUT_MS = 30_000
"""How long a SQLite writer waits for the write lock before giving up."""

WAL_SIZE_LIMIT_BYTES = 64 * 1024 * 1024
"""A WAL file that grew past this is truncated back to it when it starts over."""

PG_CONNECT_TIMEOUT_S = 10
"""How long a new PostgreSQL connection may take, unless the URL sets ``connect_timeout``."""

POSTGRES_EXTRA = "pip install 'clientswarm[postgres]'"
"""What to install for a PostgreSQL store: psycopg 3 is not in the base install."""

BEGIN_OPTION = "clientswarm_begin"
"""Execution option naming the SQLite ``BEGIN`` mode (``IMMEDIATE`` for writes)."""


def url_from(value: str | os.PathLike[str]) -> URL:
    """A SQLAlchemy URL from a URL or a plain file path (→ SQLite).

    ``postgresql://`` and ``postgres://`` get the psycopg 3 driver, the one of the ``postgres``
    extra.
    """
    text = os.fspath(value)
    if "://" not in text:
        return URL.create("sqlite", database=str(Path(text).expanduser().resolve()))
    if text.startswith("postgres://"):
        text = "postgresql://" + text.removeprefix("postgres://")
    url = make_url(text)
    if url.drivername == "postgresql":
        url = url.set(drivername="postgresql+psycopg")
    return url


def is_memory_sqlite(url: URL) -> bool:
    """True for an in-memory SQLite database (one connection, shared by every thread)."""
    return url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:")


def sqlite_file(url: URL) -> str | None:
    """The file of a SQLite database: its path, also when given as a ``file:`` URI
    (``sqlite:///file:/data/x.sqlite?mode=ro&uri=true``); None in memory or not SQLite."""
    if url.get_backend_name() != "sqlite" or is_memory_sqlite(url) or not url.database:
        return None
    if url.database.startswith("file:") and url.query.get("uri") in ("true", "1"):
        path = unquote(urlsplit(url.database).path)
        return path if path and path != ":memory:" else None
    return url.database


def make_engine(url: URL, *, background_checkpoints: bool = False) -> Engine:
    """An engine for ``url``, with the SQLite settings above where it is SQLite.

    ``background_checkpoints``: the caller runs WAL checkpoints itself (see
    :mod:`clientswarm.store.checkpoint`), so commits never do.
    """
    if url.get_backend_name() != "sqlite":
        kwargs: dict[str, Any] = {"pool_size": 8, "max_overflow": 32, "pool_pre_ping": True}
        if url.get_backend_name() == "postgresql" and "connect_timeout" not in url.query:
            # An unreachable host would otherwise hold a connection attempt (and the service's
            # start, or a request) for the system's TCP timeout, minutes.
            kwargs["connect_args"] = {"connect_timeout": PG_CONNECT_TIMEOUT_S}
        try:
            return create_engine(url, **kwargs)  # imports the driver
        except ImportError as exc:
            if url.get_driver_name() != "psycopg":
                raise  # a driver the URL chose itself: the caller says it cannot be loaded
            shown = url.set(drivername="postgresql").render_as_string(hide_password=True)
            raise StoreError(
                f"the store {shown} needs psycopg, which cannot be loaded ({exc}): {POSTGRES_EXTRA}"
            ) from exc
    if is_memory_sqlite(url):
        engine = create_engine(url, poolclass=StaticPool, connect_args={"check_same_thread": False})
    else:
        path = sqlite_file(url)
        if path:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        # A pooled connection is used by one thread at a time, so it may move between threads.
        engine = create_engine(
            url,
            pool_size=8,
            max_overflow=32,
            connect_args={"check_same_thread": False, "timeout": BUSY_TIMEOUT_MS / 1000},
        )
    pragmas = [
        f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}",
        "PRAGMA journal_mode = WAL",
        "PRAGMA synchronous = NORMAL",
        "PRAGMA foreign_keys = ON",
    ]
    if background_checkpoints:
        pragmas.append("PRAGMA wal_autocheckpoint = 0")
    # The connection that restarts the WAL truncates the file back to this size.
    pragmas.append(f"PRAGMA journal_size_limit = {WAL_SIZE_LIMIT_BYTES}")

    def on_connect(dbapi_connection: sqlite3.Connection, record: ConnectionPoolEntry) -> None:
        dbapi_connection.isolation_level = None  # autocommit at the driver; BEGIN comes from us
        cursor = dbapi_connection.cursor()
        try:
            for pragma in pragmas:
                cursor.execute(pragma)
        finally:
            cursor.close()

    event.listen(engine, "connect", on_connect)
    event.listen(engine, "begin", _on_sqlite_begin)
    return engine


def _on_sqlite_begin(conn: Connection) -> None:
    mode = conn.get_execution_options().get(BEGIN_OPTION, "")
    conn.exec_driver_sql(f"BEGIN {mode}".strip())


__all__ = [
    "BEGIN_OPTION",
    "BUSY_TIMEOUT_MS",
    "PG_CONNECT_TIMEOUT_S",
    "POSTGRES_EXTRA",
    "is_memory_sqlite",
    "make_engine",
    "sqlite_file",
    "url_from",
]
