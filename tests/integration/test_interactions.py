"""The built-in interactions against a real loopback server that replays scripted answers."""

from __future__ import annotations

import asyncio
import random
import socket
import statistics
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from scripted_server import (
    DONE,
    Script,
    ScriptedServer,
    chat_chunk,
    chat_stream,
    completion_chunk,
    sse,
    usage_chunk,
)

from clientswarm.clock import Clock
from clientswarm.config.interactions import (
    ChatInteraction,
    CompletionInteraction,
    EmbeddingInteraction,
    HelloInteraction,
    HttpInteraction,
    InteractionConfig,
    TranscriptionInteraction,
)
from clientswarm.config.models import TargetConfig
from clientswarm.config.paths import FileScope
from clientswarm.errors import ConfigError
from clientswarm.interactions import BUILTIN_INTERACTIONS, Hello, build_interaction
from clientswarm.interactions.base import ClientContext, Interaction
from clientswarm.interactions.http1 import Http1Client
from clientswarm.interactions.streaming import Measurement, split_itl
from clientswarm.metrics.sample import (
    ERROR_CANCELLED,
    ERROR_CLIENT,
    ERROR_CONNECTION,
    ERROR_PROTOCOL,
    ERROR_STREAM,
    ERROR_TIMEOUT,
    Sample,
)

CHAT = "/v1/chat/completions"
COMPLETIONS = "/v1/completions"

pytestmark = pytest.mark.timeout(20)


@pytest.fixture
async def server() -> AsyncIterator[ScriptedServer]:
    scripted = ScriptedServer()
    await scripted.start()
    yield scripted
    await scripted.close()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client_session:
        yield client_session


class Run:
    """A client context bound to the scripted server, collecting emitted samples."""

    def __init__(self, session: aiohttp.ClientSession, url: str) -> None:
        self.session = session
        self.url = url
        self.samples: list[Sample] = []
        self.clock = Clock()
        self.http1 = Http1Client(self.clock.now_ns)

    def ctx(self, **target: Any) -> ClientContext:
        config = TargetConfig.model_validate({"url": self.url, "model": "mock-model", **target})
        return ClientContext(
            session=self.session,
            target=config,
            headers={"Authorization": "Bearer k"},
            group="g",
            client=3,
            worker=1,
            rng=random.Random(0),
            clock=self.clock,
            emit=self.samples.append,
            http1=self.http1,
        )

    async def once(self, interaction: Interaction, **target: Any) -> Sample:
        before = len(self.samples)
        await interaction.perform(self.ctx(**target), self.clock.now_ns())
        assert len(self.samples) == before + 1
        return self.samples[-1]


@pytest.fixture
def run(server: ScriptedServer, session: aiohttp.ClientSession) -> Run:
    return Run(session, server.url)


def build(config: Any, base_dir: Path = Path(".")) -> Interaction:
    return build_interaction(config, seed=0, files=FileScope.anywhere(base_dir))


def chat(**fields: Any) -> Interaction:
    return build(ChatInteraction.model_validate(fields))


def completion(**fields: Any) -> Interaction:
    return build(CompletionInteraction.model_validate(fields))


# --- pure: the ITL split ---------------------------------------------------------------------


def test_split_itl_one_token_per_chunk() -> None:
    assert split_itl([0, 10_000_000, 30_000_000], 3) == [0.01, 0.02]
    assert split_itl([5], 1) == []
    assert split_itl([0, 10_000_000], 1) == [0.01]  # fewer tokens than chunks: chunk gaps


def test_split_itl_multi_token_chunks() -> None:
    itl = split_itl([0, 30_000_000, 60_000_000], 9)
    assert len(itl) == 8
    assert itl[:2] == [0.0, 0.0]  # the rest of the first chunk came with the first token
    assert itl[2:] == pytest.approx([0.01] * 6)


