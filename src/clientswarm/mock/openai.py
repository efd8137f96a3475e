"""Generation handlers: ``POST /v1/completions`` and ``POST /v1/chat/completions``.

A request draws its fault first; ``http_500``/``http_429`` (and a non-stream drop) are answered at
once. Otherwise it queues for an engine slot and KV-cache room, and its tokens leave at their
absolute deadlines (see :mod:`clientswarm.mock.scheduler` and :mod:`clientswarm.mock.engine`);
one that could never fit in the KV cache is answered HTTP 400. A stream's headers go out on
arrival, like vLLM's; chat's role chunk goes out on admission, before the first token is due, so
a client that counts it as a token measures a wrong TTFT. Any model name is accepted and echoed
back (default: ``--model``).

A chat request answered with a tool call (see :mod:`clientswarm.mock.wire`) is paced the same
way, its output tokens being the pieces of the call's arguments: at the first token's deadline a
chunk names the call (index, id, type, function name, empty arguments) and carries the first
piece; each later piece leaves at its own deadline; a last chunk with an empty delta carries
``finish_reason: "tool_calls"`` (``"length"`` when ``max_tokens`` cut the arguments short).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial

from aiohttp import web

from clientswarm.mock.engine import chunk_bounds
from clientswarm.mock.faults import (
    FaultKind,
    error_body,
    fault_after_tokens,
    stream_error_event,
)
from clientswarm.mock.scheduler import EngineSequence
from clientswarm.mock.state import STATE_KEY, MockState
from clientswarm.mock.wire import (
    DONE_EVENT,
    SSE_CONTENT_TYPE,
    Endpoint,
    GenerationRequest,
    InvalidRequest,
    ResponseWriter,
    ToolCallPlan,
    parse_generation,
    token_text,
    tool_call_id,
)

MID_STREAM_FAULTS = frozenset({FaultKind.STREAM_ERROR, FaultKind.DROP})

FAULT_MESSAGES = {
    FaultKind.HTTP_500: "mock-server injected an internal server error (--error-rate-500)",
    FaultKind.HTTP_429: "mock-server injected a rate-limit rejection (--error-rate-429)",
    FaultKind.STREAM_ERROR: "mock-server injected a mid-stream error (--stream-error-rate)",
}


def error_response(status: int, message: str, param: str | None = None) -> web.Response:
    """A vLLM-shaped JSON error response (``param``: the request field at fault, if known)."""
    return web.Response(
        status=status, body=error_body(status, message, param), content_type="application/json"
    )


def drop_connection(request: web.Request) -> web.Response:
    """Close the client's TCP connection now; the returned response can never be sent."""
    transport = request.transport
    if transport is not None:
        transport.close()
    return web.Response()


def answer_fault_at_once(request: web.Request, state: MockState, fault: FaultKind) -> web.Response:
    """Inject a fault that strikes before any answer: HTTP 500, HTTP 429 or a dropped connection."""
    state.metrics.fault(fault)
    if fault is FaultKind.DROP:
        return drop_connection(request)
    status = 429 if fault is FaultKind.HTTP_429 else 500
    return error_response(status, FAULT_MESSAGES[fault])


async def completions(request: web.Request) -> web.StreamResponse:
    """``POST /v1/completions``: a text completion, streamed or whole."""
    return await _generate(request, "completion")


async def chat_completions(request: web.Request) -> web.StreamResponse:
    """``POST /v1/chat/completions``: a chat completion, streamed or whole."""
    return await _generate(request, "chat")


StreamAnswer = Callable[
    [web.Request, MockState, GenerationRequest, FaultKind | None, float],
    Awaitable[web.StreamResponse],
]
"""Streams the answer to a request: ``(request, state, spec, fault, arrived)``."""
WholeAnswer = Callable[[MockState, GenerationRequest, float], Awaitable[web.Response]]
"""Answers a request in one body: ``(state, spec, arrived)``."""


async def _generate(request: web.Request, endpoint: Endpoint) -> web.StreamResponse:
    parse = partial(parse_generation, endpoint)
    return await serve_generation(request, parse, _stream, _whole)


async def serve_generation(
    request: web.Request,
    parse: Callable[[bytes], GenerationRequest],
    stream: StreamAnswer,
    whole: WholeAnswer,
) -> web.StreamResponse:
    """Answer one generation request of any API: ``parse`` its body, draw its fault, then
    ``stream`` or answer it ``whole`` (counted in flight meanwhile)."""
    state = request.app[STATE_KEY]
    arrived = asyncio.get_running_loop().time()
    try:
        spec = parse(await request.read())
    except InvalidRequest as exc:
        return error_response(400, str(exc), exc.param)
    fault = state.faults.draw(stream=spec.stream)
    if fault is not None and not (spec.stream and fault in MID_STREAM_FAULTS):
        return answer_fault_at_once(request, state, fault)
    metrics = state.metrics
    metrics.in_flight += 1
    task = asyncio.current_task()
    if task is not None:
        state.answering.add(task)
    try:
        if spec.stream:
            return await stream(request, state, spec, fault, arrived)
        return await whole(state, spec, arrived)
    except (asyncio.CancelledError, ConnectionError):
        metrics.abort()
        raise
    finally:
        metrics.in_flight -= 1
        state.answering.discard(task)


@dataclass(frozen=True, slots=True)
class _Plan:
    """What an answer will hold: its output tokens, finish reason and tool call (if any)."""

    tokens: int
    finish_reason: str
    tool_call: ToolCallPlan | None

    def text(self, start: int, end: int) -> str:
        """The text of output tokens ``start`` to ``end - 1`` (a tool call's arguments)."""
        if self.tool_call is not None:
            return self.tool_call.text(start, end)
        return token_text(start, end)


