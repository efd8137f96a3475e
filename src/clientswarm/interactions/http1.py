"""A lean HTTP/1.1 client for the built-ins' hot path: the OpenAI POSTs that carry the load.

Keep-alive connections are ``asyncio`` protocols; answers are parsed by ``httptools`` (llhttp,
the parser uvicorn uses); each read is timestamped in ``data_received`` itself, as close to the
socket as Python gets. One write per request (head and body in one byte string). Measured with
``bench/http_layers.py``: the same bare streaming loop runs several times faster on this than on
aiohttp, for a fraction of the CPU (see ``bench/RESULTS-http-layers.md``).

What it leaves out, because a load generator's POST to an inference server does not need it:
redirects, cookies, proxies, compression (it sends no ``Accept-Encoding``, so answers come
uncompressed), HTTP/2, ``Expect: 100-continue``. User-defined interactions keep aiohttp
(``ctx.http``), with all of that.

A connection goes back to its pool only after a complete answer that allows keep-alive; a
timeout, a cancellation or an answer read only in part closes it. A reused connection that the
server closed just as the request went out (no byte of an answer) is retried once on a fresh
one, as browsers and aiohttp do for a stale keep-alive connection.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from collections.abc import Callable
from typing import cast
from urllib.parse import urlsplit

import httptools

from clientswarm import __version__
from clientswarm.errors import ClientswarmError
from clientswarm.interactions.deadlines import Deadlines

_HIGH_WATER = 1 << 20
"""Bytes of answer waiting for the reader before the connection stops reading the socket."""
_USER_AGENT = f"clientswarm/{__version__}".encode()
MERGE_NS = 100_000
"""Reads this close together count as one when the reader takes them (their tokens get the
first one's time: at most 0.1 ms early, a third of the exactness bound of a TTFT p50)."""


class Http1Error(ClientswarmError):
    """The target's answer was not valid HTTP/1.1."""


class ConnectionDropped(ClientswarmError, ConnectionError):
    """The connection closed before the answer was complete (an ``OSError``, as the socket's
    own failures are: all of them are the ``connection`` error kind)."""


class Http1Connection(asyncio.Protocol):
    """One keep-alive connection to the target, carrying one request at a time.

    After :meth:`Http1Pool.post` returns it, ``status`` and ``reason`` are set and
    :meth:`next_block` yields the body as it arrives, each block with its receive time.
    """

    def __init__(self, pool: Http1Pool) -> None:
        self._pool = pool
        self._now_ns = pool.now_ns
        self.transport: asyncio.Transport | None = None
        self.lost = False
        self.status = 0
        self.reason = ""
        self._parser = httptools.HttpResponseParser(self)
        self._reason = bytearray()
        self._head: asyncio.Future[None] | None = None
        self._blocks: deque[tuple[bytes, int]] = deque()
        self._pending: list[bytes] = []
        self._waiter: asyncio.Future[None] | None = None
        self._buffered = 0
        self._paused = False
        self._complete = False
        self._until_eof = True
        self._keep_alive = False
        self._received = False
        self._error: BaseException | None = None
        self._feed: Callable[[bytes, int], bool] | None = None
        self._feed_error: BaseException | None = None

    # --- asyncio.Protocol -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Keep the transport."""
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        """Parse what arrived; its body bytes become one block stamped with this moment."""
        now = self._now_ns()
        self._received = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(Http1Error(f"the target's answer is not valid HTTP/1.1: {exc}"))
            self.close()
            return
        pending = self._pending
        if pending:
            block = pending[0] if len(pending) == 1 else b"".join(pending)
            pending.clear()
            feed = self._feed
            if feed is not None:  # :meth:`consume`: the block is read here, now
                try:
                    stop = feed(block, now)
                except Exception as exc:  # the reader's verdict on the stream: raised there
                    self._feed_error, stop = exc, True
                if stop:
                    self._feed = None
                if stop or self._complete:
                    self._wake()
                return
            self._blocks.append((block, now))
            self._buffered += len(block)
            if self._buffered > _HIGH_WATER and not self._paused and self.transport:
                self._paused = True
                self.transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool | None:
        """The server closed its side: so do we (``connection_lost`` follows)."""
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        """An answer that runs until the connection closes ends here; any other is cut off."""
        self.lost = True
        if not self._complete:
            if self._head is not None and self._head.done() and self._until_eof:
                self._complete = True
            else:
                why = f": {exc}" if exc else ""
                self._fail(ConnectionDropped(f"the target closed the connection{why}"))
        self._wake()

    # --- httptools callbacks ----------------------------------------------------------------

    def on_status(self, status: bytes) -> None:
        """The reason phrase (may come in pieces)."""
        self._reason += status

    def on_header(self, name: bytes, value: bytes) -> None:
        """Only framing headers matter: with neither, the body runs until the connection ends."""
        if len(name) in (14, 17) and name.lower() in (b"content-length", b"transfer-encoding"):
            self._until_eof = False

    def on_headers_complete(self) -> None:
        """Status known: :meth:`Http1Pool.post` returns."""
        self.status = self._parser.get_status_code()
        self.reason = self._reason.decode("latin-1")
        self._keep_alive = self._parser.should_keep_alive()
        if self.status in (204, 304) or 100 <= self.status < 200:
            self._until_eof = False
        if self._head is not None and not self._head.done():
            self._head.set_result(None)

    def on_body(self, body: bytes) -> None:
        """Collected, and handed over as one block at the end of ``data_received``."""
        self._pending.append(body)

    def on_message_complete(self) -> None:
        """The answer is complete."""
        self._complete = True

    # --- used by the pool and the reader ----------------------------------------------------

    def send(self, request: bytes) -> None:
        """Reset for a new answer and write ``request``."""
        assert self.transport is not None
        self._parser = httptools.HttpResponseParser(self)
        self._reason.clear()
        self._head = asyncio.get_running_loop().create_future()
        self._blocks.clear()
        self._buffered = 0
        self._complete = self._received = self._keep_alive = False
        self._until_eof = True
        self._error = None
        self.status, self.reason = 0, ""
        self.transport.write(request)

    async def head(self) -> None:
        """Wait for the status line and headers."""
        assert self._head is not None
        if not self._head.done():
            await self._head
        if self._error is not None:
            raise self._error

    async def next_block(self) -> tuple[bytes, int] | None:
        """The next body block and the epoch ns it arrived at; None once the answer is complete."""
        while True:
            if self._blocks:
                return self._take_block()
            if self._error is not None:
                raise self._error
            if self._complete:
                return None
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None

    def _take_block(self) -> tuple[bytes, int]:
        """The first queued block, with those that arrived within :data:`MERGE_NS` of it."""
        block = self._blocks.popleft()
        if self._blocks and self._blocks[0][1] - block[1] <= MERGE_NS:
            block = self._merged(block)
        self._buffered -= len(block[0])
        if self._buffered <= _HIGH_WATER // 4:
            self._resume()
        return block

    def _resume(self) -> None:
        """Read the socket again if a full buffer paused it."""
        if self._paused and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()

    async def consume(self, feed: Callable[[bytes, int], bool]) -> None:
        """Hand the body to ``feed(block, received_ns)`` as it arrives, from ``data_received``
        itself: a stream of small reads costs no task wake-up per read, and each block is
        handled the moment it comes off the socket.

        Returns once ``feed`` returns True (it wants no more: what follows stays for
        :meth:`drain`) or the body is complete; raises what ``feed`` raised, or the
        connection's error.
        """
        while self._blocks:  # what arrived before this call (e.g. with the head)
            if feed(*self._take_block()):
                return
        self._resume()
        self._feed, self._feed_error = feed, None
        try:
            # A read that carries no body bytes (it ended inside a chunk's size line) wakes
            # this too: wait again until the feed stopped, the body ended, or an error came.
            while self._feed is not None and not self._complete and self._error is None:
                self._waiter = asyncio.get_running_loop().create_future()
                await self._waiter
        finally:
            self._waiter = None
            stopped, self._feed = self._feed is None, None
        if self._feed_error is not None:
            error, self._feed_error = self._feed_error, None
            raise error
        if self._error is not None and not stopped:
            raise self._error

    def _merged(self, first: tuple[bytes, int]) -> tuple[bytes, int]:
        """``first`` and the blocks queued behind it that arrived within :data:`MERGE_NS`
        of it, as one block with its time: a reader that fell behind a fast stream catches
        up a burst at a time instead of a read at a time."""
        parts, at = [first[0]], first[1]
        blocks = self._blocks
        while blocks and blocks[0][1] - at <= MERGE_NS:
            parts.append(blocks.popleft()[0])
        return b"".join(parts), at

    async def read(self) -> bytes:
        """The rest of the body."""
        parts = []
        while (block := await self.next_block()) is not None:
            parts.append(block[0])
        return b"".join(parts)

    def drain_received(self) -> bool:
        """Drop what of the answer has arrived; True when that was all of it (no waiting)."""
        self._blocks.clear()
        self._buffered = 0
        self._resume()
        return self._complete and self._error is None

    async def drain(self) -> None:
        """Read and drop the rest of the answer (what follows ``[DONE]``), so the connection
        can be reused."""
        while await self.next_block() is not None:
            pass

    @property
    def reusable(self) -> bool:
        """Whether the answer was read to its end and the connection may carry another."""
        return self._complete and self._keep_alive and not self.lost and not self._blocks

    def close(self) -> None:
        """Close the connection (``connection_lost`` follows)."""
        if self.transport is not None:
            self.transport.close()

    def _fail(self, error: BaseException) -> None:
        if self._error is None:
            self._error = error
        if self._head is not None and not self._head.done():
            self._head.set_result(None)  # head() raises the error

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


class Http1Pool:
    """Keep-alive connections to one origin (scheme, host, port), as many as are in use."""

    def __init__(self, origin: str, now_ns: Callable[[], int]) -> None:
        parts = urlsplit(origin)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http:// or https:// URL with a host: {origin!r}")
        self.now_ns = now_ns
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self._ssl = ssl.create_default_context() if parts.scheme == "https" else None
        self._host_header = b"Host: " + parts.netloc.encode("idna") + b"\r\n"
        self._idle: list[Http1Connection] = []
        self._heads: dict[tuple[str, int], tuple[dict[str, str], bytes]] = {}

    async def post(self, target: str, body: bytes, headers: dict[str, str]) -> Http1Connection:
        """Send ``POST target`` with ``body``; the connection once the answer's head is in.

        The caller reads the body from it and must :meth:`release` it (in a ``finally``).
        """
        request = self._head_of(target, headers) + b"%d\r\n\r\n" % len(body) + body
        for attempt in (1, 2):
            conn, reused = await self._acquire()
            conn.send(request)
            try:
                await conn.head()
            except ConnectionDropped:
                conn.close()
                if attempt == 1 and reused and not conn._received:
                    continue  # a stale keep-alive connection: once more on a fresh one
                raise
            except BaseException:
                conn.close()
                raise
            return conn
        raise AssertionError("unreachable")  # pragma: no cover

    def release(self, conn: Http1Connection) -> None:
        """Back to the pool when reusable, else closed."""
        if conn.reusable:
            self._idle.append(conn)
        else:
            conn.close()

    def close(self) -> None:
        """Close the idle connections."""
        idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    async def _acquire(self) -> tuple[Http1Connection, bool]:
        while self._idle:
            conn = self._idle.pop()
            if not conn.lost and conn.transport is not None and not conn.transport.is_closing():
                return conn, True
        loop = asyncio.get_running_loop()
        _, conn = await loop.create_connection(
            lambda: Http1Connection(self),
            self.host,
            self.port,
            ssl=self._ssl,
            server_hostname=self.host if self._ssl else None,
        )
        return conn, False

    def _head_of(self, target: str, headers: dict[str, str]) -> bytes:
        """The request line and headers up to ``Content-Length: `` (built once per pair)."""
        key = (target, id(headers))
        cached = self._heads.get(key)
        if cached is None or cached[0] is not headers:
            lines = [b"POST " + target.encode() + b" HTTP/1.1\r\n", self._host_header]
            lines.append(b"User-Agent: " + _USER_AGENT + b"\r\n")
            lines.append(b"Accept: */*\r\n")
            for name, value in headers.items():
                if name.lower() in ("host", "content-length", "transfer-encoding"):
                    continue
                lines.append(f"{name}: {value}\r\n".encode("latin-1"))
            lines.append(b"Content-Length: ")
            cached = (headers, b"".join(lines))
            self._heads[key] = cached  # keeps ``headers`` alive: its id stays unique
        return cached[1]


class Http1Client:
    """The pools of one worker, by origin; URLs split once."""

    def __init__(self, now_ns: Callable[[], int]) -> None:
        self._now_ns = now_ns
        self.deadlines = Deadlines()
        """The requests' timeouts (``async with client.deadlines.within(timeout_s)``)."""
        self._pools: dict[str, Http1Pool] = {}
        self._routes: dict[str, tuple[Http1Pool, str]] = {}

    def route(self, url: str) -> tuple[Http1Pool, str]:
        """The pool for ``url``'s origin and its request target (path and query)."""
        found = self._routes.get(url)
        if found is None:
            parts = urlsplit(url)
            origin = f"{parts.scheme}://{parts.netloc}"
            pool = self._pools.get(origin)
            if pool is None:
                pool = self._pools[origin] = Http1Pool(origin, self._now_ns)
            target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            found = self._routes[url] = (pool, target)
        return found

    def close(self) -> None:
        """Close every idle connection."""
        for pool in self._pools.values():
            pool.close()
