"""The mock target as a real server on a loopback port, talked to with a real aiohttp client."""

from __future__ import annotations

import asyncio
import base64
import re
import signal
import statistics
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import numpy as np
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from clientswarm.mock import MockServer, MockSettings, start_mock_server

pytestmark = pytest.mark.timeout(60)

StartServer = Callable[..., Awaitable[MockServer]]
FAST = {"ttft_ms": 1.0, "itl_ms": 0.5}


@pytest.fixture
async def start() -> AsyncIterator[StartServer]:
    """Start mock servers on free loopback ports; all are closed after the test."""
    servers: list[MockServer] = []

    async def _start(**options: Any) -> MockServer:
        server = await start_mock_server(MockSettings(**options), "127.0.0.1", 0)
        servers.append(server)
        return server

    yield _start
    for server in servers:
        await server.close()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as client:
        yield client


def _path(endpoint: str) -> str:
    return "/v1/chat/completions" if endpoint == "chat" else "/v1/completions"


def _body(endpoint: str, stream: bool, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"model": "mock-model", "stream": stream, **extra}
    if endpoint == "chat":
        body["messages"] = [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Tell me a story."},
        ]
    else:
        body["prompt"] = "Once upon a time"
    return body


async def _events(response: aiohttp.ClientResponse) -> list[tuple[float, str]]:
    """``(perf_counter at receipt, payload)`` of each ``data:`` event of a stream."""
    events: list[tuple[float, str]] = []
    async for line in response.content:
        if line.startswith(b"data: "):
            events.append((time.perf_counter(), line[6:].rstrip(b"\r\n").decode()))
    return events


def _content(endpoint: str, chunk: dict[str, Any]) -> str:
    choice = chunk["choices"][0]
    return str(choice["delta"].get("content", "")) if endpoint == "chat" else str(choice["text"])


async def _stats(session: aiohttp.ClientSession, server: MockServer) -> dict[str, Any]:
    async with session.get(server.url + "/mock/stats") as response:
        stats: dict[str, Any] = await response.json()
        return stats


# --- wire format ------------------------------------------------------------------------------


