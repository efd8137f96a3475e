"""Chat with images and audio transcription: what a scripted server receives (the parts the
OpenAI API defines), the simulator's answers and their metrics, ``clientswarm run --mock`` of
each, and the configuration errors."""

from __future__ import annotations

import base64
import email.parser
import email.policy
import io
import json
import math
import random
import struct
import subprocess
import wave
import zlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from scripted_server import Script, ScriptedServer, chat_stream, sse

from clientswarm.clock import Clock
from clientswarm.config.interactions import (
    ChatInteraction,
    ResponsesInteraction,
    TranscriptionInteraction,
)
from clientswarm.config.loader import validate_config_data
from clientswarm.config.models import TargetConfig
from clientswarm.config.paths import FileScope
from clientswarm.errors import ConfigError
from clientswarm.interactions import build_interaction
from clientswarm.interactions.base import ClientContext, Interaction
from clientswarm.interactions.http1 import Http1Client
from clientswarm.metrics.sample import Sample
from clientswarm.mock import MockServer, MockSettings, start_mock_server
from service_process import CLI

pytestmark = pytest.mark.timeout(60)

TTFT_MS, ITL_MS = 30.0, 2.0


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client_session:
        yield client_session


@pytest.fixture
async def scripted() -> AsyncIterator[ScriptedServer]:
    server = ScriptedServer()
    await server.start()
    yield server
    await server.close()


@pytest.fixture
async def sim() -> AsyncIterator[MockServer]:
    server = await start_mock_server(MockSettings(ttft_ms=TTFT_MS, itl_ms=ITL_MS, seed=1))
    yield server
    await server.close()


