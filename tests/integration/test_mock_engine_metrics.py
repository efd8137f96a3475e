"""The mock target's vLLM engine metrics, scraped from a real server under real load.

The simulator's ``/metrics`` is the known truth that engine-metrics scraping is tested against,
so here it is held to vLLM's names, types and labels, to its own queue, KV cache and prefix
cache, and to ``/mock/stats``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from clientswarm.mock import MockServer, MockSettings, start_mock_server
from clientswarm.mock.histograms import (
    ITL_BUCKETS_S,
    REQUEST_LATENCY_BUCKETS_S,
    TTFT_BUCKETS_S,
)

pytestmark = pytest.mark.timeout(60)

StartServer = Callable[..., Awaitable[MockServer]]
Families = dict[str, Any]
LABELS = {"model_name", "engine"}

GAUGES = ("vllm:num_requests_running", "vllm:num_requests_waiting", "vllm:kv_cache_usage_perc")
COUNTERS = (
    "vllm:prefix_cache_queries",
    "vllm:prefix_cache_hits",
    "vllm:num_preemptions",
    "vllm:prompt_tokens",
    "vllm:generation_tokens",
)
HISTOGRAMS = {
    "vllm:time_to_first_token_seconds": TTFT_BUCKETS_S,
    "vllm:inter_token_latency_seconds": ITL_BUCKETS_S,
    "vllm:e2e_request_latency_seconds": REQUEST_LATENCY_BUCKETS_S,
    "vllm:request_queue_time_seconds": REQUEST_LATENCY_BUCKETS_S,
    "vllm:request_prefill_time_seconds": REQUEST_LATENCY_BUCKETS_S,
    "vllm:request_decode_time_seconds": REQUEST_LATENCY_BUCKETS_S,
    "vllm:request_inference_time_seconds": REQUEST_LATENCY_BUCKETS_S,
}


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
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as client:
        yield client


async def _scrape(session: aiohttp.ClientSession, server: MockServer) -> Families:
    async with session.get(server.url + "/metrics") as response:
        assert response.status == 200
        return {f.name: f for f in text_string_to_metric_families(await response.text())}


async def _stats(session: aiohttp.ClientSession, server: MockServer) -> dict[str, Any]:
    async with session.get(server.url + "/mock/stats") as response:
        stats: dict[str, Any] = await response.json()
        return stats


def _value(families: Families, name: str, suffix: str = "") -> float:
    return float(sum(s.value for s in families[name].samples if s.name == name + suffix))


async def _complete(
    session: aiohttp.ClientSession, server: MockServer, prompt: str, tokens: int
) -> tuple[float, int]:
    """Stream one completion; client-side TTFT (s) and the number of tokens received."""
    sent = time.perf_counter()
    body = {"model": "mock-model", "prompt": prompt, "max_tokens": tokens, "stream": True}
    first: float | None = None
    received = 0
    async with session.post(server.url + "/v1/completions", json=body) as response:
        assert response.status == 200, await response.text()
        async for line in response.content:
            if line.startswith(b"data: {"):
                first = first if first is not None else time.perf_counter()
                received += 1
    assert first is not None
    return first - sent, received


def _prompt(words: int, tag: str = "w") -> str:
    return " ".join(f"{tag}{i}" for i in range(words))


async def test_names_types_and_labels_are_vllms(
    start: StartServer, session: aiohttp.ClientSession
) -> None:
    server = await start(ttft_ms=1.0, itl_ms=0.5)
    await _complete(session, server, "one two three", 3)
    families = await _scrape(session, server)
    for name in GAUGES:
        assert families[name].type == "gauge", name
        assert {s.name for s in families[name].samples} == {name}
    for name in (*COUNTERS, "vllm:request_success"):
        assert families[name].type == "counter", name
        assert {s.name for s in families[name].samples} == {name + "_total"}
        assert families[name + "_created"].type == "gauge"  # as prometheus_client writes it
    for name, bounds in HISTOGRAMS.items():
        family = families[name]
        assert family.type == "histogram", name
        edges = [float(s.labels["le"]) for s in family.samples if s.name == name + "_bucket"]
        assert edges == [*bounds, float("inf")], name
        assert _value(families, name, "_count") >= 1, name
    for name in (*GAUGES, *COUNTERS, *HISTOGRAMS):
        for sample in families[name].samples:
            assert set(sample.labels) - {"le"} == LABELS, (name, sample)
            assert (sample.labels["model_name"], sample.labels["engine"]) == ("mock-model", "0")
    reasons = {s.labels["finished_reason"] for s in families["vllm:request_success"].samples}
    assert reasons == {"stop", "length", "abort"}
    assert "vllm:gpu_cache_usage_perc" not in families  # gone from vLLM 0.11 on


async def test_running_and_waiting_follow_the_load(
    start: StartServer, session: aiohttp.ClientSession
) -> None:
    server = await start(ttft_ms=150.0, itl_ms=10.0, max_concurrency=2)
    tasks = [asyncio.create_task(_complete(session, server, _prompt(20), 10)) for _ in range(5)]
    seen: list[tuple[float, float, float]] = []
    for _ in range(200):
        families = await _scrape(session, server)
        seen.append(
            (
                _value(families, "vllm:num_requests_running"),
                _value(families, "vllm:num_requests_waiting"),
                _value(families, "vllm:kv_cache_usage_perc"),
            )
        )
        if seen[-1][:2] == (2.0, 3.0):
            break
        await asyncio.sleep(0.002)
    running, waiting, usage = seen[-1]
    assert (running, waiting) == (2.0, 3.0)
    assert usage == pytest.approx(2 * 20 / 1_000_000)  # two prompts held, no token yet
    await asyncio.gather(*tasks)
    stats = await _stats(session, server)
    assert (stats["max_running"], stats["max_waiting"]) == (2, 3)
    assert 0 < stats["max_kv_cache_usage"] <= 1
    assert stats["max_kv_cache_usage"] == pytest.approx(2 * (20 + 10) / 1_000_000)
    families = await _scrape(session, server)
    assert _value(families, "vllm:kv_cache_usage_perc") == 0.0
    assert _value(families, "vllm:request_queue_time_seconds", "_count") == 5
    # three waited at least one whole request (150 ms + 9 x 10 ms), one of them two
    assert _value(families, "vllm:request_queue_time_seconds", "_sum") >= 4 * 0.2


async def test_same_long_prompt_twice_hits_the_prefix_cache(
    start: StartServer, session: aiohttp.ClientSession
) -> None:
    server = await start(ttft_ms=1.0, itl_ms=0.5, prefill_ms_per_token=1.0)
    long_prompt = _prompt(200)
    cold_ttft_s, _ = await _complete(session, server, long_prompt, 2)
    warm_ttft_s, _ = await _complete(session, server, long_prompt, 2)
    families = await _scrape(session, server)
    hits = (200 - 1) // 16 * 16  # the last token is always computed: 12 blocks of 16
    assert _value(families, "vllm:prefix_cache_queries", "_total") == 400
    assert _value(families, "vllm:prefix_cache_hits", "_total") == hits
    assert cold_ttft_s >= 0.200  # 1 ms of TTFT plus 200 uncached tokens at 1 ms
    assert warm_ttft_s < cold_ttft_s - 0.150  # 8 uncached tokens
    stats = await _stats(session, server)
    assert (stats["prefix_cache_queries"], stats["prefix_cache_hits"]) == (400, hits)


async def test_distinct_prompts_never_hit(
    start: StartServer, session: aiohttp.ClientSession
) -> None:
    server = await start(ttft_ms=1.0, itl_ms=0.5)
    await asyncio.gather(*(_complete(session, server, _prompt(64, tag), 2) for tag in "abcd"))
    families = await _scrape(session, server)
    assert _value(families, "vllm:prefix_cache_queries", "_total") == 4 * 64
    assert _value(families, "vllm:prefix_cache_hits", "_total") == 0


async def test_a_tiny_kv_cache_preempts_and_every_answer_completes(
    start: StartServer, session: aiohttp.ClientSession
) -> None:
    # 4 sequences of 10 prompt + 30 output tokens in a 60-token cache: all 4 prompts fit at once,
    # their growth does not, so the youngest are preempted and resume later.
    server = await start(ttft_ms=5.0, itl_ms=2.0, kv_cache_tokens=60)
    results = await asyncio.gather(
        *(_complete(session, server, _prompt(10, tag), 30) for tag in "abcd")
    )
    assert [received for _, received in results] == [30] * 4
    stats = await _stats(session, server)
    families = await _scrape(session, server)
    assert stats["preemptions"] > 0
    assert _value(families, "vllm:num_preemptions", "_total") == stats["preemptions"]
    assert 0.5 < stats["max_kv_cache_usage"] <= 1.0
    assert (stats["running"], stats["waiting"], stats["kv_cache_usage"]) == (0, 0, 0.0)
    assert _value(families, "vllm:generation_tokens", "_total") == 4 * 30
    assert _value(families, "vllm:inter_token_latency_seconds", "_count") == 4 * 29
    assert _value(families, "vllm:request_queue_time_seconds", "_count") == 4
    assert stats["completed"] == 4


async def test_a_request_larger_than_the_kv_cache_is_refused(
    start: StartServer, session: aiohttp.ClientSession
) -> None:
    server = await start(ttft_ms=1.0, itl_ms=0.5, kv_cache_tokens=20)
    body = {"model": "mock-model", "prompt": _prompt(10), "max_tokens": 11}
    async with session.post(server.url + "/v1/completions", json=body) as response:
        assert response.status == 400
        error = await response.json()
    assert "--kv-cache-tokens" in error["message"] and error["param"] == "max_tokens"
    body["max_tokens"] = 10
    async with session.post(server.url + "/v1/completions", json=body) as response:
        assert response.status == 200


async def test_scraped_counters_equal_mock_stats(
    start: StartServer, session: aiohttp.ClientSession
) -> None:
    server = await start(ttft_ms=2.0, itl_ms=1.0, max_concurrency=3, kv_cache_tokens=200)
    shared = _prompt(48, "s")
    prompts = [shared, shared, _prompt(30, "x"), shared, _prompt(70, "y"), shared]
    await asyncio.gather(*(_complete(session, server, p, 12) for p in prompts))
    stats = await _stats(session, server)
    families = await _scrape(session, server)
    assert _value(families, "vllm:prompt_tokens", "_total") == stats["prompt_tokens"]
    assert stats["prompt_tokens"] == 4 * 48 + 30 + 70
    assert _value(families, "vllm:generation_tokens", "_total") == stats["completion_tokens"]
    assert _value(families, "vllm:num_preemptions", "_total") == stats["preemptions"]
    assert _value(families, "vllm:prefix_cache_queries", "_total") == stats["prompt_tokens"]
    assert _value(families, "vllm:prefix_cache_hits", "_total") == stats["prefix_cache_hits"]
    assert stats["prefix_cache_hits"] > 0
    assert _value(families, "vllm:request_success", "_total") == stats["completed"] == 6
    for name in HISTOGRAMS:
        if name != "vllm:inter_token_latency_seconds":
            assert _value(families, name, "_count") == 6, name
