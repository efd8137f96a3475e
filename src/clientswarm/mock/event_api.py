"""Handlers of the event-stream APIs: ``POST /v1/responses`` and ``POST /v1/messages``.

They share chat's whole timing model (:func:`clientswarm.mock.openai.serve_generation`): the
same fault draw, engine slot, KV cache, prefix cache and token deadlines, so the same settings
give the same TTFT and ITL through chat, Responses and Messages. A stream's headers go out on
arrival; the events of its start (``response.created``, ``message_start``) on admission, before
the first token is due, like chat's role chunk; each chunk's event at its tokens' deadline.
Only text is answered (no tool calls).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from aiohttp import web

from clientswarm.mock.engine import chunk_bounds
from clientswarm.mock.event_wire import (
    EventWriter,
    MessagesWriter,
    ResponsesWriter,
    parse_messages,
    parse_responses,
)
from clientswarm.mock.faults import FaultKind, fault_after_tokens
from clientswarm.mock.openai import (
    FAULT_MESSAGES,
    drop_connection,
    engine_sequence,
    generate_whole,
    plan_answer,
    refuse_too_long,
    serve_generation,
)
from clientswarm.mock.state import MockState
from clientswarm.mock.wire import SSE_CONTENT_TYPE, GenerationRequest, token_text

WriterOf = Callable[[str], EventWriter]


async def responses(request: web.Request) -> web.StreamResponse:
    """``POST /v1/responses``: a Responses answer, streamed or whole."""
    return await _serve(request, parse_responses, ResponsesWriter)


async def messages(request: web.Request) -> web.StreamResponse:
    """``POST /v1/messages``: a Messages answer, streamed or whole."""
    return await _serve(request, parse_messages, MessagesWriter)


async def _serve(
    request: web.Request, parse: Callable[[bytes], GenerationRequest], writer_of: WriterOf
) -> web.StreamResponse:
    async def stream(
        request: web.Request,
        state: MockState,
        spec: GenerationRequest,
        fault: FaultKind | None,
        arrived: float,
    ) -> web.StreamResponse:
        return await _stream(request, state, spec, fault, arrived, writer_of)

    async def whole(state: MockState, spec: GenerationRequest, arrived: float) -> web.Response:
        return await _whole(state, spec, arrived, writer_of)

    return await serve_generation(request, parse, stream, whole)


async def _whole(
    state: MockState, spec: GenerationRequest, arrived: float, writer_of: WriterOf
) -> web.Response:
    plan = plan_answer(state, spec)
    refusal = refuse_too_long(state, spec, plan)
    if refusal is not None:
        return refusal
    tokens, finish_reason = plan.tokens, plan.finish_reason
    await generate_whole(state, spec, plan, arrived, finish_reason)
    writer = writer_of(spec.model or state.settings.model)
    body = writer.full_body(token_text(0, tokens), finish_reason, spec.prompt_tokens, tokens)
    return web.Response(body=body, content_type="application/json")


async def _stream(
    request: web.Request,
    state: MockState,
    spec: GenerationRequest,
    fault: FaultKind | None,
    arrived: float,
    writer_of: WriterOf,
) -> web.StreamResponse:
    loop = asyncio.get_running_loop()
    plan = plan_answer(state, spec)
    refusal = refuse_too_long(state, spec, plan)
    if refusal is not None:
        return refusal
    tokens, finish_reason = plan.tokens, plan.finish_reason
    metrics = state.metrics
    scheduler = state.scheduler
    writer = writer_of(spec.model or state.settings.model)
    response = web.StreamResponse(
        headers={"Content-Type": SSE_CONTENT_TYPE, "Cache-Control": "no-cache"}
    )
    await response.prepare(request)
    fault_at = fault_after_tokens(tokens) if fault is not None else tokens + 1
    async with scheduler.running_sequence(engine_sequence(spec, plan)) as sequence:
        metrics.prompt(spec.prompt_tokens)
        await response.write(writer.start(spec.prompt_tokens))
        for start, end in chunk_bounds(tokens, state.settings.tokens_per_chunk):
            await scheduler.reach(sequence, end - 1)
            await response.write(writer.content(token_text(start, end), start == 0))
            metrics.generated(end - start)
            if start == 0:
                metrics.first_token(loop.time() - arrived)
            if fault is not None and end >= fault_at:
                state.metrics.fault(fault)
                if fault is FaultKind.DROP:
                    drop_connection(request)
                else:
                    await response.write(writer.error(FAULT_MESSAGES[fault]))
                return response
        scheduler.finish(sequence)
    await response.write(
        writer.end(token_text(0, tokens), finish_reason, spec.prompt_tokens, tokens)
    )
    metrics.success(loop.time() - arrived, finish_reason)
    return response
