"""The Responses and Messages APIs end to end: against the simulator (the same TTFT as chat from
the same settings, the token counts, errors, the ``ctx`` helpers, ``clientswarm run --mock``) and
against a scripted server (the bodies and headers the APIs define)."""

from __future__ import annotations

import asyncio
import json
import random
import statistics
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from scripted_server import Script, ScriptedServer

from clientswarm.clock import Clock
from clientswarm.config.interactions import (
    ChatInteraction,
    MessagesInteraction,
    ResponsesInteraction,
)
from clientswarm.config.models import TargetConfig
from clientswarm.config.paths import FileScope
from clientswarm.interactions import build_interaction
from clientswarm.interactions.base import ClientContext, Interaction
from clientswarm.interactions.http1 import Http1Client
from clientswarm.interactions.user import Context, StepFailed
from clientswarm.metrics.sample import ERROR_PROTOCOL, ERROR_STREAM, Sample
from clientswarm.mock import MockServer, MockSettings, start_mock_server
from service_process import CLI, simulator

pytestmark = pytest.mark.timeout(60)

TTFT_MS, ITL_MS, TOKENS = 40.0, 3.0, 8
SYSTEM, PROMPT = "Be brief.", "Tell me a story."
PROMPT_TOKENS = 6  # words: the simulator's tokens
MODELS = {
    "chat": ChatInteraction,
    "responses": ResponsesInteraction,
    "messages": MessagesInteraction,
}


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


def interaction(kind: str, **fields: Any) -> Interaction:
    config = MODELS[kind].model_validate(
        {"prompts": [PROMPT], "system_prompt": SYSTEM, "max_tokens": TOKENS, **fields}
    )
    return build_interaction(config, seed=0, files=FileScope.anywhere("."))


async def perform(
    session: aiohttp.ClientSession, url: str, built: Interaction, clients: int, each: int
) -> list[Sample]:
    """``clients`` clients that perform ``built`` ``each`` times one after the other."""
    samples: list[Sample] = []

    async def client() -> None:
        ctx = context(session, url, samples)
        for _ in range(each):
            await built.perform(ctx, ctx.clock.now_ns())

    await asyncio.gather(*(client() for _ in range(clients)))
    return samples


@pytest.fixture(scope="module")
def sim() -> Iterator[str]:
    args = ("--ttft-ms", str(TTFT_MS), "--itl-ms", str(ITL_MS), "--seed", "1")
    with simulator(*args) as url:
        yield url


async def test_responses_and_messages_streams_give_the_ttft_of_chat_from_the_same_simulator(
    sim: str, session: aiohttp.ClientSession
) -> None:
    kinds = list(MODELS)
    runs = await asyncio.gather(
        *(perform(session, sim, interaction(kind), clients=3, each=10) for kind in kinds)
    )
    ttft_s: dict[str, float] = {}
    for kind, samples in zip(kinds, runs, strict=True):
        assert len(samples) == 30
        for s in samples:
            assert s.ok, s.error_message
            assert (s.output_tokens, s.input_tokens, s.token_source) == (
                TOKENS,
                PROMPT_TOKENS,
                "usage",
            ), kind
            assert len(s.itl_s) == TOKENS - 1
        assert all(s.name == kind for s in samples)
        ttft_s[kind] = statistics.median(s.ttft_s for s in samples if s.ttft_s is not None)
        itl_mean = statistics.fmean(i for s in samples for i in s.itl_s)  # bursts compress gaps
        assert ITL_MS / 1e3 * 0.5 < itl_mean < ITL_MS / 1e3 + 0.003, (kind, itl_mean)
    # The first token is the first text event, not the events sent on admission.
    assert TTFT_MS / 1e3 <= ttft_s["chat"] < TTFT_MS / 1e3 + 0.015, ttft_s
    for kind in ("responses", "messages"):
        assert abs(ttft_s[kind] - ttft_s["chat"]) < 0.003, ttft_s


async def test_whole_answers_are_measured_from_their_usage(
    sim: str, session: aiohttp.ClientSession
) -> None:
    for kind in ("responses", "messages"):
        (sample,) = await perform(session, sim, interaction(kind, stream=False), 1, 1)
        assert sample.ok, sample.error_message
        assert (sample.output_tokens, sample.input_tokens, sample.token_source) == (
            TOKENS,
            PROMPT_TOKENS,
            "usage",
        )
        assert sample.first_token_ns is None
        assert sample.e2e_s >= (TTFT_MS + (TOKENS - 1) * ITL_MS) / 1e3