@pytest.mark.parametrize("endpoint", ["chat", "completion"])
async def test_stream_format_with_usage(
    start: StartServer, session: aiohttp.ClientSession, endpoint: str
) -> None:
    server = await start(**FAST)
    body = _body(endpoint, True, max_tokens=5, stream_options={"include_usage": True})
    async with session.post(server.url + _path(endpoint), json=body) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/event-stream")
        events = [payload for _, payload in await _events(response)]

    assert events[-1] == "[DONE]"
    chunks = [orjson.loads(payload) for payload in events[:-1]]
    expected_object = "chat.completion.chunk" if endpoint == "chat" else "text_completion"
    assert {chunk["object"] for chunk in chunks} == {expected_object}
    assert len({chunk["id"] for chunk in chunks}) == 1
    if endpoint == "chat":
        role = chunks.pop(0)
        assert role["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    usage_chunk = chunks.pop()
    assert usage_chunk["choices"] == []
    prompt_tokens = 6 if endpoint == "chat" else 4  # whitespace-separated words
    assert usage_chunk["usage"] == {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": 5,
        "total_tokens": prompt_tokens + 5,
    }
    assert [_content(endpoint, chunk) for chunk in chunks] == [f"tok{i} " for i in range(5)]
    reasons = [chunk["choices"][0]["finish_reason"] for chunk in chunks]
    assert reasons == [None, None, None, None, "length"]


@pytest.mark.parametrize("endpoint", ["chat", "completion"])
async def test_stream_without_include_usage_has_no_usage_chunk(
    start: StartServer, session: aiohttp.ClientSession, endpoint: str
) -> None:
    server = await start(**FAST, output_tokens=3)
    async with session.post(server.url + _path(endpoint), json=_body(endpoint, True)) as response:
        events = [payload for _, payload in await _events(response)]
    assert events[-1] == "[DONE]"
    chunks = [orjson.loads(payload) for payload in events[:-1]]
    assert all(chunk["choices"] and "usage" not in chunk for chunk in chunks)
    tokens = [c for c in chunks if _content(endpoint, c)]
    assert len(tokens) == 3  # no max_tokens: --output-tokens
    assert tokens[-1]["choices"][0]["finish_reason"] == "stop"


async def test_chat_honours_max_completion_tokens(
    start: StartServer, session: aiohttp.ClientSession
) -> None:
    server = await start(**FAST)
    body = _body("chat", False, max_completion_tokens=4, max_tokens=9)
    async with session.post(server.url + _path("chat"), json=body) as response:
        answer = await response.json()
    assert answer["usage"]["completion_tokens"] == 4
    assert answer["choices"][0]["message"]["content"] == "tok0 tok1 tok2 tok3 "


@pytest.mark.parametrize("endpoint", ["chat", "completion"])
async def test_tokens_per_chunk_packs_tokens(
    start: StartServer, session: aiohttp.ClientSession, endpoint: str
) -> None:
    server = await start(**FAST, tokens_per_chunk=4)
    body = _body(endpoint, True, max_tokens=10)
    async with session.post(server.url + _path(endpoint), json=body) as response:
        events = [payload for _, payload in await _events(response)]
    texts = [_content(endpoint, orjson.loads(p)) for p in events[:-1]]
    texts = [text for text in texts if text]
    assert texts == ["tok0 tok1 tok2 tok3 ", "tok4 tok5 tok6 tok7 ", "tok8 tok9 "]


@pytest.mark.parametrize("endpoint", ["chat", "completion"])
async def test_non_stream_answer(
    start: StartServer, session: aiohttp.ClientSession, endpoint: str
) -> None:
    server = await start(**FAST, model="served-name")
    body = _body(endpoint, False, max_tokens=3)
    body.pop("model")
    async with session.post(server.url + _path(endpoint), json=body) as response:
        assert response.status == 200
        answer = await response.json()
    assert answer["model"] == "served-name"
    choice = answer["choices"][0]
    if endpoint == "chat":
        assert answer["object"] == "chat.completion"
        assert choice["message"] == {"role": "assistant", "content": "tok0 tok1 tok2 "}
    else:
        assert answer["object"] == "text_completion"
        assert choice["text"] == "tok0 tok1 tok2 "
    assert choice["finish_reason"] == "length"
    assert answer["usage"]["completion_tokens"] == 3


async def test_bad_request_is_a_vllm_error(
    start: StartServer, session: aiohttp.ClientSession
) -> None:
    server = await start(**FAST)
    async with session.post(server.url + "/v1/completions", data=b"{not json") as response:
        assert response.status == 400
        assert (await response.json())["type"] == "BadRequestError"
    body = _body("completion", False, max_tokens=0)
    async with session.post(server.url + "/v1/completions", json=body) as response:
        error = await response.json()
    assert response.status == 400
    assert error["object"] == "error" and error["code"] == 400 and "max_tokens" in error["message"]


# --- tool calls -------------------------------------------------------------------------------

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "days": {"type": "integer"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                "note": {"type": "string"},
            },
            "required": ["city", "days", "unit"],
        },
    },
}
SEARCH = {"type": "function", "function": {"name": "search", "parameters": {"type": "object"}}}
WEATHER_ARGUMENTS = '{"city":"x","days":1,"unit":"celsius"}'
WEATHER_TOKENS = 13  # { "city" : "x" , "days" : 1 , "unit" : "celsius" }


def _tool_body(stream: bool, **extra: Any) -> dict[str, Any]:
    body = _body("chat", stream, **extra)
    body.setdefault("tools", [WEATHER, SEARCH])
    return body


async def _post_chat(
    session: aiohttp.ClientSession, server: MockServer, body: dict[str, Any]
) -> dict[str, Any]:
    async with session.post(server.url + _path("chat"), json=body) as response:
        assert response.status == 200, await response.text()
        answer: dict[str, Any] = await response.json()
        return answer


