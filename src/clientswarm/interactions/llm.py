"""The LLM calls of a user-defined interaction: one OpenAI request, measured as a step.

Measured exactly as the built-in ``chat``/``completion``/``embedding`` measure (the same
:class:`Measurement`, stream loop and ITL split), and the answer is kept for the caller: the
text, the assistant message (tool calls assembled from their streamed pieces), the usage.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import aiohttp
import orjson

from clientswarm.interactions.http import classify_exception, fail_http
from clientswarm.interactions.openai import chat_has_content, completion_has_content
from clientswarm.interactions.streaming import (
    Measurement,
    TargetError,
    parse_json_body,
    read_sse_stream,
)
from clientswarm.interactions.user import StepFailed
from clientswarm.metrics.sample import ERROR_CANCELLED, ERROR_PROTOCOL, Sample

if TYPE_CHECKING:
    from clientswarm.interactions.user import Context

_JSON = {"Content-Type": "application/json"}
_STREAM_OPTIONS = {"include_usage": True}


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
        """Keep one streamed chat choice; True when it carries content (or a tool call)."""
        if choice.get("index", 0) != 0:
            return chat_has_content(choice)
        self.finish_reason = choice.get("finish_reason") or self.finish_reason
        delta = choice.get("delta") or {}
        content = delta.get("content")
        if content:
            self.text.append(content)
        calls = delta.get("tool_calls") or []
        for call in calls:
            slot = self.tool_calls.setdefault(
                int(call.get("index", 0)),
                {"id": None, "type": "function", "function": {"name": "", "arguments": ""}},
            )
            if call.get("id"):
                slot["id"] = call["id"]
            function = call.get("function") or {}
            if function.get("name"):
                slot["function"]["name"] += function["name"]
            if function.get("arguments"):
                slot["function"]["arguments"] += function["arguments"]
        return chat_has_content(choice) or any(
            (c.get("function") or {}).get("arguments") for c in calls
        )

    def completion_choice(self, choice: dict[str, Any]) -> bool:
        """Keep one streamed completion choice; True when it carries text."""
        if choice.get("index", 0) == 0:
            self.finish_reason = choice.get("finish_reason") or self.finish_reason
            if choice.get("text"):
                self.text.append(choice["text"])
        return completion_has_content(choice)


async def _call(
    ctx: Context,
    path: str,
    body: dict[str, Any],
    *,
    name: str,
    stream: bool,
    collect: Any,
    answer_key: str = "choices",
) -> tuple[Sample, dict[str, Any] | None]:
    """Send one request as a step: the step sample, and the JSON answer when not streamed."""
    base = ctx.base
    clock = base.clock
    m = Measurement(clock.now_ns())
    answer: dict[str, Any] | None = None
    timeout = aiohttp.ClientTimeout(total=base.target.timeout_s)
    try:
        m.sent_ns = clock.now_ns()
        async with base.session.post(
            ctx.http.url(path),
            data=orjson.dumps(body),
            headers={**_JSON, **base.headers},
            timeout=timeout,
        ) as response:
            m.http_status = response.status
            if response.status >= 400:
                await fail_http(response, m, clock.now_ns)
            elif stream:
                await read_sse_stream(response, m, clock.now_ns, collect)
            else:
                raw = await response.read()
                m.end_ns = clock.now_ns()
                answer = parse_json_body(raw, name)
                if "error" in answer:
                    raise TargetError(ERROR_PROTOCOL, f"error in a successful answer: {answer}")
                items = answer.get(answer_key)
                if not isinstance(items, list) or not items or not isinstance(items[0], dict):
                    raise TargetError(
                        ERROR_PROTOCOL, f'the {name} answer has no "{answer_key}" list'
                    )
                if isinstance(answer.get("usage"), dict):
                    m.usage = answer["usage"]
                m.done = True
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


def _generation_body(
    ctx: Context, body: dict[str, Any], *, max_tokens: int | None, stream: bool, model: str | None
) -> dict[str, Any]:
    chosen = model or ctx.target.model
    head: dict[str, Any] = {"model": chosen} if chosen is not None else {}
    if max_tokens is not None:
        head["max_tokens"] = max_tokens
    head["stream"] = stream
    if stream:
        head["stream_options"] = _STREAM_OPTIONS
    return {**head, **body}


async def _generate(
    ctx: Context,
    path: str,
    body: dict[str, Any],
    *,
    max_tokens: int | None,
    stream: bool,
    model: str | None,
    name: str,
    chat: bool,
) -> tuple[Sample, dict[str, Any] | None, _Collected]:
    """One generation request as a step: its sample, the JSON answer (not streamed) or what
    the stream said."""
    collected = _Collected()
    request = _generation_body(ctx, body, max_tokens=max_tokens, stream=stream, model=model)
    collect = collected.chat_choice if chat else collected.completion_choice
    sample, answer = await _call(ctx, path, request, name=name, stream=stream, collect=collect)
    return sample, answer, collected


async def chat(
    ctx: Context,
    body: dict[str, Any],
    *,
    max_tokens: int | None,
    stream: bool,
    model: str | None,
    name: str,
) -> ChatResult:
    """One chat request as a step; the assistant's answer."""
    sample, answer, collected = await _generate(
        ctx,
        "/v1/chat/completions",
        body,
        max_tokens=max_tokens,
        stream=stream,
        model=model,
        name=name,
        chat=True,
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


async def completion(
    ctx: Context,
    body: dict[str, Any],
    *,
    max_tokens: int | None,
    stream: bool,
    model: str | None,
    name: str,
) -> CompletionResult:
    """One completion request as a step; its text."""
    sample, answer, collected = await _generate(
        ctx,
        "/v1/completions",
        body,
        max_tokens=max_tokens,
        stream=stream,
        model=model,
        name=name,
        chat=False,
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


async def embedding(
    ctx: Context, body: dict[str, Any], *, model: str | None, name: str
) -> EmbeddingResult:
    """One embedding request as a step; its vectors."""
    chosen = model or ctx.target.model
    request = {"model": chosen, **body} if chosen is not None else body
    sample, answer = await _call(
        ctx, "/v1/embeddings", request, name=name, stream=False, collect=None, answer_key="data"
    )
    data: list[dict[str, Any]] = (answer or {})["data"]
    ordered = sorted(data, key=lambda item: int(item.get("index", 0)))
    return EmbeddingResult([list(item.get("embedding") or []) for item in ordered], None, sample)


def _first_choice(answer: dict[str, Any]) -> dict[str, Any]:
    first: dict[str, Any] = answer["choices"][0]  # checked by _call
    return first
