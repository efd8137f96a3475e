"""The SSE decoder: line endings, splits anywhere, fields, comments, the [DONE] sentinel and the
bound on an event's size."""

from __future__ import annotations

import time

import orjson
import pytest

from clientswarm.interactions.sse import EventTooLarge, SSEDecoder, SSEEvent


def decode(*reads: bytes) -> list[SSEEvent]:
    """The events of ``reads``; the byte path of the stream reader must find the same data."""
    decoder, fast = SSEDecoder(), SSEDecoder()
    events: list[SSEEvent] = []
    data_of_blocks: list[bytes] = []
    for data in reads:
        events += decoder.feed(data)
        data_of_blocks += fast.events_of(fast.feed_block(data))
    events += decoder.flush()
    data_of_blocks += [e.data.encode() for e in fast.flush()]
    # The byte path leaves decoding (and rejecting bad UTF-8) to the JSON parser.
    assert [d.decode("utf-8", "replace") for d in data_of_blocks] == [e.data for e in events]
    return events


def datas(*reads: bytes) -> list[str]:
    return [e.data for e in decode(*reads)]


def vllm_stream() -> bytes:
    """A realistic vLLM chat stream, with non-ASCII text."""
    parts = []
    base = {"id": "chatcmpl-9", "object": "chat.completion.chunk", "created": 1, "model": "m"}
    deltas = [{"role": "assistant", "content": ""}] + [
        {"content": t} for t in ["Héllo", " wörld", " 😀", " 日本語", "!"]
    ]
    for delta in deltas:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}
        parts.append({**base, "choices": [choice], "usage": None})
    parts.append({**base, "choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 5}})
    out = b"".join(b"data: " + orjson.dumps(p) + b"\n\n" for p in parts)
    return out + b"data: [DONE]\n\n"


def test_single_event() -> None:
    assert decode(b"data: hello\n\n") == [SSEEvent("hello")]


def test_done_sentinel_is_exposed() -> None:
    events = decode(b"data: {}\n\ndata: [DONE]\n\n")
    assert [e.is_done for e in events] == [False, True]


@pytest.mark.parametrize("eol", [b"\n", b"\r\n", b"\r"])
def test_line_endings(eol: bytes) -> None:
    stream = b"data: a" + eol + b"data: b" + eol + eol + b"data: c" + eol + eol
    assert datas(stream) == ["a\nb", "c"]


def test_crlf_split_across_reads() -> None:
    assert datas(b"data: a\r", b"\n\r", b"\ndata: b\r\n\r\n") == ["a", "b"]


def test_cr_at_end_of_read_is_a_line_end_at_once() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\r\r") == [SSEEvent("a")]
    assert decoder.feed(b"\ndata: b\r\n\r\n") == [SSEEvent("b")]


def test_mixed_line_endings() -> None:
    assert datas(b"data: a\r\ndata: b\ndata: c\r\r\ndata: d\n\r\n") == ["a\nb\nc", "d"]


def test_event_split_inside_multibyte_character() -> None:
    raw = "data: héllo 😀\n\n".encode()
    cut = raw.index("😀".encode()) + 2
    assert datas(raw[:cut], raw[cut:]) == ["héllo 😀"]


def test_event_split_in_field_name_and_before_blank_line() -> None:
    assert datas(b"da", b"ta: x", b"\n", b"\n") == ["x"]


def test_data_without_space_and_with_two_spaces() -> None:
    assert datas(b"data:x\n\ndata:  y\n\n") == ["x", " y"]


def test_multiline_data_joined_with_newline() -> None:
    assert datas(b'data: {\ndata:   "a": 1\ndata: }\n\n') == ['{\n  "a": 1\n}']


def test_comments_ignored() -> None:
    assert datas(b": keep-alive\n\n: ping\ndata: x\n: more\n\n") == ["x"]


def test_field_without_value() -> None:
    events = decode(b"data\n\ndata\ndata\n\nevent\ndata: z\n\n")
    assert [e.data for e in events] == ["", "\n", "z"]
    assert events[2].event is None


def test_events_without_data_are_ignored() -> None:
    assert decode(b"event: ping\n\nid: 3\n\nretry: 10\n\n") == []


def test_event_and_id_fields() -> None:
    events = decode(b"event: delta\nid: 7\ndata: a\n\ndata: b\n\n")
    assert events == [SSEEvent("a", "delta", "7"), SSEEvent("b", None, "7")]


def test_unknown_fields_ignored() -> None:
    assert decode(b"foo: bar\ndata: a\n\n") == [SSEEvent("a")]


def test_extra_blank_lines_between_events() -> None:
    assert datas(b"\n\n\ndata: a\n\n\n\n\ndata: b\n\n") == ["a", "b"]


def test_bom_stripped_even_when_split() -> None:
    assert datas(b"\xef", b"\xbb\xbfdata: a\n\n") == ["a"]


def test_flush_returns_unterminated_event() -> None:
    assert datas(b"data: [DONE]\n") == ["[DONE]"]
    assert datas(b"data: a") == ["a"]


def test_flush_of_empty_decoder() -> None:
    assert SSEDecoder().flush() == []
    assert decode(b"data: a\n\n") == [SSEEvent("a")]


def test_feed_empty_bytes() -> None:
    assert SSEDecoder().feed(b"") == []


def test_many_events_in_one_read_and_rest_kept() -> None:
    decoder = SSEDecoder()
    events = decoder.feed(b"data: 1\n\ndata: 2\n\ndata: 3\n\ndata: 4")
    assert [e.data for e in events] == ["1", "2", "3"]
    assert decoder.feed(b"\n\n") == [SSEEvent("4")]


def test_invalid_utf8_replaced_not_raised() -> None:
    assert datas(b"data: \xff\n\n") == ["\ufffd"]


def test_byte_at_a_time_vllm_stream_equals_one_feed() -> None:
    stream = vllm_stream()
    whole = decode(stream)
    assert len(whole) == 8 and whole[-1].is_done
    assert orjson.loads(whole[3].data)["choices"][0]["delta"]["content"] == " 😀"
    one_by_one = decode(*(stream[i : i + 1] for i in range(len(stream))))
    assert one_by_one == whole


@pytest.mark.parametrize("eol", [b"\r\n", b"\r"])
def test_byte_at_a_time_with_other_line_endings(eol: bytes) -> None:
    stream = vllm_stream().replace(b"\n", eol)
    one_by_one = decode(*(stream[i : i + 1] for i in range(len(stream))))
    assert one_by_one == decode(vllm_stream())


def test_every_split_point_gives_the_same_events() -> None:
    stream = (
        b": c\r\ndata: a\r\ndata: \xc3\xa9\r\n\r\nevent: e\r\ndata:b\r\n\r\ndata: [DONE]\r\n\r\n"
    )
    expected = decode(stream)
    assert [e.data for e in expected] == ["a\né", "b", "[DONE]"]
    for cut in range(len(stream) + 1):
        assert decode(stream[:cut], stream[cut:]) == expected, cut


# --- the bound on an event's size ---------------------------------------------------------------


def overflows(bound: int, *reads: bytes) -> tuple[list[str], bool]:
    """The data of the events before any oversized one, and whether the bound was passed."""
    decoder = SSEDecoder(bound)
    out: list[str] = []
    for read in reads:
        out += [d.decode() for d in decoder.events_of(decoder.feed_block(read))]
        if decoder.overflowed:
            return out, True
    return out + [e.data for e in decoder.flush()], False


@pytest.mark.parametrize(
    "stream",
    [
        b"data: a\n\ndata: " + b"x" * 58 + b"\n\ndata: b\n\n",
        b"data: a\n\n\ndata: " + b"x" * 58 + b"\n\n\n\ndata: b\n\n",  # extra blank lines
        b"data: a\r\n\r\ndata: " + b"x" * 58 + b"\r\n\r\ndata: b\r\n\r\n",
        b"data: a\n\nid: 1\ndata: " + b"x" * 52 + b"\n\ndata: b",  # two lines; none ends it
    ],
    ids=["lf", "blank-lines", "crlf", "two-lines"],
)
def test_an_event_at_the_bound_passes_and_one_byte_more_fails_however_split(
    stream: bytes,
) -> None:
    # The middle event is 64 bytes (its lines and their line feeds, not the blank line).
    for cut in range(len(stream) + 1):
        reads = (stream[:cut], stream[cut:])
        middle = "x" * (52 if b"id:" in stream else 58)
        assert overflows(64, *reads) == (["a", middle, "b"], False), cut
        assert overflows(63, *reads) == (["a"], True), cut


def test_an_endless_line_fails_once_past_the_bound_and_the_decoder_stays_stopped() -> None:
    decoder = SSEDecoder(1024)
    assert decoder.feed(b"data: a\n\ndata: ") == [SSEEvent("a")]
    assert decoder.feed(b"x" * 1000) == []
    assert not decoder.overflowed
    with pytest.raises(EventTooLarge, match="1024 bytes"):
        decoder.feed(b"x" * 100)
    assert decoder.overflowed
    with pytest.raises(EventTooLarge):
        decoder.flush()


def test_feed_returns_the_events_before_an_oversized_one_then_raises() -> None:
    decoder = SSEDecoder(16)
    assert decoder.feed(b"data: a\n\ndata: " + b"x" * 20 + b"\n\ndata: b\n\n") == [SSEEvent("a")]
    with pytest.raises(EventTooLarge):
        decoder.feed(b"data: c\n\n")


def test_an_endless_line_is_scanned_in_linear_time() -> None:
    """16 MiB without a line feed, in 64 KiB reads, under a bound it does not reach: each
    read is scanned once (joining the pending bytes at every read took seconds)."""
    decoder = SSEDecoder(64 << 20)
    piece = b"x" * 65536
    started = time.process_time()
    decoder.feed_block(b"data: ")
    for _ in range(256):
        assert decoder.feed_block(piece) == b""
    assert decoder.feed_block(b"\n\n") == b"data: " + piece * 256 + b"\n\n"
    assert time.process_time() - started < 0.5
