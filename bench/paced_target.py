"""A paced SSE chat target that measures itself: the reference for timing benchmarks.

``POST /v1/chat/completions`` (streamed) is answered on absolute deadlines from the request's
arrival (when the read that starts it came off the socket, before any parsing): the response
headers once the request is complete, the first content token at ``arrival + ttft``, token
``i`` at ``arrival + ttft + i * itl`` (each a ``call_at`` on the event loop's monotonic clock,
never cumulative sleeps), then a finish chunk, a usage chunk and ``[DONE]``; ``--tokens``
tokens, fewer if the request's ``max_tokens`` asks for fewer. Non-streamed requests get one
JSON answer after the whole stream's time.

Every request is recorded with ``time.time_ns()`` taken on arrival and right after the
``transport.write`` of each content token: ``arrival_ns``, ``token_ns`` (so the server's TTFT
is ``token_ns[0] - arrival_ns`` and its ITL the gaps of ``token_ns``), ``end_ns``, whether the
stream completed, the ``X-Request-Id`` header and the system prompt (a tag: benchmarks give
each client its own system prompt, which pairs client and server records).

With ``--request-ids`` the chunks are vLLM's shape of stream: each request's chunks carry an
id of its own (``chatcmpl-<request number>``), and an empty role chunk comes with the first
token; without it every chunk of every request has the same id and the first token carries
the role.

- ``GET /stats``: ``{"open", "peak_open", "started", "finished", "incomplete"}``: streams open
  now, etc. (cheap: poll it).
- ``GET /records``: every record so far (JSON list); ``POST /reset`` forgets them (and the peak).

One process: an asyncio protocol on uvloop with httptools' parser, HTTP/1.1 keep-alive, a
callback per token and no task per request, so that the target spends as little of the
machine it shares with the client as it can, and its arrival times are what its socket saw
rather than when a web framework's handler got to run. It prints ``paced-target listening on
URL`` when ready (``--port 0``: a free port). Use :func:`paced_target` to run it as a child
process from a benchmark.

    .venv/bin/python bench/paced_target.py --ttft-ms 50 --itl-ms 5 --tokens 32
    .venv/bin/python bench/paced_target.py --ttft-ms 100 --itl-ms 1000 --tokens 60   # slow
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httptools

LISTENING = "paced-target listening on "
MODEL = "mock-model"
SHARED_ID = "chatcmpl-paced"
ID_MARK = "chatcmpl-000000000000"
"""Where a request's own id goes in the chunks built once (``--request-ids``): the same length
as every id, so the chunked framing built with it holds."""


# -- the server ---------------------------------------------------------------------------------


def chunk(
    delta: dict[str, Any] | None, finish: str | None = None, *, id_: str = SHARED_ID, **extra: Any
) -> bytes:
    """One SSE event of a chat-completion stream (compact JSON)."""
    body: dict[str, Any] = {
        "id": id_,
        "object": "chat.completion.chunk",
        "created": 0,
        "model": MODEL,
        "choices": [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}],
        **extra,
    }
    return b"data: " + json.dumps(body, separators=(",", ":")).encode() + b"\n\n"


class PacedServer:
    """The answers and the records of one target (shared by its connections)."""

    def __init__(
        self,
        ttft_s: float,
        itl_s: float,
        tokens: int,
        keep_token_times: bool,
        request_ids: bool = False,
    ) -> None:
        self.ttft_s, self.itl_s, self.tokens = ttft_s, itl_s, tokens
        self.keep_token_times = keep_token_times
        self.request_ids = request_ids
        self.records: list[dict[str, Any]] = []
        self.open = self.peak_open = self.started = self.finished = self.incomplete = 0
        # Token chunks are built once, chunk-framed (with ID_MARK where a request's own id
        # goes, with --request-ids).
        self.id_ = ID_MARK if request_ids else SHARED_ID
        if request_ids:
            role = framed(chunk({"role": "assistant", "content": ""}, id_=self.id_))
            self.first_chunk = role + framed(chunk({"content": " tok0"}, id_=self.id_))
        else:
            self.first_chunk = framed(chunk({"role": "assistant", "content": " tok0"}))
        self.token_chunks = [
            framed(chunk({"content": f" tok{i}"}, id_=self.id_)) for i in range(tokens)
        ]
        self._tails: dict[int, bytes] = {}

    def tail(self, n: int) -> bytes:
        """What follows ``n`` tokens: the finish chunk, the usage chunk, ``[DONE]``, the end."""
        found = self._tails.get(n)
        if found is None:
            usage = {"prompt_tokens": 8, "completion_tokens": n, "total_tokens": n + 8}
            parts = [
                chunk({}, "length", id_=self.id_),
                chunk(None, id_=self.id_, usage=usage),
                b"data: [DONE]\n\n",
            ]
            found = self._tails[n] = b"".join(map(framed, parts)) + b"0\r\n\r\n"
        return found

    def control(self, method: str, path: str) -> tuple[int, Any]:
        """The answer to a control request: ``(status, JSON body)``."""
        if method == "GET" and path == "/stats":
            return 200, {
                "open": self.open,
                "peak_open": self.peak_open,
                "started": self.started,
                "finished": self.finished,
                "incomplete": self.incomplete,
                "first_arrival_ns": self.records[0]["arrival_ns"] if self.records else None,
            }
        if method == "GET" and path == "/records":
            return 200, self.records
        if method == "POST" and path == "/reset":
            self.records = []
            self.peak_open = self.open
            self.started = self.finished = self.incomplete = 0
            return 200, {"ok": True}
        if method == "GET" and path == "/health":
            return 200, "ok"
        if method == "GET" and path == "/v1/models":  # what a run's preflight asks first
            return 200, {"object": "list", "data": [{"id": MODEL, "object": "model"}]}
        return 404, {"error": f"no route {method} {path}"}


def framed(data: bytes) -> bytes:
    """``data`` as one chunk of a chunked HTTP/1.1 body."""
    return b"%x\r\n%b\r\n" % (len(data), data)


_STREAM_HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n"
)


class PacedProtocol(asyncio.Protocol):
    """One connection: HTTP/1.1 keep-alive, parsed with httptools, one request at a time.

    A request's arrival is taken when the read that starts it comes off the socket
    (``data_received``), before any parsing; its tokens are written by ``call_at`` callbacks
    on their deadlines, each stamped right after its ``transport.write``.
    """

    def __init__(self, server: PacedServer) -> None:
        self.server = server
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.read_ns, self.read_mono = 0, 0.0
        self.arrival: tuple[int, float] = (0, 0.0)
        self.url = b""
        self.body: list[bytes] = []
        self.request_id: str | None = None
        self.pending: list[tuple[tuple[int, float], bytes, bytes, str | None, bool, bool]] = []
        self.busy = self.keep_alive = False
        self.n, self.t0 = 0, 0.0
        self.timer: asyncio.TimerHandle | None = None
        self.record: dict[str, Any] | None = None
        self.id_ = ID_MARK.encode()  # this request's chunk id (--request-ids)

    # --- httptools callbacks ---
    def on_message_begin(self) -> None:
        self.arrival = (self.read_ns, self.read_mono)
        self.url, self.body, self.request_id = b"", [], None

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() == b"x-request-id":
            self.request_id = value.decode("latin-1")

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        is_post = self.parser.get_method() == b"POST"
        keep_alive = self.parser.should_keep_alive()
        body = b"".join(self.body)
        self.pending.append((self.arrival, self.url, body, self.request_id, is_post, keep_alive))
        if not self.busy:
            self.next_request()

    # --- asyncio callbacks ---
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        self.read_ns, self.read_mono = time.time_ns(), self.loop.time()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.reply(400, {"error": "bad request"}, keep_alive=False)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.end_stream(complete=False)
        self.transport = None

    # --- answers ---
    def next_request(self) -> None:
        if not self.pending or self.transport is None:
            self.busy = False
            return
        self.busy = True
        (arrival_ns, arrival_mono), url, body, request_id, is_post, keep_alive = self.pending.pop(0)
        self.keep_alive = keep_alive
        path = url.split(b"?", 1)[0].decode("latin-1")
        if not (is_post and path == "/v1/chat/completions"):
            status, payload = self.server.control("POST" if is_post else "GET", path)
            self.reply(status, payload, keep_alive=keep_alive)
            if keep_alive:
                self.next_request()
            return
        server = self.server
        server.started += 1
        if server.request_ids:
            self.id_ = b"chatcmpl-%012d" % server.started
        server.open += 1
        server.peak_open = max(server.peak_open, server.open)
        record: dict[str, Any] = {
            "arrival_ns": arrival_ns,
            "request_id": request_id,
            "system": None,
            "token_ns": [],
            "tokens": 0,
            "end_ns": None,
            "complete": False,
        }
        self.record = record
        server.records.append(record)
        try:
            data = json.loads(body or b"{}")
        except ValueError:
            data = {}
        messages = data.get("messages") or []
        system = [m.get("content") for m in messages if m.get("role") == "system"]
        record["system"] = system[0] if system else None
        n = server.tokens
        if isinstance(data.get("max_tokens"), int) and data["max_tokens"] >= 1:
            n = min(n, data["max_tokens"])
        self.n, self.t0 = n, arrival_mono
        if not data.get("stream"):
            end = arrival_mono + server.ttft_s + (n - 1) * server.itl_s
            self.timer = self.loop.call_at(end, self.answer_whole)
            return
        assert self.transport is not None
        self.transport.write(_STREAM_HEAD)
        self.timer = self.loop.call_at(arrival_mono + server.ttft_s, self.write_token, 0)

    def write_token(self, i: int) -> None:
        """Write token ``i`` (its deadline has come), then schedule the next one."""
        record, server = self.record, self.server
        if self.transport is None or record is None:
            return
        data = server.first_chunk if i == 0 else server.token_chunks[i]
        if server.request_ids:
            data = data.replace(ID_MARK.encode(), self.id_)
        self.transport.write(data)
        now = time.time_ns()
        if server.keep_token_times or i == 0:
            record["token_ns"].append(now)
        record["tokens"] = i + 1
        if i + 1 < self.n:
            deadline = self.t0 + server.ttft_s + (i + 1) * server.itl_s
            self.timer = self.loop.call_at(deadline, self.write_token, i + 1)
            return
        tail = server.tail(self.n)
        if server.request_ids:
            tail = tail.replace(ID_MARK.encode(), self.id_)
        self.transport.write(tail)
        self.end_stream(complete=True)
        self.after_answer()

    def answer_whole(self) -> None:
        """The non-streamed answer, after the whole stream's time."""
        record, n = self.record, self.n
        if record is None:
            return
        record["tokens"] = n
        self.end_stream(complete=True)
        text = "".join(f" tok{i}" for i in range(n))
        usage = {"prompt_tokens": 8, "completion_tokens": n, "total_tokens": n + 8}
        body = {
            "id": "chatcmpl-paced",
            "object": "chat.completion",
            "created": 0,
            "model": MODEL,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": "length",
                }
            ],
            "usage": usage,
        }
        self.reply(200, body, keep_alive=self.keep_alive)
        self.after_answer()

    def end_stream(self, *, complete: bool) -> None:
        record, self.record = self.record, None
        if record is None:
            return
        server = self.server
        server.open -= 1
        record["end_ns"], record["complete"] = time.time_ns(), complete
        if complete:
            server.finished += 1
        else:
            server.incomplete += 1

    def after_answer(self) -> None:
        self.timer = None
        if not self.keep_alive and self.transport is not None:
            self.transport.close()
            return
        self.next_request()

    def reply(self, status: int, payload: Any, *, keep_alive: bool) -> None:
        if self.transport is None:
            return
        body = json.dumps(payload).encode()
        reason = {200: "OK", 400: "Bad Request", 404: "Not Found"}.get(status, "OK")
        connection = b"keep-alive" if keep_alive else b"close"
        head = b"HTTP/1.1 %d %b\r\nContent-Type: application/json\r\n" % (status, reason.encode())
        head += b"Content-Length: %d\r\nConnection: %b\r\n\r\n" % (len(body), connection)
        self.transport.write(head + body)
        if not keep_alive:
            self.transport.close()


