"""``POST /v1/audio/transcriptions``: a transcription of the uploaded audio, whole or streamed.

The ``multipart/form-data`` request needs a ``file`` part; ``model``, ``stream`` and
``stream_include_usage`` (vLLM's) are read, other fields ignored. The audio is prompt tokens
and its transcript ``tok0 tok1 …``, as many words as the audio's length asks
(:mod:`.media`), paced by chat's whole timing model
(:func:`clientswarm.mock.openai.serve_generation`): the same faults, engine slots, KV cache
and token deadlines. The whole answer is ``{"text", "usage"}`` (usage in the OpenAI
``tokens`` form: ``input_tokens``, ``output_tokens``); a stream is vLLM's
``transcription.chunk`` objects, the text in ``choices[0].delta.content``, a usage chunk
when ``stream_include_usage`` is true, then ``data: [DONE]``.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from functools import partial
from typing import Any

import orjson
from aiohttp import web

from clientswarm.mock.engine import chunk_bounds
from clientswarm.mock.faults import FaultKind, fault_after_tokens, stream_error_event
from clientswarm.mock.media import audio_seconds, audio_tokens, transcript_words
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
from clientswarm.mock.wire import (
    DONE_EVENT,
    SSE_CONTENT_TYPE,
    GenerationRequest,
    InvalidRequest,
    token_text,
    usage,
)

_TRUE = frozenset({"true", "1", "yes", "on"})


def multipart_fields(content_type: str, raw: bytes) -> dict[str, bytes]:
    """The parts of a ``multipart/form-data`` body by name; raises :class:`InvalidRequest`."""
    kind, _, params = content_type.partition(";")
    if kind.strip().lower() != "multipart/form-data":
        raise InvalidRequest("the request must be multipart/form-data")
    boundary = ""
    for param in params.split(";"):
        name, _, value = param.strip().partition("=")
        if name.lower() == "boundary":
            boundary = value.strip('"')
    if not boundary:
        raise InvalidRequest("the multipart content type has no boundary")
    delimiter = b"--" + boundary.encode()
    fields: dict[str, bytes] = {}
    for part in raw.split(delimiter)[1:]:
        if part.startswith(b"--"):
            break
        head, sep, body = part.removeprefix(b"\r\n").partition(b"\r\n\r\n")
        if not sep:
            raise InvalidRequest("a multipart part has no blank line after its headers")
        field = _part_name(head.decode("latin-1"))
        if field is not None:
            fields[field] = body.removesuffix(b"\r\n")
    return fields


def _part_name(head: str) -> str | None:
    for line in head.split("\r\n"):
        field, _, value = line.partition(":")
        if field.strip().lower() != "content-disposition":
            continue
        for param in value.split(";"):
            key, _, quoted = param.strip().partition("=")
            if key == "name":
                return quoted.strip('"')
    return None


def parse_transcription(content_type: str, raw: bytes) -> GenerationRequest:
    """Validate a transcription request; raises :class:`InvalidRequest`."""
    fields = multipart_fields(content_type, raw)
    audio = fields.get("file")
    if not audio:
        raise InvalidRequest("file is required (the audio to transcribe)", "file")
    seconds = audio_seconds(audio)
    model = fields.get("model")
    return GenerationRequest(
        endpoint="transcription",
        prompt_tokens=audio_tokens(seconds),
        max_tokens=transcript_words(seconds),
        stream=fields.get("stream", b"").decode("latin-1").lower() in _TRUE,
        include_usage=fields.get("stream_include_usage", b"").decode("latin-1").lower() in _TRUE,
        model=model.decode("utf-8", "replace") if model else None,
    )


async def transcriptions(request: web.Request) -> web.StreamResponse:
    """``POST /v1/audio/transcriptions``: the transcript, streamed or whole."""
    parse = partial(parse_transcription, request.headers.get("Content-Type", ""))
    return await serve_generation(request, parse, _stream, _whole)


class _Writer:
    """The bytes of one transcription answer."""

    def __init__(self, model: str) -> None:
        self._head: dict[str, Any] = {
            "id": f"trsc-{uuid.uuid4().hex}",
            "object": "transcription.chunk",
            "created": int(time.time()),
            "model": model,
        }

    def chunk(self, text: str, finish_reason: str | None) -> bytes:
        choice = {"delta": {"content": text}, "finish_reason": finish_reason, "stop_reason": None}
        return b"data: " + orjson.dumps({**self._head, "choices": [choice]}) + b"\n\n"

    def usage_chunk(self, prompt_tokens: int, tokens: int) -> bytes:
        body = {**self._head, "choices": [], "usage": usage(prompt_tokens, tokens)}
        return b"data: " + orjson.dumps(body) + b"\n\n"


def whole_body(text: str, prompt_tokens: int, tokens: int) -> bytes:
    """The non-stream answer: the text and its usage in the OpenAI ``tokens`` form."""
    used = {
        "type": "tokens",
        "input_tokens": prompt_tokens,
        "output_tokens": tokens,
        "total_tokens": prompt_tokens + tokens,
    }
    return orjson.dumps({"text": text.rstrip(), "usage": used})


async def _whole(state: MockState, spec: GenerationRequest, arrived: float) -> web.Response:
    plan = plan_answer(state, spec)
    refusal = refuse_too_long(state, spec, plan)
    if refusal is not None:
        return refusal
    tokens = plan.tokens
    await generate_whole(state, spec, plan, arrived, "stop")
    body = whole_body(token_text(0, tokens), spec.prompt_tokens, tokens)
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
    refusal = refuse_too_long(state, spec, plan)
    if refusal is not None:
        return refusal
    tokens = plan.tokens
    metrics, scheduler = state.metrics, state.scheduler
    writer = _Writer(spec.model or state.settings.model)
    response = web.StreamResponse(
        headers={"Content-Type": SSE_CONTENT_TYPE, "Cache-Control": "no-cache"}
    )
    await response.prepare(request)
    fault_at = fault_after_tokens(tokens) if fault is not None else tokens + 1
    async with scheduler.running_sequence(engine_sequence(spec, plan)) as sequence:
        metrics.prompt(spec.prompt_tokens)
        for start, end in chunk_bounds(tokens, state.settings.tokens_per_chunk):
            await scheduler.reach(sequence, end - 1)
            last = end == tokens and fault is None
            await response.write(writer.chunk(token_text(start, end), "stop" if last else None))
            metrics.generated(end - start)
            if start == 0:
                metrics.first_token(loop.time() - arrived)
            if fault is not None and end >= fault_at:
                state.metrics.fault(fault)
                if fault is FaultKind.DROP:
                    drop_connection(request)
                else:
                    await response.write(stream_error_event(FAULT_MESSAGES[fault]))
                    await response.write(DONE_EVENT)
                return response
        scheduler.finish(sequence)
    if spec.include_usage:
        await response.write(writer.usage_chunk(spec.prompt_tokens, tokens))
    await response.write(DONE_EVENT)
    metrics.success(loop.time() - arrived, "stop")
    return response
