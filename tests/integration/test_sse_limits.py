"""SSE streams over real HTTP: the answer does not depend on how the target's writes cut the
stream, and an endless line fails the request as ``protocol`` without holding up the loop.

The target is the scripted loopback server; the client paths are the built-in ``chat`` (the
fast path) and ``ctx.chat`` of user-defined interactions (the plain rules and the collector).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from scripted_server import DONE, Script, ScriptedServer

from clientswarm.clock import Clock
from clientswarm.config.interactions import ChatInteraction
from clientswarm.config.models import TargetConfig
from clientswarm.interactions import build_interaction
from clientswarm.interactions.base import ClientContext
from clientswarm.interactions.http1 import Http1Client
from clientswarm.interactions.user import Context, StepFailed
from clientswarm.metrics.sample import ERROR_PROTOCOL, ERROR_STREAM, Sample

CHAT = "/v1/chat/completions"

pytestmark = pytest.mark.timeout(30)


def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> bytes:
    choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
    body = {"id": "c", "object": "chat.completion.chunk", "choices": [choice], **extra}
    return b"data: " + json.dumps(body, separators=(",", ":")).encode() + b"\n\n"


E = chunk({"content": "a"})

# (events, status, error kind, output tokens): the cases, each one event per item.
CASES = {
    "keep-alive-data": ([E, b"data: keep-alive\n\n", E, DONE], "error", ERROR_PROTOCOL, 1),
    "done-mid-body": ([E, DONE, E, E, DONE], "ok", None, 1),
    "done-trailing-space": ([E, E, b"data: [DONE] \n\n"], "ok", None, 2),
    "error-beside-choices": (
        [E, chunk({"content": "b"}, error={"message": "KV cache full"}), E, DONE],
        "error",
        ERROR_STREAM,
        1,
    ),
    "error-null": ([E, chunk({"content": "b"}, "stop", error=None), DONE], "ok", None, 2),
    "spaced-content": (
        [E, chunk({}).replace(b'"delta":{}', b'"delta":{"content": "x"}'), E, DONE],
        "ok",
        None,
        3,
    ),
}


@pytest.fixture
async def server() -> AsyncIterator[ScriptedServer]:
    scripted = ScriptedServer()
    await scripted.start()
    yield scripted
    await scripted.close()


@pytest.fixture
async def client(server: ScriptedServer) -> AsyncIterator[ClientContext]:
    clock = Clock()
    samples: list[Sample] = []
    async with aiohttp.ClientSession() as session:
        yield ClientContext(
            session=session,
            target=TargetConfig(url=server.url, model="m", timeout_s=5),
            headers={},
            group="g",
            client=0,
            worker=0,
            rng=random.Random(0),
            clock=clock,
            emit=samples.append,
            http1=Http1Client(clock.now_ns),
        )


async def built_in_chat(ctx: ClientContext) -> Sample:
    emitted: list[Sample] = []
    ctx.emit = emitted.append
    chat = build_interaction(ChatInteraction(prompts=["hi"]), seed=0)
    await chat.perform(ctx, ctx.clock.now_ns())
    return emitted[-1]


async def ctx_chat(ctx: ClientContext) -> Sample:
    emitted: list[Sample] = []
    ctx.emit = emitted.append
    with contextlib.suppress(StepFailed):  # the failed step is in its sample
        await Context(ctx).chat([{"role": "user", "content": "hi"}])
    return emitted[-1]


def key(sample: Sample) -> tuple[Any, ...]:
    return (sample.status, sample.error_kind, sample.output_tokens, sample.first_token_ns is None)


@pytest.mark.parametrize("name", sorted(CASES))
async def test_one_write_or_one_write_per_event_gives_the_same_sample(
    name: str, server: ScriptedServer, client: ClientContext
) -> None:
    events, status, kind, tokens = CASES[name]
    expected = (status, kind, tokens, False)
    writes = {
        "one write": [(0.0, b"".join(events))],
        "one write per event": [(0.005, event) for event in events],
    }
    for how, chunks in writes.items():
        server.script(CHAT, Script(chunks))
        for path in (built_in_chat, ctx_chat):
            sample = await path(client)
            assert key(sample) == expected, (how, path.__name__, sample.error_message)


async def test_an_endless_line_fails_as_protocol_at_the_bound_without_waiting_for_more(
    server: ScriptedServer, client: ClientContext
) -> None:
    # 4 MiB without a line feed, then nothing for longer than the request's timeout: the
    # request fails once the line passes target.max_event_bytes (1 MiB), not at the timeout.
    line = [(0.0, E + b"data: ")] + [(0.0, b"x" * 65536)] * 64 + [(20.0, b"\n\n")]
    server.script(CHAT, Script(line))
    for path in (built_in_chat, ctx_chat):
        started = time.monotonic()
        sample = await path(client)
        assert key(sample) == ("error", ERROR_PROTOCOL, 1, False)
        assert "target.max_event_bytes=1048576" in (sample.error_message or "")
        assert time.monotonic() - started < 3.0


async def test_a_raised_bound_lets_a_long_event_through_while_the_loop_keeps_ticking(
    server: ScriptedServer, client: ClientContext
) -> None:
    # A 3 MiB token (past the default bound of 1 MiB) under a bound of 4 MiB, in 64 KiB writes,
    # while another task of the same loop keeps its 5 ms ticks.
    bound = 4 << 20
    client.target = TargetConfig(url=server.url, model="m", timeout_s=10, max_event_bytes=bound)
    long_token = chunk({"content": "x" * (3 << 20)})
    pieces = [long_token[i : i + 65536] for i in range(0, len(long_token), 65536)]
    server.script(CHAT, Script([(0.0, E)] + [(0.0, p) for p in pieces] + [(0.0, DONE)]))
    gaps: list[float] = []

    async def tick() -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(0.005)
            now = time.monotonic()
            gaps.append(now - last)
            last = now

    ticker = asyncio.create_task(tick())
    try:
        sample = await built_in_chat(client)
    finally:
        ticker.cancel()
    assert key(sample) == ("ok", None, 2, False)
    assert max(gaps, default=0.0) < 0.5
