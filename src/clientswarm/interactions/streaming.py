"""Reading answers: the measurement of one request, the SSE stream loop and the ITL split.

A :class:`Measurement` is filled in place while a request runs, so whatever was received
before a failure or a cancellation is still there when the sample is made.
"""

from __future__ import annotations

import asyncio
import itertools
import operator
from collections.abc import Callable
from typing import Any

import orjson

from clientswarm.interactions.http1 import Http1Connection, Http1Error
from clientswarm.interactions.sse import SSEDecoder
from clientswarm.metrics.sample import (
    ERROR_PROTOCOL,
    ERROR_STREAM,
    Sample,
    Status,
    TokenSource,
)

MAX_ERROR_MESSAGE = 500
"""Error messages on samples are cut to this many characters."""

_DRAIN_TIMEOUT_S = 1.0  # after [DONE], wait this long for the end of the body, then give up

ContentOf = Callable[[dict[str, Any]], bool]
"""Whether one choice of a streamed chunk carries content (completion text, chat delta)."""


class TargetError(Exception):
    """The target answered, but not with success: carries the sample's error kind."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message[:MAX_ERROR_MESSAGE]


class Measurement:
    """What one request has recorded so far; :meth:`to_sample` turns it into a Sample."""

    __slots__ = (
        "chunk_ns",
        "done",
        "end_ns",
        "error_kind",
        "error_message",
        "http_status",
        "input_tokens",
        "sent_ns",
        "streamed",
        "usage",
    )

    def __init__(self, sent_ns: int, *, input_tokens: int | None = None) -> None:
        self.sent_ns = sent_ns
        self.end_ns: int | None = None
        self.input_tokens = input_tokens  # known from the prompt; usage overrides it
        self.streamed = False
        self.chunk_ns: list[int] = []  # receive time of each content chunk
        self.usage: dict[str, Any] | None = None
        self.done = False  # the answer is complete
        self.http_status: int | None = None
        self.error_kind: str | None = None
        self.error_message: str | None = None

    def fail(self, kind: str, message: str, end_ns: int) -> None:
        """Record the failure (the first one wins) and when it happened."""
        if self.error_kind is None:
            self.error_kind = kind
            self.error_message = message[:MAX_ERROR_MESSAGE]
        if self.end_ns is None:
            self.end_ns = end_ns

    def to_sample(
        self, *, group: str, client: int, worker: int, name: str, scheduled_ns: int, now_ns: int
    ) -> Sample:
        """The sample of this request; ``now_ns`` ends it if nothing ended it before."""
        chunks = self.chunk_ns
        usage = self.usage
        source: TokenSource | None = None
        output_tokens: int | None = None
        input_tokens = self.input_tokens
        if usage is not None:
            source = "usage"
            output_tokens = _int_or_none(usage.get("completion_tokens"))
            prompt_tokens = _int_or_none(usage.get("prompt_tokens"))
            if prompt_tokens is not None:
                input_tokens = prompt_tokens
        if output_tokens is None and self.streamed:
            source = "chunks"
            output_tokens = len(chunks)
        status: Status = "ok" if self.error_kind is None else "error"
        return Sample(
            group=group,
            client=client,
            worker=worker,
            name=name,
            scheduled_ns=scheduled_ns,
            sent_ns=self.sent_ns,
            end_ns=self.end_ns if self.end_ns is not None else now_ns,
            status=status,
            first_token_ns=chunks[0] if chunks else None,
            last_token_ns=chunks[-1] if chunks else None,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            token_source=source,
            itl_s=split_itl(chunks, output_tokens or 0) if chunks else [],
            error_kind=self.error_kind,
            error_message=self.error_message,
            http_status=self.http_status,
        )


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def split_itl(chunk_ns: list[int], tokens: int) -> list[float]:
    """Inter-token latencies in seconds: one per output token after the first.

    With one token per content chunk (or fewer tokens than chunks) these are the gaps between
    chunks. With more tokens than chunks, the tokens are spread over the chunks as evenly as
    integers allow (the remainder goes to the last chunks) and a chunk that carried ``k``
    tokens turns the gap before it into ``k`` equal gaps. Tokens that came in the first chunk
    after its first token arrived with it: each adds a gap of 0.
    """
    m = len(chunk_ns)
    if tokens <= m:  # map(sub) over two slices: half the time of a loop over pairwise()
        return [gap / 1e9 for gap in map(operator.sub, chunk_ns[1:], chunk_ns[:-1])]
    base, extra = divmod(tokens, m)
    first_bigger = m - extra  # chunks from this index carry base + 1 tokens
    itl = [0.0] * (base - 1)
    previous = chunk_ns[0]
    for j in range(1, m):
        k = base + 1 if j >= first_bigger else base
        now = chunk_ns[j]
        itl.extend([(now - previous) / (k * 1e9)] * k)
        previous = now
    return itl


def error_message_of(body: bytes) -> str:
    """The message of an error body: OpenAI ``{"error": {"message"}}``, vLLM or plain text."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body[: MAX_ERROR_MESSAGE * 4].decode("utf-8", errors="replace").strip()
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return str(error["message"])
        for value in (error, data.get("message"), data.get("detail")):
            if isinstance(value, str):
                return value
    return orjson.dumps(data).decode()[:MAX_ERROR_MESSAGE]