@pytest.fixture
async def faulty() -> AsyncIterator[MockServer]:
    server = await start_mock_server(
        MockSettings(ttft_ms=5.0, itl_ms=1.0, stream_error_rate=1.0), "127.0.0.1", 0
    )
    yield server
    await server.close()


async def test_errors_in_the_stream_and_error_statuses_are_failed_samples(
    faulty: MockServer, session: aiohttp.ClientSession
) -> None:
    for kind in ("responses", "messages"):
        (sample,) = await perform(session, faulty.url, interaction(kind), 1, 1)
        assert (sample.status, sample.error_kind) == ("error", ERROR_STREAM), kind
        assert "injected a mid-stream error" in (sample.error_message or "")
        assert sample.first_token_ns is not None  # some tokens came before the error
        # A whole answer drawn for a stream error is an HTTP 500, as for chat.
        (whole,) = await perform(session, faulty.url, interaction(kind, stream=False), 1, 1)
        assert (whole.error_kind, whole.http_status) == ("http_500", 500)


@pytest.fixture
async def mock() -> AsyncIterator[MockServer]:
    server = await start_mock_server(MockSettings(ttft_ms=5.0, itl_ms=1.0), "127.0.0.1", 0)
    yield server
    await server.close()


async def test_ctx_responses_and_ctx_messages_return_the_answer_and_record_a_step(
    mock: MockServer, session: aiohttp.ClientSession
) -> None:
    samples: list[Sample] = []
    ctx = Context(context(session, mock.url, samples))
    text = "tok0 tok1 tok2 tok3 "
    for stream in (True, False):
        answer = await ctx.responses(
            "Hi there", instructions="Be brief.", max_output_tokens=4, stream=stream
        )
        assert (answer.text, answer.status) == (text, "incomplete")
        assert answer.usage is not None and answer.usage["output_tokens"] == 4
        assert answer.response is not None and answer.response["object"] == "response"
        reply = await ctx.messages(
            [{"role": "user", "content": "Hi there"}],
            system="Be brief.",
            max_tokens=4,
            stream=stream,
        )
        assert (reply.text, reply.stop_reason) == (text, "max_tokens")
        assert reply.usage == {"input_tokens": 4, "output_tokens": 4}
        assert reply.message["role"] == "assistant"
        follow = [
            {"role": "user", "content": "Hi"},
            reply.message,
            {"role": "user", "content": "More"},
        ]
        assert (await ctx.messages(follow, max_tokens=2, name="again", stream=stream)).text
    steps = [(s.name, s.ok, s.output_tokens, s.input_tokens) for s in samples]
    assert (
        steps
        == [
            ("responses", True, 4, 4),
            ("messages", True, 4, 4),
            ("again", True, 2, 1 + 4 + 1),  # the assistant's four words count too
        ]
        * 2
    )
    assert all(s.first_token_ns is not None for s in samples[:3])  # streamed: TTFT
    with pytest.raises(StepFailed) as failed:
        await ctx.messages([{"role": "system", "content": "x"}])  # not a Messages message
    assert failed.value.kind == "http_400"


@pytest.fixture
async def scripted() -> AsyncIterator[ScriptedServer]:
    server = ScriptedServer()
    await server.start()
    yield server
    await server.close()


def typed(kind: str, **fields: Any) -> bytes:
    return f"event: {kind}\ndata: ".encode() + orjson.dumps({"type": kind, **fields}) + b"\n\n"