async def test_tool_call_answer(start: StartServer, session: aiohttp.ClientSession) -> None:
    server = await start(**FAST)
    answer = await _post_chat(session, server, _tool_body(False))
    assert answer["object"] == "chat.completion"
    (choice,) = answer["choices"]
    assert choice["finish_reason"] == "tool_calls"
    message = choice["message"]
    assert message["role"] == "assistant" and message["content"] is None
    (call,) = message["tool_calls"]
    assert set(call) == {"id", "type", "function"}
    assert re.fullmatch(r"call_[0-9a-f]{8,}", call["id"])
    assert call["type"] == "function"
    assert call["function"] == {"name": "get_weather", "arguments": WEATHER_ARGUMENTS}
    assert orjson.loads(call["function"]["arguments"]) == {
        "city": "x",
        "days": 1,
        "unit": "celsius",
    }
    assert answer["usage"] == {
        "prompt_tokens": 6,
        "completion_tokens": WEATHER_TOKENS,
        "total_tokens": 6 + WEATHER_TOKENS,
    }
    again = await _post_chat(session, server, _tool_body(False))
    assert again["choices"][0]["message"]["tool_calls"][0]["id"] != call["id"]
    stats = await _stats(session, server)
    assert stats["completion_tokens"] == 2 * WEATHER_TOKENS and stats["completed"] == 2
    async with session.get(server.url + "/metrics") as response:
        text = await response.text()
    assert (
        'vllm:request_success_total{engine="0",finished_reason="stop",model_name="mock-model"} 2.0'
        in text  # the engine stopped; tool_calls is the API's finish reason
    )