def test_split_itl_uneven_tokens_go_to_last_chunks() -> None:
    itl = split_itl([0, 20_000_000, 40_000_000, 60_000_000], 10)  # carried: 2, 2, 3, 3
    assert len(itl) == 9
    assert itl == pytest.approx([0.0] + [0.01] * 2 + [0.02 / 3] * 6)
    assert sum(itl) == pytest.approx(0.06)
    assert split_itl([7], 4) == [0.0, 0.0, 0.0]


# --- streamed chat and completion --------------------------------------------------------------


async def test_chat_stream_measures_ttft_itl_and_usage(run: Run, server: ScriptedServer) -> None:
    pieces = [f" w{i}" for i in range(10)]
    server.script(CHAT, Script(chat_stream(pieces, usage=(12, 10))))
    interaction = chat(system_prompt="be brief", prompts=["say ten words"], max_tokens=64)
    sample = await run.once(interaction)
    assert sample.ok, sample.error_message
    assert (sample.group, sample.client, sample.worker, sample.name) == ("g", 3, 1, "chat")
    assert sample.http_status == 200
    assert sample.token_source == "usage"
    assert (sample.input_tokens, sample.output_tokens) == (12, 10)
    assert sample.first_token_ns is not None and sample.last_token_ns is not None
    assert sample.sent_ns < sample.first_token_ns < sample.last_token_ns <= sample.end_ns
    assert 0.055 <= (sample.ttft_s or 0) < 0.5  # role chunk at 30 ms does not count, content at 60
    assert len(sample.itl_s) == 9
    assert 0.015 <= statistics.median(sample.itl_s) < 0.06
    assert sum(sample.itl_s) == pytest.approx((sample.last_token_ns - sample.first_token_ns) / 1e9)
    assert sample.tpot_s is not None and sample.tpot_s > 0.015

    body = server.requests[-1].body
    assert body == {
        "model": "mock-model",
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "say ten words"},
        ],
        "max_tokens": 64,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    headers = server.requests[-1].headers
    assert headers["Authorization"] == "Bearer k"
    assert headers["Content-Type"] == "application/json"


async def test_multi_token_chunks_split_each_gap(run: Run, server: ScriptedServer) -> None:
    pieces = [" a b c"] * 5
    server.script(CHAT, Script(chat_stream(pieces, gap_s=0.03, usage=(4, 15))))
    sample = await run.once(chat())
    assert sample.ok and sample.output_tokens == 15
    itl = sample.itl_s
    assert len(itl) == 14
    assert itl[:2] == [0.0, 0.0]
    for start in range(2, 14, 3):  # each later chunk's gap split in three equal parts
        group = itl[start : start + 3]
        assert group[0] == group[1] == group[2]
        assert 0.005 < group[0] < 0.03


async def test_stream_without_usage_counts_chunks(run: Run, server: ScriptedServer) -> None:
    server.script(CHAT, Script(chat_stream(["x", "y", "z"], gap_s=0.005)))
    sample = await run.once(chat(prompts=["one two"]))
    assert sample.ok
    assert (sample.token_source, sample.output_tokens, sample.input_tokens) == ("chunks", 3, 2)
    assert len(sample.itl_s) == 2


async def test_reasoning_content_counts_as_tokens(run: Run, server: ScriptedServer) -> None:
    reasoning = sse({"choices": [{"index": 0, "delta": {"reasoning_content": "hmm"}}]})
    chunks = [(0.0, chat_chunk("", role="assistant")), (0.01, reasoning), (0.01, chat_chunk("ok"))]
    server.script(CHAT, Script([*chunks, (0.0, chat_chunk(None, finish="stop")), (0.0, DONE)]))
    sample = await run.once(chat())
    assert sample.ok and sample.output_tokens == 2 and sample.token_source == "chunks"


