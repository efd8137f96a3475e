"""The byte-level fast path decides exactly what parsing would, or leaves the chunk to parsing."""

from __future__ import annotations

import json
from typing import Any

import pytest

from clientswarm.interactions.openai import (
    Chat,
    Completion,
    chat_has_content,
    completion_has_content,
)
from clientswarm.interactions.streaming import bulk_content, content_from_bytes


def chunk(*choices: dict[str, Any], **extra: Any) -> bytes:
    body = {"id": "x", "object": "chat.completion.chunk", "choices": list(choices), **extra}
    return json.dumps(body, separators=(",", ":")).encode()


def delta(finish: str | None = None, **fields: Any) -> dict[str, Any]:
    return {"index": 0, "delta": fields, "finish_reason": finish}


CHAT = [
    chunk(delta(role="assistant", content="")),
    chunk(delta(content=" hello")),
    chunk(delta(content="")),
    chunk(delta(content=None)),
    chunk(delta(content='say "content":"x"')),
    chunk(delta(content='\\"')),
    chunk(delta(reasoning_content="hmm")),
    chunk(delta(reasoning="hmm")),
    chunk(delta(reasoning="")),
    chunk(delta("stop", content="")),
    chunk(delta("length", content="last")),
    chunk(delta(tool_calls=[{"index": 0, "function": {"arguments": "{}"}}])),
    chunk(usage={"prompt_tokens": 1, "completion_tokens": 2}),
    chunk(delta(content="a"), usage=None),
    chunk(delta(content="a"), {"index": 1, "delta": {"content": "b"}, "finish_reason": None}),
    chunk(delta(content="hi"), error={"message": "boom"}),
    json.dumps({"choices": [delta(content="x")]}, indent=1).encode(),
]
COMPLETION = [
    chunk({"index": 0, "text": "", "finish_reason": None}),
    chunk({"index": 0, "text": " a", "finish_reason": None}),
    chunk({"index": 0, "text": "b", "finish_reason": "stop"}),
]


def parsed(data: bytes, has_content: Any) -> bool:
    choices = json.loads(data).get("choices") or []
    return any(has_content(choice) for choice in choices)


@pytest.mark.parametrize("data", CHAT, ids=range(len(CHAT)))
def test_chat_chunks_agree_with_parsing(data: bytes) -> None:
    fast = content_from_bytes(data, Chat.content_markers)
    assert fast is None or fast == parsed(data, chat_has_content)


@pytest.mark.parametrize("data", COMPLETION, ids=range(len(COMPLETION)))
def test_completion_chunks_agree_with_parsing(data: bytes) -> None:
    fast = content_from_bytes(data, Completion.content_markers)
    assert fast is None or fast == parsed(data, completion_has_content)


def test_ordinary_chunks_take_the_fast_path_and_the_rest_are_parsed() -> None:
    decided = [content_from_bytes(data, Chat.content_markers) for data in CHAT]
    assert decided[:9] == [False, True, False, False, True, True, True, True, False]
    assert decided[9:] == [None, None, False, None, True, None, None, None]
    assert content_from_bytes(b"not json", Chat.content_markers) is None


def sse(*events: bytes) -> bytes:
    return b"".join(b"data: " + e + b"\n\n" for e in events)


def test_a_run_of_ordinary_events_is_counted_in_bulk_up_to_the_first_special_one() -> None:
    ordinary = [CHAT[0], CHAT[1], CHAT[2], CHAT[4], CHAT[5], CHAT[1]]
    tail = sse(CHAT[9], CHAT[12], b"[DONE]")
    block = sse(*ordinary) + tail
    assert content_from_bytes(CHAT[9], Chat.content_markers) is None
    end, content = bulk_content(block, Chat.content_markers) or (0, 0)
    assert block[end:] == tail
    assert content == sum(parsed(e, chat_has_content) for e in ordinary) == 4


@pytest.mark.parametrize(
    "block",
    [
        sse(CHAT[9]),  # a finish first: nothing ordinary before it
        sse(CHAT[6], CHAT[1]),  # reasoning may share an event with content
        sse(CHAT[1]).replace(b"data: ", b"data:"),  # not the plain form
        sse(CHAT[14]),  # two choices
        sse(chunk(delta(content="data: {"))),  # the text imitates an event
    ],
    ids=["finish", "reasoning", "no-space", "two-choices", "imitation"],
)
def test_anything_unusual_goes_event_by_event(block: bytes) -> None:
    assert bulk_content(block, Chat.content_markers) is None


def test_completion_runs_are_counted_too() -> None:
    block = sse(COMPLETION[0], COMPLETION[1], COMPLETION[1], COMPLETION[2], b"[DONE]")
    end, content = bulk_content(block, Completion.content_markers) or (0, 0)
    assert content == 2 and block[end:] == sse(COMPLETION[2], b"[DONE]")


def test_comments_and_ids_between_events_do_not_matter() -> None:
    block = b": keep-alive\n\n" + sse(CHAT[1]) + b"id: 7\n" + sse(CHAT[2])
    assert bulk_content(block, Chat.content_markers) == (len(block), 1)
