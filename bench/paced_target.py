"""A paced SSE chat target that measures itself: the reference for timing benchmarks.

``POST /v1/chat/completions`` (streamed) is answered on absolute deadlines from the request's
arrival (the handler's first line, before the body is read): the response headers at once, the
first content token at ``arrival + ttft``, token ``i`` at ``arrival + ttft + i * itl`` (each a
sleep until its deadline on the event loop's monotonic clock, never cumulative sleeps), then a
finish chunk, a usage chunk and ``[DONE]``; ``--tokens`` tokens, fewer if the request's
``max_tokens`` asks for fewer. Non-streamed requests get one JSON answer after the whole stream's
time.

Every request is recorded with ``time.time_ns()`` taken on arrival and right after each
``await response.write(...)`` of a content token: ``arrival_ns``, ``token_ns`` (so the server's
TTFT is ``token_ns[0] - arrival_ns`` and its ITL the gaps of ``token_ns``), ``end_ns``, whether
the stream completed, the ``X-Request-Id`` header and the system prompt (a tag: benchmarks give
each client its own system prompt, which pairs client and server records).

- ``GET /stats``: ``{"open", "peak_open", "started", "finished", "incomplete"}``: streams open
  now, etc. (cheap: poll it).
- ``GET /records``: every record so far (JSON list); ``POST /reset`` forgets them (and the peak).

One process, aiohttp on uvloop. It prints ``paced-target listening on URL`` when ready (``--port
0``: a free port). Use :func:`paced_target` to run it as a child process from a benchmark.

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
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

LISTENING = "paced-target listening on "
MODEL = "mock-model"


# -- the server ---------------------------------------------------------------------------------


def chunk(delta: dict[str, Any] | None, finish: str | None = None, **extra: Any) -> bytes:
    """One SSE event of a chat-completion stream (compact JSON)."""
    body: dict[str, Any] = {
        "id": "chatcmpl-paced",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": MODEL,
        "choices": [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}],
        **extra,
    }
    return b"data: " + json.dumps(body, separators=(",", ":")).encode() + b"\n\n"


class PacedServer:
    """The handlers and the records of one target."""

    def __init__(self, ttft_s: float, itl_s: float, tokens: int, keep_token_times: bool) -> None:
        self.ttft_s, self.itl_s, self.tokens = ttft_s, itl_s, tokens
        self.keep_token_times = keep_token_times
        self.records: list[dict[str, Any]] = []
        self.open = self.peak_open = self.started = self.finished = self.incomplete = 0
        # Token chunks are the same for every request: build them once.
        self.token_chunks = [chunk({"content": f" tok{i}"}) for i in range(tokens)]
        self.first_chunk = chunk({"role": "assistant", "content": " tok0"})

    async def chat(self, request: web.Request) -> web.StreamResponse:
        arrival_ns = time.time_ns()
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        self.started += 1
        self.open += 1
        self.peak_open = max(self.peak_open, self.open)
        record: dict[str, Any] = {
            "arrival_ns": arrival_ns,
            "request_id": request.headers.get("X-Request-Id"),
            "system": None,
            "token_ns": [],
            "tokens": 0,
            "end_ns": None,
            "complete": False,
        }
        self.records.append(record)
        try:
            try:
                body = json.loads(await request.read() or b"{}")
            except ValueError:
                body = {}
            messages = body.get("messages") or []
            system = [m.get("content") for m in messages if m.get("role") == "system"]
            record["system"] = system[0] if system else None
            n = self.tokens
            if isinstance(body.get("max_tokens"), int) and body["max_tokens"] >= 1:
                n = min(n, body["max_tokens"])
            if not body.get("stream"):
                await asyncio.sleep(max(0.0, t0 + self.ttft_s + (n - 1) * self.itl_s - loop.time()))
                record["tokens"], record["end_ns"], record["complete"] = n, time.time_ns(), True
                text = "".join(f" tok{i}" for i in range(n))
                usage = {"prompt_tokens": 8, "completion_tokens": n, "total_tokens": n + 8}
                return web.json_response(
                    {
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
                )
            response = web.StreamResponse(
                headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
            )
            await response.prepare(request)
            token_ns: list[int] = record["token_ns"]
            for i in range(n):
                delay = t0 + self.ttft_s + i * self.itl_s - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                await response.write(self.first_chunk if i == 0 else self.token_chunks[i])
                now = time.time_ns()
                if self.keep_token_times or i == 0:
                    token_ns.append(now)
                record["tokens"] = i + 1
            await response.write(chunk({}, "length"))
            usage = {"prompt_tokens": 8, "completion_tokens": n, "total_tokens": n + 8}
            await response.write(chunk(None, usage=usage))
            await response.write(b"data: [DONE]\n\n")
            await response.write_eof()
            record["end_ns"], record["complete"] = time.time_ns(), True
            return response
        finally:
            self.open -= 1
            if record["complete"]:
                self.finished += 1
            else:
                self.incomplete += 1
                record["end_ns"] = time.time_ns()

    async def stats(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(
            {
                "open": self.open,
                "peak_open": self.peak_open,
                "started": self.started,
                "finished": self.finished,
                "incomplete": self.incomplete,
                "first_arrival_ns": self.records[0]["arrival_ns"] if self.records else None,
            }
        )

    async def get_records(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(self.records)

    async def health(self, request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def reset(self, request: web.Request) -> web.StreamResponse:
        self.records = []
        self.peak_open = self.open
        self.started = self.finished = self.incomplete = 0
        return web.json_response({"ok": True})


async def serve(args: argparse.Namespace) -> None:
    """Run the server until SIGTERM or SIGINT."""
    server = PacedServer(args.ttft_ms / 1000, args.itl_ms / 1000, args.tokens, args.token_times)
    app = web.Application(client_max_size=16 * 1024 * 1024)
    app.router.add_post("/v1/chat/completions", server.chat)
    app.router.add_get("/stats", server.stats)
    app.router.add_get("/records", server.get_records)
    app.router.add_post("/reset", server.reset)
    app.router.add_get("/health", server.health)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, args.host, args.port, backlog=8192, reuse_address=True)
    await site.start()
    port = runner.addresses[0][1]
    print(f"{LISTENING}http://{args.host}:{port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()


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
    stderr_path: Path | None = None,
    timeout_s: float = 30.0,
) -> Iterator[PacedTarget]:
    """Start this file as a child process on a free loopback port; stop it on exit."""
    argv = [sys.executable, str(Path(__file__).resolve()), "--port", "0"]
    argv += [f"--ttft-ms={ttft_ms}", f"--itl-ms={itl_ms}", f"--tokens={tokens}"]
    if not token_times:
        argv.append("--no-token-times")
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
