"""An incremental Server-Sent Events decoder: bytes in, events out, no I/O.

It follows the WHATWG event-stream rules that matter for OpenAI-compatible servers:

- lines end with LF, CRLF or CR; a CRLF split across two reads is one line ending;
- a blank line ends an event; an event without ``data`` lines is dropped;
- ``data:x`` and ``data: x`` are the same (one leading space is removed);
- several ``data`` lines are joined with ``"\\n"``; a field without a colon has an empty value;
- lines starting with ``:`` are comments; unknown fields are ignored;
- the last event id persists across events, as in a browser's ``EventSource``.

Bytes are decoded as UTF-8 only once an event is complete, so a multi-byte character split
across reads is never broken. This is the hot path of every streamed request: it works on
whole blocks with ``bytes.find`` and ``split``, never byte by byte.
"""

from __future__ import annotations

from dataclasses import dataclass

DONE = "[DONE]"
"""The data of the sentinel event that ends an OpenAI stream."""

_BOM = b"\xef\xbb\xbf"


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
    """

    __slots__ = ("_buf", "_cr", "_last_id", "_started")

    def __init__(self) -> None:
        self._buf = b""  # undispatched bytes, line endings already normalised to LF
        self._cr = False  # the previous read ended with CR: an LF opening the next is its pair
        self._last_id: str | None = None
        self._started = False

    def feed(self, data: bytes) -> list[SSEEvent]:
        """Add the bytes of one read; return the events it completed, in order."""
        buf = self._take(data)
        if buf is None:
            return []
        events: list[SSEEvent] = []
        start = 0
        end = buf.find(b"\n\n")
        if end < 0:
            self._buf = buf
            return events
        while end >= 0:
            if buf.startswith(b"data: ", start) and buf.find(b"\n", start, end) < 0:
                # Fast path: the one-line ``data: {...}`` event that OpenAI servers send.
                data_text = buf[start + 6 : end].decode("utf-8", errors="replace")
                events.append(SSEEvent(data_text, None, self._last_id))
            else:
                event = self._dispatch(buf[start:end])
                if event is not None:
                    events.append(event)
            start = end + 2
            end = buf.find(b"\n\n", start)
        self._buf = buf[start:]
        return events

    def feed_block(self, data: bytes) -> bytes:
        """Add the bytes of one read; return the complete events it ended, as one block of
        LF-normalised bytes (each event ends with a blank line); ``b""`` when none."""
        buf = self._take(data)
        if buf is None:
            return b""
        end = buf.rfind(b"\n\n") + 2  # 1 when there is none: nothing complete yet
        if end < 2:
            self._buf = buf
            return b""
        self._buf = buf[end:]
        return buf[:end]

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

    def _take(self, data: bytes) -> bytes | None:
        """The pending bytes with ``data`` added, line endings normalised (None: nothing yet);
        the caller keeps what follows the last complete event in ``_buf``."""
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
        if b"\r" in data:
            self._cr = data[-1:] == b"\r"
            data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        return self._buf + data if self._buf else data

    def flush(self) -> list[SSEEvent]:
        """End of stream: return the event still pending, if its data is complete lines."""
        self._cr = False
        block, self._buf = self._buf, b""
        if block.endswith(b"\n"):
            block = block[:-1]
        if not block:
            return []
        event = self._dispatch(block)
        return [event] if event is not None else []

    def _strip_bom(self, data: bytes) -> bytes:
        # The BOM may itself be split across the first reads.
        pending = self._buf + data
        if len(pending) < len(_BOM) and _BOM.startswith(pending):
            self._buf = pending
            return b""
        self._started = True
        self._buf = b""
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
