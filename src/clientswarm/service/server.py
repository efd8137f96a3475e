"""Running the service: uvicorn on a socket we bind ourselves (so port 0 works in-process)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import uvicorn

from clientswarm.service.app import create_app
from clientswarm.service.manager import ClusterManager
from clientswarm.service.settings import ServiceSettings
from clientswarm.spawners.base import Spawner
from clientswarm.store import Store


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (port 0 picks a free one)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host.strip("[]"), port))
    sock.listen(2048)
    sock.setblocking(False)
    return sock


def url_of(sock: socket.socket) -> str:
    """The http URL of a bound socket (brackets around IPv6 hosts)."""
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"


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
    spawners: dict[str, Spawner] | None = None,
) -> AsyncIterator[RunningService]:
    """Serve on ``host:port`` in this event loop until the block exits (with ``spawners``
    instead of one of each kind, when given)."""
    sock = bind(host, port)
    url = url_of(sock)
    if not settings.advertise_url:
        settings.advertise_url = url
    manager = ClusterManager(store, settings, spawners=spawners)
    config = uvicorn.Config(
        create_app(manager),
        log_level=log_level,
        access_log=False,
        lifespan="on",
        ws="none",  # no WebSocket routes: skip loading a WebSocket library
        timeout_graceful_shutdown=5,
    )
    server = uvicorn.Server(config)
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


def open_store(value: str, data_dir: Path) -> Store:
    """The store at ``value`` (SQLAlchemy URL or file path), tables created."""
    data_dir.mkdir(parents=True, exist_ok=True)
    store = Store.from_url_or_path(value)
    store.create_all()
    logging.getLogger("clientswarm.service").info("store: %s", value)
    return store
