"""The floor under a streamed token's CPU: a bare uvloop protocol client that only reads.

One ``asyncio.Protocol`` per stream on uvloop, one keep-alive connection each, writing the same
streamed chat POST as ``clientswarm run`` (``max_tokens`` tokens, ``stream_options``), and
``data_received`` does the least a client that measures can do: it counts the bytes, takes one
``time.monotonic_ns()`` per read (kept: the gap to the previous read of the stream, or the
TTFT for the first read that carries an event), and checks whether the read ends the chunked
answer (``\\r\\n0\\r\\n\\r\\n``), then sends the next request. No HTTP parser, no SSE decoding,
no samples. ``tokencost.py`` runs it on the same cases as ``clientswarm run`` and measures its
CPU per token the same way.

- closed loop (``--streams N``): N connections opened evenly over ``--ramp-up-s``, each
  requesting again as soon as its answer ended;
- open loop (``--rate R``): constant arrivals, each sent on an idle connection or a new one
  (``call_at`` on absolute times: the simple scheduler). ``--procs P --index K``: this process
  takes arrivals K, K + P, K + 2P… of the schedule (and stream K, K + P… in closed loop), so P
  processes together make one load.

Every process starts its load at ``--start-unix`` (so that several start together), runs
``--duration-s`` and prints one JSON line: requests ended, reads, bytes, TTFT and read-gap
p50/p99 (ms), its event loop's lag p50/p99 (a 50 ms timer, as the worker's monitor) and, open
loop, the schedule lag.

    .venv/bin/python bench/bare_stream.py http://127.0.0.1:PORT --streams 64 --duration-s 5
    .venv/bin/python bench/bare_stream.py http://127.0.0.1:PORT --rate 400 --duration-s 5
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from array import array
from typing import Any
from urllib.parse import urlsplit

import uvloop

END = b"\r\n0\r\n\r\n"
LAG_PROBE_S = 0.05


def request_bytes(host: str, port: int, tokens: int) -> bytes:
    """The streamed chat POST: the body ``clientswarm run``'s chat interaction sends."""
    body = json.dumps(
        {
            "model": "mock-model",
            "max_tokens": tokens,
            "stream": True,
            "stream_options": {"include_usage": True},
            "messages": [{"role": "user", "content": "Hi"}],
        },
        separators=(",", ":"),
    ).encode()
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: {host}:{port}\r\n"
        "User-Agent: bare-stream\r\nAccept: */*\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


class Client:
    """What the streams of one process share: the request, the counts, the kept times."""

    def __init__(self, request: bytes, closed: bool) -> None:
        self.request = request
        self.closed = closed
        self.idle: list[Stream] = []
        self.streams: list[Stream] = []
        self.ended = self.reads = self.bytes = 0
        self.ttft_ns: array[int] = array("q")
        self.gap_ns: array[int] = array("q")
        self.running = True

    def ended_one(self, stream: Stream) -> None:
        """An answer ended: closed loop sends the next, open loop parks the connection."""
        self.ended += 1
        if not self.running:
            return
        if self.closed:
            stream.send()
        else:
            self.idle.append(stream)


class Stream(asyncio.Protocol):
    """One keep-alive connection carrying one request at a time."""

    def __init__(self, client: Client, send_on_connect: bool) -> None:
        self.client = client
        self.transport: asyncio.Transport | None = None
        self.send_on_connect = send_on_connect
        self.sent_ns = self.prev_ns = 0
        self.waiting_first = False
        self.last = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.client.streams.append(self)
        if self.send_on_connect:
            self.send()

    def send(self) -> None:
        """Write the request; the answer's reads start counting."""
        self.sent_ns = time.monotonic_ns()
        self.waiting_first = True
        assert self.transport is not None
        self.transport.write(self.client.request)

    def data_received(self, data: bytes) -> None:
        now = time.monotonic_ns()
        client = self.client
        client.reads += 1
        client.bytes += len(data)
        if self.waiting_first:
            if b"data:" in data:  # the read with the first event (the head comes alone)
                client.ttft_ns.append(now - self.sent_ns)
                self.waiting_first = False
        else:
            client.gap_ns.append(now - self.prev_ns)
        self.prev_ns = now
        if data.endswith(END) or (len(data) < len(END) and (self.last + data).endswith(END)):
            client.ended_one(self)
        self.last = data

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None