def plan_answer(state: MockState, spec: GenerationRequest) -> _Plan:
    """Output tokens and finish reason: ``max_tokens`` is a limit reached, the default a stop.

    A tool call's tokens are its arguments' pieces; it finishes with ``tool_calls`` unless
    ``max_tokens`` cuts it short (``length``).
    """
    call = spec.tool_call
    if call is not None:
        if spec.max_tokens is not None and spec.max_tokens < len(call.pieces):
            return _Plan(spec.max_tokens, "length", call)
        return _Plan(len(call.pieces), "tool_calls", call)
    if spec.max_tokens is not None:
        return _Plan(spec.max_tokens, "length", None)
    return _Plan(state.settings.output_tokens, "stop", None)


def refuse_too_long(state: MockState, spec: GenerationRequest, plan: _Plan) -> web.Response | None:
    """HTTP 400 for a request that could never fit in the KV cache, like vLLM's context limit."""
    if state.scheduler.fits(spec.prompt_tokens, plan.tokens):
        return None
    capacity = state.scheduler.capacity_tokens
    message = (
        f"this request needs {spec.prompt_tokens + plan.tokens} KV-cache tokens "
        f"({spec.prompt_tokens} in the prompt, {plan.tokens} to generate) but the mock's KV "
        f"cache holds {capacity} (--kv-cache-tokens); shorten the prompt or max_tokens"
    )
    return error_response(400, message, "max_tokens" if spec.max_tokens else "prompt")


def engine_sequence(spec: GenerationRequest, plan: _Plan) -> EngineSequence:
    """The engine's sequence for a request and its planned answer."""
    return EngineSequence(spec.prompt_words, spec.prompt_tokens, plan.tokens)


async def generate_whole(
    state: MockState, spec: GenerationRequest, plan: _Plan, arrived: float, finish_reason: str
) -> None:
    """Run a non-streamed answer's sequence on the engine to its last token and count it
    (every route's whole answer: chat, completions, responses, messages, transcriptions)."""
    metrics, scheduler = state.metrics, state.scheduler
    async with scheduler.running_sequence(engine_sequence(spec, plan)) as sequence:
        metrics.prompt(spec.prompt_tokens)
        await scheduler.reach(sequence, plan.tokens - 1)
        scheduler.finish(sequence)
    metrics.generated(plan.tokens)
    metrics.first_token(sequence.deadlines[0] - arrived)
    metrics.success(asyncio.get_running_loop().time() - arrived, finish_reason)


async def _whole(state: MockState, spec: GenerationRequest, arrived: float) -> web.Response:
    plan = plan_answer(state, spec)
    tokens, finish_reason = plan.tokens, plan.finish_reason
    refusal = refuse_too_long(state, spec, plan)
    if refusal is not None:
        return refusal
    await generate_whole(state, spec, plan, arrived, finish_reason)
    writer = ResponseWriter(spec.endpoint, spec.model or state.settings.model)
    text = plan.text(0, tokens)
    call = None if plan.tool_call is None else (tool_call_id(), plan.tool_call.name, text)
    body = writer.full_body(text, finish_reason, spec.prompt_tokens, tokens, call)
    return web.Response(body=body, content_type="application/json")


async def _stream(
    request: web.Request,
    state: MockState,
    spec: GenerationRequest,
    fault: FaultKind | None,
    arrived: float,
) -> web.StreamResponse:
    loop = asyncio.get_running_loop()
    plan = plan_answer(state, spec)
    tokens, finish_reason, call = plan.tokens, plan.finish_reason, plan.tool_call
    refusal = refuse_too_long(state, spec, plan)
    if refusal is not None:
        return refusal
    metrics = state.metrics
    scheduler = state.scheduler
    writer = ResponseWriter(spec.endpoint, spec.model or state.settings.model)
    response = web.StreamResponse(
        headers={"Content-Type": SSE_CONTENT_TYPE, "Cache-Control": "no-cache"}
    )
    await response.prepare(request)
    fault_at = fault_after_tokens(tokens) if fault is not None else tokens + 1
    async with scheduler.running_sequence(engine_sequence(spec, plan)) as sequence:
        metrics.prompt(spec.prompt_tokens)
        if spec.endpoint == "chat":
            await response.write(writer.role_chunk())
        for start, end in chunk_bounds(tokens, state.settings.tokens_per_chunk):
            await scheduler.reach(sequence, end - 1)
            if call is not None:
                head = writer.tool_call_chunk(tool_call_id(), call.name) if start == 0 else b""
                await response.write(head + writer.tool_arguments_chunk(call.text(start, end)))
            else:
                last = end == tokens and fault is None
                await response.write(
                    writer.content_chunk(token_text(start, end), finish_reason if last else None)
                )
            metrics.generated(end - start)
            if start == 0:
                metrics.first_token(loop.time() - arrived)
            if end >= fault_at and fault is not None:
                return await _strike_mid_stream(request, response, state, fault)
        scheduler.finish(sequence)
    if call is not None:
        await response.write(writer.finish_chunk(finish_reason))
    if spec.include_usage:
        await response.write(writer.usage_chunk(spec.prompt_tokens, tokens))
    await response.write(DONE_EVENT)
    metrics.success(loop.time() - arrived, finish_reason)
    return response


async def _strike_mid_stream(
    request: web.Request, response: web.StreamResponse, state: MockState, fault: FaultKind
) -> web.StreamResponse:
    state.metrics.fault(fault)
    if fault is FaultKind.DROP:
        drop_connection(request)
        return response
    await response.write(stream_error_event(FAULT_MESSAGES[fault]))
    await response.write(DONE_EVENT)
    return response
