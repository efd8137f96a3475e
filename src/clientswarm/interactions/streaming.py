"""Reading answers: the measurement of one request, the SSE stream loop and the ITL split.

A :class:`Measurement` is filled in place while a request runs, so whatever was received
before a failure or a cancellation is still there when the sample is made.

**The plain rules** (:func:`read_chunk`) say what each event of a stream means, as the OpenAI
clients read it (a Responses or Messages stream has rules of its own, :data:`EventRules`, in
:mod:`.responses` and :mod:`.messages`; ``[DONE]`` and the framing are the same for all):

- data that is ``[DONE]`` (whitespace around it ignored) ends the stream;
- any other data must be a JSON object, else the stream fails as ``protocol`` (a keep-alive
  written as ``data: keep-alive``, an empty ``data:``, an ``event: error`` with a text body);
- a truthy ``"error"`` (``"error": null`` is no error) or ``"object": "error"`` fails it as
  ``stream_error``, whatever else the chunk holds;
- a non-empty ``usage`` object is kept, its keys over those of any before it (the last one
  wins; a format that reports input and output tokens in two events keeps both);
- every choice that is an object is asked whether it carries content (``ContentOf``) and
  whether its ``finish_reason`` is set; other shapes of ``choices`` count as no choice;
- a chunk with content in any choice is one content chunk: one receive time.

**The fast path decides only what it positively recognises, else parses.** It recognises one thing:
a chunk that is byte for byte the last token chunk it *learnt*, except for the text of its content
field, which holds no quote and no line feed. It learns a chunk only after parsing it by the plain
rules: content, no usage, no finish reason, and the same chunk with that text empty parses to no
content at all. A recognised chunk therefore says what parsing it would say, with content exactly
when its text is not empty. Such chunks are one-line ``data:`` events or, when the learnt chunk
came so, ``event:`` and ``data:`` line pairs (the Messages and Responses framing; the meaning is
the data's, whatever the event line says). A read that is one of them, from an event's start (a
paced stream's usual read), is checked with a few short scans
(:meth:`~.chunk_template.ChunkTemplate.one`); a whole run of them in one read is counted with a few
scans of the run (:meth:`~.chunk_template.ChunkTemplate.run`); the streams of one interaction share
what was learnt (:class:`~.chunk_template.LearntTemplate`), so that only a worker's first stream
learns. Everything else (the first chunks, finish reasons, usage, errors, keep-alives, comments,
other framing) is parsed. So a sample depends on the bytes of the stream only, never on how the
reads cut it (``tests/unit/test_sse_parity.py`` feeds every case at every split point through both
paths). Taken on trust: that such a text is a valid JSON string body (its escapes, a backslash
before its closing quote included, its control characters and its UTF-8), as it was in the chunk it
was learnt from; a target that breaks that breaks JSON itself, which parsing would report as
``protocol``.
"""

from __future__ import annotations

import asyncio
import itertools
import operator
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

import orjson

from clientswarm.errors import ClientswarmError
from clientswarm.interactions.chunk_template import ChunkTemplate, LearntTemplate
from clientswarm.interactions.http1 import Http1Connection, Http1Error
from clientswarm.interactions.sse import DEFAULT_MAX_EVENT_BYTES, SSEDecoder
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
"""Whether one part of a streamed event carries content: a choice of an OpenAI chunk
(completion text, chat delta), or a whole Responses or Messages event."""


class TargetError(ClientswarmError):
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
"""How a content field of a streamed choice starts in the bytes, up to the opening quote of its
text (``b'"content":"'``, ``b'"text":"'``): where the fast path looks for the text that varies
from one token chunk to the next (see the module docstring)."""

_DONE = b"[DONE]"
_LEARN_TRIES = 4  # templates learnt in a row that no chunk matched before the reader stops trying


def is_done(data: bytes) -> bool:
    """Whether an event's data is the ``[DONE]`` sentinel (whitespace around it ignored)."""
    return data == _DONE or data.strip() == _DONE


ChunkRead = tuple[dict[str, Any] | None, bool, bool, bool]
"""What one event says: ``(usage, content, finished, done)``. ``usage`` in the OpenAI names
(``prompt_tokens``, ``completion_tokens``) or None; ``finished``: the answer is whole, so a body
that ends after it is complete; ``done``: the stream ends here, as at ``[DONE]``."""

EventRules = Callable[[bytes, ContentOf], ChunkRead]
"""The rules of one stream format: what the data of one event says (:func:`read_chunk` for the
OpenAI chunks). They raise TargetError for a malformed event (``protocol``) or an error event
(``stream_error``); asked about a token event with its text empty they must say nothing at all,
``(None, False, False, False)`` (that is how the fast path learns)."""


def load_event(data: bytes) -> dict[str, Any]:
    """The JSON object of one event's data; TargetError(protocol) if it is not one."""
    try:
        event = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        shown = data[:200].decode("utf-8", errors="replace")
        raise TargetError(ERROR_PROTOCOL, f"invalid JSON in the stream: {exc}: {shown}") from None
    if not isinstance(event, dict):
        shown = data[:200].decode("utf-8", errors="replace")
        raise TargetError(ERROR_PROTOCOL, f"expected a JSON object in the stream: {shown}")
    return event


