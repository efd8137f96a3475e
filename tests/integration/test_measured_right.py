"""Measured right, against the simulator and tiny targets on loopback: streamed tool calls
count as output, HTTP error samples say what was asked, sends never go out early."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import uvloop
from scripted_server import Script, ScriptedServer

from clientswarm.clock import Clock
from clientswarm.config.interactions import ChatInteraction, HelloInteraction, HttpInteraction
from clientswarm.config.models import SLOConfig, TargetConfig
from clientswarm.config.paths import FileScope
from clientswarm.interactions import build_interaction
from clientswarm.interactions.base import ClientContext
from clientswarm.interactions.http1 import Http1Client
from clientswarm.interactions.user import Context
from clientswarm.metrics.sample import Sample
from clientswarm.metrics.stats import summarize
from clientswarm.mock import MockServer, MockSettings, start_mock_server
from clientswarm.worker.timing import sleep_until

pytestmark = pytest.mark.timeout(20)

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
            "required": ["city", "days"],
        },
    },
}


@pytest.fixture
async def mock() -> AsyncIterator[MockServer]:
    server = await start_mock_server(MockSettings(ttft_ms=20.0, itl_ms=2.0), "127.0.0.1", 0)
    yield server
    await server.close()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client_session:
        yield client_session


def context(session: aiohttp.ClientSession, url: str, samples: list[Sample]) -> ClientContext:
    clock = Clock()
    return ClientContext(
        session=session,
        target=TargetConfig.model_validate({"url": url, "model": "mock-model"}),
        headers={"Authorization": "Bearer secret-key"},
        group="g",
        client=0,
        worker=0,
        rng=random.Random(0),
        clock=clock,
        emit=samples.append,
        http1=Http1Client(clock.now_ns),
    )


def build(config: Any) -> Any:
    return build_interaction(config, seed=0, files=FileScope.anywhere("."))


# --- streamed tool calls ---------------------------------------------------------------------


async def test_streamed_tool_calls_count_as_output_in_chat_and_ctx_chat(
    mock: MockServer, session: aiohttp.ClientSession
) -> None:
    samples: list[Sample] = []
    ctx = context(session, mock.url, samples)
    builtin = build(
        ChatInteraction(
            prompts=["weather?"], max_tokens=64, extra_body={"tools": [WEATHER]}, stream=True
        )
    )
    await builtin.perform(ctx, ctx.clock.now_ns())
    result = await Context(ctx).chat([{"role": "user", "content": "weather?"}], tools=[WEATHER])
    assert result.tool_calls and result.finish_reason == "tool_calls"
    chat, step = samples
    for sample in (chat, step):
        assert sample.ok, sample.error_message
        assert sample.first_token_ns is not None, sample  # TTFT: the first piece of arguments
        assert sample.output_tokens is not None and sample.output_tokens > 2
        assert len(sample.itl_s) == sample.output_tokens - 1
        assert sample.tpot_s is not None
    assert (chat.output_tokens, len(chat.itl_s)) == (step.output_tokens, len(step.itl_s))
    # Goodput under a TTFT objective: the tool-call answer meets it.
    summary = summarize([chat], cluster={"id": "x"}, slo=SLOConfig(ttft_s=5.0))
    assert summary["total"]["goodput"] == 1
    assert summary["total"]["ttft_s"]["count"] == 1


# --- HTTP error messages ---------------------------------------------------------------------


@pytest.fixture
async def scripted() -> AsyncIterator[ScriptedServer]:
    server = ScriptedServer()
    await server.start()
    yield server
    await server.close()


async def test_http_error_samples_say_method_path_status_and_body(
    scripted: ScriptedServer, session: aiohttp.ClientSession
) -> None:
    not_found = Script(
        [(0.0, b'{"detail":"Not Found"}')], status=404, content_type="application/json"
    )
    scripted.script("/v1/v1/chat/completions", not_found)
    scripted.script("/gone", Script([(0.0, b"no\n  such\r\nroute " + b"x" * 400)], status=410))
    scripted.script("/hello", Script([], status=503))
    samples: list[Sample] = []
    ctx = context(session, scripted.url + "/v1", samples)
    await build(ChatInteraction(prompts=["hi"], stream=True)).perform(ctx, ctx.clock.now_ns())
    ctx = context(session, scripted.url, samples)
    http = build(HttpInteraction(method="DELETE", path="/gone?token=secret-token"))
    await http.perform(ctx, ctx.clock.now_ns())
    await build(HelloInteraction(path="/hello")).perform(ctx, ctx.clock.now_ns())
    with pytest.raises(Exception, match=r"^HTTP 404 GET /v1/v1/chat/completions: ") as raised:
        await Context(context(session, scripted.url + "/v1", samples)).http.get(
            "/v1/chat/completions?key=secret-key"
        )
    chat, gone, hello = (s.error_message or "" for s in samples)
    assert chat == 'HTTP 404 POST /v1/v1/chat/completions: {"detail":"Not Found"}'
    assert gone.startswith("HTTP 410 DELETE /gone: no such route xxx")
    assert gone.endswith("…") and len(gone) < 250 and "\n" not in gone
    assert hello.startswith("HTTP 503 GET /hello: ")
    for message in (chat, gone, hello, str(raised.value)):
        assert "secret" not in message and "Bearer" not in message


# --- never early -----------------------------------------------------------------------------


def test_sleep_until_never_wakes_before_the_clock_says_so() -> None:
    """uvloop's timers have millisecond resolution and fire up to 1 ms early."""

    async def main() -> list[int]:
        clock = Clock()
        early = []
        for i in range(120):
            at_ns = clock.now_ns() + 300_000 + (i % 12) * 100_000  # 0.3 to 1.4 ms ahead
            await sleep_until(clock, at_ns)
            early.append(at_ns - clock.now_ns())
        return early

    assert max(uvloop.run(main())) < 0
    assert max(asyncio.run(main())) < 0
