"""The fast path's templates: a streamed token chunk cut around its text, and the template
the streams of one interaction share.

A :class:`ChunkTemplate` is learnt by :class:`~clientswarm.interactions.streaming.StreamReader`
from a chunk it parsed by the plain rules; what makes recognising chunks by their bytes say
exactly what parsing them would say is in :mod:`clientswarm.interactions.streaming`'s docstring.
This module only holds the byte checks (one event, a run of events, one event's data) and the
sharing; no I/O, no parsing.
"""

from __future__ import annotations


class ChunkTemplate:
    """An ordinary token chunk of a stream cut around its text: ``head`` ends with the
    text's opening quote, ``tail`` starts with its closing quote.

    A chunk that is ``head + text + tail``, with no quote and no line feed in ``text``, says
    what the template said, except that it carries content exactly when ``text`` is not empty.
    ``prefix`` is the ``event:`` line that came before its ``data:`` line (empty: none); runs
    are of events framed the same way.
    """

    __slots__ = (
        "empty",
        "ends",
        "first",
        "head",
        "joint",
        "lines",
        "min_len",
        "overlap",
        "quotes",
        "run_quotes",
        "tail",
        "text_at",
    )

    def __init__(self, head: bytes, tail: bytes, prefix: bytes = b"") -> None:
        self.head = head
        self.tail = tail
        self.quotes = head.count(b'"') + tail.count(b'"')
        self.run_quotes = self.quotes + prefix.count(b'"')  # per event of a run
        self.lines = 2 + prefix.count(b"\n")  # line feeds per event of a run, its blank line's too
        self.min_len = len(head) + len(tail)
        self.first = prefix + b"data: " + head
        self.ends = tail + b"\n\n"
        self.joint = self.ends + self.first  # one chunk's end and the next one's start
        self.empty = b'"' + self.ends  # the closing quote right after the opening one
        # The opening quote read as the closing one too (a chunk shorter than head + tail):
        # the only way head and tail can overlap, since a value never ends in ``:``. Such a
        # chunk ends with ``head[:-1] + tail``; the end of that is enough to find it.
        self.overlap = head[-12:-1] + tail
        self.text_at = len(self.first)

    def content(self, data: bytes) -> bool | None:
        """Whether the data of one event carries content, if it is this template's chunk;
        None when it is not."""
        if (
            len(data) >= self.min_len
            and data.startswith(self.head)
            and data.endswith(self.tail)
            and data.count(b'"') == self.quotes
            and b"\n" not in data
        ):
            return len(data) > self.min_len
        return None

    def one(self, data: bytes) -> bool | None:
        """Whether ``data``, when it is exactly one of this template's events (a one-token
        read of a paced stream), carries content; None when it is not. The same verdict as
        :meth:`run` on it, for a few short scans: past the head the text must hold no quote,
        no line feed and no CR (then the event holds nothing else, and head and tail cannot
        overlap: ``data`` is at least as long as both)."""
        ends = self.ends
        if data.startswith(self.first) and data.endswith(ends):
            text = data[self.text_at : len(data) - len(ends)]
            if len(data) >= self.text_at + len(ends) and not (
                b'"' in text or b"\n" in text or b"\r" in text
            ):
                return bool(text)
        return None

    def run(self, block: bytes, at: int) -> tuple[int, int] | None:
        """``(end, content chunks)`` of the run of this template's chunks that starts at ``at``
        in a block of the decoder, each a one-line ``data: `` event (after the prefix's
        ``event:`` line, if any); None unless the block has one there and the run up to the
        last of them holds nothing else.

        A handful of scans of the run, whatever its length. The run ends with the last
        ``tail`` and blank line; it holds as many chunks as joints ``tail, blank line, prefix,
        data: head`` plus one; if it has no other line feeds than their blank lines (and their
        prefixes' line ends), every event is such a chunk. If it holds no more quotes than
        their heads, tails and prefixes (and no head overlaps its tail), no text holds a quote.
        The chunks without content are those whose tail follows the opening quote.
        """
        if not block.startswith(self.first, at):
            return None
        last = block.rfind(self.ends, at)
        if last < 0:
            return None
        end = last + len(self.ends)
        chunks = block.count(self.joint, at, end) + 1
        if (
            block.count(b"\n", at, end) != self.lines * chunks
            or block.count(b'"', at, end) != chunks * self.run_quotes
            or block.find(self.overlap, at, end) >= 0
        ):
            return None
        return end, chunks - block.count(self.empty, at, end)


class LearntTemplate:
    """The token chunk template the streams of one interaction share: a stream that used
    its template leaves it here, and the next one starts with it (and comes back to it after
    a first chunk that carried the role too), so that a worker's streams after the first
    parse only what differs — the first chunk, the finish and the usage — not the first token
    chunk and the learning again. A target whose chunks differ from stream to stream (an id
    per request, as vLLM's) never matches it: each stream learns its own, as without it.

    A template says what the plain rules say of the chunks it matches, whichever stream it
    was learnt from: sharing it changes the cost of a stream, never its sample (``rules``
    and ``content_of`` must be the same for every stream that shares it: one interaction's).
    """

    __slots__ = ("template",)

    def __init__(self) -> None:
        self.template: ChunkTemplate | None = None


__all__ = ["ChunkTemplate", "LearntTemplate"]