def _event_line_end(block: bytes, at: int, end: int) -> int:
    """Where the data line starts in the event ``block[at:end]`` when the event is one
    ``event:`` line and one ``data: `` line (the Responses and Messages framing), else -1."""
    if not block.startswith(b"event:", at):
        return -1
    line = block.find(b"\n", at, end) + 1
    if line and block.startswith(b"data: ", line) and block.find(b"\n", line, end) < 0:
        return line
    return -1


def read_chunk(data: bytes, content_of: ContentOf) -> ChunkRead:
    """What one streamed OpenAI chunk says by the plain rules: ``(usage, content, finished,
    False)``; only ``[DONE]`` ends such a stream.

    Raises TargetError: ``protocol`` when the data is not a JSON object, ``stream_error`` when
    it carries an error. ``content_of`` sees every choice that is an object, in order.
    """
    chunk = load_event(data)
    if chunk.get("error") or chunk.get("object") == "error":
        raise TargetError(ERROR_STREAM, error_message_of(data))
    usage = chunk.get("usage")
    if not (usage and isinstance(usage, dict)):
        usage = None
    content = finished = False
    choices = chunk.get("choices")
    if isinstance(choices, list):
        for choice in choices:
            if isinstance(choice, dict):
                if content_of(choice):
                    content = True
                if choice.get("finish_reason") is not None:
                    finished = True
    return usage, content, finished, False


class StreamReader:
    """One stream read into a Measurement, no I/O: :meth:`feed` takes each read as it comes,
    :meth:`finish` the end of a body that had no ``[DONE]``; both raise TargetError when the
    stream fails. With ``markers`` it takes the fast path, without them the plain rules.
    ``rules`` say what an event means: the OpenAI chunks' by default. ``learnt``: the template
    of the interaction's streams before this one: it starts with it, and leaves there the one
    it used once the stream has ended."""

    __slots__ = (
        "content_of",
        "decoder",
        "finished",
        "learnt",
        "m",
        "markers",
        "now",
        "rules",
        "shared",
        "template",
        "template_used",
        "tries",
    )

    def __init__(
        self,
        m: Measurement,
        content_of: ContentOf,
        markers: ContentMarkers,
        max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
        rules: EventRules = read_chunk,
        learnt: LearntTemplate | None = None,
    ) -> None:
        m.streamed = True
        self.m = m
        self.content_of = content_of
        self.markers = markers
        self.rules = rules
        self.decoder = SSEDecoder(max_event_bytes)
        self.finished = False  # a chunk with a finish_reason came
        self.now = m.sent_ns
        self.learnt = learnt if markers else None
        # The interaction's template: this stream starts with it, and goes back to it when
        # an event that the template of the moment does not match is one of its chunks (the
        # template learnt from a first chunk that also carries the role fits that one only).
        self.shared = self.learnt.template if self.learnt is not None else None
        self.template = self.shared
        self.template_used = False
        self.tries = _LEARN_TRIES if markers else 0

    def feed(self, data: bytes, now: int) -> bool:
        """Take the bytes of one read, received at ``now``; True once ``[DONE]`` came."""
        self.now = now
        decoder = self.decoder
        template = self.template
        if template is not None and decoder.clean and len(data) <= decoder.max_event_bytes:
            # The usual read of a paced stream: one token chunk, from an event's start.
            # The decoder would return it whole as its block, and stay clean.
            carries = template.one(data)
            if carries is not None:
                self.template_used = True
                if carries:
                    self.m.chunk_ns.append(now)
                return False
        block = decoder.feed_block(data)
        at, size = 0, len(block)
        while at < size:
            template = self.template
            if template is not None:
                run = template.run(block, at)
                if run is not None:
                    at, content = run
                    self.template_used = True
                    if content:
                        self.m.chunk_ns.extend(itertools.repeat(now, content))
                    continue
            at = self._events(block, at, now)
            if at < 0:
                return True
        if decoder.overflowed:
            limit = decoder.max_event_bytes
            raise TargetError(
                ERROR_PROTOCOL,
                f"an SSE event grew past target.max_event_bytes={limit} without ending: the "
                "target sent a line or event that large (raise target.max_event_bytes if its "
                "events really are)",
            )
        return False

    def finish(self) -> None:
        """The body ended without ``[DONE]``: read the event left without its blank line,
        then fail unless it was ``[DONE]`` or a chunk carried a finish reason."""
        m = self.m
        m.end_ns = self.now
        for event in self.decoder.flush():
            if self._parse(event.data.encode(), self.now):
                return
        if not self.finished:
            raise TargetError(
                ERROR_PROTOCOL,
                "the stream ended without [DONE] or a finish_reason (or its format's last event)",
            )
        m.done = True
        self._leave_template()

    def _events(self, block: bytes, at: int, now: int) -> int:
        """Record the events of ``block`` from ``at`` one by one. Returns -1 at ``[DONE]``;
        else where it stopped: the end, or the event after one that taught a new template or
        went back to the interaction's (what follows may be a run of it)."""
        m = self.m
        end = block.find(b"\n\n", at)
        while end >= 0:
            prefix = b""
            if block.startswith(b"data: ", at) and block.find(b"\n", at, end) < 0:
                data: bytes | None = block[at + 6 : end]  # the one-line event servers send
            elif (line := _event_line_end(block, at, end)) > 0:
                prefix = block[at:line]  # ``event: <type>`` and one data line: its data
                data = block[line + 6 : end]
            else:
                data = self.decoder.data_of(block[at:end])
            at = end + 2
            if data is not None:
                template, shared = self.template, self.shared
                content = None if template is None else template.content(data)
                if content is None and shared is not None and shared is not template:
                    content = shared.content(data)
                    if content is not None:
                        self.template = shared
                if content is not None:
                    self.template_used = True
                    if content:
                        m.chunk_ns.append(now)
                elif self._parse(data, now, prefix):
                    return -1
                if self.template is not template:
                    return at
            end = block.find(b"\n\n", at)
        return len(block)

    def _parse(self, data: bytes, now: int, prefix: bytes = b"") -> bool:
        """Record one event's data by the plain rules; True at ``[DONE]`` or the format's last
        event. ``prefix``: the event's ``event:`` line, if it had one before its data line."""
        m = self.m
        if is_done(data):
            m.end_ns = now
            m.done = True
            self._leave_template()
            return True
        usage, content, finished, done = self.rules(data, self.content_of)
        if usage is not None:
            kept = m.usage
            m.usage = usage if kept is None or kept.keys() <= usage.keys() else kept | usage
        if content:
            m.chunk_ns.append(now)
            if usage is None and not (finished or done) and self.tries:
                self._learn(data, prefix)
        if finished:
            self.finished = True
        if done:
            m.end_ns = now
            m.done = True
            self._leave_template()
        return done

    def _leave_template(self) -> None:
        """The stream has ended: the template it used is the next stream's."""
        if self.learnt is not None and self.template_used:
            self.learnt.template = self.template

    def _learn(self, data: bytes, prefix: bytes) -> None:
        """Make an ordinary chunk with content (just parsed) the template of the next ones,
        if its content is decided by one text field alone: the same chunk with that text
        empty must parse to no content, no usage, no finish reason.

        A try that finds no template, or replaces one that no chunk matched, uses up one of
        :data:`_LEARN_TRIES`: a target whose chunks differ in more than their text (a
        timestamp or logprobs in each) soon stops costing the extra parse.
        """
        for marker in self.markers:
            opened = data.find(marker) + len(marker)
            if opened < len(marker):
                continue
            closed = data.find(b'"', opened)
            # An escape in the text might hide its closing quote: learn from another chunk.
            if closed <= opened or b"\\" in data[opened:closed] or b"\n" in data:
                continue
            head, tail = data[:opened], data[closed:]
            try:
                empty = self.rules(head + tail, self.content_of)
            except TargetError:
                continue
            if empty == (None, False, False, False):
                if self.template is not None and not self.template_used:
                    self.tries -= 1
                self.template, self.template_used = ChunkTemplate(head, tail, prefix), False
                return
        self.tries -= 1