async def serve(args: argparse.Namespace) -> None:
    """Run the server until SIGTERM or SIGINT."""
    server = PacedServer(
        args.ttft_ms / 1000, args.itl_ms / 1000, args.tokens, args.token_times, args.request_ids
    )
    loop = asyncio.get_running_loop()
    listener = await loop.create_server(
        lambda: PacedProtocol(server), args.host, args.port, backlog=8192, reuse_address=True
    )
    port = listener.sockets[0].getsockname()[1]
    print(f"{LISTENING}http://{args.host}:{port}", flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    listener.close()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0: a free port")
    parser.add_argument("--ttft-ms", type=float, default=50.0, help="arrival to first token")
    parser.add_argument("--itl-ms", type=float, default=5.0, help="between tokens")
    parser.add_argument("--tokens", type=int, default=32, help="tokens per answer (at most)")
    parser.add_argument(
        "--no-token-times",
        dest="token_times",
        action="store_false",
        help="record only the first token's write time (saves memory with many streams)",
    )
    parser.add_argument(
        "--request-ids",
        action="store_true",
        help="vLLM's shape of stream: an id of its own per request, an empty role chunk first",
    )
    return parser.parse_args(argv)


def main() -> None:
    import uvloop

    raise_nofile()
    uvloop.run(serve(parse_args()))


# -- running it from a benchmark ----------------------------------------------------------------


def raise_nofile() -> tuple[int, int]:
    """Raise this process's open-file soft limit to its hard limit; return (old soft, hard)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return soft, hard


@dataclass
class PacedTarget:
    """A running paced target: its base URL and process."""

    url: str
    proc: subprocess.Popen[bytes]

    def get(self, path: str, timeout_s: float = 30.0) -> Any:
        """GET ``path``, decoded from JSON."""
        with urllib.request.urlopen(self.url + path, timeout=timeout_s) as response:
            return json.loads(response.read())

    def stats(self) -> dict[str, Any]:
        """``GET /stats``."""
        result: dict[str, Any] = self.get("/stats")
        return result

    def records(self) -> list[dict[str, Any]]:
        """``GET /records``."""
        result: list[dict[str, Any]] = self.get("/records", timeout_s=120.0)
        return result

    def reset(self) -> None:
        """``POST /reset``."""
        request = urllib.request.Request(self.url + "/reset", data=b"", method="POST")
        with urllib.request.urlopen(request, timeout=30):
            pass


@contextlib.contextmanager
def paced_target(
    ttft_ms: float,
    itl_ms: float,
    tokens: int,
    *,
    token_times: bool = True,
    request_ids: bool = False,
    stderr_path: Path | None = None,
    timeout_s: float = 30.0,
) -> Iterator[PacedTarget]:
    """Start this file as a child process on a free loopback port; stop it on exit."""
    argv = [sys.executable, str(Path(__file__).resolve()), "--port", "0"]
    argv += [f"--ttft-ms={ttft_ms}", f"--itl-ms={itl_ms}", f"--tokens={tokens}"]
    if not token_times:
        argv.append("--no-token-times")
    if request_ids:
        argv.append("--request-ids")
    with contextlib.ExitStack() as stack:
        err = stack.enter_context(stderr_path.open("wb")) if stderr_path else subprocess.DEVNULL
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=err, start_new_session=True)
        try:
            assert proc.stdout is not None
            deadline = time.monotonic() + timeout_s
            url = None
            os.set_blocking(proc.stdout.fileno(), True)
            while time.monotonic() < deadline and proc.poll() is None:
                line = proc.stdout.readline().decode().strip()
                if line.startswith(LISTENING):
                    url = line.removeprefix(LISTENING)
                    break
            if url is None:
                raise RuntimeError(f"the paced target did not start (exit {proc.poll()})")
            yield PacedTarget(url, proc)
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()


if __name__ == "__main__":
    main()
