"""The LLM calls of a user-defined interaction: one request, measured as a step.

Measured exactly as the built-in ``chat``/``completion``/``embedding``/``responses``/
``messages`` measure (the same :class:`Measurement`, stream loop and ITL split), and the answer
is kept for the caller: the text, the assistant message (tool calls assembled from their
streamed pieces), the usage.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

from clientswarm.interactions.http import classify_exception
from clientswarm.interactions.messages import (
    MESSAGES_PATH,
    anthropic_headers,
    check_messages_answer,
    message_text,
    messages_has_content,
    read_messages_event,
)
from clientswarm.interactions.openai import (
    AnswerCheck,
    chat_has_content,
    completion_has_content,
    post_measured,
)
from clientswarm.interactions.responses import (
    LAST_EVENTS,
    RESPONSES_PATH,
    check_responses_answer,
    read_responses_event,
    response_text,
    responses_has_content,
)
from clientswarm.interactions.streaming import (
    EventRules,
    Measurement,
    TargetError,
    read_chunk,
)
from clientswarm.interactions.user import StepFailed
from clientswarm.metrics.sample import ERROR_CANCELLED, ERROR_PROTOCOL, Sample

if TYPE_CHECKING:
    from clientswarm.interactions.user import Context

_JSON = {"Content-Type": "application/json"}


@dataclass
class ChatResult:
    """The assistant's answer to one chat request."""

    text: str
    message: dict[str, Any]
    """The assistant message as the API returned it, ready to append to the history."""
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    finish_reason: str | None = None
    usage: dict[str, Any] | None = None
    sample: Sample | None = None
    """The step sample recorded for it (TTFT, ITL, tokens)."""


@dataclass
class CompletionResult:
    """The text of one completion request."""

    text: str
    finish_reason: str | None = None
    usage: dict[str, Any] | None = None
    sample: Sample | None = None


@dataclass
class ResponsesResult:
    """The answer to one Responses request."""

    text: str
    """The output text (its ``output_text`` parts, or the streamed text deltas)."""
    response: dict[str, Any] | None = None
    """The response object: the answer, or the one the stream's last event carried."""
    status: str | None = None
    """``completed``, or ``incomplete`` when ``max_output_tokens`` cut it."""
    usage: dict[str, Any] | None = None
    """As the API gives it: ``input_tokens``, ``output_tokens``, …"""
    sample: Sample | None = None


@dataclass
class MessagesResult:
    """The assistant's answer to one Messages request."""

    text: str
    message: dict[str, Any]
    """The assistant message (role and content), ready to append to the messages."""
    stop_reason: str | None = None
    usage: dict[str, Any] | None = None
    """As the API gives it (a stream's ``message_start`` and ``message_delta`` merged)."""
    sample: Sample | None = None


@dataclass
class EmbeddingResult:
    """The vectors of one embedding request, in input order."""

    vectors: list[list[float]]
    usage: dict[str, Any] | None = None
    sample: Sample | None = None


class _Collected:
    """What a streamed answer said, assembled from its chunks (first choice only)."""

    def __init__(self) -> None:
        self.text: list[str] = []
        self.tool_calls: dict[int, dict[str, Any]] = {}
        self.finish_reason: str | None = None

    def chat_choice(self, choice: dict[str, Any]) -> bool:
        """Keep one streamed chat choice; True when it carries content (or a tool call's
        arguments). Pieces of unexpected types are left out rather than trusted."""
        if choice.get("index", 0) != 0:
            return chat_has_content(choice)
        self.finish_reason = _text(choice.get("finish_reason")) or self.finish_reason
        delta = choice.get("delta")
        if not isinstance(delta, dict):
            return False
        content = _text(delta.get("content"))
        if content:
            self.text.append(content)
        calls = delta.get("tool_calls")
        for call in calls if isinstance(calls, list) else ():
            if isinstance(call, dict):
                self._tool_call(call)
        return chat_has_content(choice)  # what the built-in chat counts, tool calls included

    def _tool_call(self, call: dict[str, Any]) -> None:
        """Add one streamed piece of a tool call to its slot.

        A piece without an integer ``index`` (null, missing) belongs to the first call, as
        pieces of a server that streams one call at a time.
        """
        index = call.get("index")
        slot = self.tool_calls.setdefault(
            index if isinstance(index, int) and not isinstance(index, bool) else 0,
            {"id": None, "type": "function", "function": {"name": "", "arguments": ""}},
        )
        if _text(call.get("id")):
            slot["id"] = call["id"]
        function = call.get("function")
        if not isinstance(function, dict):
            return
        slot["function"]["name"] += _text(function.get("name"))
        slot["function"]["arguments"] += _text(function.get("arguments"))

    def completion_choice(self, choice: dict[str, Any]) -> bool:
        """Keep one streamed completion choice; True when it carries text."""
        if choice.get("index", 0) == 0:
            self.finish_reason = _text(choice.get("finish_reason")) or self.finish_reason
            self.text.append(_text(choice.get("text")))
        return completion_has_content(choice)


