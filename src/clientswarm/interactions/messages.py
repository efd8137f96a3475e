"""The Anthropic Messages API (``POST /v1/messages``, as vLLM serves it): the interaction, rules.

Request: ``model``, ``max_tokens`` (required by the API), ``messages`` (the user prompt, or a
dataset entry's messages without its system ones), ``system`` (the system prompt, else the
entry's system messages) and ``stream``; headers ``anthropic-version`` and, when the target has
an API key, ``x-api-key`` beside ``Authorization``.

A stream is a sequence of typed events, each ``event: <type>`` and ``data: {"type": …}``; the
data's ``type`` decides (:func:`read_messages_event`):

- ``message_start`` gives the input tokens (``message.usage``: ``input_tokens`` plus the cache's
  ``cache_read_input_tokens`` and ``cache_creation_input_tokens``, which Anthropic counts apart);
- a ``content_block_delta`` whose delta has text (``text_delta``), thinking (``thinking_delta``)
  or a piece of a tool call's input (``input_json_delta``) carries content (chat counts
  reasoning and tool-call arguments alike); the first one is the first token;
- ``message_delta`` gives the output tokens (``usage.output_tokens``, cumulative) and, with its
  ``stop_reason``, says the answer is whole; ``message_stop`` ends the stream;
- ``error`` (or a truthy top-level ``error``) fails it as ``stream_error``; data that is not a
  JSON object with a string ``type`` as ``protocol``;
- every other event (``ping``, ``content_block_start``, ``content_block_stop``) says nothing.
"""

from __future__ import annotations

from typing import Any, ClassVar

from clientswarm.config.interactions import MessagesInteraction
from clientswarm.config.paths import ANYWHERE, FileScope
from clientswarm.interactions.base import ClientContext
from clientswarm.interactions.openai import _Generation
from clientswarm.interactions.prompts import Message, Prompt
from clientswarm.interactions.streaming import (
    ChunkRead,
    ContentMarkers,
    ContentOf,
    Measurement,
    TargetError,
    error_message_of,
    load_event,
)
from clientswarm.metrics.sample import ERROR_PROTOCOL, ERROR_STREAM

MESSAGES_PATH = "/v1/messages"

ANTHROPIC_VERSION = "2023-06-01"
"""The ``anthropic-version`` header sent (the API's stable version)."""

DELTA_TEXTS = ("text", "thinking", "partial_json")
"""The fields of a ``content_block_delta``'s delta whose non-empty text is output."""

MARKERS: ContentMarkers = (b'"text":"', b'"thinking":"', b'"partial_json":"')
"""Where the text of a delta starts in its bytes (for the fast path)."""


def anthropic_headers(headers: dict[str, str]) -> dict[str, str]:
    """``headers`` plus ``anthropic-version`` and, from a bearer token, ``x-api-key``."""
    extra = {"anthropic-version": ANTHROPIC_VERSION}
    auth = headers.get("Authorization", "")
    if auth.startswith("Bearer "):
        extra["x-api-key"] = auth.removeprefix("Bearer ")
    return {**headers, **extra}


def split_system(
    messages: list[Message], system_prompt: str | None
) -> tuple[str | None, list[Message]]:
    """The ``system`` text and the other messages: ``system_prompt`` if given, else the text of
    the messages' system messages (joined by blank lines), which the Messages API takes apart."""
    system = [m for m in messages if m.get("role") == "system"]
    others = [m for m in messages if m.get("role") != "system"]
    if system_prompt is not None or not system:
        return system_prompt, others
    texts = [m["content"] for m in system if isinstance(m.get("content"), str)]
    return "\n\n".join(texts), others


def messages_request(
    model: str | None,
    messages: list[Any],
    *,
    system: str | None,
    max_tokens: int,
    stream: bool,
) -> dict[str, Any]:
    """A Messages request body (before ``extra_body``): model, max_tokens, messages, system."""
    body: dict[str, Any] = {"model": model} if model is not None else {}
    body["max_tokens"] = max_tokens
    body["messages"] = messages
    if system is not None:
        body["system"] = system
    body["stream"] = stream
    return body


