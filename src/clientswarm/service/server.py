"""Running the service: uvicorn on a socket we bind ourselves (so port 0 works in-process)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from clientswarm.protocol.internal import SERVICE_KEEP_ALIVE_S
from clientswarm.protocol.spawning import Spawner
from clientswarm.service.app import create_app
from clientswarm.service.manager import ClusterManager
from clientswarm.service.settings import ServiceSettings
from clientswarm.service.sockets import bind, url_of
from clientswarm.store import Store, StoreError, StoreUnavailable
from clientswarm.store.health import one_line


@dataclass
class RunningService:
    """A service running in this process."""

    url: str
    manager: ClusterManager
    server: uvicorn.Server


@contextlib.asynccontextmanager
async def running_service(
    store: Store,
    settings: ServiceSettings,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    log_level: str = "warning",
    spawners: dict[str, Spawner[Any]] | None = None,
    sock: socket.socket | None = None,
    before_serving: Callable[[ClusterManager], Awaitable[None]] | None = None,
) -> AsyncIterator[RunningService]:
    """Serve on ``host:port`` (or on ``sock``, bound already) in this event loop until the
    block exits, with ``spawners`` instead of one of each kind when given.

    ``before_serving`` runs once the manager has started and before the first request is
    accepted: what it creates is there for requests already waiting on the socket.
    """
    sock = sock if sock is not None else bind(host, port)
    url = url_of(sock)
    if not settings.advertise_url:
        settings.advertise_url = url
    manager = ClusterManager(store, settings, spawners=spawners)
    config = uvicorn.Config(
        create_app(manager, before_serving=before_serving),
        log_level=log_level,
        access_log=False,
        lifespan="on",
        ws="none",  # no WebSocket routes: skip loading a WebSocket library
        timeout_graceful_shutdown=5,
        timeout_keep_alive=int(SERVICE_KEEP_ALIVE_S),
    )
    server = _Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                task.result()  # raises what stopped it
                raise RuntimeError("the service stopped while starting")
            await asyncio.sleep(0.002)  # uvicorn offers no event; it starts in ~50 ms
        yield RunningService(url, manager, server)
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await task
        sock.close()


class _Server(uvicorn.Server):
    """uvicorn's server without its signal handlers: whoever serves owns Ctrl-C (``serve``
    stops, ``run`` stops its cluster). uvicorn's own, installed once it had started, took a
    Ctrl-C that came before ``run`` installed its handler: the server shut down under the
    running cluster, whose workers then had nowhere to report, and the run hung."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


_HINT = (
    "--store takes a writable SQLite file path or the SQLAlchemy URL of a reachable database "
    "(postgresql://user@host/db)"
)


def open_store(value: str, data_dir: Path) -> Store:
    """The store at ``value`` (SQLAlchemy URL or file path), claimed by this service (one
    service per store) and its tables created.

    Every failure is one StoreError line that names the store and says what to do: another
    service owns it (StoreInUse), or it cannot be opened (a bad URL, a read-only or invalid
    file, an unreachable server).
    """
    shown = _shown(value)
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"cannot create --data-dir {data_dir}: {exc.strerror or exc}") from exc
    store: Store | None = None
    try:
        store = Store.from_url_or_path(value)
        store.claim()
        store.create_all()
    except StoreError as exc:
        _close(store)
        if not isinstance(exc, StoreUnavailable):
            raise  # another service owns it, or a database of another schema: said already
        raise StoreError(f"cannot open the store {shown}: {_cause(exc)}; {_HINT}") from exc
    except (SQLAlchemyError, OSError, ImportError, ValueError) as exc:
        _close(store)
        raise StoreError(f"cannot open the store {shown}: {_cause(exc)}; {_HINT}") from exc
    logging.getLogger("clientswarm.service").info("store: %s", shown)
    return store


def _shown(value: str) -> str:
    """``value`` for a message: a URL without its password."""
    if "://" not in value:
        return value
    with contextlib.suppress(Exception):
        url = make_url(value)
        return value if url.password is None else url.render_as_string(hide_password=True)
    return value.split("://", 1)[0] + "://…"


def _cause(exc: BaseException) -> str:
    if isinstance(exc, StoreUnavailable) and isinstance(exc.__cause__, Exception):
        exc = exc.__cause__  # the database's own message, not the store's wrapping of it
    if isinstance(exc, OSError):
        return f"{exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else "")
    if isinstance(exc, ImportError):
        return f"its driver cannot be loaded ({exc})"
    return one_line(exc)


def _close(store: Store | None) -> None:
    if store is not None:
        with contextlib.suppress(Exception):
            store.close()
