"""The fast path recognises only chunks like one it parsed and learnt; everything else is parsed.

``test_sse_parity.py`` checks that both paths give the same samples; these tests check what the
fast path takes on itself: which chunks it learns from, which it recognises, and which runs of
a read it counts at once.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from clientswarm.interactions.chunk_template import ChunkTemplate
from clientswarm.interactions.openai import (
    Chat,
    Completion,
    chat_has_content,
    completion_has_content,
)
from clientswarm.interactions.streaming import (
    _LEARN_TRIES,
    Measurement,
    StreamReader,
    TargetError,
)


def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> bytes:
    choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
    body = {"id": "x", "object": "chat.completion.chunk", "choices": [choice], **extra}
    return json.dumps(body, separators=(",", ":")).encode()


def sse(*events: bytes) -> bytes:
    return b"".join(b"data: " + e + b"\n\n" for e in events)


def reader_after(*events: bytes) -> StreamReader:
    """A chat reader (fast path) that has read ``events``, one read each."""
    reader = StreamReader(Measurement(0), chat_has_content, Chat.content_markers)
    for now, event in enumerate(events, start=1):
        reader.feed(sse(event), now)
    return reader


def learnt(*events: bytes) -> ChunkTemplate:
    template = reader_after(*events).template
    assert template is not None
    return template


def test_a_token_chunk_is_learnt_and_its_siblings_are_recognised() -> None:
    template = learnt(chunk({"role": "assistant", "content": ""}), chunk({"content": "Hi"}))
    assert template.content(chunk({"content": " there"})) is True
    assert template.content(chunk({"content": "é 😀 \\n \\\\ x"})) is True  # escapes
    assert template.content(chunk({"content": "a\\"})) is True  # a backslash last, escaped
    assert template.content(chunk({"content": ""})) is False
    for other in [
        chunk({"content": 'say "x"'}),  # a quote in the text: parsed
        chunk({"content": "a"}, "stop"),
        chunk({"content": "a"}, usage={"completion_tokens": 1}),
        chunk({"content": "a"}, error=None),
        chunk({"content": None}),
        chunk({"content": "a"}).replace(b'"content":', b'"content": '),
        chunk({"role": "assistant", "content": ""}),
        chunk({"content": "a\nb"}).replace(b"\\n", b"\n"),  # a raw line feed
    ]:
        assert template.content(other) is None, other


@pytest.mark.parametrize(
    "events",
    [
        [chunk({"role": "assistant", "content": ""})],  # no content: nothing to learn
        [chunk({"content": "a"}, "stop")],  # finished
        [chunk({"content": "a"}, usage={"completion_tokens": 1})],  # usage
        [chunk({"content": "a", "reasoning_content": "b"})],  # content without this text too
        [chunk({"content": 'a "quoted" text'})],  # an escape may hide the closing quote
        [chunk({"tool_calls": [{"index": 0, "id": "c", "function": {"name": "f"}}]})],
        [chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"a"'}}]})],
    ],
    ids=["role", "finish", "usage", "two-texts", "escaped", "tool-call-name", "escaped-args"],
)
def test_nothing_is_learnt_from_a_chunk_whose_content_does_not_hinge_on_one_text(
    events: list[bytes],
) -> None:
    assert reader_after(*events).template is None


def test_tool_call_arguments_are_learnt_and_counted_as_content() -> None:
    def call(arguments: str) -> bytes:
        return chunk({"tool_calls": [{"index": 0, "function": {"arguments": arguments}}]})

    template = learnt(call("{}"))
    assert template.content(call("1,")) is True
    assert template.content(call("")) is False
    assert template.content(chunk({"content": "so"})) is None


def test_reasoning_and_completion_texts_are_learnt_too() -> None:
    reasoning = learnt(chunk({"reasoning_content": "hmm"}))
    assert reasoning.content(chunk({"reasoning_content": "so"})) is True
    assert reasoning.content(chunk({"content": "so"})) is None
    completion = StreamReader(Measurement(0), completion_has_content, Completion.content_markers)

    def text_chunk(text: str, separators: tuple[str, str] = (",", ":")) -> bytes:
        choice = {"index": 0, "text": text, "finish_reason": None}
        return json.dumps({"choices": [choice]}, separators=separators).encode()

    completion.feed(sse(text_chunk("a", (", ", ": "))), 1)
    assert completion.template is None  # not the compact form: parsed, nothing learnt
    completion.feed(sse(text_chunk("a")), 2)
    assert completion.template is not None
    assert completion.template.content(text_chunk("b")) is True
    assert completion.template.content(text_chunk("")) is False


def test_a_run_of_token_chunks_is_counted_at_once_up_to_the_last_of_them() -> None:
    template = learnt(chunk({"content": "a"}))
    tokens = [chunk({"content": t}) for t in ["b", "", "c", "d", ""]]
    tail = sse(chunk({}, "stop"), b"[DONE]")
    block = sse(*tokens) + tail
    assert template.run(block, 0) == (len(block) - len(tail), 3)
    prefix = sse(chunk({"content": "z"}, "length"))
    assert template.run(prefix + block, len(prefix)) == (len(prefix + block) - len(tail), 3)


@pytest.mark.parametrize(
    "block",
    [
        sse(chunk({}, "stop"), chunk({"content": "b"})),  # something else first
        sse(chunk({"content": "b"})) + b": ping\n\n" + sse(chunk({"content": "c"})),
        sse(chunk({"content": "b"})) + b"data: keep-alive\n\n" + sse(chunk({"content": "c"})),
        sse(chunk({"content": "b"}), b"[DONE]", chunk({"content": "c"})),
        sse(
            chunk({"content": "b"}),
            chunk({"content": "c"}, error={"m": "x"}),
            chunk({"content": "d"}),
        ),
        sse(chunk({"content": "b"})) + b"id: 3\n" + sse(chunk({"content": "c"})),
        sse(chunk({"content": 'a "b" c'}), chunk({"content": "c"})),
        sse(chunk({"content": "b"})).replace(b"data: ", b"data:"),
    ],
    ids=["other-first", "comment", "keep-alive", "done", "error", "id", "quote", "no-space"],
)
def test_a_run_holding_anything_else_is_left_to_the_events_one_by_one(block: bytes) -> None:
    assert learnt(chunk({"content": "a"})).run(block, 0) is None


def test_learning_stops_when_every_chunk_differs_in_more_than_its_text() -> None:
    # A target that puts something new in every chunk (a timestamp here): each learnt template
    # goes unused, and after a few of them the reader stops paying for the extra parse.
    events = [chunk({"content": "a"}, created=i) for i in range(3 * _LEARN_TRIES)]
    reader = reader_after(*events)
    assert reader.tries == 0
    assert len(reader.m.chunk_ns) == len(events)


def test_a_used_template_is_replaced_for_free() -> None:
    # A timestamp that changes now and then (every second) costs one relearning each time.
    events = [chunk({"content": "a"}, created=i // 3) for i in range(3 * (_LEARN_TRIES + 2))]
    reader = reader_after(*events)
    assert reader.tries == _LEARN_TRIES and reader.template is not None


def test_errors_are_raised_as_target_errors_from_both_paths() -> None:
    for markers in (Chat.content_markers, ()):
        reader = StreamReader(Measurement(0), chat_has_content, markers)
        reader.feed(sse(chunk({"content": "a"}), chunk({"content": "b"})), 1)
        with pytest.raises(TargetError) as caught:
            reader.feed(sse(chunk({"content": "c"}, error={"message": "boom"})), 2)
        assert (caught.value.kind, caught.value.message) == ("stream_error", "boom")
