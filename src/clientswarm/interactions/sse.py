"""An incremental Server-Sent Events decoder: bytes in, events out, no I/O.

It follows the WHATWG event-stream rules that matter for OpenAI-compatible servers:

- lines end with LF, CRLF or CR; a CRLF split across two reads is one line ending;
- a blank line ends an event; an event without ``data`` lines is dropped;
- ``data:x`` and ``data: x`` are the same (one leading space is removed);
- several ``data`` lines are joined with ``"\\n"``; a field without a colon has an empty value;
- lines starting with ``:`` are comments; unknown fields are ignored;
- the last event id persists across events, as in a browser's ``EventSource``.

One rule of its own: an event may hold at most ``max_event_bytes`` bytes (its lines with their
line feeds, not the blank line that ends it). A target that streams one endless line would
otherwise grow the buffer until the worker runs out of memory; past the bound the decoder
stops (:attr:`SSEDecoder.overflowed`) and the stream fails. The bound is exact whatever the
reads: an event of ``max_event_bytes`` passes, one byte more fails, however it is split.

Bytes are decoded as UTF-8 only once an event is complete, so a multi-byte character split
across reads is never broken. This is the hot path of every streamed request: it works on
whole blocks with ``bytes.find`` and ``split``, never byte by byte, and each byte is scanned
and copied a bounded number of times however the reads cut the stream (an unfinished event is
kept as the pieces it came in and joined once, when it ends).
"""

from __future__ import annotations

from dataclasses import dataclass

from clientswarm.errors import ClientswarmError

DONE = "[DONE]"
"""The data of the sentinel event that ends an OpenAI stream."""

DEFAULT_MAX_EVENT_BYTES = 1 << 20
"""The default bound on one event's size (1 MiB): far above any OpenAI chunk."""

_BOM = b"\xef\xbb\xbf"


class EventTooLarge(ClientswarmError, ValueError):
    """An event grew past the decoder's ``max_event_bytes``: the stream cannot go on."""

    def __init__(self, limit_bytes: int) -> None:
        super().__init__(f"an SSE event is longer than the bound of {limit_bytes} bytes")
        self.limit_bytes = limit_bytes


@dataclass(slots=True)  # not frozen: a frozen dataclass is twice as slow to create
class SSEEvent:
    """One dispatched event: its data (lines joined by ``"\\n"``), event type and last id."""

    data: str
    event: str | None = None
    id: str | None = None

    @property
    def is_done(self) -> bool:
        """True for the ``data: [DONE]`` sentinel that ends an OpenAI stream."""
        return self.data == DONE


