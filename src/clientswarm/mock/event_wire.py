"""The Responses and Messages wire formats, as pure functions: parse a body, build answer bytes.

Token accounting is chat's (:mod:`clientswarm.mock.wire`): a prompt token is one word of the
instructions or system text and of every message's content, in that order, so the same prompt
costs the same tokens (and hits the same prefix cache) through any of the three APIs; a
Responses ``input_image`` part counts as chat's ``image_url`` (:mod:`clientswarm.mock.media`).

Streams are typed events, each ``event: <type>`` and ``data: {"type": <type>, …}``, shaped as
vLLM sends them:

- Responses: ``response.created`` and ``response.in_progress`` on admission; with the first
  token ``response.output_item.added`` and ``response.content_part.added``; one
  ``response.output_text.delta`` per chunk; then ``response.output_text.done``,
  ``response.content_part.done``, ``response.output_item.done`` and ``response.completed``
  (status ``incomplete`` when ``max_output_tokens`` cut it, as vLLM says it) with ``usage``.
  Every event has its ``sequence_number``. A mid-stream fault is ``response.failed``.
- Messages: ``message_start`` (``usage.input_tokens``), ``content_block_start`` and a ``ping`` on
  admission; one ``content_block_delta`` (``text_delta``) per chunk; then
  ``content_block_stop``, ``message_delta`` (``stop_reason``, ``usage.output_tokens``) and
  ``message_stop``. A mid-stream fault is an ``error`` event.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from typing import Any, Protocol

import orjson

from clientswarm.mock.media import image_words
from clientswarm.mock.wire import GenerationRequest, InvalidRequest, _message_text, _positive_int


def _object(raw: bytes) -> dict[str, Any]:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"request body is not valid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise InvalidRequest("request body must be a JSON object")
    return body


def _text(value: Any, name: str) -> str:
    """The text of ``instructions`` or ``system``: a string or a list of text blocks."""
    if value is None:
        return ""
    if not isinstance(value, str | list):
        raise InvalidRequest(f"{name} must be a string or a list of text blocks", name)
    return _message_text(value)


def _item_text(item: Any) -> str:
    """The text of one input item or message (a string, or one with ``content``)."""
    if isinstance(item, str):
        return item
    if isinstance(item, dict):
        return _message_text(item.get("content"))
    raise InvalidRequest("each input item must be an object (or a string)", "input")


def _request(
    endpoint: Any, body: dict[str, Any], texts: list[str], max_tokens: int | None
) -> GenerationRequest:
    words = tuple(" ".join(texts).split())
    model = body.get("model")
    return GenerationRequest(
        endpoint=endpoint,
        prompt_tokens=len(words),
        max_tokens=max_tokens,
        stream=bool(body.get("stream", False)),
        include_usage=True,
        model=model if isinstance(model, str) else None,
        prompt_words=words,
    )


def parse_responses(raw: bytes) -> GenerationRequest:
    """Validate a Responses request body; raises :class:`InvalidRequest`."""
    body = _object(raw)
    input_ = body.get("input")
    if isinstance(input_, str):
        items = [input_]
    elif isinstance(input_, list) and input_:
        items = [_item_text(item) for item in input_]
    else:
        raise InvalidRequest("input must be a string or a non-empty list of input items", "input")
    texts = [_text(body.get("instructions"), "instructions"), *items]
    spec = _request("responses", body, texts, _positive_int(body, "max_output_tokens"))
    images = image_words(input_) if isinstance(input_, list) else ()
    if not images:
        return spec
    words = spec.prompt_words + images
    return dataclasses.replace(spec, prompt_words=words, prompt_tokens=len(words))


def parse_messages(raw: bytes) -> GenerationRequest:
    """Validate a Messages request body; raises :class:`InvalidRequest`."""
    body = _object(raw)
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest("messages must be a non-empty list", "messages")
    if any(not isinstance(m, dict) or m.get("role") == "system" for m in messages):
        raise InvalidRequest(
            "each message must be an object with role user or assistant (system goes in "
            "the top-level system field)",
            "messages",
        )
    max_tokens = _positive_int(body, "max_tokens")
    if max_tokens is None:
        raise InvalidRequest("max_tokens is required", "max_tokens")
    texts = [_text(body.get("system"), "system"), *(_item_text(m) for m in messages)]
    return _request("messages", body, texts, max_tokens)


class EventWriter(Protocol):
    """Builds the bytes of one answer of an event-stream API."""

    def start(self, prompt_tokens: int) -> bytes:
        """The events sent on admission, before the first token is due."""
        ...

    def content(self, text: str, first: bool) -> bytes:
        """The events carrying one chunk's ``text`` (``first``: the answer's first chunk)."""
        ...

    def end(self, text: str, finish_reason: str, prompt_tokens: int, tokens: int) -> bytes:
        """The events after the last token: the whole ``text``, the stop and the usage."""
        ...

    def error(self, message: str) -> bytes:
        """The event of a failure mid-stream."""
        ...

    def full_body(self, text: str, finish_reason: str, prompt_tokens: int, tokens: int) -> bytes:
        """The whole non-stream answer."""
        ...


def _event(kind: str, data: dict[str, Any]) -> bytes:
    return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


class ResponsesWriter:
    """The answer of ``POST /v1/responses``: its events, or its whole body."""

    __slots__ = ("_created", "_id", "_item", "_model", "_seq")

    def __init__(self, model: str) -> None:
        self._model = model
        self._id = f"resp_{uuid.uuid4().hex}"
        self._item = f"msg_{uuid.uuid4().hex}"
        self._created = int(time.time())
        self._seq = 0

    def _emit(self, kind: str, **fields: Any) -> bytes:
        data = {"type": kind, "sequence_number": self._seq, **fields}
        self._seq += 1
        return _event(kind, data)

    def _response(
        self, status: str, output: list[dict[str, Any]], usage: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        incomplete = {"reason": "max_output_tokens"} if status == "incomplete" else None
        return {
            "id": self._id,
            "object": "response",
            "created_at": self._created,
            "status": status,
            "model": self._model,
            "output": output,
            "error": None,
            "incomplete_details": incomplete,
            "usage": usage,
        }

    def _message(self, text: str, status: str) -> dict[str, Any]:
        part = {"type": "output_text", "text": text, "annotations": []}
        content = [part] if status == "completed" else []
        return {
            "id": self._item,
            "type": "message",
            "role": "assistant",
            "status": status,
            "content": content,
        }

    def start(self, prompt_tokens: int) -> bytes:
        """``response.created`` and ``response.in_progress``."""
        response = self._response("in_progress", [])
        return self._emit("response.created", response=response) + self._emit(
            "response.in_progress", response=response
        )

    def content(self, text: str, first: bool) -> bytes:
        """One ``response.output_text.delta``, after the item and part on the first."""
        head = b""
        where = {"item_id": self._item, "output_index": 0}
        if first:
            item = self._message("", "in_progress")
            part = {"type": "output_text", "text": "", "annotations": []}
            head = self._emit("response.output_item.added", output_index=0, item=item)
            head += self._emit("response.content_part.added", **where, content_index=0, part=part)
        delta = self._emit(
            "response.output_text.delta", **where, content_index=0, delta=text, logprobs=[]
        )
        return head + delta

    def end(self, text: str, finish_reason: str, prompt_tokens: int, tokens: int) -> bytes:
        """The done events of the text, its part and item, then ``response.completed``."""
        where = {"item_id": self._item, "output_index": 0}
        part = {"type": "output_text", "text": text, "annotations": []}
        item = self._message(text, "completed")
        return (
            self._emit("response.output_text.done", **where, content_index=0, text=text)
            + self._emit("response.content_part.done", **where, content_index=0, part=part)
            + self._emit("response.output_item.done", output_index=0, item=item)
            + self._emit(
                "response.completed",
                response=self._whole(text, finish_reason, prompt_tokens, tokens),
            )
        )

    def error(self, message: str) -> bytes:
        """``response.failed`` with the error's code and message."""
        response = self._response("failed", [])
        response["error"] = {"code": "server_error", "message": message}
        return self._emit("response.failed", response=response)

    def _whole(
        self, text: str, finish_reason: str, prompt_tokens: int, tokens: int
    ) -> dict[str, Any]:
        status = "incomplete" if finish_reason == "length" else "completed"
        usage = {
            "input_tokens": prompt_tokens,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": tokens,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": prompt_tokens + tokens,
        }
        return self._response(status, [self._message(text, "completed")], usage)

    def full_body(self, text: str, finish_reason: str, prompt_tokens: int, tokens: int) -> bytes:
        """The ``response`` object, as ``response.completed`` carries it."""
        return orjson.dumps(self._whole(text, finish_reason, prompt_tokens, tokens))


