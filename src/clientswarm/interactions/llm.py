"""The LLM calls of a user-defined interaction: one OpenAI request, measured as a step.

Measured exactly as the built-in ``chat``/``completion``/``embedding`` measure (the same
:class:`Measurement`, stream loop and ITL split), and the answer is kept for the caller: the
text, the assistant message (tool calls assembled from their streamed pieces), the usage.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

from clientswarm.interactions.http import classify_exception
from clientswarm.interactions.openai import (
    chat_has_content,
    completion_has_content,
    post_measured,
)
from clientswarm.interactions.streaming import (
    Measurement,
    TargetError,
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
) -> tuple[Sample, dict[str, Any] | None]:
    """Send one request as a step: the step sample, and the JSON answer when not streamed."""
    base = ctx.base
    clock = base.clock
    m = Measurement(clock.now_ns())
    answer: dict[str, Any] | None = None
    try:
        answer = await post_measured(
            base.http1,
            ctx.http.url(path),
            orjson.dumps(request),
            {**_JSON, **base.headers},
            base.target.timeout_s,
            m,
            clock.now_ns,
            what=name,
            answer_key=answer_key,
            stream=bool(request.get("stream")),
            content_of=collect,
            max_event_bytes=base.target.max_event_bytes,
        )
        if answer is not None and not (
            answer[answer_key] and isinstance(answer[answer_key][0], dict)
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


async def embedding(ctx: Context, request: dict[str, Any], *, name: str) -> EmbeddingResult:
    """One embedding request as a step; its vectors."""
    sample, answer = await _call(ctx, "/v1/embeddings", request, name=name, answer_key="data")
    data: list[dict[str, Any]] = (answer or {})["data"]
    ordered = sorted(data, key=lambda item: int(item.get("index", 0)))
    return EmbeddingResult([list(item.get("embedding") or []) for item in ordered], None, sample)


def _first_choice(answer: dict[str, Any]) -> dict[str, Any]:
    first: dict[str, Any] = answer["choices"][0]  # checked by _call
    return first
