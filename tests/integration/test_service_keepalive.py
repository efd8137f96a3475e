"""The service keeps an idle connection open longer than a worker does.

A worker of a large fleet ships a tick or a batch every 5 s (up to 10 s); a service that closed
idle connections after 5 s (uvicorn's default) closed them just as the next call went out on
them, which failed as a reset or a disconnect and was sent again (thousands of times a run
with 1,000 workers in ``bench/fleet.py``).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from clientswarm.protocol.internal import SERVICE_KEEP_ALIVE_S, WORKER_KEEP_ALIVE_S
from clientswarm.service.server import running_service
from clientswarm.service.settings import ServiceSettings
from clientswarm.store import Store

IDLE_S = 6.5
"""Longer than uvicorn's default keep-alive (5 s) and than any batch interval of 5 s."""


async def _health(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bytes:
    writer.write(b"GET /health HTTP/1.1\r\nHost: service\r\n\r\n")
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    await reader.readexactly(length)
    return head


async def test_an_idle_connection_outlives_a_batch_interval(tmp_path: Path) -> None:
    assert WORKER_KEEP_ALIVE_S < SERVICE_KEEP_ALIVE_S  # the worker closes first
    store = Store.from_url_or_path(str(tmp_path / "store.sqlite"))
    store.create_all()
    settings = ServiceSettings(data_dir=tmp_path)
    async with running_service(store, settings) as service:
        host, port = service.url.removeprefix("http://").rsplit(":", 1)
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            assert (await _health(reader, writer)).startswith(b"HTTP/1.1 200")
            await asyncio.sleep(IDLE_S)
            assert not reader.at_eof()
            assert (await _health(reader, writer)).startswith(b"HTTP/1.1 200")  # same socket
        finally:
            writer.close()
