"""The OpenAI/vLLM wire format, as pure functions: parse a request body, build response bytes.

Token accounting of the mock: a prompt token is one whitespace-separated word (chat: the words of
every message's content); output token ``i`` is the word ``tok{i}`` followed by a space.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any, Literal

import orjson

Endpoint = Literal["completion", "chat"]
"""Which OpenAI generation endpoint a request came to."""

DONE_EVENT = b"data: [DONE]\n\n"
SSE_CONTENT_TYPE = "text/event-stream; charset=utf-8"


class InvalidRequest(ValueError):
    """A request body the mock cannot serve; answered with HTTP 400 and this message."""


@dataclass(frozen=True, slots=True)
class GenerationRequest:
    """What the mock needs from a completion or chat request body."""

    endpoint: Endpoint
    prompt_tokens: int
    max_tokens: int | None
    stream: bool
    include_usage: bool
    model: str | None


def token_text(start: int, end: int) -> str:
    """The output text of tokens ``start`` to ``end - 1``: ``"tok{start} ... tok{end-1} "``."""
    return "".join([f"tok{i} " for i in range(start, end)])


def count_words(text: str) -> int:
    """Prompt tokens of a text: its whitespace-separated words."""
    return len(text.split())


def _prompt_tokens(prompt: Any) -> int:
    if isinstance(prompt, str):
        return count_words(prompt)
    if isinstance(prompt, list):
        if all(isinstance(item, int) for item in prompt):
            return len(prompt)
        if len(prompt) == 1:
            return _prompt_tokens(prompt[0])
    raise InvalidRequest(
        "prompt must be a string, a list of token ids, or a list holding one of those "
        "(the mock serves one prompt per request)"
    )


def _message_text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    raise InvalidRequest("message content must be a string or a list of content parts")


def _positive_int(body: dict[str, Any], name: str) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidRequest(f"{name} must be an integer >= 1, got {value!r}")
    return value


def parse_generation(endpoint: Endpoint, raw: bytes) -> GenerationRequest:
    """Validate a completion or chat request body; raises :class:`InvalidRequest`."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"request body is not valid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise InvalidRequest("request body must be a JSON object")
    if endpoint == "chat":
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise InvalidRequest("messages must be a non-empty list")
        text = " ".join(_message_text(m.get("content")) for m in messages if isinstance(m, dict))
        prompt_tokens = count_words(text)
        max_tokens = _positive_int(body, "max_completion_tokens") or _positive_int(
            body, "max_tokens"
        )
    else:
        if "prompt" not in body:
            raise InvalidRequest("prompt is required")
        prompt_tokens = _prompt_tokens(body["prompt"])
        max_tokens = _positive_int(body, "max_tokens")
    n = body.get("n", 1)
    if n not in (None, 1):
        raise InvalidRequest(f"n={n!r} is not supported by the mock (only n=1)")
    options = body.get("stream_options")
    include_usage = isinstance(options, dict) and bool(options.get("include_usage"))
    model = body.get("model")
    return GenerationRequest(
        endpoint=endpoint,
        prompt_tokens=prompt_tokens,
        max_tokens=max_tokens,
        stream=bool(body.get("stream", False)),
        include_usage=include_usage,
        model=model if isinstance(model, str) else None,
    )


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    """The OpenAI ``usage`` object."""
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


class ResponseWriter:
    """Builds the bytes of one response: SSE chunks or the whole non-stream JSON body."""

    __slots__ = ("_chat", "_head")

    def __init__(self, endpoint: Endpoint, model: str) -> None:
        self._chat = endpoint == "chat"
        prefix, obj = (
            ("chatcmpl", "chat.completion.chunk") if self._chat else ("cmpl", "text_completion")
        )
        self._head: dict[str, Any] = {
            "id": f"{prefix}-{uuid.uuid4().hex}",
            "object": obj,
            "created": int(time.time()),
            "model": model,
        }

    def _event(self, choices: list[dict[str, Any]], **extra: Any) -> bytes:
        return b"data: " + orjson.dumps({**self._head, "choices": choices, **extra}) + b"\n\n"

    def role_chunk(self) -> bytes:
        """Chat's first chunk, ``delta: {"role": "assistant", "content": ""}``: not a token."""
        delta = {"role": "assistant", "content": ""}
        return self._event([{"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}])

    def content_chunk(self, text: str, finish_reason: str | None = None) -> bytes:
        """One streamed chunk carrying ``text``; the last one carries the finish reason."""
        if self._chat:
            choice: dict[str, Any] = {
                "index": 0,
                "delta": {"content": text},
                "logprobs": None,
                "finish_reason": finish_reason,
            }
        else:
            choice = {
                "index": 0,
                "text": text,
                "logprobs": None,
                "finish_reason": finish_reason,
                "stop_reason": None,
            }
        return self._event([choice])

    def usage_chunk(self, prompt_tokens: int, completion_tokens: int) -> bytes:
        """The ``stream_options.include_usage`` chunk: ``choices: []`` and ``usage``."""
        return self._event([], usage=usage(prompt_tokens, completion_tokens))

    def full_body(
        self, text: str, finish_reason: str, prompt_tokens: int, completion_tokens: int
    ) -> bytes:
        """The non-stream response body (``text_completion`` or ``chat.completion``)."""
        if self._chat:
            choice: dict[str, Any] = {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "logprobs": None,
                "finish_reason": finish_reason,
            }
            head = {**self._head, "object": "chat.completion"}
        else:
            choice = {
                "index": 0,
                "text": text,
                "logprobs": None,
                "finish_reason": finish_reason,
                "stop_reason": None,
            }
            head = self._head
        body = {**head, "choices": [choice], "usage": usage(prompt_tokens, completion_tokens)}
        return orjson.dumps(body)