class _EventsCollected:
    """What a streamed Responses or Messages answer said, assembled from its events."""

    def __init__(self) -> None:
        self.text: list[str] = []
        self.response: dict[str, Any] | None = None
        self.stop_reason: str | None = None
        self.usage: dict[str, Any] = {}

    def responses_event(self, event: dict[str, Any]) -> bool:
        """Keep one Responses event; True when it carries output."""
        kind = event.get("type")
        if kind == "response.output_text.delta":
            self.text.append(_text(event.get("delta")))
        elif kind in LAST_EVENTS and isinstance(event.get("response"), dict):
            self.response = event["response"]
        return responses_has_content(event)

    def messages_event(self, event: dict[str, Any]) -> bool:
        """Keep one Messages event; True when it carries output."""
        kind = event.get("type")
        delta = event.get("delta")
        if kind == "content_block_delta" and isinstance(delta, dict):
            self.text.append(_text(delta.get("text")))
        elif kind == "message_start" and isinstance(event.get("message"), dict):
            self._usage(event["message"].get("usage"))
        elif kind == "message_delta":
            self._usage(event.get("usage"))
            if isinstance(delta, dict):
                self.stop_reason = _text(delta.get("stop_reason")) or self.stop_reason
        return messages_has_content(event)

    def _usage(self, usage: Any) -> None:
        if isinstance(usage, dict):
            self.usage.update(usage)


def _text(value: Any) -> str:
    """``value`` if it is a string, else ``""``: a streamed piece of text of another type is
    not text the answer can carry."""
    return value if isinstance(value, str) else ""


async def _call(
    ctx: Context,
    path: str,
    request: dict[str, Any],
    *,
    name: str,
    collect: Any = None,
    answer_key: str = "choices",
    rules: EventRules = read_chunk,
    check: AnswerCheck | None = None,
    anthropic: bool = False,
) -> tuple[Sample, dict[str, Any] | None]:
    """Send one request as a step: the step sample, and the JSON answer when not streamed.

    Another API's stream and answer are read by its ``rules`` and ``check``; ``anthropic``
    adds the Messages API's headers.
    """
    base = ctx.base
    clock = base.clock
    m = Measurement(clock.now_ns())
    answer: dict[str, Any] | None = None
    headers = {**_JSON, **base.headers}
    try:
        answer = await post_measured(
            base.http1,
            ctx.http.url(path),
            orjson.dumps(request),
            anthropic_headers(headers) if anthropic else headers,
            base.target.timeout_s,
            m,
            clock.now_ns,
            what=name,
            answer_key=answer_key,
            stream=bool(request.get("stream")),
            content_of=collect,
            max_event_bytes=base.target.max_event_bytes,
            rules=rules,
            check=check,
        )
        if (
            answer is not None
            and check is None
            and not (answer[answer_key] and isinstance(answer[answer_key][0], dict))
        ):
            raise TargetError(ERROR_PROTOCOL, f'the {name} answer has an empty "{answer_key}" list')
    except asyncio.CancelledError:
        m.fail(ERROR_CANCELLED, "the run stopped while the request was in flight", clock.now_ns())
        ctx.record_step(_sample(ctx, m, name))
        raise
    except Exception as exc:
        m.fail(*classify_exception(exc, base.target.timeout_s), clock.now_ns())
    sample = _sample(ctx, m, name)
    ctx.record_step(sample)
    if sample.error_kind is not None:
        raise StepFailed(name, sample.error_kind, sample.error_message or "")
    return sample, answer