class SSEDecoder:
    """Feed it the bytes of a response as they arrive; it returns each complete event once.

    ``feed`` returns the events completed by this read; ``flush`` ends the stream and returns
    an event left without its closing blank line (lenient: some servers omit it before EOF).
    ``feed_block`` and ``events_of`` are the same, in two steps, for a reader that looks at the
    bytes first (the stream reader's fast path).

    Past ``max_event_bytes`` the decoder returns what came before the oversized event, sets
    :attr:`overflowed`, and raises :class:`EventTooLarge` from then on (``feed`` and ``flush``
    raise it at once when they have no event to return).
    """

    __slots__ = (
        "_cr",
        "_last_id",
        "_parts",
        "_pending",
        "_started",
        "clean",
        "max_event_bytes",
        "overflowed",
    )

    def __init__(self, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> None:
        self.max_event_bytes = max_event_bytes
        """The bound on one event's size, in bytes."""
        # The unfinished event (LF-normalised) in the pieces it came in, and their length:
        # joined only once its end arrives, so a long event costs linear time, not quadratic.
        self._parts: list[bytes] = []
        self._pending = 0
        self._cr = False  # the previous read ended with CR: an LF opening the next is its pair
        self._last_id: str | None = None
        self._started = False
        self.overflowed = False
        """An event exceeded ``max_event_bytes``: nothing more comes out of this decoder."""
        self.clean = False
        """Nothing is pending (no unfinished event, no CR waiting for its LF, the BOM dealt
        with): a read that is whole events, LF-terminated with no CR, is its own block, as
        :meth:`feed_block` would return it (when within the bound). A reader may then skip
        the decoder for such a read (the stream reader's one-event fast path); it leaves
        this state as it was."""

    def feed(self, data: bytes) -> list[SSEEvent]:
        """Add the bytes of one read; return the events it completed, in order."""
        if self.overflowed:
            raise EventTooLarge(self.max_event_bytes)
        block = self.feed_block(data)
        events: list[SSEEvent] = []
        start = 0
        end = block.find(b"\n\n")
        while end >= 0:
            if block.startswith(b"data: ", start) and block.find(b"\n", start, end) < 0:
                # Fast path: the one-line ``data: {...}`` event that OpenAI servers send.
                data_text = block[start + 6 : end].decode("utf-8", errors="replace")
                events.append(SSEEvent(data_text, None, self._last_id))
            else:
                event = self._dispatch(block[start:end])
                if event is not None:
                    events.append(event)
            start = end + 2
            end = block.find(b"\n\n", start)
        if self.overflowed and not events:
            raise EventTooLarge(self.max_event_bytes)
        return events

    def feed_block(self, data: bytes) -> bytes:
        """Add the bytes of one read; return the complete events it ended, as one block of
        LF-normalised bytes (each event ends with a blank line); ``b""`` when none."""
        if self.overflowed:
            raise EventTooLarge(self.max_event_bytes)
        self.clean = False
        buf = self._take(data)
        if buf is None:
            return b""
        end = buf.rfind(b"\n\n") + 2  # 1 when there is none: nothing complete yet
        if end < 2:
            self._keep(buf)
            return b""
        if end < len(buf):
            self._keep(buf[end:])
        block = buf[:end]
        if len(block) > self.max_event_bytes:  # rare: only then can an event in it be too large
            block = self._within_bound(block)
        self.clean = not (self._parts or self._cr or self.overflowed)
        return block

    def events_of(self, block: bytes) -> list[bytes]:
        """The data of each event of a block from :meth:`feed_block`, undecoded."""
        out: list[bytes] = []
        start = 0
        end = block.find(b"\n\n")
        while end >= 0:
            if block.startswith(b"data: ", start) and block.find(b"\n", start, end) < 0:
                out.append(block[start + 6 : end])
            else:
                event = self._dispatch(block[start:end])
                if event is not None:
                    out.append(event.data.encode())
            start = end + 2
            end = block.find(b"\n\n", start)
        return out

    def data_of(self, event: bytes) -> bytes | None:
        """The data of one event of a block (its bytes without the blank line), undecoded
        when it is one ``data: `` line; None if it has no ``data`` line."""
        if event.startswith(b"data: ") and b"\n" not in event:
            return event[6:]
        dispatched = self._dispatch(event)
        return None if dispatched is None else dispatched.data.encode()

    def flush(self) -> list[SSEEvent]:
        """End of stream: return the event still pending, if its data is complete lines."""
        if self.overflowed:
            raise EventTooLarge(self.max_event_bytes)
        self._cr = self.clean = False
        block = b"".join(self._parts)
        self._parts.clear()
        self._pending = 0
        if block.endswith(b"\n"):
            block = block[:-1]
        if not block:
            return []
        event = self._dispatch(block)
        return [event] if event is not None else []

    def _take(self, data: bytes) -> bytes | None:
        """The pending bytes with ``data`` added, line endings normalised, when they hold the
        end of an event (None: not yet; ``data`` was kept)."""
        if not data:
            return None
        if not self._started:
            data = self._strip_bom(data)
            if not data:
                return None
        if self._cr:
            # The previous read ended with CR, already taken as a line ending: an LF that
            # opens this read is the second half of that CRLF.
            self._cr = False
            if data[:1] == b"\n":
                data = data[1:]
                if not data:
                    return None
        if b"\r" in data:
            self._cr = data[-1:] == b"\r"
            data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        parts = self._parts
        if not parts:
            return data
        # The pending bytes hold no blank line: one can only be in ``data`` or across the seam.
        if b"\n\n" in data or (data[:1] == b"\n" and parts[-1][-1:] == b"\n"):
            parts.append(data)
            buf = b"".join(parts)
            parts.clear()
            self._pending = 0
            return buf
        parts.append(data)
        self._pending += len(data)
        if self._pending > self.max_event_bytes:
            self._check_pending()
        return None

    def _keep(self, rest: bytes) -> None:
        """Keep the start of an unfinished event (the pending bytes are empty)."""
        self._parts.append(rest)
        self._pending = len(rest)
        if self._pending > self.max_event_bytes:
            self._check_pending()

    def _check_pending(self) -> None:
        """Overflow when the unfinished event is already longer than the bound. It holds no
        blank line, so at most one LF opens it (left over from the blank line before) and at
        most one LF ends it (which may be half of the blank line to come): neither counts."""
        parts = self._parts
        size = self._pending - (parts[0][:1] == b"\n") - (parts[-1][-1:] == b"\n")
        if size > self.max_event_bytes:
            self._overflow()

    def _within_bound(self, block: bytes) -> bytes:
        """``block`` up to its first event longer than the bound (then overflowed), else all
        of it. An event's size leaves out the LF that may open it (see :meth:`_check_pending`)."""
        start = 0
        end = block.find(b"\n\n")
        limit = self.max_event_bytes
        while end >= 0:
            if end - start - (block[start : start + 1] == b"\n") > limit:
                self._overflow()
                return block[:start]
            start = end + 2
            end = block.find(b"\n\n", start)
        return block

    def _overflow(self) -> None:
        self.overflowed = True
        self._parts.clear()
        self._pending = 0

    def _strip_bom(self, data: bytes) -> bytes:
        # The BOM may itself be split across the first reads.
        pending = b"".join(self._parts) + data
        if len(pending) < len(_BOM) and _BOM.startswith(pending):
            self._parts[:] = [pending]
            return b""
        self._started = True
        self._parts.clear()
        return pending[len(_BOM) :] if pending.startswith(_BOM) else pending

    def _dispatch(self, block: bytes) -> SSEEvent | None:
        """Turn one event's lines (no blank line inside, LF-separated) into an event."""
        text = block.decode("utf-8", errors="replace")
        data: list[str] = []
        event: str | None = None
        for line in text.split("\n"):
            if not line or line[0] == ":":
                continue
            name, colon, value = line.partition(":")
            if colon and value[:1] == " ":
                value = value[1:]
            if name == "data":
                data.append(value)
            elif name == "event":
                event = value
            elif name == "id" and "\0" not in value:
                self._last_id = value
        if not data:
            return None
        return SSEEvent("\n".join(data), event or None, self._last_id)