async def test_completion_stream_and_extra_body(run: Run, server: ScriptedServer) -> None:
    chunks = [
        (0.01, completion_chunk("")),
        (0.01, completion_chunk("Hi")),
        (0.01, completion_chunk(" there")),
    ]
    chunks += [(0.0, completion_chunk("", finish="length")), (0.0, usage_chunk(3, 2)), (0.0, DONE)]
    server.script(COMPLETIONS, Script(chunks))
    interaction = completion(
        prompts=["a b c"],
        model="other",
        extra_body={"ignore_eos": True, "min_tokens": 2, "max_tokens": 9},
    )
    sample = await run.once(interaction)
    assert sample.ok and sample.name == "completion"
    assert (sample.output_tokens, sample.token_source, len(sample.itl_s)) == (2, "usage", 1)
    assert server.requests[-1].body == {
        "model": "other",
        "prompt": "a b c",
        "max_tokens": 9,  # extra_body is merged last
        "stream": True,
        "stream_options": {"include_usage": True},
        "ignore_eos": True,
        "min_tokens": 2,
    }


async def test_dataset_output_tokens_override_max_tokens(
    run: Run, server: ScriptedServer, tmp_path: Path
) -> None:
    (tmp_path / "d.jsonl").write_text('{"prompt": "p q", "output_tokens": 33}\n')
    config = CompletionInteraction.model_validate({"dataset": {"path": "d.jsonl"}, "stream": False})
    server.script(COMPLETIONS, Script([(0.0, b'{"choices": []}')], content_type="application/json"))
    sample = await run.once(build(config, tmp_path), model=None)
    assert sample.ok
    assert sample.input_tokens == 2  # no usage: the prompt's known length
    assert server.requests[-1].body == {"prompt": "p q", "max_tokens": 33, "stream": False}


async def test_connection_is_reused_after_a_stream(run: Run, server: ScriptedServer) -> None:
    server.script(CHAT, Script(chat_stream(["a"], first_delay_s=0.0, usage=(1, 1))))
    interaction = chat()
    for _ in range(3):
        assert (await run.once(interaction)).ok
    assert len({tuple(r.peer) for r in server.requests}) == 1


# --- failures --------------------------------------------------------------------------------


async def test_in_stream_error(run: Run, server: ScriptedServer) -> None:
    error = sse({"error": {"object": "error", "message": "KV cache exhausted", "code": 500}})
    chunks = [*chat_stream(["a", "b"], gap_s=0.01, done=False)[:3], (0.01, error), (0.0, DONE)]
    server.script(CHAT, Script(chunks))
    sample = await run.once(chat())
    assert (sample.status, sample.error_kind) == ("error", ERROR_STREAM)
    assert sample.error_message == "KV cache exhausted"
    assert sample.first_token_ns is not None and sample.output_tokens == 2
    assert sample.end_ns >= sample.last_token_ns  # type: ignore[operator]


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (500, {"error": {"message": "internal failure", "type": "InternalServerError"}}),
        (429, {"object": "error", "message": "too many requests", "code": 429}),
        (400, {"detail": "bad field"}),
    ],
)
async def test_http_errors_carry_the_body_message(
    run: Run, server: ScriptedServer, status: int, body: Any
) -> None:
    server.script(
        CHAT, Script([(0.0, orjson.dumps(body))], status=status, content_type="application/json")
    )
    sample = await run.once(chat())
    assert (sample.status, sample.error_kind, sample.http_status) == (
        "error",
        f"http_{status}",
        status,
    )
    assert sample.error_message == f"HTTP {status} POST {CHAT}: {orjson.dumps(body).decode()}"
    assert sample.first_token_ns is None and sample.end_ns > sample.sent_ns


async def test_long_error_message_is_truncated(run: Run, server: ScriptedServer) -> None:
    server.script(CHAT, Script([(0.0, b"x" * 5000)], status=503, content_type="text/plain"))
    sample = await run.once(chat())
    assert sample.error_kind == "http_503"
    assert sample.error_message == f"HTTP 503 POST {CHAT}: " + "x" * 199 + "…"  # bounded


async def test_connection_dropped_mid_stream(run: Run, server: ScriptedServer) -> None:
    server.script(CHAT, Script(chat_stream(["a", "b", "c"], gap_s=0.01)[:3], drop=True))
    sample = await run.once(chat())
    assert (sample.status, sample.error_kind) == ("error", ERROR_CONNECTION)
    assert sample.first_token_ns is not None and sample.output_tokens == 2