async def read_sse_stream(
    conn: Http1Connection,
    m: Measurement,
    content_of: ContentOf,
    markers: ContentMarkers = (),
    max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
    rules: EventRules = read_chunk,
    learnt: LearntTemplate | None = None,
) -> None:
    """Read a stream into ``m`` until ``[DONE]`` (or the last event of its format, by
    ``rules``); raise TargetError on a bad stream. ``learnt``: the template the interaction's
    streams share (:class:`~.chunk_template.LearntTemplate`).

    The stream is read as it arrives, inside the connection's ``data_received``
    (:meth:`Http1Connection.consume`): every event of one read shares that read's receive
    time, and a token costs no task wake-up. With ``markers``, token chunks like one already
    parsed are recognised from their bytes (the module docstring says how); the others are
    parsed. An event longer than ``max_event_bytes`` fails the stream as ``protocol``.
    """
    reader = StreamReader(m, content_of, markers, max_event_bytes, rules, learnt)
    on_first = FIRST_TOKEN.get()
    await conn.consume(reader.feed if on_first is None else _telling_first(reader, on_first))
    if m.done:
        await _drain(conn)
        return
    reader.finish()


FIRST_TOKEN: ContextVar[Callable[[], None] | None] = ContextVar(
    "clientswarm_first_token", default=None
)
"""Called once when the stream read in this task brings its first content (a worker's
``prefill_concurrency`` gate frees its slot then); None, the usual case, costs nothing."""


def _telling_first(
    reader: StreamReader, on_first: Callable[[], None]
) -> Callable[[bytes, int], bool]:
    """``reader.feed`` that calls ``on_first`` after the read that brought the first content."""
    told = False

    def feed(data: bytes, now: int) -> bool:
        nonlocal told
        done = reader.feed(data, now)
        if not told and reader.m.chunk_ns:
            told = True
            on_first()
        return done

    return feed


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
