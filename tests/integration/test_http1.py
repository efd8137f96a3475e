"""The hot path's HTTP/1.1 client against a real loopback server that writes raw bytes.

The server is a plain ``asyncio`` stream server so each test decides every byte of the answer
(framing, keep-alive, closing at awkward moments), which a well-behaved framework would not.
"""

from __future__ import annotations

import asyncio
import shutil
import ssl
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from clientswarm.clock import Clock
from clientswarm.interactions.http import classify_exception
from clientswarm.interactions.http1 import ConnectionDropped, Http1Client, Http1Error
from clientswarm.metrics.sample import ERROR_CONNECTION, ERROR_PROTOCOL

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, int], Awaitable[None]]


class RawServer:
    """Accepts connections; ``handler(reader, writer, request_number)`` answers each request."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.requests: list[bytes] = []
        self.server: asyncio.Server | None = None
        self.url = ""

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
                self.requests.append(head + await reader.readexactly(length))
                await self.handler(reader, writer, len(self.requests))
                if writer.is_closing():
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[Handler], Awaitable[RawServer]]]:
    started: list[RawServer] = []

    async def start(handler: Handler) -> RawServer:
        server = RawServer(handler)
        await server.start()
        started.append(server)
        return server

    yield start
    for server in started:
        assert server.server is not None
        server.server.close()


def ok(body: bytes, *extra: bytes) -> bytes:
    head = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n" % len(body) + b"".join(extra)
    return head + b"\r\n" + body


async def post(client: Http1Client, url: str, body: bytes = b"{}") -> tuple[int, bytes]:
    pool, target = client.route(url)
    conn = await pool.post(target, body, {"Content-Type": "application/json"})
    try:
        return conn.status, await conn.read()
    finally:
        pool.release(conn)


async def test_request_bytes_and_keep_alive(
    serve: Callable[[Handler], Awaitable[RawServer]],
) -> None:
    async def answer(r: asyncio.StreamReader, w: asyncio.StreamWriter, n: int) -> None:
        w.write(ok(b"answer %d" % n))

    server = await serve(answer)
    client = Http1Client(Clock().now_ns)
    for n in (1, 2, 3):
        assert await post(client, server.url + "/v1/x?a=1", b'{"n":%d}' % n) == (
            200,
            b"answer %d" % n,
        )
    assert server.connections == 1  # kept alive
    first = server.requests[0]
    assert first.startswith(b"POST /v1/x?a=1 HTTP/1.1\r\nHost: 127.0.0.1:")
    assert b"Content-Type: application/json\r\n" in first
    assert b"Content-Length: 7\r\n\r\n" in first and first.endswith(b'{"n":1}')
    assert b"Accept-Encoding" not in first  # answers must come uncompressed
    client.close()


async def test_chunked_answer_blocks_carry_receive_times(
    serve: Callable[[Handler], Awaitable[RawServer]],
) -> None:
    async def answer(r: asyncio.StreamReader, w: asyncio.StreamWriter, n: int) -> None:
        w.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        for part in (b"data: 1\n\n", b"data: 2\n\n"):
            w.write(b"%x\r\n%s\r\n" % (len(part), part))
            await w.drain()
            await asyncio.sleep(0.05)
        w.write(b"0\r\n\r\n")

    server = await serve(answer)
    clock = Clock()
    client = Http1Client(clock.now_ns)
    pool, target = client.route(server.url + "/")
    conn = await pool.post(target, b"{}", {})
    blocks = []
    while (block := await conn.next_block()) is not None:
        blocks.append(block)
    pool.release(conn)
    assert [b for b, _ in blocks] == [b"data: 1\n\n", b"data: 2\n\n"]
    assert blocks[1][1] - blocks[0][1] >= 40_000_000  # stamped on arrival, 50 ms apart
    assert conn.reusable
    assert (await post(client, server.url + "/"))[0] == 200 and server.connections == 1


async def test_connection_close_and_eof_framed_answers(
    serve: Callable[[Handler], Awaitable[RawServer]],
) -> None:
    async def answer(r: asyncio.StreamReader, w: asyncio.StreamWriter, n: int) -> None:
        if n == 1:
            w.write(ok(b"closing", b"Connection: close\r\n"))
        else:  # no length, not chunked: the body runs until the connection closes
            w.write(b"HTTP/1.1 200 OK\r\n\r\nuntil the end")
        await w.drain()
        w.close()

    server = await serve(answer)
    client = Http1Client(Clock().now_ns)
    assert await post(client, server.url + "/") == (200, b"closing")
    assert await post(client, server.url + "/") == (200, b"until the end")
    assert server.connections == 2


async def test_a_stale_keep_alive_connection_is_retried_once_on_a_fresh_one(
    serve: Callable[[Handler], Awaitable[RawServer]],
) -> None:
    async def answer(r: asyncio.StreamReader, w: asyncio.StreamWriter, n: int) -> None:
        w.write(ok(b"fine"))

    server = await serve(answer)
    client = Http1Client(Clock().now_ns)
    assert await post(client, server.url + "/") == (200, b"fine")
    pool, _ = client.route(server.url + "/")
    idle = pool._idle[0]
    # The server's close has not reached the client yet when the next request goes out:
    # simulate it by shutting our side's reading down after the write, as a reset would.
    original_send = idle.send

    def send_then_drop(request: bytes) -> None:
        original_send(request)
        idle.connection_lost(ConnectionResetError("reset by peer"))

    idle.send = send_then_drop  # type: ignore[method-assign]
    assert await post(client, server.url + "/") == (200, b"fine")
    assert server.connections == 2


async def test_a_drop_mid_answer_and_garbage_are_errors_of_their_kind(
    serve: Callable[[Handler], Awaitable[RawServer]],
) -> None:
    async def answer(r: asyncio.StreamReader, w: asyncio.StreamWriter, n: int) -> None:
        if n == 1:
            w.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly part")
            await w.drain()
            w.close()
        else:
            w.write(b"NOT HTTP AT ALL\r\n\r\n")

    server = await serve(answer)
    client = Http1Client(Clock().now_ns)
    with pytest.raises(ConnectionDropped) as dropped:
        await post(client, server.url + "/")
    assert classify_exception(dropped.value, 1.0)[0] == ERROR_CONNECTION
    with pytest.raises(Http1Error) as garbage:
        await post(client, server.url + "/")
    assert classify_exception(garbage.value, 1.0)[0] == ERROR_PROTOCOL


async def test_an_answer_larger_than_the_buffer_arrives_whole(
    serve: Callable[[Handler], Awaitable[RawServer]],
) -> None:
    big = bytes(range(256)) * 16384  # 4 MiB: reading pauses and resumes on the way

    async def answer(r: asyncio.StreamReader, w: asyncio.StreamWriter, n: int) -> None:
        w.write(ok(big))
        await w.drain()

    server = await serve(answer)
    client = Http1Client(Clock().now_ns)
    pool, target = client.route(server.url + "/")
    conn = await pool.post(target, b"{}", {})
    await asyncio.sleep(0.2)  # let it fill the buffer while nobody reads
    received = await conn.read()
    pool.release(conn)
    assert received == big and conn.reusable


async def test_a_timeout_mid_answer_closes_the_connection(
    serve: Callable[[Handler], Awaitable[RawServer]],
) -> None:
    async def answer(r: asyncio.StreamReader, w: asyncio.StreamWriter, n: int) -> None:
        if n == 1:
            w.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nslow")
            await w.drain()
            await asyncio.sleep(1.0)
            w.write(b"......")
        else:
            w.write(ok(b"fresh"))

    server = await serve(answer)
    client = Http1Client(Clock().now_ns)
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.2):
            await post(client, server.url + "/")
    assert await post(client, server.url + "/") == (200, b"fresh")
    assert server.connections == 2  # the half-read connection was not reused


async def test_refused_is_a_connection_error(unused_tcp_port: int) -> None:
    client = Http1Client(Clock().now_ns)
    with pytest.raises(OSError) as refused:
        await post(client, f"http://127.0.0.1:{unused_tcp_port}/")
    assert classify_exception(refused.value, 1.0)[0] == ERROR_CONNECTION


@pytest.fixture
def self_signed(tmp_path: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, made with the openssl command."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is not installed")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"),
            *("-nodes", "-days", "1", "-subj", "/CN=127.0.0.1"),
            *("-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


async def test_https_targets_are_verified_against_the_trusted_certificates(
    self_signed: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    cert, key = self_signed
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert, key)

    async def answer(r: asyncio.StreamReader, w: asyncio.StreamWriter, n: int) -> None:
        w.write(ok(b"over tls"))

    server = RawServer(answer)
    server.server = await asyncio.start_server(server._serve, "127.0.0.1", 0, ssl=server_tls)
    url = f"https://127.0.0.1:{server.server.sockets[0].getsockname()[1]}/v1/x"
    try:
        untrusting = Http1Client(Clock().now_ns)  # the system's CAs: this certificate fails
        with pytest.raises(ssl.SSLCertVerificationError) as failed:
            await post(untrusting, url)
        assert classify_exception(failed.value, 1.0)[0] == ERROR_CONNECTION
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # how a user trusts a private CA
        trusting = Http1Client(Clock().now_ns)
        assert await post(trusting, url) == (200, b"over tls")
        assert await post(trusting, url) == (200, b"over tls")
        assert server.connections == 1  # kept alive (the refused handshake never got that far)
        trusting.close()
    finally:
        server.server.close()


async def test_reads_of_one_burst_are_taken_together_with_the_first_ones_time(
    serve: Callable[[Handler], Awaitable[RawServer]],
) -> None:
    now_ns = [0]  # the client's clock, moved by the test: one burst at 0, the next 1 s later
    second_burst = asyncio.Event()

    async def answer(r: asyncio.StreamReader, w: asyncio.StreamWriter, n: int) -> None:
        w.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        for part in (b"a", b"b", b"c"):
            w.write(b"1\r\n%s\r\n" % part)
            await w.drain()
            await asyncio.sleep(0.01)  # separate reads on the client's side
        await second_burst.wait()
        w.write(b"1\r\nd\r\n0\r\n\r\n")

    server = await serve(answer)
    client = Http1Client(lambda: now_ns[0])
    pool, target = client.route(server.url + "/")
    conn = await pool.post(target, b"{}", {})
    await asyncio.sleep(0.2)  # the reader falls behind: the first burst's reads queue up
    now_ns[0] = 1_000_000_000
    second_burst.set()
    await asyncio.sleep(0.1)
    blocks = []
    while (block := await conn.next_block()) is not None:
        blocks.append(block)
    pool.release(conn)
    assert blocks == [(b"abc", 0), (b"d", 1_000_000_000)]


async def test_consume_hands_each_read_over_as_it_arrives_and_stops_when_told(
    serve: Callable[[Handler], Awaitable[RawServer]],
) -> None:
    """The stream reader's path: ``feed(block, received_ns)`` runs in ``data_received``; True
    stops it and leaves the rest for ``drain``; an error in ``feed`` is raised by ``consume``."""
    parts = (b"data: 1\n\n", b"data: 2\n\n", b"data: stop\n\n", b"data: after\n\n")

    async def answer(r: asyncio.StreamReader, w: asyncio.StreamWriter, n: int) -> None:
        w.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        for part in parts:
            w.write(b"%x\r\n%s\r\n" % (len(part), part))
            await w.drain()
            await asyncio.sleep(0.03)
        w.write(b"0\r\n\r\n")

    server = await serve(answer)
    client = Http1Client(Clock().now_ns)
    pool, target = client.route(server.url + "/")

    fed: list[tuple[bytes, int]] = []

    def until_stop(block: bytes, received_ns: int) -> bool:
        fed.append((block, received_ns))
        return block == b"data: stop\n\n"

    conn = await pool.post(target, b"{}", {})
    await conn.consume(until_stop)
    assert [b for b, _ in fed] == list(parts[:3])
    assert fed[1][1] - fed[0][1] >= 20_000_000  # each stamped on its own arrival
    await conn.drain()  # what followed the stop
    pool.release(conn)
    assert conn.reusable

    def refuse(block: bytes, received_ns: int) -> bool:
        raise ValueError(f"not a stream: {block!r}")

    conn = await pool.post(target, b"{}", {})
    with pytest.raises(ValueError, match="not a stream"):
        await conn.consume(refuse)
    pool.release(conn)
    assert not conn.reusable  # read only in part: closed, not reused

    conn = await pool.post(target, b"{}", {})
    everything: list[bytes] = []
    await conn.consume(lambda block, _: everything.append(block) is not None)  # never stops
    pool.release(conn)
    assert b"".join(everything) == b"".join(parts) and conn.reusable
    client.close()


async def test_consume_waits_through_reads_that_carry_no_body_bytes(
    serve: Callable[[Handler], Awaitable[RawServer]],
) -> None:
    """A read may end inside a chunk's size line: it carries no body bytes, and must not be
    taken for the end of the answer."""
    part = b"data: 1\n\n"

    async def answer(r: asyncio.StreamReader, w: asyncio.StreamWriter, n: int) -> None:
        w.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        for piece in (b"%x\r\n%s\r\n" % (len(part), part), b"%x" % len(part), b"\r\n"):
            w.write(piece)
            await w.drain()
            await asyncio.sleep(0.03)  # separate reads
        w.write(part + b"\r\n0\r\n\r\n")

    server = await serve(answer)
    client = Http1Client(Clock().now_ns)
    pool, target = client.route(server.url + "/")
    conn = await pool.post(target, b"{}", {})
    fed: list[bytes] = []
    await conn.consume(lambda block, _: fed.append(block) is not None)
    pool.release(conn)
    assert b"".join(fed) == part + part
    assert conn.reusable
    client.close()