@pytest.fixture
def refused_port() -> Iterator[int]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))  # bound but not listening: connections are refused
    yield sock.getsockname()[1]
    sock.close()


async def test_connection_refused(session: aiohttp.ClientSession, refused_port: int) -> None:
    run = Run(session, f"http://127.0.0.1:{refused_port}")
    sample = await run.once(chat())
    assert (sample.error_kind, sample.http_status) == (ERROR_CONNECTION, None)


async def test_timeout(run: Run, server: ScriptedServer) -> None:
    server.script(
        CHAT,
        Script([(0.01, chat_chunk("", role="assistant")), (0.02, chat_chunk("a")), (2.0, DONE)]),
    )
    sample = await run.once(chat(), timeout_s=0.3)
    assert (sample.status, sample.error_kind) == ("error", ERROR_TIMEOUT)
    assert "0.3" in str(sample.error_message)
    assert 0.25 < sample.e2e_s < 1.5
    assert sample.output_tokens == 1 and sample.first_token_ns is not None


@pytest.mark.parametrize(
    "chunks",
    [
        [(0.0, chat_chunk("a")), (0.0, b"data: {not json\n\n"), (0.0, DONE)],
        [(0.0, chat_chunk("a")), (0.0, b"data: [1, 2]\n\n"), (0.0, DONE)],
        [(0.0, chat_chunk("a")), (0.0, chat_chunk("b"))],  # no finish_reason, no [DONE]
        [(0.0, b'{"choices": []}')],  # not a stream at all
    ],
)
async def test_protocol_errors(run: Run, server: ScriptedServer, chunks: Any) -> None:
    server.script(CHAT, Script(chunks))
    sample = await run.once(chat())
    assert (sample.status, sample.error_kind) == ("error", ERROR_PROTOCOL)


async def test_stream_with_finish_but_without_done_is_ok(run: Run, server: ScriptedServer) -> None:
    server.script(CHAT, Script([(0.0, chat_chunk("a")), (0.01, chat_chunk("b", finish="stop"))]))
    sample = await run.once(chat())
    assert sample.ok and sample.output_tokens == 2


async def test_cancellation_emits_partial_sample_and_reraises(
    run: Run, server: ScriptedServer
) -> None:
    server.script(
        CHAT, Script(chat_stream([f" t{i}" for i in range(50)], first_delay_s=0.0, gap_s=0.02))
    )
    task = asyncio.create_task(chat().perform(run.ctx(), run.clock.now_ns()))
    await asyncio.sleep(0.15)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert len(run.samples) == 1
    sample = run.samples[0]
    assert (sample.status, sample.error_kind) == ("error", ERROR_CANCELLED)
    assert sample.token_source == "chunks" and 2 <= (sample.output_tokens or 0) < 50
    assert len(sample.itl_s) == (sample.output_tokens or 0) - 1


async def test_unexpected_exception_is_a_client_error(run: Run) -> None:
    class Broken(Hello):
        async def exchange(self, ctx: ClientContext, m: Measurement) -> None:
            raise ValueError("bug in the interaction")

    sample = await run.once(Broken(HelloInteraction()))
    assert (sample.error_kind, sample.error_message) == (
        ERROR_CLIENT,
        "ValueError: bug in the interaction",
    )


# --- non-streamed, embeddings, hello, http --------------------------------------------------------