async def test_the_requests_are_as_the_apis_define_them(
    scripted: ScriptedServer, session: aiohttp.ClientSession
) -> None:
    usage = {"input_tokens": 6, "output_tokens": 1}
    scripted.script(
        "/v1/responses",
        Script(
            [
                (0, typed("response.output_text.delta", delta="Hi", sequence_number=0)),
                (0, typed("response.completed", response={"usage": usage})),
            ]
        ),
    )
    scripted.script(
        "/v1/messages",
        Script(
            [
                (0, typed("content_block_delta", delta={"type": "text_delta", "text": "Hi"})),
                (0, typed("message_delta", delta={"stop_reason": "end_turn"}, usage=usage)),
                (0, typed("message_stop")),
            ]
        ),
    )
    extra = {"extra_body": {"temperature": 0}, "model": "m2"}
    for kind in ("responses", "messages"):
        (sample,) = await perform(session, scripted.url, interaction(kind, **extra), 1, 1)
        assert sample.ok and sample.output_tokens == 1, sample.error_message
    ctx = Context(context(session, scripted.url, []))
    await ctx.responses([{"role": "user", "content": "Hi"}], top_p=0.5)
    await ctx.messages([{"role": "user", "content": "Hi"}], max_tokens=3, top_k=2)
    built_responses, built_messages, ctx_responses, ctx_messages = scripted.requests
    assert built_responses.path == "/v1/responses"
    assert built_responses.body == {
        "model": "m2",
        "input": PROMPT,
        "instructions": SYSTEM,
        "max_output_tokens": TOKENS,
        "stream": True,
        "store": False,
        "temperature": 0,
    }
    assert built_messages.path == "/v1/messages"
    assert built_messages.body == {
        "model": "m2",
        "max_tokens": TOKENS,
        "messages": [{"role": "user", "content": PROMPT}],
        "system": SYSTEM,
        "stream": True,
        "temperature": 0,
    }
    assert ctx_responses.body == {
        "model": "mock-model",
        "input": [{"role": "user", "content": "Hi"}],
        "stream": True,
        "store": False,
        "top_p": 0.5,
    }
    assert ctx_messages.body == {
        "model": "mock-model",
        "max_tokens": 3,
        "messages": [{"role": "user", "content": "Hi"}],
        "stream": True,
        "top_k": 2,
    }
    for recorded in (built_messages, ctx_messages):
        headers = {k.lower(): v for k, v in recorded.headers.items()}
        assert headers["anthropic-version"] == "2023-06-01"
        assert headers["x-api-key"] == "secret-key"
        assert headers["authorization"] == "Bearer secret-key"
        assert headers["content-type"] == "application/json"
    assert "anthropic-version" not in {k.lower() for k in built_responses.headers}


async def test_a_malformed_stream_is_a_protocol_failure_not_a_crash(
    scripted: ScriptedServer, session: aiohttp.ClientSession
) -> None:
    delta = typed("response.output_text.delta", delta="Hi")
    scripted.script("/v1/responses", Script([(0, delta), (0, b"event: x\ndata: {oops\n\n")]))
    scripted.script("/v1/messages", Script([(0, b'data: {"type": "content_block_delta"}\n\n')]))
    (responses,) = await perform(session, scripted.url, interaction("responses"), 1, 1)
    assert (responses.error_kind, responses.output_tokens) == (ERROR_PROTOCOL, 1)
    (messages,) = await perform(session, scripted.url, interaction("messages"), 1, 1)
    assert messages.error_kind == ERROR_PROTOCOL  # the body ended before message_stop
    assert "without [DONE]" in (messages.error_message or "")


def test_a_run_of_each_kind_against_the_simulator(tmp_path: Path) -> None:
    config = tmp_path / "apis.yaml"
    groups = "".join(
        f"  - name: {kind}\n"
        "    clients: 2\n"
        f"    interaction: {{kind: {kind}, max_tokens: 6, system_prompt: Be brief.}}\n"
        "    stop: {requests: 10}\n"
        for kind in ("responses", "messages")
    )
    config.write_text(
        "name: apis\ntarget: {url: 'http://127.0.0.1:1', model: mock-model}\ngroups:\n" + groups
    )
    out = tmp_path / "out"
    done = subprocess.run(
        [
            CLI,
            "run",
            str(config),
            "--mock",
            "--mock-args",
            "--ttft-ms 10 --itl-ms 2",
            "-o",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    for kind in ("responses", "messages"):
        stats = summary["groups"][kind]
        assert stats["requests"] == stats["succeeded"] >= 10, stats
        assert stats["output_tokens"] == 6 * stats["requests"]
        assert (
            stats["input_tokens"] == 6 * stats["requests"]
        )  # "Be brief." and "Hello! Who are you?"
        assert 0.01 <= stats["ttft_s"]["p50"] < 0.05
        assert 0.001 < stats["itl_s"]["p50"] < 0.01
