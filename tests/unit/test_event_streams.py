"""The Responses and Messages APIs: what their events and answers say, the fast path on their
framing, the request bodies, and the simulator's reading of those bodies.

Whole streams cut every way are in ``test_sse_parity.py``; these are the single events.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from clientswarm.interactions.messages import (
    Messages,
    anthropic_headers,
    check_messages_answer,
    message_text,
    messages_has_content,
    messages_request,
    read_messages_event,
    split_system,
)
from clientswarm.interactions.responses import (
    Responses,
    check_responses_answer,
    read_responses_event,
    response_text,
    responses_has_content,
    responses_request,
)
from clientswarm.interactions.streaming import (
    ChunkRead,
    ContentOf,
    EventRules,
    Measurement,
    StreamReader,
    TargetError,
)
from clientswarm.metrics.sample import ERROR_PROTOCOL, ERROR_STREAM
from clientswarm.mock.event_wire import (
    MessagesWriter,
    ResponsesWriter,
    parse_messages,
    parse_responses,
)
from clientswarm.mock.wire import InvalidRequest, parse_generation


def raw(event: Any) -> bytes:
    return json.dumps(event, separators=(",", ":")).encode()


def delta(text: Any, kind: str = "response.output_text.delta") -> dict[str, Any]:
    return {"type": kind, "item_id": "m", "output_index": 0, "content_index": 0, "delta": text}


def block(delta: Any) -> dict[str, Any]:
    return {"type": "content_block_delta", "index": 0, "delta": delta}


NOTHING: ChunkRead = (None, False, False, False)
USAGE = {"input_tokens": 7, "output_tokens": 5, "total_tokens": 12}

RESPONSES_EVENTS: list[tuple[str, Any, ChunkRead]] = [
    ("text", delta("Hi"), (None, True, False, False)),
    ("empty-text", delta(""), NOTHING),
    ("object-delta", delta({"content": "We"}, "response.reasoning.delta"), NOTHING),
    ("reasoning", delta("so", "response.reasoning_text.delta"), (None, True, False, False)),
    ("summary", delta("so", "response.reasoning_summary_text.delta"), (None, True, False, False)),
    ("refusal", delta("no", "response.refusal.delta"), (None, True, False, False)),
    ("arguments", delta("{", "response.function_call_arguments.delta"), (None, True, False, False)),
    ("done-text", {"type": "response.output_text.done", "text": "Hi"}, NOTHING),
    ("created", {"type": "response.created", "response": {"usage": None}}, NOTHING),
    ("unknown", {"type": "response.future.event", "delta": "x"}, NOTHING),
    ("error-null", {**delta("a"), "error": None}, (None, True, False, False)),
    (
        "completed",
        {"type": "response.completed", "response": {"status": "completed", "usage": USAGE}},
        ({"prompt_tokens": 7, "completion_tokens": 5}, False, True, True),
    ),
    (
        "incomplete",
        {"type": "response.incomplete", "response": {"usage": USAGE}},
        ({"prompt_tokens": 7, "completion_tokens": 5}, False, True, True),
    ),
    (
        "completed-no-usage",
        {"type": "response.completed", "response": {"usage": None}},
        (None, False, True, True),
    ),
]

MESSAGES_EVENTS: list[tuple[str, Any, ChunkRead]] = [
    ("text", block({"type": "text_delta", "text": "Hi"}), (None, True, False, False)),
    ("empty-text", block({"type": "text_delta", "text": ""}), NOTHING),
    ("thinking", block({"type": "thinking_delta", "thinking": "so"}), (None, True, False, False)),
    (
        "tool-input",
        block({"type": "input_json_delta", "partial_json": "{"}),
        (None, True, False, False),
    ),
    ("signature", block({"type": "signature_delta", "signature": "c2ln"}), NOTHING),
    ("delta-not-an-object", block("Hi"), NOTHING),
    ("ping", {"type": "ping"}, NOTHING),
    ("block-start", {"type": "content_block_start", "content_block": {"text": "Hi"}}, NOTHING),
    (
        "start",
        {"type": "message_start", "message": {"usage": {"input_tokens": 9, "output_tokens": 1}}},
        ({"prompt_tokens": 9}, False, False, False),
    ),
    (
        "start-with-cache",
        {
            "type": "message_start",
            "message": {
                "usage": {
                    "input_tokens": 2,
                    "cache_read_input_tokens": 30,
                    "cache_creation_input_tokens": 4,
                    "output_tokens": 0,
                }
            },
        },
        ({"prompt_tokens": 36}, False, False, False),
    ),
    ("start-without-usage", {"type": "message_start", "message": {}}, NOTHING),
    (
        "delta",
        {
            "type": "message_delta",
            "delta": {"stop_reason": "max_tokens"},
            "usage": {"output_tokens": 8},
        },
        ({"completion_tokens": 8}, False, True, False),
    ),
    (
        "delta-vllm",
        {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn"},
            "usage": {"input_tokens": 9, "output_tokens": 8},
        },
        ({"prompt_tokens": 9, "completion_tokens": 8}, False, True, False),
    ),
    ("delta-no-stop", {"type": "message_delta", "delta": {"stop_reason": None}}, NOTHING),
    ("stop", {"type": "message_stop"}, (None, False, True, True)),
]


def content_of(api: str) -> ContentOf:
    return responses_has_content if api == "responses" else messages_has_content


@pytest.mark.parametrize(
    ("api", "event", "said"),
    [("responses", e, s) for _, e, s in RESPONSES_EVENTS]
    + [("messages", e, s) for _, e, s in MESSAGES_EVENTS],
    ids=[f"responses-{n}" for n, _, _ in RESPONSES_EVENTS]
    + [f"messages-{n}" for n, _, _ in MESSAGES_EVENTS],
)
def test_what_one_event_says(api: str, event: Any, said: ChunkRead) -> None:
    rules: EventRules = read_responses_event if api == "responses" else read_messages_event
    assert rules(raw(event), content_of(api)) == said


BAD_EVENTS: list[tuple[str, bytes, str, str]] = [
    ("responses", b"keep-alive", ERROR_PROTOCOL, "invalid JSON"),
    ("responses", b"[1, 2]", ERROR_PROTOCOL, "expected a JSON object"),
    ("responses", b"", ERROR_PROTOCOL, "invalid JSON"),
    ("responses", raw({"delta": "x"}), ERROR_PROTOCOL, "without a type"),
    ("responses", raw({"type": 7, "delta": "x"}), ERROR_PROTOCOL, "without a type"),
    ("responses", raw({"type": "response.completed"}), ERROR_PROTOCOL, "no response object"),
    ("responses", raw({"type": "error", "code": "c", "message": "boom"}), ERROR_STREAM, "boom"),
    ("responses", raw({"error": {"message": "KV cache"}}), ERROR_STREAM, "KV cache"),
    (
        "responses",
        raw({"type": "response.failed", "response": {"error": {"code": "x", "message": "oom"}}}),
        ERROR_STREAM,
        "x: oom",
    ),
    ("responses", raw({"type": "response.failed"}), ERROR_STREAM, "response.failed"),
    ("messages", b'{"type": "content_block_delta",', ERROR_PROTOCOL, "invalid JSON"),
    ("messages", raw({"delta": {"text": "x"}}), ERROR_PROTOCOL, "without a type"),
    ("messages", raw({"type": "message_start"}), ERROR_PROTOCOL, "no message object"),
    ("messages", raw({"type": "message_start", "message": []}), ERROR_PROTOCOL, "no message"),
    (
        "messages",
        raw({"type": "error", "error": {"type": "overloaded_error", "message": "busy"}}),
        ERROR_STREAM,
        "busy",
    ),
]


@pytest.mark.parametrize(("api", "data", "kind", "says"), BAD_EVENTS)
def test_a_malformed_or_error_event_fails_the_stream_with_its_kind(
    api: str, data: bytes, kind: str, says: str
) -> None:
    rules: EventRules = read_responses_event if api == "responses" else read_messages_event
    with pytest.raises(TargetError) as caught:
        rules(data, content_of(api))
    assert caught.value.kind == kind
    assert says in caught.value.message


def test_answers_are_checked_and_their_usage_kept_in_the_openai_names() -> None:
    m = Measurement(0)
    answer = {"status": "completed", "output": [], "usage": USAGE, "error": None}
    check_responses_answer(answer, m)
    assert m.usage == {"prompt_tokens": 7, "completion_tokens": 5}
    m = Measurement(0)
    usage = {"input_tokens": 1, "cache_read_input_tokens": 5, "output_tokens": 3}
    check_messages_answer({"type": "message", "content": [], "usage": usage}, m)
    assert m.usage == {"prompt_tokens": 6, "completion_tokens": 3}
    bad: list[tuple[Any, dict[str, Any]]] = [
        (check_responses_answer, {"output": "x"}),
        (check_responses_answer, {"output": [], "error": {"message": "boom"}}),
        (check_responses_answer, {"output": [], "status": "failed"}),
        (check_messages_answer, {"content": "x"}),
        (check_messages_answer, {"type": "error", "error": {"message": "boom"}}),
    ]
    for check, body in bad:
        with pytest.raises(TargetError) as caught:
            check(body, Measurement(0))
        assert caught.value.kind == ERROR_PROTOCOL


def test_the_text_of_an_answer() -> None:
    writer = ResponsesWriter("m")
    answer = json.loads(writer.full_body("tok0 tok1 ", "stop", 3, 2))
    assert response_text(answer) == "tok0 tok1 "
    assert message_text(json.loads(MessagesWriter("m").full_body("a b ", "length", 3, 2))) == "a b "


def typed(kind: str, **fields: Any) -> bytes:
    return b"event: " + kind.encode() + b"\ndata: " + raw({"type": kind, **fields}) + b"\n\n"


def test_the_fast_path_counts_runs_of_messages_deltas_with_their_event_lines_unparsed() -> None:
    parsed: list[str] = []

    def counting(event: dict[str, Any]) -> bool:
        parsed.append(event["type"])
        return messages_has_content(event)

    deltas = b"".join(
        typed("content_block_delta", index=0, delta={"type": "text_delta", "text": f"w{i} "})
        for i in range(40)
    )
    start = typed("message_start", message={"usage": {"input_tokens": 3}})
    end = typed("message_delta", delta={"stop_reason": "max_tokens"}, usage={"output_tokens": 40})
    body = start + deltas + end + typed("message_stop")
    m = Measurement(0)
    reader = StreamReader(m, counting, Messages.content_markers, rules=read_messages_event)
    assert reader.feed(body, 1)
    # The start, the first delta (learnt, then asked again with its text empty), the end.
    assert parsed == [
        "message_start",
        *["content_block_delta"] * 2,
        "message_delta",
        "message_stop",
    ]
    assert len(m.chunk_ns) == 40 and m.usage == {"prompt_tokens": 3, "completion_tokens": 40}
    sample = m.to_sample(group="g", client=0, worker=0, name="n", scheduled_ns=0, now_ns=1)
    assert (sample.output_tokens, sample.input_tokens, sample.token_source) == (40, 3, "usage")


def test_deltas_that_differ_in_their_sequence_number_are_each_parsed_and_counted_right() -> None:
    parsed: list[str] = []

    def counting(event: dict[str, Any]) -> bool:
        parsed.append(event["type"])
        return responses_has_content(event)

    deltas = b"".join(
        typed("response.output_text.delta", delta=f"w{i} ", sequence_number=i) for i in range(20)
    )
    usage = {"input_tokens": 3, "output_tokens": 20}
    body = deltas + typed("response.completed", response={"usage": usage}) + b"data: [DONE]\n\n"
    m = Measurement(0)
    assert StreamReader(m, counting, Responses.content_markers, rules=read_responses_event).feed(
        body, 1
    )
    assert len(m.chunk_ns) == 20 and m.done
    assert m.usage == {"prompt_tokens": 3, "completion_tokens": 20}


def test_request_bodies_and_headers() -> None:
    assert responses_request(
        "m", "Hi", instructions="Be brief.", max_output_tokens=8, stream=True
    ) == {
        "model": "m",
        "input": "Hi",
        "instructions": "Be brief.",
        "max_output_tokens": 8,
        "stream": True,
        "store": False,
    }
    assert responses_request(None, [], instructions=None, max_output_tokens=None, stream=False) == {
        "input": [],
        "stream": False,
        "store": False,
    }
    assert messages_request(
        "m", [{"role": "user", "content": "Hi"}], system="S", max_tokens=4, stream=True
    ) == {
        "model": "m",
        "max_tokens": 4,
        "messages": [{"role": "user", "content": "Hi"}],
        "system": "S",
        "stream": True,
    }
    history = [
        {"role": "system", "content": "One."},
        {"role": "user", "content": "Hi"},
        {"role": "system", "content": "Two."},
    ]
    assert split_system(history, None) == ("One.\n\nTwo.", [{"role": "user", "content": "Hi"}])
    assert split_system(history, "Mine.") == ("Mine.", [{"role": "user", "content": "Hi"}])
    assert split_system(history[1:2], None) == (None, history[1:2])
    assert anthropic_headers({"Authorization": "Bearer k", "X": "y"}) == {
        "Authorization": "Bearer k",
        "X": "y",
        "anthropic-version": "2023-06-01",
        "x-api-key": "k",
    }
    assert "x-api-key" not in anthropic_headers({})


def test_the_simulator_counts_the_same_prompt_the_same_through_the_three_apis() -> None:
    system, user = "You are terse.", "Tell me a story about dragons."
    chat = parse_generation(
        "chat",
        raw(
            {"messages": [{"role": "system", "content": system}, {"role": "user", "content": user}]}
        ),
    )
    responses = parse_responses(
        raw({"input": user, "instructions": system, "max_output_tokens": 3})
    )
    items = parse_responses(
        raw(
            {
                "input": [{"role": "user", "content": [{"type": "input_text", "text": user}]}],
                "instructions": system,
            }
        )
    )
    messages = parse_messages(
        raw({"messages": [{"role": "user", "content": user}], "system": system, "max_tokens": 3})
    )
    assert (
        chat.prompt_tokens
        == responses.prompt_tokens
        == items.prompt_tokens
        == messages.prompt_tokens
        == 9
    )
    assert chat.prompt_words == responses.prompt_words == messages.prompt_words
    assert (responses.max_tokens, messages.max_tokens, items.max_tokens) == (3, 3, None)
    assert responses.endpoint == "responses" and messages.endpoint == "messages"


@pytest.mark.parametrize(
    ("parse", "body", "param"),
    [
        (parse_responses, {"input": 3}, "input"),
        (parse_responses, {"input": []}, "input"),
        (parse_responses, {"input": "x", "instructions": 3}, "instructions"),
        (parse_responses, {"input": "x", "max_output_tokens": 0}, None),
        (parse_messages, {"messages": [{"role": "user", "content": "x"}]}, "max_tokens"),
        (parse_messages, {"messages": [], "max_tokens": 3}, "messages"),
        (
            parse_messages,
            {"messages": [{"role": "system", "content": "x"}], "max_tokens": 3},
            "messages",
        ),
    ],
)
def test_the_simulator_refuses_bodies_the_apis_refuse(
    parse: Any, body: dict[str, Any], param: str | None
) -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse(raw(body))
    assert caught.value.param == param
