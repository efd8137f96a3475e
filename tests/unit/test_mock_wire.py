"""The mock target's pure parts: request parsing, response bytes, fault draws."""

from __future__ import annotations

from collections import Counter

import numpy as np
import orjson
import pytest

from clientswarm.mock.faults import FaultInjector, FaultKind, error_body, stream_error_event
from clientswarm.mock.wire import (
    InvalidRequest,
    ResponseWriter,
    parse_generation,
    token_text,
)


def test_token_text() -> None:
    assert token_text(0, 3) == "tok0 tok1 tok2 "
    assert token_text(5, 6) == "tok5 "


def test_parse_completion() -> None:
    request = parse_generation(
        "completion",
        b'{"prompt": "one two  three", "max_tokens": 7, "stream": true,'
        b' "stream_options": {"include_usage": true}, "model": "m"}',
    )
    assert (request.prompt_tokens, request.max_tokens, request.stream) == (3, 7, True)
    assert request.include_usage and request.model == "m"
    assert parse_generation("completion", b'{"prompt": [1, 2, 3, 4]}').prompt_tokens == 4
    assert parse_generation("completion", b'{"prompt": ["a b"]}').prompt_tokens == 2


def test_parse_chat_joins_message_contents() -> None:
    body = {
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": [{"type": "text", "text": "hello there world"}]},
        ],
        "max_completion_tokens": 5,
        "max_tokens": 50,
    }
    request = parse_generation("chat", orjson.dumps(body))
    assert (request.prompt_tokens, request.max_tokens) == (5, 5)
    assert not request.stream and not request.include_usage


@pytest.mark.parametrize(
    ("endpoint", "raw", "message"),
    [
        ("completion", b"[1,", "not valid JSON"),
        ("completion", b"{}", "prompt is required"),
        ("completion", b'{"prompt": ["a", "b"]}', "one prompt per request"),
        ("completion", b'{"prompt": "a", "max_tokens": -2}', "max_tokens"),
        ("completion", b'{"prompt": "a", "n": 2}', "n=2"),
        ("chat", b'{"messages": []}', "messages"),
    ],
)
def test_parse_rejects(endpoint: str, raw: bytes, message: str) -> None:
    with pytest.raises(InvalidRequest, match=message):
        parse_generation(endpoint, raw)  # type: ignore[arg-type]


def _event(data: bytes) -> dict[str, object]:
    assert data.startswith(b"data: ") and data.endswith(b"\n\n")
    parsed: dict[str, object] = orjson.loads(data[6:])
    return parsed


def test_response_writer_chat_chunks() -> None:
    writer = ResponseWriter("chat", "m")
    role = _event(writer.role_chunk())
    assert role["object"] == "chat.completion.chunk"
    assert role["choices"] == [
        {
            "index": 0,
            "delta": {"role": "assistant", "content": ""},
            "logprobs": None,
            "finish_reason": None,
        }
    ]
    last = _event(writer.content_chunk("tok3 ", "length"))
    assert last["choices"][0]["delta"] == {"content": "tok3 "}  # type: ignore[index]
    usage = _event(writer.usage_chunk(4, 2))
    assert usage["choices"] == []
    assert usage["usage"] == {"prompt_tokens": 4, "completion_tokens": 2, "total_tokens": 6}
    assert usage["id"] == role["id"] and str(role["id"]).startswith("chatcmpl-")


def test_response_writer_completion_bodies() -> None:
    writer = ResponseWriter("completion", "m")
    chunk = _event(writer.content_chunk("tok0 "))
    assert chunk["object"] == "text_completion"
    assert chunk["choices"][0]["text"] == "tok0 "  # type: ignore[index]
    whole = orjson.loads(writer.full_body("tok0 ", "stop", 2, 1))
    assert whole["choices"][0]["finish_reason"] == "stop"
    assert whole["usage"]["total_tokens"] == 3
    chat = orjson.loads(ResponseWriter("chat", "m").full_body("x ", "length", 1, 1))
    assert chat["object"] == "chat.completion"
    assert chat["choices"][0]["message"] == {"role": "assistant", "content": "x "}


def test_error_shapes() -> None:
    assert orjson.loads(error_body(429, "slow down")) == {
        "object": "error",
        "message": "slow down",
        "type": "TooManyRequestsError",
        "param": None,
        "code": 429,
    }
    event = _event(stream_error_event("boom"))
    assert event == {
        "error": {"message": "boom", "type": "InternalServerError", "param": None, "code": 500}
    }


def test_fault_draws_follow_the_rates() -> None:
    faults = FaultInjector(
        np.random.default_rng(0),
        error_rate_500=0.1,
        error_rate_429=0.05,
        stream_error_rate=0.2,
        drop_rate=0.15,
    )
    draws = Counter(faults.draw(stream=True) for _ in range(100_000))
    assert draws[FaultKind.HTTP_500] / 1e5 == pytest.approx(0.10, abs=0.005)
    assert draws[FaultKind.HTTP_429] / 1e5 == pytest.approx(0.05, abs=0.005)
    assert draws[FaultKind.STREAM_ERROR] / 1e5 == pytest.approx(0.20, abs=0.005)
    assert draws[FaultKind.DROP] / 1e5 == pytest.approx(0.15, abs=0.005)
    assert draws[None] / 1e5 == pytest.approx(0.50, abs=0.005)


def test_stream_error_on_a_non_stream_request_is_a_500() -> None:
    faults = FaultInjector(np.random.default_rng(0), stream_error_rate=1.0)
    assert {faults.draw(stream=False) for _ in range(20)} == {FaultKind.HTTP_500}
    assert FaultInjector(np.random.default_rng(0)).draw(stream=True) is None