async def perform(
    session: aiohttp.ClientSession, url: str, built: Interaction, times: int = 1
) -> list[Sample]:
    samples: list[Sample] = []
    clock = Clock()
    ctx = ClientContext(
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
    for _ in range(times):
        await built.perform(ctx, clock.now_ns())
    return samples


def png_size(data: bytes) -> tuple[int, int]:
    """Check ``data`` is a whole, valid 8-bit RGB PNG (chunk CRCs, the pixel rows); its size."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    at, chunks = 8, {}
    while at < len(data):
        (length,) = struct.unpack(">I", data[at : at + 4])
        kind, body = data[at + 4 : at + 8], data[at + 8 : at + 8 + length]
        (crc,) = struct.unpack(">I", data[at + 8 + length : at + 12 + length])
        assert crc == zlib.crc32(kind + body), kind
        chunks[kind] = body
        at += 12 + length
    assert list(chunks) == [b"IHDR", b"IDAT", b"IEND"]
    width, height, depth, color = struct.unpack(">IIBB", chunks[b"IHDR"][:10])
    assert (depth, color) == (8, 2)
    assert len(zlib.decompress(chunks[b"IDAT"])) == height * (1 + 3 * width)
    return width, height


def decoded(url: str) -> bytes:
    head, _, data = url.partition(",")
    assert head == "data:image/png;base64"
    return base64.b64decode(data)


def form_parts(headers: dict[str, str], raw: bytes) -> dict[str, Any]:
    """The parts of a recorded multipart/form-data body, by name (the standard library's
    e-mail parser reads it as MIME does)."""
    content_type = {k.lower(): v for k, v in headers.items()}["content-type"]
    assert content_type.startswith("multipart/form-data; boundary=")
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + raw
    )
    return {
        part.get_param("name", header="content-disposition"): part for part in message.iter_parts()
    }


async def test_images_arrive_as_image_url_parts_after_the_text(
    scripted: ScriptedServer, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    scripted.script("/v1/chat/completions", Script(chat_stream(["Hi"], first_delay_s=0, gap_s=0)))
    images = {"count": 2, "width": 64, "height": 48, "distinct": 3}
    config = ChatInteraction.model_validate({"prompts": ["Describe it."], "images": images})
    built = build_interaction(config, seed=7)
    samples = await perform(session, scripted.url, built, times=4)
    assert all(s.ok for s in samples), [s.error_message for s in samples]
    seen: set[str] = set()
    for recorded in scripted.requests:
        (message,) = recorded.body["messages"]
        text, *parts = message["content"]
        assert message["role"] == "user"
        assert text == {"type": "text", "text": "Describe it."}
        assert [p["type"] for p in parts] == ["image_url", "image_url"]
        for part in parts:
            assert png_size(decoded(part["image_url"]["url"])) == (64, 48)
            seen.add(part["image_url"]["url"])
    assert 1 < len(seen) <= 3  # picked from the three made once
    assert build_interaction(config, seed=7).images.urls == built.images.urls  # type: ignore[attr-defined]

    # A dataset's images: a file read into a data URL, a URL as it is; CSV by image_column.
    picture = tmp_path / "cat.png"
    picture.write_bytes(decoded(built.images.urls[0]))  # type: ignore[attr-defined]
    (tmp_path / "d.jsonl").write_text(
        json.dumps({"prompt": "What is it?", "image": ["cat.png", "https://x.test/a.jpg"]}) + "\n"
    )
    (tmp_path / "d.csv").write_text("prompt,picture\nWhat is it?,cat.png\n")
    scope = FileScope.anywhere(tmp_path)
    for dataset in ({"path": "d.jsonl"}, {"path": "d.csv", "image_column": "picture"}):
        scripted.requests.clear()
        data_config = ChatInteraction.model_validate({"dataset": dataset})
        (sample,) = await perform(
            session, scripted.url, build_interaction(data_config, seed=0, files=scope)
        )
        assert sample.ok, sample.error_message
        content = scripted.requests[0].body["messages"][0]["content"]
        assert content[0] == {"type": "text", "text": "What is it?"}
        assert decoded(content[1]["image_url"]["url"]) == picture.read_bytes()
        urls = [p["image_url"]["url"] for p in content[2:]]
        assert urls == (["https://x.test/a.jpg"] if dataset["path"] == "d.jsonl" else [])

    # The Responses API's parts: input_text, then input_image with the URL itself.
    usage = {"input_tokens": 6, "output_tokens": 1}
    events = [("response.output_text.delta", {"delta": "Hi"})]
    events.append(("response.completed", {"response": {"usage": usage}}))
    stream = [
        (0.0, f"event: {t}\ndata: ".encode() + orjson.dumps({"type": t, **f}) + b"\n\n")
        for t, f in events
    ]
    scripted.script("/v1/responses", Script(stream))
    scripted.requests.clear()
    responses = build_interaction(
        ResponsesInteraction.model_validate({"prompts": ["Describe it."], "images": images}), seed=7
    )
    (sample,) = await perform(session, scripted.url, responses)
    assert sample.ok, sample.error_message
    (item,) = scripted.requests[0].body["input"]
    text, *parts = item["content"]
    assert (item["role"], text) == ("user", {"type": "input_text", "text": "Describe it."})
    assert [p["type"] for p in parts] == ["input_image", "input_image"]
    assert {p["image_url"] for p in parts} <= set(built.images.urls)  # type: ignore[attr-defined]


async def test_the_audio_arrives_as_a_multipart_wav_file(
    scripted: ScriptedServer, session: aiohttp.ClientSession
) -> None:
    answer = {
        "text": "hello there",
        "usage": {"type": "tokens", "input_tokens": 9, "output_tokens": 2},
    }
    scripted.script(
        "/v1/audio/transcriptions",
        Script([(0, orjson.dumps(answer))], content_type="application/json"),
    )
    config = TranscriptionInteraction.model_validate(
        {"audio": {"seconds": 1.5, "sample_rate": 8000}, "language": "en", "model": "whisper"}
    )
    (sample,) = await perform(session, scripted.url, build_interaction(config, seed=3))
    assert sample.ok, sample.error_message
    assert (sample.output_tokens, sample.input_tokens, sample.token_source) == (2, 9, "usage")
    (recorded,) = scripted.requests
    assert recorded.path == "/v1/audio/transcriptions"
    assert recorded.headers["Authorization"] == "Bearer secret-key"
    parts = form_parts(recorded.headers, recorded.body)
    assert list(parts) == ["model", "response_format", "language", "file"]
    assert [parts[n].get_content() for n in ("model", "response_format", "language")] == [
        "whisper",
        "json",
        "en",
    ]
    audio = parts["file"]
    assert audio.get_content_type() == "audio/wav"
    assert audio.get_filename() == "audio-0.wav"
    with wave.open(io.BytesIO(audio.get_payload(decode=True)), "rb") as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (1, 2, 8000)
        assert wav.getnframes() == 12000  # 1.5 s
        assert len(set(wav.readframes(100))) > 10  # a signal, not silence

    # Streamed: chat-like chunks give TTFT and ITL; the form asks for the stream and its usage.
    chunk = {"object": "transcription.chunk", "choices": [{"delta": {"content": "hi "}}]}
    usage = {"prompt_tokens": 9, "completion_tokens": 3}
    stream = [(0.02, sse(chunk)), (0.01, sse(chunk)), (0.01, sse(chunk))]
    stream += [(0, sse({"choices": [], "usage": usage})), (0, b"data: [DONE]\n\n")]
    scripted.script("/v1/audio/transcriptions", Script(stream))
    scripted.requests.clear()
    streamed = TranscriptionInteraction.model_validate({"stream": True})
    (sample,) = await perform(session, scripted.url, build_interaction(streamed, seed=3))
    assert sample.ok, sample.error_message
    assert sample.output_tokens == 3 and len(sample.itl_s) == 2
    assert sample.ttft_s is not None and 0.015 < sample.ttft_s < sample.e2e_s
    parts = form_parts(scripted.requests[0].headers, scripted.requests[0].body)
    assert parts["stream"].get_content() == "true"
    assert parts["stream_include_usage"].get_content() == "true"


async def test_the_simulator_counts_images_and_transcribes_audio(
    sim: MockServer, session: aiohttp.ClientSession
) -> None:
    images = {"count": 2, "width": 100, "height": 60}  # ceil(6000 / 784) = 8 tokens each
    chat = ChatInteraction.model_validate(
        {"prompts": ["one two three"], "images": images, "max_tokens": 4}
    )
    responses = ResponsesInteraction.model_validate(chat.model_dump(exclude={"kind"}))
    for config in (chat, responses):
        for sample in await perform(session, sim.url, build_interaction(config, seed=0), times=3):
            assert sample.ok, sample.error_message
            assert (sample.input_tokens, sample.output_tokens) == (3 + 2 * 8, 4), config.kind
            assert sample.ttft_s is not None and sample.ttft_s >= TTFT_MS / 1000
    for stream in (True, False):
        config = TranscriptionInteraction.model_validate(
            {"audio": {"seconds": 2.0}, "stream": stream}
        )
        (sample,) = await perform(session, sim.url, build_interaction(config, seed=0))
        assert sample.ok, sample.error_message
        words = math.ceil(2.0 * 2.5)
        assert (sample.input_tokens, sample.output_tokens) == (100, words)  # 50 a second
        assert sample.e2e_s >= (TTFT_MS + (words - 1) * ITL_MS) / 1000
        if stream:
            assert len(sample.itl_s) == words - 1
            assert sample.ttft_s is not None and sample.ttft_s >= TTFT_MS / 1000
    form = aiohttp.FormData({"model": "m"}, default_to_multipart=True)
    async with session.post(sim.url + "/v1/audio/transcriptions", data=form) as no_file:
        assert no_file.status == 400
        assert "file is required" in (await no_file.json())["message"]


def test_a_run_of_images_and_transcriptions_against_the_simulator(tmp_path: Path) -> None:
    config = tmp_path / "multimodal.yaml"
    config.write_text(
        "name: multimodal\n"
        "target: {url: 'http://127.0.0.1:1', model: mock-model}\n"
        "groups:\n"
        "  - name: vision\n"
        "    clients: 2\n"
        "    interaction: {kind: chat, max_tokens: 6, images: {width: 56, height: 56}}\n"
        "    stop: {requests: 10}\n"
        "  - name: speech\n"
        "    clients: 2\n"
        "    interaction: {kind: transcription, stream: true, audio: {seconds: 1.2}}\n"
        "    stop: {requests: 10}\n"
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
    groups = json.loads((out / "summary.json").read_text())["groups"]
    vision, speech = groups["vision"], groups["speech"]
    for stats in (vision, speech):
        assert stats["requests"] == stats["succeeded"] >= 10, stats
        assert 0.01 <= stats["ttft_s"]["p50"] < 0.05
    assert vision["input_tokens"] == (4 + 4) * vision["requests"]  # 4 words, 56 x 56 = 4 tokens
    assert vision["output_tokens"] == 6 * vision["requests"]
    assert speech["output_tokens"] == 3 * speech["requests"]  # ceil(1.2 s * 2.5 words)


@pytest.mark.parametrize(
    ("images", "expected"),
    [
        ({"format": "jpeg"}, 'images.format: not a valid choice; got "jpeg"; valid values: png'),
        ({"width": 4}, "images.width: too small; got 4; must be at least 8 and at most 8192"),
        ({"height": 10_000}, "images.height: too large; got 10000; must be at least 8 and at"),
    ],
)
def test_a_bad_image_is_named_with_what_is_valid(images: dict[str, Any], expected: str) -> None:
    data = {
        "name": "bad",
        "target": {"url": "http://127.0.0.1:1"},
        "groups": [{"name": "g", "interaction": {"kind": "chat", "images": images}}],
    }
    with pytest.raises(ConfigError) as caught:
        validate_config_data(data)
    where = f"groups[0].interaction.{expected}"
    assert any(line.startswith(where) for line in caught.value.problems), caught.value.problems


def test_missing_media_files_are_config_errors(tmp_path: Path) -> None:
    (tmp_path / "d.jsonl").write_text(json.dumps({"prompt": "Hi", "image": "gone.png"}) + "\n")
    scope = FileScope.anywhere(tmp_path)
    with pytest.raises(ConfigError) as caught:
        build_interaction(
            ChatInteraction.model_validate({"dataset": {"path": "d.jsonl"}}), seed=0, files=scope
        )
    assert "gone.png: cannot read the image" in str(caught.value.problems)
    with pytest.raises(ConfigError, match="cannot read the audio file"):
        build_interaction(
            TranscriptionInteraction.model_validate({"files": ["gone.wav"]}), seed=0, files=scope
        )
    with pytest.raises(ValueError, match="give one audio source, not audio and files"):
        TranscriptionInteraction.model_validate({"files": ["a.wav"], "audio": {"seconds": 1}})