_STOP_REASONS = {"length": "max_tokens", "stop": "end_turn"}


class MessagesWriter:
    """The answer of ``POST /v1/messages``: its events, or its whole body."""

    __slots__ = ("_id", "_model")

    def __init__(self, model: str) -> None:
        self._model = model
        self._id = f"msg_{uuid.uuid4().hex}"

    def _message(
        self, content: list[dict[str, Any]], stop_reason: str | None, usage: dict[str, int]
    ) -> dict[str, Any]:
        return {
            "id": self._id,
            "type": "message",
            "role": "assistant",
            "content": content,
            "model": self._model,
            "stop_reason": stop_reason,
            "stop_sequence": None,
            "usage": usage,
        }

    def start(self, prompt_tokens: int) -> bytes:
        """``message_start`` (input tokens), ``content_block_start`` and a ``ping``."""
        usage = {"input_tokens": prompt_tokens, "output_tokens": 0}
        block = {"type": "text", "text": ""}
        return (
            _event(
                "message_start",
                {"type": "message_start", "message": self._message([], None, usage)},
            )
            + _event(
                "content_block_start",
                {"type": "content_block_start", "index": 0, "content_block": block},
            )
            + _event("ping", {"type": "ping"})
        )

    def content(self, text: str, first: bool) -> bytes:
        """One ``content_block_delta`` with a ``text_delta``."""
        delta = {"type": "text_delta", "text": text}
        return _event(
            "content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta}
        )

    def end(self, text: str, finish_reason: str, prompt_tokens: int, tokens: int) -> bytes:
        """``content_block_stop``, ``message_delta`` (stop, output tokens), ``message_stop``."""
        delta = {"stop_reason": _STOP_REASONS.get(finish_reason, "end_turn"), "stop_sequence": None}
        return (
            _event("content_block_stop", {"type": "content_block_stop", "index": 0})
            + _event(
                "message_delta",
                {"type": "message_delta", "delta": delta, "usage": {"output_tokens": tokens}},
            )
            + _event("message_stop", {"type": "message_stop"})
        )

    def error(self, message: str) -> bytes:
        """An ``error`` event (``api_error``)."""
        error = {"type": "api_error", "message": message}
        return _event("error", {"type": "error", "error": error})

    def full_body(self, text: str, finish_reason: str, prompt_tokens: int, tokens: int) -> bytes:
        """The ``message`` object with one text block and the usage."""
        usage = {"input_tokens": prompt_tokens, "output_tokens": tokens}
        stop = _STOP_REASONS.get(finish_reason, "end_turn")
        return orjson.dumps(self._message([{"type": "text", "text": text}], stop, usage))
