"""Generation handlers: ``POST /v1/completions`` and ``POST /v1/chat/completions``.

A request draws its fault first; ``http_500``/``http_429`` (and a non-stream drop) are answered at
once. Otherwise it queues for an engine slot, and its tokens leave at their absolute deadlines
(see :mod:`clientswarm.mock.engine`). A stream's headers go out on arrival, like vLLM's; chat's
role chunk goes out on admission, before the first token is due, so a client that counts it as a
token measures a wrong TTFT. Any model name is accepted and echoed back (default: ``--model``).
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from clientswarm.mock.engine import chunk_bounds, sleep_until
from clientswarm.mock.faults import (
    FaultKind,
    error_body,
    fault_after_tokens,
    stream_error_event,
)
from clientswarm.mock.state import STATE_KEY, MockState
from clientswarm.mock.wire import (
    DONE_EVENT,
    SSE_CONTENT_TYPE,
    Endpoint,
    GenerationRequest,
    InvalidRequest,
    ResponseWriter,
    parse_generation,
    token_text,
)

MID_STREAM_FAULTS = frozenset({FaultKind.STREAM_ERROR, FaultKind.DROP})

FAULT_MESSAGES = {
    FaultKind.HTTP_500: "mock-server injected an internal server error (--error-rate-500)",
    FaultKind.HTTP_429: "mock-server injected a rate-limit rejection (--error-rate-429)",
    FaultKind.STREAM_ERROR: "mock-server injected a mid-stream error (--stream-error-rate)",
}


def error_response(status: int, message: str) -> web.Response:
    """A vLLM-shaped JSON error response."""
    return web.Response(
        status=status, body=error_body(status, message), content_type="application/json"
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


async def _generate(request: web.Request, endpoint: Endpoint) -> web.StreamResponse:
    state = request.app[STATE_KEY]
    arrived = asyncio.get_running_loop().time()
    try:
        spec = parse_generation(endpoint, await request.read())
    except InvalidRequest as exc:
        return error_response(400, str(exc))
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
            return await _stream(request, state, spec, fault, arrived)
        return await _whole(state, spec, arrived)
    except (asyncio.CancelledError, ConnectionError):
        metrics.abort()
        raise
    finally:
        metrics.in_flight -= 1
        state.answering.discard(task)


def _plan(state: MockState, spec: GenerationRequest) -> tuple[int, str]:
    """Output tokens and finish reason: ``max_tokens`` is a limit reached, the default a stop."""
    if spec.max_tokens is not None:
        return spec.max_tokens, "length"
    return state.settings.output_tokens, "stop"


async def _whole(state: MockState, spec: GenerationRequest, arrived: float) -> web.Response:
    tokens, finish_reason = _plan(state, spec)
    metrics = state.metrics
    async with state.engine.queue.slot():
        admitted = asyncio.get_running_loop().time()
        metrics.prompt(spec.prompt_tokens)
        deadlines = state.engine.token_deadlines(admitted, tokens)
        await sleep_until(deadlines[-1])
    writer = ResponseWriter(spec.endpoint, spec.model or state.settings.model)
    body = writer.full_body(token_text(0, tokens), finish_reason, spec.prompt_tokens, tokens)
    metrics.generated(tokens)
    metrics.first_token(deadlines[0] - arrived)
    metrics.success(asyncio.get_running_loop().time() - arrived, finish_reason)
    return web.Response(body=body, content_type="application/json")


async def _stream(
    request: web.Request,
    state: MockState,
    spec: GenerationRequest,
    fault: FaultKind | None,
    arrived: float,
) -> web.StreamResponse:
    loop = asyncio.get_running_loop()
    tokens, finish_reason = _plan(state, spec)
    metrics = state.metrics
    writer = ResponseWriter(spec.endpoint, spec.model or state.settings.model)
    response = web.StreamResponse(
        headers={"Content-Type": SSE_CONTENT_TYPE, "Cache-Control": "no-cache"}
    )
    await response.prepare(request)
    fault_at = fault_after_tokens(tokens) if fault is not None else tokens + 1
    async with state.engine.queue.slot():
        admitted = loop.time()
        metrics.prompt(spec.prompt_tokens)
        if spec.endpoint == "chat":
            await response.write(writer.role_chunk())
        deadlines = state.engine.token_deadlines(admitted, tokens)
        for start, end in chunk_bounds(tokens, state.settings.tokens_per_chunk):
            await sleep_until(deadlines[end - 1])
            last = end == tokens and fault is None
            await response.write(
                writer.content_chunk(token_text(start, end), finish_reason if last else None)
            )
            metrics.generated(end - start)
            if start == 0:
                metrics.first_token(loop.time() - arrived)
            if end >= fault_at and fault is not None:
                return await _strike_mid_stream(request, response, state, fault)
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