def messages_has_content(event: dict[str, Any]) -> bool:
    """Whether one streamed Messages event carries output: a delta with text."""
    if event.get("type") != "content_block_delta":
        return False
    delta = event.get("delta")
    if not isinstance(delta, dict):
        return False
    for name in DELTA_TEXTS:
        text = delta.get(name)
        if isinstance(text, str) and text:
            return True
    return False


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def messages_usage(usage: Any, *, output: bool = True) -> dict[str, Any] | None:
    """A Messages ``usage`` in the OpenAI names: ``prompt_tokens`` (input tokens, the cache's
    included) and, when ``output``, ``completion_tokens``. None when it holds neither."""
    if not isinstance(usage, dict):
        return None
    named: dict[str, Any] = {}
    input_tokens = _count(usage.get("input_tokens"))
    if input_tokens is not None:
        cached = (
            _count(usage.get(k)) or 0
            for k in ("cache_read_input_tokens", "cache_creation_input_tokens")
        )
        named["prompt_tokens"] = input_tokens + sum(cached)
    output_tokens = _count(usage.get("output_tokens"))
    if output and output_tokens is not None:
        named["completion_tokens"] = output_tokens
    return named or None


def read_messages_event(data: bytes, content_of: ContentOf) -> ChunkRead:
    """What one event of a Messages stream says: ``(usage, content, finished, done)``.

    ``content_of`` sees every event. The output tokens of ``message_start`` (a placeholder
    before any token) are left out. Raises TargetError: ``stream_error`` for an error event,
    ``protocol`` for data that is not a typed JSON object or a ``message_start`` without its
    message.
    """
    event = load_event(data)
    kind = event.get("type")
    if kind == "error" or event.get("error"):
        raise TargetError(ERROR_STREAM, error_message_of(data))
    if not isinstance(kind, str):
        shown = data[:200].decode("utf-8", errors="replace")
        raise TargetError(ERROR_PROTOCOL, f"a Messages event without a type: {shown}")
    content = content_of(event)
    if kind == "message_start":
        message = event.get("message")
        if not isinstance(message, dict):
            raise TargetError(ERROR_PROTOCOL, "the message_start event has no message object")
        return messages_usage(message.get("usage"), output=False), content, False, False
    if kind == "message_delta":
        delta = event.get("delta")
        stopped = isinstance(delta, dict) and delta.get("stop_reason") is not None
        return messages_usage(event.get("usage")), content, stopped, False
    if kind == "message_stop":
        return None, content, True, True
    return None, content, False, False


def check_messages_answer(answer: dict[str, Any], m: Measurement) -> None:
    """Record the usage of a non-streamed Messages answer; TargetError if it is malformed."""
    if answer.get("type") == "error" or answer.get("error"):
        raise TargetError(ERROR_PROTOCOL, f"error in a successful answer: {answer.get('error')}")
    if not isinstance(answer.get("content"), list):
        raise TargetError(ERROR_PROTOCOL, 'the messages answer has no "content" list')
    usage = messages_usage(answer.get("usage"))
    if usage is not None:
        m.usage = usage


def message_text(answer: dict[str, Any]) -> str:
    """The text of a Messages answer: its ``text`` content blocks, joined."""
    parts = [
        block.get("text")
        for block in answer.get("content") or ()
        if isinstance(block, dict) and block.get("type") == "text"
    ]
    return "".join(p for p in parts if isinstance(p, str))


class Messages(_Generation):
    """POST /v1/messages: the prompt as the user message, the system prompt as ``system``.

    A dataset entry with ``messages`` is sent as those messages (its system ones as ``system``).
    """

    kind = "messages"
    config_model = MessagesInteraction
    path = MESSAGES_PATH
    content_markers: ClassVar[ContentMarkers] = MARKERS

    def __init__(
        self, config: MessagesInteraction, *, seed: int = 0, files: FileScope = ANYWHERE
    ) -> None:
        super().__init__(config, seed=seed, files=files)
        self._system_prompt = config.system_prompt
        self._required_max_tokens = config.max_tokens
        self.event_rules = read_messages_event
        self.answer_check = check_messages_answer
        self._anthropic: dict[int, tuple[dict[str, str], dict[str, str]]] = {}

    def has_content(self, choice: dict[str, Any]) -> bool:
        """Whether one streamed event carries output."""
        return messages_has_content(choice)

    def json_headers(self, ctx: ClientContext) -> dict[str, str]:
        """The JSON headers plus the Messages API's, built once per header dict."""
        base = super().json_headers(ctx)
        cached = self._anthropic.get(id(base))
        if cached is None or cached[0] is not base:
            cached = (base, anthropic_headers(base))
            self._anthropic[id(base)] = cached  # keeps base alive: ids stay unique
        return cached[1]

    def body(self, ctx: ClientContext, prompt: Prompt) -> dict[str, Any]:
        """The request body for ``prompt`` (before ``extra_body`` is merged)."""
        system, messages = split_system(prompt.as_messages(), self._system_prompt)
        return messages_request(
            self._model or ctx.target.model,
            messages,
            system=system,
            max_tokens=prompt.output_tokens or self._required_max_tokens,
            stream=self.stream,
        )