def percentiles_ms(values: array[int]) -> dict[str, float | None]:
    """p50 and p99 (nearest rank) of ns values, in ms."""
    if not values:
        return {"p50": None, "p99": None}
    ordered = sorted(values)
    n = len(ordered)
    return {
        "p50": ordered[min(n - 1, int(0.50 * n))] / 1e6,
        "p99": ordered[min(n - 1, int(0.99 * n))] / 1e6,
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    """The load of this process; its counts and percentiles."""
    loop = asyncio.get_running_loop()
    url = urlsplit(args.url)
    host, port = url.hostname or "127.0.0.1", url.port or 80
    client = Client(request_bytes(host, port, args.tokens), closed=args.rate is None)
    lags: array[int] = array("q")
    sched_lags: array[int] = array("q")

    connecting: set[asyncio.Task[Any]] = set()

    def connect(send: bool) -> None:
        task = loop.create_task(loop.create_connection(lambda: Stream(client, send), host, port))
        connecting.add(task)
        task.add_done_callback(connecting.discard)

    def probe(before: float) -> None:  # as the worker's LoopLagMonitor: sleep 50 ms, how late
        now = time.perf_counter()
        lags.append(int(max(0.0, now - before - LAG_PROBE_S) * 1e9))
        if client.running:
            loop.call_later(LAG_PROBE_S, probe, time.perf_counter())

    # On time.monotonic() (uvloop's loop.time() counts whole milliseconds).
    start = time.monotonic() + (max(0.0, args.start_unix - time.time()) if args.start_unix else 0.0)
    end = start + args.duration_s

    def at(when: float, callback: Any, *cb_args: Any) -> None:
        loop.call_later(max(0.0, when - time.monotonic()), callback, *cb_args)

    if args.rate is None:
        for i in range(args.index, args.streams, args.procs):
            at(start + args.ramp_up_s * i / args.streams, connect, True)
    else:
        gap_s = 1.0 / args.rate

        def arrive(i: int) -> None:
            sched_lags.append(int(max(0.0, time.monotonic() - (start + i * gap_s)) * 1e9))
            nxt = i + args.procs
            if start + nxt * gap_s < end:
                at(start + nxt * gap_s, arrive, nxt)
            if client.idle:
                client.idle.pop().send()
            else:
                connect(True)

        at(start + args.index * gap_s, arrive, args.index)
    at(start, lambda: loop.call_later(LAG_PROBE_S, probe, time.perf_counter()))
    await asyncio.sleep(max(0.0, end - time.monotonic()))
    client.running = False
    for stream in client.streams:
        if stream.transport is not None:
            stream.transport.close()
    await asyncio.sleep(0.05)
    return {
        "requests_ended": client.ended,
        "reads": client.reads,
        "bytes": client.bytes,
        "connections": len(client.streams),
        "ttft_ms": percentiles_ms(client.ttft_ns),
        "read_gap_ms": percentiles_ms(client.gap_ns),
        "loop_lag_ms": percentiles_ms(lags),
        "sched_lag_ms": percentiles_ms(sched_lags) if args.rate is not None else None,
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url", help="the target's base URL (http://HOST:PORT)")
    load = parser.add_mutually_exclusive_group(required=True)
    load.add_argument("--streams", type=int, help="closed loop: concurrent streams (all procs)")
    load.add_argument("--rate", type=float, help="open loop: arrivals per second (all procs)")
    parser.add_argument("--tokens", type=int, default=32, help="max_tokens of each request")
    parser.add_argument("--ramp-up-s", type=float, default=1.0, help="closed loop: open over")
    parser.add_argument("--duration-s", type=float, default=10.0, help="load time (s)")
    parser.add_argument("--procs", type=int, default=1, help="processes making the load")
    parser.add_argument("--index", type=int, default=0, help="this process's index")
    parser.add_argument("--start-unix", type=float, default=0.0, help="start at this time")
    args = parser.parse_args(argv)
    if not 0 <= args.index < args.procs:
        parser.error("--index must be in [0, --procs)")
    return args


def main() -> None:
    """Run the load; print its JSON line."""
    from paced_target import raise_nofile

    raise_nofile()
    result = uvloop.run(run(parse_args()))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