async def test_non_stream_completion_records_usage(run: Run, server: ScriptedServer) -> None:
    answer = {
        "choices": [{"index": 0, "text": "four five six", "finish_reason": "length"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 3, "total_tokens": 6},
    }
    server.script(
        COMPLETIONS, Script([(0.02, orjson.dumps(answer))], content_type="application/json")
    )
    sample = await run.once(completion(stream=False, prompts=["one two three"]))
    assert sample.ok
    assert (sample.first_token_ns, sample.last_token_ns, sample.itl_s) == (None, None, [])
    assert (sample.input_tokens, sample.output_tokens, sample.token_source) == (3, 3, "usage")
    assert sample.e2e_s >= 0.02
    body = server.requests[-1].body
    assert body["stream"] is False and "stream_options" not in body


async def test_non_stream_invalid_answer(run: Run, server: ScriptedServer) -> None:
    server.script(COMPLETIONS, Script([(0.0, b"<html>")], content_type="text/html"))
    sample = await run.once(completion(stream=False))
    assert sample.error_kind == ERROR_PROTOCOL


async def test_embeddings_send_a_batch(run: Run, server: ScriptedServer) -> None:
    answer = {
        "data": [{"embedding": [0.1], "index": i} for i in range(3)],
        "usage": {"prompt_tokens": 9},
    }
    server.script(
        "/v1/embeddings", Script([(0.0, orjson.dumps(answer))], content_type="application/json")
    )
    config = EmbeddingInteraction(
        prompts=["a b", "c d e"], batch_size=3, extra_body={"dimensions": 8}
    )
    sample = await run.once(build(config))
    assert sample.ok and sample.name == "embedding"
    assert (sample.input_tokens, sample.output_tokens, sample.token_source) == (9, None, "usage")
    body = server.requests[-1].body
    assert body["model"] == "mock-model" and body["dimensions"] == 8
    assert len(body["input"]) == 3 and set(body["input"]) <= {"a b", "c d e"}


async def test_hello_default_and_custom_path(run: Run, server: ScriptedServer) -> None:
    server.script("/hello", Script([(0.0, b"hi")], content_type="text/plain"))
    sample = await run.once(build(HelloInteraction()), hello_path="/hello")
    assert sample.ok and sample.http_status == 200 and sample.name == "hello"
    assert sample.output_tokens is None and sample.token_source is None
    sample = await run.once(build(HelloInteraction(path="/missing")))
    assert (sample.error_kind, sample.http_status) == ("http_404", 404)
    assert [r.method for r in server.requests] == ["GET", "GET"]


async def test_http_with_body_headers_and_expected_status(run: Run, server: ScriptedServer) -> None:
    server.script(
        "/items", Script([(0.0, b'{"gone": true}')], status=404, content_type="application/json")
    )
    config = HttpInteraction(
        method="POST", path="/items", body={"k": 1}, headers={"X-Test": "1"}, expect_status=[404]
    )
    sample = await run.once(build(config))
    assert sample.ok and sample.http_status == 404
    request = server.requests[-1]
    assert (request.method, request.body) == ("POST", {"k": 1})
    assert request.headers["X-Test"] == "1" and request.headers["Authorization"] == "Bearer k"

    server.script("/down", Script([(0.0, b"maintenance")], status=503, content_type="text/plain"))
    sample = await run.once(build(HttpInteraction(path="/down")))
    assert (sample.error_kind, sample.error_message) == (
        "http_503",
        "HTTP 503 GET /down: maintenance",
    )


# --- registry ----------------------------------------------------------------------------------


def test_registry_builds_every_builtin(tmp_path: Path) -> None:
    configs: list[InteractionConfig] = [
        HelloInteraction(),
        HttpInteraction(),
        CompletionInteraction(),
        ChatInteraction.model_validate({"synthetic": {"input_tokens": 8, "count": 2}}),
        EmbeddingInteraction(),
        TranscriptionInteraction.model_validate({"audio": {"seconds": 0.5}}),
    ]
    for config in configs:
        interaction = build_interaction(config, seed=1, files=FileScope.anywhere(tmp_path))
        assert isinstance(interaction, BUILTIN_INTERACTIONS[config.kind])
        assert interaction.kind == config.kind


def test_registry_surfaces_dataset_errors(tmp_path: Path) -> None:
    config = ChatInteraction.model_validate({"dataset": {"path": "missing.jsonl"}})
    with pytest.raises(ConfigError, match=r"missing\.jsonl"):
        build_interaction(config, seed=0, files=FileScope.anywhere(tmp_path))
