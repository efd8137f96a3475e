"""A real aiohttp server on a loopback port that replays scripted answers with set delays.

Each path answers with its :class:`Script`: a status, a content type and byte chunks, each
written after its delay; optionally the connection is dropped after the chunks. Every request
is recorded (method, path, headers, JSON body) so tests can check what the client sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web


@dataclass
class Script:
    """How the server answers one path."""

    chunks: list[tuple[float, bytes]] = field(default_factory=list)  # (delay_s, bytes)
    status: int = 200
    content_type: str = "text/event-stream"
    drop: bool = False  # abort the connection after the chunks (a crash mid-answer)


@dataclass
class Recorded:
    """One request the server received."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any
    peer: Any  # (host, port) of the client's connection: equal ports mean a reused connection
    received_ns: int = 0  # time.time_ns() when the whole request had arrived


class ScriptedServer:
    """Start with ``await server.start()``; set answers with :meth:`script`."""

    def __init__(self) -> None:
        self.scripts: dict[str, Script] = {}
        self.requests: list[Recorded] = []
        self._runner: web.AppRunner | None = None
        self.url = ""

    def script(self, path: str, script: Script) -> None:
        """Answer requests to ``path`` with ``script``."""
        self.scripts[path] = script

    async def start(self) -> str:
        """Listen on a free 127.0.0.1 port; return the base URL."""
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=0.5)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        site = web.SockSite(self._runner, sock)
        await site.start()
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        return self.url

    async def close(self) -> None:
        """Stop the server."""
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        try:
            body = orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            body = raw  # not JSON (a multipart form): its bytes
        peer = request.transport.get_extra_info("peername") if request.transport else None
        self.requests.append(
            Recorded(
                request.method, request.path, dict(request.headers), body, peer, time.time_ns()
            )
        )
        script = self.scripts.get(request.path)
        if script is None:
            return web.Response(status=404, text=f"no script for {request.path}")
        response = web.StreamResponse(status=script.status)
        response.content_type = script.content_type
        await response.prepare(request)
        for delay_s, data in script.chunks:
            if delay_s:
                await asyncio.sleep(delay_s)
            await response.write(data)
        if script.drop:
            assert request.transport is not None
            request.transport.abort()
            return response
        with contextlib.suppress(ConnectionResetError):
            await response.write_eof()
        return response


def sse(obj: Any) -> bytes:
    """One SSE event carrying ``obj`` as JSON (or a raw string as is)."""
    data = obj if isinstance(obj, str) else orjson.dumps(obj).decode()
    return f"data: {data}\n\n".encode()


def chat_chunk(
    content: str | None = None, *, role: str | None = None, finish: str | None = None
) -> bytes:
    """A vLLM-style ``chat.completion.chunk`` event."""
    delta: dict[str, Any] = {}
    if role is not None:
        delta["role"] = role
    if content is not None:
        delta["content"] = content
    choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
    return sse(
        {
            "id": "chatcmpl-1",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": "mock-model",
            "choices": [choice],
            "usage": None,
        }
    )


def completion_chunk(text: str, *, finish: str | None = None) -> bytes:
    """A vLLM-style ``text_completion`` stream event."""
    choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": finish}
    return sse({"id": "cmpl-1", "object": "text_completion", "created": 1, "choices": [choice]})


def usage_chunk(prompt_tokens: int, completion_tokens: int) -> bytes:
    """The final usage event that ``stream_options.include_usage`` asks for."""
    usage = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }
    return sse(
        {"id": "chatcmpl-1", "object": "chat.completion.chunk", "choices": [], "usage": usage}
    )


DONE = b"data: [DONE]\n\n"


def chat_stream(
    pieces: list[str],
    *,
    first_delay_s: float = 0.03,
    gap_s: float = 0.02,
    usage: tuple[int, int] | None = None,
    done: bool = True,
) -> list[tuple[float, bytes]]:
    """A vLLM chat stream: role chunk, one chunk per piece ``gap_s`` apart, finish, usage, DONE."""
    chunks = [(first_delay_s, chat_chunk("", role="assistant"))]
    chunks += [(first_delay_s if i == 0 else gap_s, chat_chunk(p)) for i, p in enumerate(pieces)]
    chunks.append((0.0, chat_chunk("", finish="stop")))
    if usage is not None:
        chunks.append((0.0, usage_chunk(*usage)))
    if done:
        chunks.append((0.0, DONE))
    return chunks