def _sample(ctx: Context, m: Measurement, name: str) -> Sample:
    base = ctx.base
    return m.to_sample(
        group=base.group,
        client=base.client,
        worker=base.worker,
        name=name,
        scheduled_ns=m.sent_ns,
        now_ns=base.clock.now_ns(),
    )


async def chat(ctx: Context, request: dict[str, Any], *, name: str) -> ChatResult:
    """One chat request as a step; the assistant's answer."""
    collected = _Collected()
    sample, answer = await _call(
        ctx, "/v1/chat/completions", request, name=name, collect=collected.chat_choice
    )
    if answer is not None:
        choice = _first_choice(answer)
        message = dict(choice.get("message") or {})
        return ChatResult(
            text=str(message.get("content") or ""),
            message=message,
            tool_calls=list(message.get("tool_calls") or []),
            finish_reason=choice.get("finish_reason"),
            usage=answer.get("usage"),
            sample=sample,
        )
    text = "".join(collected.text)
    calls = [collected.tool_calls[i] for i in sorted(collected.tool_calls)]
    message = {"role": "assistant", "content": text or None}
    if calls:
        message["tool_calls"] = calls
    return ChatResult(
        text=text,
        message=message,
        tool_calls=calls,
        finish_reason=collected.finish_reason,
        usage=None,
        sample=sample,
    )


async def completion(ctx: Context, request: dict[str, Any], *, name: str) -> CompletionResult:
    """One completion request as a step; its text."""
    collected = _Collected()
    sample, answer = await _call(
        ctx, "/v1/completions", request, name=name, collect=collected.completion_choice
    )
    if answer is not None:
        choice = _first_choice(answer)
        return CompletionResult(
            text=str(choice.get("text") or ""),
            finish_reason=choice.get("finish_reason"),
            usage=answer.get("usage"),
            sample=sample,
        )
    return CompletionResult("".join(collected.text), collected.finish_reason, None, sample)


async def responses(ctx: Context, request: dict[str, Any], *, name: str) -> ResponsesResult:
    """One Responses request as a step; its output text and response object."""
    collected = _EventsCollected()
    sample, answer = await _call(
        ctx,
        RESPONSES_PATH,
        request,
        name=name,
        collect=collected.responses_event,
        rules=read_responses_event,
        check=check_responses_answer,
    )
    if answer is None:  # streamed: the text from its deltas, the rest from its last event
        answer = collected.response
        text = "".join(collected.text)
    else:
        text = response_text(answer)
    answer = answer or {}
    status = answer.get("status")
    usage = answer.get("usage")
    return ResponsesResult(
        text=text,
        response=answer or None,
        status=status if isinstance(status, str) else None,
        usage=usage if isinstance(usage, dict) else None,
        sample=sample,
    )


async def messages(ctx: Context, request: dict[str, Any], *, name: str) -> MessagesResult:
    """One Messages request as a step; the assistant's answer."""
    collected = _EventsCollected()
    sample, answer = await _call(
        ctx,
        MESSAGES_PATH,
        request,
        name=name,
        collect=collected.messages_event,
        rules=read_messages_event,
        check=check_messages_answer,
        anthropic=True,
    )
    if answer is None:
        text = "".join(collected.text)
        return MessagesResult(
            text=text,
            message={"role": "assistant", "content": text},
            stop_reason=collected.stop_reason,
            usage=collected.usage or None,
            sample=sample,
        )
    stop = answer.get("stop_reason")
    usage = answer.get("usage")
    return MessagesResult(
        text=message_text(answer),
        message={"role": "assistant", "content": answer["content"]},  # checked: a list
        stop_reason=stop if isinstance(stop, str) else None,
        usage=usage if isinstance(usage, dict) else None,
        sample=sample,
    )


async def embedding(ctx: Context, request: dict[str, Any], *, name: str) -> EmbeddingResult:
    """One embedding request as a step; its vectors."""
    sample, answer = await _call(ctx, "/v1/embeddings", request, name=name, answer_key="data")
    data: list[dict[str, Any]] = (answer or {})["data"]
    ordered = sorted(data, key=lambda item: int(item.get("index", 0)))
    return EmbeddingResult([list(item.get("embedding") or []) for item in ordered], None, sample)


def _first_choice(answer: dict[str, Any]) -> dict[str, Any]:
    first: dict[str, Any] = answer["choices"][0]  # checked by _call
    return first
