"""The OpenAI Responses API (``POST /v1/responses``): the ``responses`` interaction and its rules.

Request: ``model``, ``input`` (the prompt's text, or a dataset entry's messages as input items),
``instructions`` (the system prompt), ``max_output_tokens``, ``stream`` and ``store: false``
(a load test keeps nothing on the server; ``extra_body`` may say otherwise). With images
(``images``, or a dataset entry's) ``input`` is the user message as ``input_text`` and
``input_image`` parts.

A stream is a sequence of typed events, each ``event: <type>`` and ``data: {"type": …}``; the
data's ``type`` decides (:func:`read_responses_event`):

- a delta event with a non-empty ``delta`` string carries content: output text, a refusal,
  reasoning text or its summary, a function call's arguments (:data:`CONTENT_EVENTS`; chat
  counts reasoning and tool-call arguments alike); the first one is the first token;
- ``response.completed`` and ``response.incomplete`` (``max_output_tokens`` reached) end the
  stream; their ``response.usage`` gives the token counts;
- ``error`` and ``response.failed`` (or a truthy top-level ``error``) fail it as
  ``stream_error``; data that is not a JSON object with a string ``type`` as ``protocol``;
- every other event (``response.created``, ``response.output_item.added``, …) says nothing.
"""

from __future__ import annotations

from typing import Any, ClassVar

from clientswarm.config.interactions import ResponsesInteraction
from clientswarm.config.paths import ANYWHERE, FileScope
from clientswarm.interactions.base import ClientContext
from clientswarm.interactions.media import ImagePool
from clientswarm.interactions.openai import _Generation, with_images
from clientswarm.interactions.prompts import Prompt
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

RESPONSES_PATH = "/v1/responses"

CONTENT_EVENTS = frozenset(
    {
        "response.output_text.delta",
        "response.refusal.delta",
        "response.reasoning_text.delta",
        "response.reasoning_summary_text.delta",
        "response.function_call_arguments.delta",
    }
)
"""The event types whose non-empty ``delta`` is output (a token or more)."""

LAST_EVENTS = frozenset({"response.completed", "response.incomplete"})
"""The event types that end a stream that succeeded."""

MARKERS: ContentMarkers = (b'"delta":"',)
"""Where the text of a delta event starts in its bytes (for the fast path)."""


def responses_request(
    model: str | None,
    input_: str | list[Any],
    *,
    instructions: str | None,
    max_output_tokens: int | None,
    stream: bool,
) -> dict[str, Any]:
    """A Responses request body (before ``extra_body``): model, input, instructions, limits."""
    body: dict[str, Any] = {"model": model} if model is not None else {}
    body["input"] = input_
    if instructions is not None:
        body["instructions"] = instructions
    if max_output_tokens is not None:
        body["max_output_tokens"] = max_output_tokens
    body["stream"] = stream
    body["store"] = False
    return body


def responses_has_content(event: dict[str, Any]) -> bool:
    """Whether one streamed Responses event carries output: a delta event with text."""
    if event.get("type") not in CONTENT_EVENTS:
        return False
    delta = event.get("delta")
    return isinstance(delta, str) and bool(delta)


def responses_usage(usage: Any) -> dict[str, Any] | None:
    """A Responses ``usage`` in the OpenAI names (``prompt_tokens``, ``completion_tokens``)."""
    if not isinstance(usage, dict):
        return None
    named = {
        "prompt_tokens": usage.get("input_tokens"),
        "completion_tokens": usage.get("output_tokens"),
    }
    kept = {k: v for k, v in named.items() if isinstance(v, int) and not isinstance(v, bool)}
    return kept or None


def read_responses_event(data: bytes, content_of: ContentOf) -> ChunkRead:
    """What one event of a Responses stream says: ``(usage, content, finished, done)``.

    ``content_of`` sees every event. Raises TargetError: ``stream_error`` for an error event,
    ``protocol`` for data that is not a typed JSON object or a last event without a response.
    """
    event = load_event(data)
    kind = event.get("type")
    if kind == "error" or event.get("error"):
        raise TargetError(ERROR_STREAM, error_message_of(data))
    if kind == "response.failed":
        raise TargetError(ERROR_STREAM, _failure_message(event.get("response")))
    if not isinstance(kind, str):
        shown = data[:200].decode("utf-8", errors="replace")
        raise TargetError(ERROR_PROTOCOL, f"a Responses event without a type: {shown}")
    content = content_of(event)
    if kind not in LAST_EVENTS:
        return None, content, False, False
    response = event.get("response")
    if not isinstance(response, dict):
        raise TargetError(ERROR_PROTOCOL, f"the {kind} event has no response object")
    return responses_usage(response.get("usage")), content, True, True


def _failure_message(response: Any) -> str:
    """The message of a failed response's ``error`` (``{code, message}``)."""
    error = response.get("error") if isinstance(response, dict) else None
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        code = error.get("code")
        return f"{code}: {error['message']}" if isinstance(code, str) else str(error["message"])
    return "the response failed (response.failed)"


def check_responses_answer(answer: dict[str, Any], m: Measurement) -> None:
    """Record the usage of a non-streamed Responses answer; TargetError if it is malformed
    or failed."""
    if answer.get("error"):
        raise TargetError(ERROR_PROTOCOL, f"error in a successful answer: {answer['error']}")
    if answer.get("status") == "failed":
        raise TargetError(ERROR_PROTOCOL, _failure_message(answer))
    if not isinstance(answer.get("output"), list):
        raise TargetError(ERROR_PROTOCOL, 'the responses answer has no "output" list')
    usage = responses_usage(answer.get("usage"))
    if usage is not None:
        m.usage = usage


def response_text(answer: dict[str, Any]) -> str:
    """The output text of a Responses answer: its messages' ``output_text`` parts, joined."""
    parts: list[str] = []
    for item in answer.get("output") or ():
        if isinstance(item, dict) and item.get("type") == "message":
            for part in item.get("content") or ():
                if isinstance(part, dict) and part.get("type") == "output_text":
                    text = part.get("text")
                    parts.append(text if isinstance(text, str) else "")
    return "".join(parts)


class Responses(_Generation):
    """POST /v1/responses: the prompt as ``input``, the system prompt as ``instructions``.

    A dataset entry with ``messages`` is sent as those messages (input items).
    """

    kind = "responses"
    config_model = ResponsesInteraction
    path = RESPONSES_PATH
    content_markers: ClassVar[ContentMarkers] = MARKERS

    def __init__(
        self, config: ResponsesInteraction, *, seed: int = 0, files: FileScope = ANYWHERE
    ) -> None:
        super().__init__(config, seed=seed, files=files)
        self._instructions = config.system_prompt
        self.images = ImagePool(config.images, seed=seed)
        self.event_rules = read_responses_event
        self.answer_check = check_responses_answer

    def has_content(self, choice: dict[str, Any]) -> bool:
        """Whether one streamed event carries output."""
        return responses_has_content(choice)

    def body(self, ctx: ClientContext, prompt: Prompt) -> dict[str, Any]:
        """The request body for ``prompt`` (before ``extra_body`` is merged)."""
        input_: str | list[Any] = (
            prompt.as_text() if prompt.messages is None else list(prompt.as_messages())
        )
        images = self.images.for_request(prompt.images, ctx.rng)
        if images:
            input_ = with_images(prompt.as_messages(), images, responses=True)
        return responses_request(
            self._model or ctx.target.model,
            input_,
            instructions=self._instructions,
            max_output_tokens=prompt.output_tokens or self._max_tokens,
            stream=self.stream,
        )