async def test_streamed_tool_call_is_paced_like_tokens(
    start: StartServer, session: aiohttp.ClientSession
) -> None:
    server = await start(ttft_ms=60.0, itl_ms=10.0)
    body = _tool_body(True, stream_options={"include_usage": True})
    sent = time.perf_counter()
    async with session.post(server.url + _path("chat"), json=body) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/event-stream")
        events = await _events(response)
    assert events[-1][1] == "[DONE]"
    chunks = [(at, orjson.loads(payload)) for at, payload in events[:-1]]
    assert {chunk["object"] for _, chunk in chunks} == {"chat.completion.chunk"}
    assert len({chunk["id"] for _, chunk in chunks}) == 1
    role = chunks.pop(0)[1]
    assert role["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    usage_chunk = chunks.pop()[1]
    assert usage_chunk["choices"] == []
    assert usage_chunk["usage"]["completion_tokens"] == WEATHER_TOKENS
    final = chunks.pop()[1]["choices"][0]
    assert final["delta"] == {} and final["finish_reason"] == "tool_calls"

    calls = [chunk["choices"][0] for _, chunk in chunks]
    assert all(choice["finish_reason"] is None for choice in calls)
    deltas = [choice["delta"]["tool_calls"] for choice in calls]
    assert all(len(delta) == 1 and delta[0]["index"] == 0 for delta in deltas)
    first = deltas[0][0]
    assert re.fullmatch(r"call_[0-9a-f]{8,}", first["id"]) and first["type"] == "function"
    assert first["function"] == {"name": "get_weather", "arguments": ""}
    pieces = [delta[0]["function"]["arguments"] for delta in deltas[1:]]
    assert all(set(delta[0]) == {"index", "function"} for delta in deltas[1:])
    assert all(set(delta[0]["function"]) == {"arguments"} for delta in deltas[1:])
    assert len(pieces) == WEATHER_TOKENS and all(pieces)
    assert "".join(pieces) == WEATHER_ARGUMENTS
    # Lateness only ever delays a chunk: the pacing shows as lower bounds.
    arrivals = [at for at, _ in chunks]
    assert arrivals[0] - sent >= 0.055  # the call's name comes with the first token, after TTFT
    assert arrivals[-1] - arrivals[1] >= 0.9 * (WEATHER_TOKENS - 1) * 0.010


async def test_streamed_tool_call_packs_pieces_and_honours_max_tokens(
    start: StartServer, session: aiohttp.ClientSession
) -> None:
    server = await start(**FAST, tokens_per_chunk=4)
    body = _tool_body(True, max_tokens=6, stream_options={"include_usage": True})
    async with session.post(server.url + _path("chat"), json=body) as response:
        events = [orjson.loads(p) for _, p in await _events(response) if p != "[DONE]"]
    deltas = [e["choices"][0]["delta"].get("tool_calls") for e in events if e["choices"]]
    pieces = [d[0]["function"]["arguments"] for d in deltas if d]
    assert pieces == ["", '{"city":"x"', ',"days"']  # the name chunk, then 4 + 2 tokens
    assert events[-2]["choices"][0]["finish_reason"] == "length"
    assert events[-1]["usage"]["completion_tokens"] == 6
    answer = await _post_chat(session, server, _tool_body(False, max_tokens=3))
    choice = answer["choices"][0]
    assert choice["finish_reason"] == "length"
    assert choice["message"]["tool_calls"][0]["function"]["arguments"] == '{"city":'


async def test_tool_choice_names_the_tool(
    start: StartServer, session: aiohttp.ClientSession
) -> None:
    server = await start(**FAST)
    choice = {"type": "function", "function": {"name": "search"}}
    answer = await _post_chat(session, server, _tool_body(False, tool_choice=choice))
    (call,) = answer["choices"][0]["message"]["tool_calls"]
    assert call["function"] == {"name": "search", "arguments": "{}"}
    assert answer["usage"]["completion_tokens"] == 2
    for auto in ("auto", "required"):
        answer = await _post_chat(session, server, _tool_body(False, tool_choice=auto))
        assert answer["choices"][0]["message"]["tool_calls"][0]["function"]["name"] == (
            "get_weather"
        )


@pytest.mark.parametrize("stream", [True, False])
async def test_tool_choice_none_and_no_tools_get_text(
    start: StartServer, session: aiohttp.ClientSession, stream: bool
) -> None:
    server = await start(**FAST)
    for body in (
        _tool_body(stream, tool_choice="none", max_tokens=3),
        _body("chat", stream, tools=[], max_tokens=3),
    ):
        async with session.post(server.url + _path("chat"), json=body) as response:
            assert response.status == 200
            if stream:
                chunks = [orjson.loads(p) for _, p in await _events(response) if p != "[DONE]"]
                text = "".join(_content("chat", c) for c in chunks)
                reason = chunks[-1]["choices"][0]["finish_reason"]
                assert not any("tool_calls" in c["choices"][0]["delta"] for c in chunks)
            else:
                choice = (await response.json())["choices"][0]
                assert "tool_calls" not in choice["message"]
                text, reason = choice["message"]["content"], choice["finish_reason"]
        assert (text, reason) == ("tok0 tok1 tok2 ", "length")


@pytest.mark.parametrize("stream", [True, False])
async def test_agent_loop_ends_with_text_after_the_tool_result(
    start: StartServer, session: aiohttp.ClientSession, stream: bool
) -> None:
    server = await start(**FAST, output_tokens=4)
    messages: list[dict[str, Any]] = [{"role": "user", "content": "Weather in Paris?"}]
    body: dict[str, Any] = {"model": "mock-model", "messages": messages, "tools": [WEATHER]}
    call = (await _post_chat(session, server, body))["choices"][0]["message"]["tool_calls"][0]
    messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
    messages.append({"role": "tool", "tool_call_id": call["id"], "content": "sunny and mild"})
    async with session.post(
        server.url + _path("chat"), json={**body, "stream": stream}
    ) as response:
        assert response.status == 200
        if stream:
            chunks = [orjson.loads(p) for _, p in await _events(response) if p != "[DONE]"]
            text = "".join(_content("chat", chunk) for chunk in chunks)
            reason = chunks[-1]["choices"][0]["finish_reason"]
        else:
            answer = await response.json()
            choice = answer["choices"][0]
            text, reason = choice["message"]["content"], choice["finish_reason"]
            assert "tool_calls" not in choice["message"]
            assert answer["usage"]["prompt_tokens"] == 3 + 3  # the tool's result counts too
    assert (text, reason) == ("tok0 tok1 tok2 tok3 ", "stop")
    messages.append({"role": "user", "content": "And tomorrow?"})
    answer = await _post_chat(session, server, body)  # a user turn again: another call
    assert answer["choices"][0]["finish_reason"] == "tool_calls"


@pytest.mark.parametrize(
    ("change", "param", "message"),
    [
        (
            {"tools": [{"type": "function", "function": {"parameters": {}}}]},
            "tools",
            "tools[0].function.name",
        ),
        ({"tools": [WEATHER, {"type": "function"}]}, "tools", "tools[1].function"),
        ({"tools": {"type": "function"}}, "tools", "tools must be a list"),
        (
            {"tool_choice": {"type": "function", "function": {"name": "nope"}}},
            "tool_choice",
            "'nope'",
        ),
        ({"tool_choice": "sometimes"}, "tool_choice", "tool_choice must be"),
        (
            {"messages": [{"role": "user", "content": "hi"}, {"role": "tool", "content": "42"}]},
            "messages",
            "messages[1]: a tool message needs a tool_call_id",
        ),
    ],
)
async def test_malformed_tool_requests_are_400(
    start: StartServer,
    session: aiohttp.ClientSession,
    change: dict[str, Any],
    param: str,
    message: str,
) -> None:
    server = await start(**FAST)
    for stream in (False, True):
        body = {**_tool_body(stream), **change}
        async with session.post(server.url + _path("chat"), json=body) as response:
            assert response.status == 400
            error = await response.json()
        assert error["object"] == "error" and error["type"] == "BadRequestError"
        assert error["code"] == 400 and error["param"] == param
        assert message in error["message"]
    assert (await _stats(session, server))["completed"] == 0


# --- timing truth -----------------------------------------------------------------------------


async def _timed_stream(
    session: aiohttp.ClientSession, url: str, tokens: int
) -> tuple[float, list[float]]:
    """Client-side TTFT and inter-token gaps (seconds) of one streamed completion."""
    sent = time.perf_counter()
    body = _body("completion", True, max_tokens=tokens)
    async with session.post(url + "/v1/completions", json=body) as response:
        arrivals = [at for at, payload in await _events(response) if payload != "[DONE]"]
    assert len(arrivals) == tokens
    return arrivals[0] - sent, list(np.diff(arrivals))


async def _retry_on_noise(measure: Callable[[], Awaitable[bool]], attempts: int = 3) -> None:
    """Run ``measure`` until it reports success, at most ``attempts`` times.

    The 2 shared cores of CI can stall any process for milliseconds, which only ever makes a token
    late; a pacing bug shows in every attempt, a neighbour's burst in one. The last attempt's
    assertions are the ones reported.
    """
    for _ in range(attempts - 1):
        if await measure():
            return
    assert await measure()


async def _medians(session: aiohttp.ClientSession, url: str) -> tuple[float, float]:
    """Median TTFT and ITL (seconds) over 3 rounds of 8 concurrent 16-token streams."""
    ttfts: list[float] = []
    itls: list[float] = []
    for _ in range(3):
        results = await asyncio.gather(*(_timed_stream(session, url, 16) for _ in range(8)))
        for ttft, gaps in results:
            ttfts.append(ttft)
            itls.extend(gaps)
    return statistics.median(ttfts), statistics.median(itls)


async def test_measured_ttft_and_itl_medians_match_settings(
    start: StartServer, session: aiohttp.ClientSession
) -> None:
    server = await start(ttft_ms=100.0, itl_ms=10.0)
    await asyncio.gather(*(_timed_stream(session, server.url, 2) for _ in range(8)))  # warm-up

    async def measure() -> bool:
        ttft, itl = await _medians(session, server.url)
        return bool(
            ttft == pytest.approx(0.100, rel=0.10) and itl == pytest.approx(0.010, rel=0.10)
        )

    await _retry_on_noise(measure)


async def test_distribution_with_spread_keeps_the_median(
    start: StartServer, session: aiohttp.ClientSession
) -> None:
    server = await start(ttft_ms=40.0, ttft_std_ms=8.0, itl_ms=10.0, itl_std_ms=3.0, seed=7)

    async def measure() -> bool:
        results = await asyncio.gather(*(_timed_stream(session, server.url, 24) for _ in range(8)))
        itls = [gap for _, gaps in results for gap in gaps]
        assert statistics.stdev(itls) > 0.0015  # the spread is really there
        return bool(statistics.median(itls) == pytest.approx(0.010, rel=0.10))

    await _retry_on_noise(measure)


async def test_max_concurrency_queues_requests_fifo(
    start: StartServer, session: aiohttp.ClientSession
) -> None:
    # One sequence at a time: 60 ms to the first token, 9 gaps of 5 ms → 105 ms per request.
    server = await start(ttft_ms=60.0, itl_ms=5.0, max_concurrency=1)
    duration = 0.060 + 9 * 0.005
    expected = [0.060 + position * duration for position in range(3)]

    async def measure() -> bool:
        tasks = [asyncio.create_task(_timed_stream(session, server.url, 10)) for _ in range(3)]
        for _ in range(40):  # until all three have arrived: one runs, two wait
            stats = await _stats(session, server)
            if stats["waiting"] == 2:
                break
            await asyncio.sleep(0.002)
        assert (stats["running"], stats["waiting"]) == (1, 2)
        async with session.get(server.url + "/metrics") as response:
            text = await response.text()
        assert 'vllm:num_requests_waiting{engine="0",model_name="mock-model"} 2.0' in text
        ttfts = sorted(ttft for ttft, _ in await asyncio.gather(*tasks))
        return bool(ttfts == pytest.approx(expected, rel=0.10, abs=0.010))

    await _retry_on_noise(measure)


async def test_client_that_goes_away_frees_its_slot(
    start: StartServer, session: aiohttp.ClientSession
) -> None:
    server = await start(ttft_ms=5.0, itl_ms=50.0, max_concurrency=1)
    body = _body("completion", True, max_tokens=100)  # would hold the slot for 5 s
    response = await session.post(server.url + "/v1/completions", json=body)
    await response.content.readline()  # the first token has been sent
    response.close()
    ttft, _ = await asyncio.wait_for(_timed_stream(session, server.url, 2), timeout=2.0)
    assert ttft < 0.5
    assert (await _stats(session, server))["aborted"] == 1


async def test_close_cuts_streams_at_once(session: aiohttp.ClientSession) -> None:
    server = await start_mock_server(MockSettings(ttft_ms=1.0, itl_ms=100.0), "127.0.0.1", 0)
    body = _body("completion", True, max_tokens=100)  # a 10 s answer
    response = await session.post(server.url + "/v1/completions", json=body)
    await response.content.readline()
    began = time.perf_counter()
    await server.close()
    assert time.perf_counter() - began < 0.5
    with pytest.raises(aiohttp.ClientPayloadError):
        await response.read()
    await server.close()  # idempotent


# --- injected faults ----------------------------------------------------------------------------


@pytest.mark.parametrize(("option", "status"), [("error_rate_500", 500), ("error_rate_429", 429)])
@pytest.mark.parametrize("stream", [True, False])
async def test_http_error_faults(
    start: StartServer, session: aiohttp.ClientSession, option: str, status: int, stream: bool
) -> None:
    server = await start(**FAST, **{option: 1.0})
    async with session.post(server.url + _path("chat"), json=_body("chat", stream)) as response:
        assert response.status == status
        error = await response.json()
    assert error["object"] == "error" and error["code"] == status and error["message"]
    assert error["type"] == ("InternalServerError" if status == 500 else "TooManyRequestsError")
    assert (await _stats(session, server))["faults"][f"http_{status}"] == 1


async def test_stream_error_fault(start: StartServer, session: aiohttp.ClientSession) -> None:
    server = await start(**FAST, stream_error_rate=1.0)
    body = _body("completion", True, max_tokens=8)
    async with session.post(server.url + "/v1/completions", json=body) as response:
        assert response.status == 200
        events = [payload for _, payload in await _events(response)]
    assert events[-1] == "[DONE]"
    error = orjson.loads(events[-2])["error"]
    assert error["code"] == 500 and error["message"] and error["type"] == "InternalServerError"
    assert 1 <= len(events) - 2 < 8  # some tokens came first, not all of them
    async with session.post(server.url + "/v1/completions", json=_body("completion", False)) as r:
        assert r.status == 500  # a non-stream request gets a plain 500
    assert (await _stats(session, server))["faults"] == {
        "http_500": 1,
        "http_429": 0,
        "stream_error": 1,
        "drop": 0,
    }


async def test_drop_fault(start: StartServer, session: aiohttp.ClientSession) -> None:
    server = await start(**FAST, drop_rate=1.0)
    body = _body("chat", True, max_tokens=8)
    received: list[bytes] = []
    with pytest.raises(aiohttp.ClientPayloadError):
        async with session.post(server.url + _path("chat"), json=body) as response:
            assert response.status == 200
            async for line in response.content:
                received.append(line)
    assert any(b"tok0" in line for line in received)
    with pytest.raises(aiohttp.ServerDisconnectedError):
        async with session.post(server.url + _path("chat"), json=_body("chat", False)) as response:
            await response.read()
    stats = await _stats(session, server)
    assert stats["faults"]["drop"] == 2 and stats["aborted"] == 0


async def _observe(session: aiohttp.ClientSession, url: str, stream: bool) -> str:
    """What a client sees of one chat request: ok or the kind of failure."""
    body = _body("chat", stream, max_tokens=4)
    try:
        async with session.post(url + _path("chat"), json=body) as response:
            if response.status != 200:
                return f"http_{response.status}"
            if not stream:
                await response.read()
                return "ok"
            events = [payload for _, payload in await _events(response)]
    except aiohttp.ClientPayloadError:
        return "drop"
    except aiohttp.ServerDisconnectedError:
        return "drop"
    return "stream_error" if any(p.startswith('{"error"') for p in events) else "ok"


async def test_fault_counts_match_what_clients_saw(
    start: StartServer, session: aiohttp.ClientSession
) -> None:
    rates = {"error_rate_500": 0.05, "error_rate_429": 0.05, "stream_error_rate": 0.05}
    server = await start(**FAST, **rates, drop_rate=0.05, seed=3)
    limit = asyncio.Semaphore(16)

    async def one(index: int) -> str:
        async with limit:
            return await _observe(session, server.url, stream=index % 2 == 0)

    seen = Counter(await asyncio.gather(*(one(i) for i in range(200))))
    stats = await _stats(session, server)
    faults = {kind: n for kind, n in stats["faults"].items() if n}
    assert faults == {kind: n for kind, n in seen.items() if kind != "ok"}
    assert 20 <= stats["faults_total"] <= 60  # 200 requests at a total rate of 0.2
    assert stats["completed"] == seen["ok"]
    assert stats["requests"]["/v1/chat/completions"] == 200
    assert (stats["in_flight"], stats["aborted"]) == (0, 0)
    async with session.get(server.url + "/metrics") as response:
        families = {f.name: f for f in text_string_to_metric_families(await response.text())}
    injected = {s.labels["kind"]: s.value for s in families["mock_faults_injected"].samples}
    assert injected == {kind: float(n) for kind, n in stats["faults"].items()}


# --- other routes -----------------------------------------------------------------------------


async def test_metrics_parse_as_vllm_metrics(
    start: StartServer, session: aiohttp.ClientSession
) -> None:
    server = await start(**FAST)
    for endpoint in ("chat", "completion"):
        for stream in (True, False):
            body = _body(endpoint, stream, max_tokens=3)
            async with session.post(server.url + _path(endpoint), json=body) as response:
                await response.read()
    async with session.get(server.url + "/metrics") as response:
        assert response.status == 200
        families = {f.name: f for f in text_string_to_metric_families(await response.text())}

    def value(name: str, suffix: str = "") -> float:
        return sum(s.value for s in families[name].samples if s.name == name + suffix)

    assert families["vllm:num_requests_running"].type == "gauge"
    assert value("vllm:num_requests_waiting") == 0
    assert value("vllm:generation_tokens", "_total") == 12
    assert value("vllm:prompt_tokens", "_total") == 2 * 6 + 2 * 4
    assert value("vllm:request_success", "_total") == 4
    assert families["vllm:time_to_first_token_seconds"].type == "histogram"
    assert value("vllm:time_to_first_token_seconds", "_count") == 4
    assert value("vllm:e2e_request_latency_seconds", "_count") == 4


async def test_embeddings(start: StartServer, session: aiohttp.ClientSession) -> None:
    server = await start(embedding_dim=8, embedding_ms=5.0)
    url = server.url + "/v1/embeddings"
    async with session.post(url, json={"model": "mock-model", "input": "hello big world"}) as r:
        single = await r.json()
    async with session.post(url, json={"input": ["hello big world", "other"]}) as r:
        pair = await r.json()
    async with session.post(url, json={"input": "other", "encoding_format": "base64"}) as r:
        encoded = await r.json()
    assert single["object"] == "list" and single["usage"] == {"prompt_tokens": 3, "total_tokens": 3}
    vector = single["data"][0]["embedding"]
    assert len(vector) == 8 and np.linalg.norm(vector) == pytest.approx(1.0, rel=1e-5)
    assert [item["index"] for item in pair["data"]] == [0, 1]
    assert pair["data"][0]["embedding"] == vector  # deterministic per input
    assert pair["data"][1]["embedding"] != vector
    assert pair["usage"]["prompt_tokens"] == 4
    decoded = np.frombuffer(base64.b64decode(encoded["data"][0]["embedding"]), dtype="<f4")
    assert decoded.tolist() == pytest.approx(pair["data"][1]["embedding"])


async def test_models_health_hello_and_stats(
    start: StartServer, session: aiohttp.ClientSession
) -> None:
    server = await start(model="tiny")
    async with session.get(server.url + "/v1/models") as response:
        models = await response.json()
    assert [card["id"] for card in models["data"]] == ["tiny"]
    async with session.get(server.url + "/health") as response:
        assert response.status == 200
    for path in ("/", "/hello"):
        async with session.get(server.url + path) as response:
            assert response.status == 200
            assert await response.json() == {"message": "Hello from the clientswarm mock server"}
    stats = await _stats(session, server)
    assert stats["requests"] == {
        "/v1/models": 1,
        "/health": 1,
        "/": 1,
        "/hello": 1,
        "/mock/stats": 1,
    }
    assert stats["in_flight"] == 0 and stats["completed"] == 0


async def test_cli_runs_as_a_subprocess(session: aiohttp.ClientSession) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "clientswarm.mock.cli",
        "--port",
        "0",
        "--ttft-ms",
        "5",
        "--itl-ms",
        "1",
        "--model",
        "cli-model",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        line = (await asyncio.wait_for(process.stdout.readline(), timeout=20)).decode()
        match = re.fullmatch(r"mock-server listening on (http://127\.0\.0\.1:(\d+))\n", line)
        assert match, line
        body = {"model": "cli-model", "prompt": "hi", "max_tokens": 2}
        async with session.post(match[1] + "/v1/completions", json=body) as response:
            answer = await response.json()
        assert answer["choices"][0]["text"] == "tok0 tok1 "
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), timeout=10) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_cli_rejects_invalid_settings() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "clientswarm.mock.cli",
        "--error-rate-500",
        "0.7",
        "--drop-rate",
        "0.7",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await asyncio.wait_for(process.communicate(), timeout=20)
    assert process.returncode == 2
    assert b"fault rates add up to 1.4" in stderr