ContentMarkers = tuple[bytes, ...]
"""Byte strings that start a text field of a streamed choice (``content":"``, ``"text":"``): a
chunk carries content when one of them is followed by anything but the closing quote."""

_FINISH = b'"finish_reason":'
_DONE = b"[DONE]"


def content_from_bytes(data: bytes, markers: ContentMarkers) -> bool | None:
    """Whether an ordinary streamed chunk carries content, decided from its bytes alone.

    None when the chunk is anything but ordinary — a finish reason, usage, an error, more than
    one choice, not one JSON object — and must be parsed. JSON escapes every quote inside a
    string, so a marker can only match a real field: ``"content":"x"`` is content,
    ``"content":""`` and ``"content":null`` are not.
    """
    if data[:1] != b"{" or data[-1:] != b"}":
        return None
    at = data.find(_FINISH)
    if at < 0 or not data.startswith(b"null", at + 16) or data.find(_FINISH, at + 16) >= 0:
        return None
    if b'"usage":{' in data or b'"error"' in data:
        return None
    for marker in markers:
        width = len(marker)
        found = data.find(marker)
        while found >= 0:
            if data[found + width : found + width + 1] != b'"':
                return True
            found = data.find(marker, found + width)
    return False


def bulk_content(block: bytes, markers: ContentMarkers) -> tuple[int, int] | None:
    """``(bytes, content events)`` of the leading run of ordinary events of ``block``.

    A read often holds many token events at once (a fast server, a slow client): their content
    is counted with a few scans of the whole run rather than event by event. The run ends with
    the last event holding ``"finish_reason":null``; it qualifies when every ``data: {`` in it
    has exactly one finish reason, null (one choice, not finished: no usage, error or
    ``[DONE]`` event among them), and no reasoning field (which may share an event with
    content). JSON escapes quotes and newlines inside strings, so text cannot fake a field.
    Only the first marker is counted: the others are reasoning fields. None: go event by event.
    Each scan costs about 10 µs per 20 KB here; six of them are the price of every timestamp.
    """
    last = block.rfind(b'"finish_reason":null')
    end = block.find(b"\n\n", last) + 2 if last >= 0 else 0
    if end < 2:
        return None
    run = block[:end]
    events = run.count(b"data: {")
    if (
        run.count(b'"finish_reason":null') != events
        or run.count(b'"finish_reason":') != events
        or b"reasoning" in run
    ):
        return None
    marker = markers[0]
    content = run.count(marker) - run.count(marker + b'"')
    return (end, content) if content <= events else None


class _StreamReader:
    """What :func:`read_sse_stream` has read of one stream; :meth:`feed` takes one read."""

    __slots__ = ("content_of", "decoder", "finished", "m", "markers", "now")

    def __init__(self, m: Measurement, content_of: ContentOf, markers: ContentMarkers) -> None:
        self.m = m
        self.content_of = content_of
        self.markers = markers
        self.decoder = SSEDecoder()
        self.finished = False  # a chunk with a finish_reason came
        self.now = m.sent_ns

    def feed(self, data: bytes, now: int) -> bool:
        """Take the bytes of one read, received at ``now``; True once ``[DONE]`` came."""
        self.now = now
        decoder, m, markers = self.decoder, self.m, self.markers
        block = decoder.feed_block(data)
        if not block:
            return False
        if markers:
            bulk = bulk_content(block, markers)
            if bulk is not None:
                m.chunk_ns.extend(itertools.repeat(now, bulk[1]))
                block = block[bulk[0] :]
        for event in decoder.events_of(block):
            if markers:
                fast = content_from_bytes(event, markers)
                if fast is not None:
                    if fast:
                        m.chunk_ns.append(now)
                    continue
            if event == _DONE:
                m.end_ns = now
                m.done = True
                return True
            self.finished |= _handle_chunk(event, m, now, self.content_of)
        return False


async def read_sse_stream(
    conn: Http1Connection,
    m: Measurement,
    content_of: ContentOf,
    markers: ContentMarkers = (),
) -> None:
    """Read an OpenAI stream into ``m`` until ``[DONE]``; raise TargetError on a bad stream.

    The stream is read as it arrives, inside the connection's ``data_received``
    (:meth:`Http1Connection.consume`): every event of one read shares that read's receive
    time, and a token costs no task wake-up. With ``markers``, ordinary content chunks are
    recognised from their bytes — a whole run of them at once (:func:`bulk_content`), else one
    by one (:func:`content_from_bytes`) — and only the others are parsed as JSON.
    """
    m.streamed = True
    reader = _StreamReader(m, content_of, markers)
    await conn.consume(reader.feed)
    if m.done:
        await _drain(conn)
        return
    now = reader.now
    for last in reader.decoder.flush():
        if last.is_done:
            m.done = True
            break
        reader.finished |= _handle_chunk(last.data.encode(), m, now, content_of)
    m.end_ns = now
    if not (m.done or reader.finished):
        raise TargetError(ERROR_PROTOCOL, "the stream ended without [DONE] or a finish_reason")
    m.done = True


def _handle_chunk(data: bytes, m: Measurement, now: int, content_of: ContentOf) -> bool:
    """Record one streamed chunk; True when it carries a finish_reason."""
    try:
        chunk = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        shown = data[:200].decode("utf-8", errors="replace")
        raise TargetError(ERROR_PROTOCOL, f"invalid JSON in the stream: {exc}: {shown}") from None
    if not isinstance(chunk, dict):
        shown = data[:200].decode("utf-8", errors="replace")
        raise TargetError(ERROR_PROTOCOL, f"expected a JSON object in the stream: {shown}")
    if "error" in chunk or chunk.get("object") == "error":
        raise TargetError(ERROR_STREAM, error_message_of(data))
    usage = chunk.get("usage")
    if usage:
        m.usage = usage
    finished = False
    choices = chunk.get("choices")
    if choices:
        content = False
        for choice in choices:
            content = content or content_of(choice)
            finished = finished or choice.get("finish_reason") is not None
        if content:
            m.chunk_ns.append(now)
    return finished


async def _drain(conn: Http1Connection) -> None:
    """Read what follows ``[DONE]`` so the connection can be reused; never fail for it."""
    if conn.drain_received():  # the end of the body came with [DONE]: the usual case
        return
    try:
        async with asyncio.timeout(_DRAIN_TIMEOUT_S):
            await conn.drain()
    except (TimeoutError, OSError, Http1Error):
        pass  # the answer is complete; the pool closes this connection instead of reusing it


def parse_json_body(body: bytes, what: str) -> dict[str, Any]:
    """The JSON object of a non-streamed answer; TargetError(protocol) if it is not one."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise TargetError(ERROR_PROTOCOL, f"invalid JSON in the {what} answer: {exc}") from None
    if not isinstance(data, dict):
        raise TargetError(ERROR_PROTOCOL, f"expected a JSON object as the {what} answer")
    return data
