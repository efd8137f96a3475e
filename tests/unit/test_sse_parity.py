"""The same bytes give the same sample however the reads cut them, on every stream path.

Each case is a whole response body. It is fed to the stream reader cut every way we can afford
(one read, byte by byte, every two-way cut, seeded random cuts) through three paths: the fast
path of the built-ins (markers), the plain rules (no markers) and the collector of
``ctx.chat``/``ctx.completion`` (of ``ctx.responses``/``ctx.messages`` for the streams of those
APIs, read by their own rules). For every cut, the fast and plain paths must record the very
same receive times and outcome, and every path must give the outcome of the uncut body. The
cases are our own, in the spirit of the SSE test vectors of openai-python, httpx-sse, aiperf
and guidellm, plus the ones an outside probe found (issue 14).
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from clientswarm.interactions.chunk_template import LearntTemplate
from clientswarm.interactions.llm import _Collected, _EventsCollected
from clientswarm.interactions.messages import (
    Messages,
    messages_has_content,
    read_messages_event,
)
from clientswarm.interactions.openai import (
    Chat,
    Completion,
    chat_has_content,
    completion_has_content,
)
from clientswarm.interactions.responses import (
    Responses,
    read_responses_event,
    responses_has_content,
)
from clientswarm.interactions.streaming import (
    ContentMarkers,
    ContentOf,
    EventRules,
    Measurement,
    StreamReader,
    TargetError,
    read_chunk,
)
from clientswarm.metrics.sample import ERROR_PROTOCOL, ERROR_STREAM

MAX_EVENT_BYTES = 600  # small, so that short cases reach the bound


def compact(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def chunk(delta: dict[str, Any] | None = None, finish: str | None = None, **extra: Any) -> bytes:
    """A vLLM-style chat chunk (compact JSON), one choice."""
    choice = {"index": 0, "delta": delta or {}, "logprobs": None, "finish_reason": finish}
    body = {"id": "chatcmpl-7", "object": "chat.completion.chunk", "created": 1, "model": "m"}
    return compact({**body, "choices": [choice], **extra})


def text_chunk(text: str, finish: str | None = None) -> bytes:
    choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": finish}
    return compact({"id": "cmpl-7", "object": "text_completion", "choices": [choice]})


def data(*payloads: bytes) -> bytes:
    return b"".join(b"data: " + p + b"\n\n" for p in payloads)


E = data(chunk({"content": "a"}))  # the E
ROLE = data(chunk({"role": "assistant", "content": ""}))
STOP = data(chunk({}, "stop"))
USAGE = data(compact({"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 9}}))
DONE = b"data: [DONE]\n\n"
WORDS = data(*(chunk({"content": w}) for w in [" one", " two", "", " three", " four"]))


@dataclass(frozen=True)
class Case:
    """A response body and what it must give: (status, error kind, output tokens)."""

    name: str
    body: bytes
    expected: tuple[str, str | None, int | None]
    completion: bool = False
    api: str = "openai"  # or "responses", "messages": the stream of that API


def _overlap_line() -> bytes:
    """A chunk the fast path could mistake for a token chunk: its head then its tail at once,
    the text's opening quote read as its closing one (not JSON)."""
    line = chunk({"content": "a"})
    cut = line.index(b'"content":"') + len(b'"content":"')
    return line[:cut] + line[cut + 2 :]


CASES = [
    Case("vllm", ROLE + WORDS + STOP + USAGE + DONE, ("ok", None, 9)),
    Case("keep-alive-data", E + b"data: keep-alive\n\n" + E + DONE, ("error", ERROR_PROTOCOL, 1)),
    Case("empty-data", E + b"data:\n\n" + E + DONE, ("error", ERROR_PROTOCOL, 1)),
    Case(
        "event-error-text",
        E + b"event: error\ndata: overloaded\n\n" + E + DONE,
        ("error", ERROR_PROTOCOL, 1),
    ),
    Case("done-mid-body", E + DONE + E + E + DONE, ("ok", None, 1)),
    Case("done-trailing-space", E + E + b"data: [DONE] \n\n", ("ok", None, 2)),
    Case(
        "error-beside-choices",
        E + data(chunk({"content": "b"}, error={"message": "KV cache full"})) + E + DONE,
        ("error", ERROR_STREAM, 1),
    ),
    Case(
        "error-null", E + data(chunk({"content": "b"}, "stop", error=None)) + DONE, ("ok", None, 2)
    ),
    Case(
        "object-error",
        E + data(compact({"object": "error", "message": "boom"})),
        ("error", ERROR_STREAM, 1),
    ),
    Case(
        "spaced-content",
        E + data(chunk({}).replace(b'"delta":{}', b'"delta":{"content": "x"}')) + E + DONE,
        ("ok", None, 3),
    ),
    Case(
        "spaced-json",
        data(json.dumps({"choices": [{"delta": {"content": "x"}, "finish_reason": None}]}).encode())
        + E
        + DONE,
        ("ok", None, 2),
    ),
    Case(
        "tool-call-index-null",
        ROLE
        + data(chunk({"tool_calls": [{"index": None, "id": "c1", "function": {"name": "f"}}]}))
        + data(chunk({"tool_calls": [{"index": None, "function": {"arguments": '{"a":'}}]}))
        + data(chunk({"tool_calls": [{"function": {"arguments": "1}"}}]}))
        + data(chunk({}, "tool_calls"))
        + DONE,
        ("ok", None, 2),  # the two pieces of arguments are output, as ctx.chat counts them
    ),
    Case(
        "tool-call-arguments-learnt",
        ROLE
        + data(chunk({"tool_calls": [{"index": 0, "id": "c1", "function": {"name": "f"}}]}))
        + data(
            *(chunk({"tool_calls": [{"index": 0, "function": {"arguments": a}}]}) for a in "{1,2}")
        )
        + data(chunk({"tool_calls": [{"index": 0, "function": {"arguments": ""}}]}))
        + data(chunk({}, "tool_calls"))
        + DONE,
        ("ok", None, 5),
    ),
    Case(
        "comments-ids-retry",
        b": ping\n\n" + E + b"id: 1\nretry: 50\n" + E + b": x\n" + E + b"event: delta\n" + E + DONE,
        ("ok", None, 4),
    ),
    Case("crlf", (ROLE + WORDS + STOP + DONE).replace(b"\n", b"\r\n"), ("ok", None, 4)),
    Case("cr", (E + E + STOP + DONE).replace(b"\n", b"\r"), ("ok", None, 2)),
    Case(
        "multi-line-data",
        E
        + b'data: {"choices": [{"delta": {"content": "x"},\ndata: "finish_reason": null}]}\n\n'
        + E
        + DONE,
        ("ok", None, 3),
    ),
    Case("no-space-after-colon", E + E.replace(b"data: ", b"data:") + E + DONE, ("ok", None, 3)),
    Case("bom", b"\xef\xbb\xbf" + E + E + DONE, ("ok", None, 2)),
    Case(
        "non-ascii",
        data(*(chunk({"content": t}) for t in ["Héllo", " wörld", " 😀", " 日本語"])) + DONE,
        ("ok", None, 4),
    ),
    Case(
        "escapes-in-text",
        E
        + data(*(chunk({"content": t}) for t in ['say "hi"', "a\\b", "line\n", "\\", "tab\t"]))
        + E
        + DONE,
        ("ok", None, 7),
    ),
    Case(
        "text-imitates-events",
        E + data(chunk({"content": 'data: {"x": 1}\n\ndata: [DONE]\n\n'})) + E + DONE,
        ("ok", None, 3),
    ),
    Case(
        "reasoning-then-content",
        ROLE
        + data(*(chunk({"reasoning_content": t}) for t in ["hmm", " so", ""]))
        + data(*(chunk({"reasoning": t}) for t in ["x", "y"]))
        + data(chunk({"reasoning_content": None, "content": "ok"}))
        + E
        + STOP
        + DONE,
        ("ok", None, 6),
    ),
    Case(
        "completion",
        data(*(text_chunk(t) for t in ["", "Hi", " there", " you"]), text_chunk("", "length"))
        + USAGE
        + DONE,
        ("ok", None, 9),
        completion=True,
    ),
    Case("finish-without-done", E + E + STOP, ("ok", None, 2)),
    Case("neither-done-nor-finish", E + E, ("error", ERROR_PROTOCOL, 2)),
    Case("last-event-unterminated", E + E + b"data: [DONE]", ("ok", None, 2)),
    Case(
        "usage-in-every-chunk",
        data(*(chunk({"content": "a"}, usage={"completion_tokens": i}) for i in (1, 2, 3)))
        + STOP
        + DONE,
        ("ok", None, 3),
    ),
    Case(
        "two-choices-per-chunk",
        data(
            compact(
                {
                    "choices": [
                        {"index": 0, "delta": {"content": "a"}, "finish_reason": None},
                        {"index": 1, "delta": {"content": "b"}, "finish_reason": None},
                    ]
                }
            )
        )
        + E
        + DONE,
        ("ok", None, 2),
    ),
    Case("invalid-json", E + b"data: {not json}\n\n" + E + DONE, ("error", ERROR_PROTOCOL, 1)),
    Case("json-array", E + b"data: [1, 2]\n\n" + DONE, ("error", ERROR_PROTOCOL, 1)),
    Case(
        "odd-shapes",
        data(
            compact({"choices": "x"}),
            compact({"choices": [1, None, {"delta": "x", "finish_reason": None}]}),
            compact({"choices": [{"delta": {"content": "a"}, "finish_reason": None}], "usage": 5}),
        )
        + E
        + DONE,
        ("ok", None, 2),
    ),
    Case("extra-blank-lines", b"\n\n\n" + E + b"\n\n\n\n" + E + b"\n\n\n" + DONE, ("ok", None, 2)),
    Case(
        "another-template-mid-stream",
        E + E + data(chunk({"content": "b"}).replace(b'"created":1', b'"created":2')) + E + DONE,
        ("ok", None, 4),
    ),
    Case(
        "head-and-tail-overlap",
        E + E + data(_overlap_line()) + data(chunk({"content": 'a"b'})) + E + DONE,
        ("error", ERROR_PROTOCOL, 2),
    ),
    Case(
        "text-ends-with-a-backslash",
        E + data(chunk({"content": "\\"}), chunk({"content": "a\\"})) + E + DONE,
        ("ok", None, 4),
    ),
    Case(
        "event-at-the-bound",
        E
        + data(chunk({"content": "x" * (MAX_EVENT_BYTES - len(chunk({"content": ""})) - 6)}))
        + DONE,
        ("ok", None, 2),
    ),
    Case(
        "event-past-the-bound",
        E
        + data(chunk({"content": "x" * (MAX_EVENT_BYTES - len(chunk({"content": ""})) - 5)}))
        + DONE,
        ("error", ERROR_PROTOCOL, 1),
    ),
    Case(
        "endless-line", E + b"data: " + b"x" * (2 * MAX_EVENT_BYTES), ("error", ERROR_PROTOCOL, 1)
    ),
]


def typed(kind: str, **fields: Any) -> bytes:
    """A typed event as vLLM frames those of the Responses and Messages APIs: an event line,
    then one data line (compact JSON)."""
    return b"event: " + kind.encode() + b"\ndata: " + compact({"type": kind, **fields}) + b"\n\n"


def r_delta(text: str, kind: str = "response.output_text.delta", **fields: Any) -> bytes:
    return typed(kind, delta=text, **fields)


def r_last(output_tokens: int, kind: str = "response.completed") -> bytes:
    return typed(kind, response={"usage": {"input_tokens": 3, "output_tokens": output_tokens}})


def m_delta(text: str, kind: str = "text_delta", field: str = "text") -> bytes:
    return typed("content_block_delta", delta={"type": kind, field: text})


R_START = typed("response.created", response={"status": "in_progress"})
R_WORDS = r_delta("one") + r_delta("") + r_delta(" two")
M_START = (
    typed("message_start", message={"usage": {"input_tokens": 3, "output_tokens": 1}})
    + typed("content_block_start", content_block={"type": "text", "text": ""})
    + typed("ping")
)
M_WORDS = m_delta("one") + m_delta("") + m_delta(" two")
M_STOP = typed("message_delta", delta={"stop_reason": "end_turn"}, usage={"output_tokens": 9})
M_END = typed("content_block_stop") + M_STOP + typed("message_stop")

CASES += [
    Case("responses-vllm", R_START + R_WORDS + r_last(9) + DONE, ("ok", None, 9), api="responses"),
    Case(
        "responses-sequence-numbers-and-other-framing",
        b"".join(r_delta(w, sequence_number=n) for n, w in enumerate("abc"))
        + (R_WORDS + r_last(7)).replace(b"event: ", b": was event "),
        ("ok", None, 7),
        api="responses",
    ),
    Case(
        "responses-the-event-line-says-nothing",
        R_WORDS + R_WORDS.replace(b"response.output_text.delta\n", b"x\n") + r_last(4),
        ("ok", None, 4),
        api="responses",
    ),
    Case(
        "responses-incomplete-reasoning-refusal-arguments",
        r_delta("hm", "response.reasoning_text.delta")
        + r_delta("no", "response.refusal.delta")
        + r_delta('{"a":', "response.function_call_arguments.delta")
        + r_delta("", "response.function_call_arguments.delta")
        + typed("response.output_text.done", text="x")
        + r_last(3, "response.incomplete"),
        ("ok", None, 3),
        api="responses",
    ),
    Case(
        "responses-failed",
        R_WORDS + typed("response.failed", response={"error": {"code": "x", "message": "KV"}}),
        ("error", ERROR_STREAM, 2),
        api="responses",
    ),
    Case(
        "responses-error-event",
        R_WORDS + typed("error", code="server_error", message="boom") + r_last(9),
        ("error", ERROR_STREAM, 2),
        api="responses",
    ),
    Case(
        "responses-untyped",
        R_WORDS + data(compact({"delta": "x"})) + r_last(9),
        ("error", ERROR_PROTOCOL, 2),
        api="responses",
    ),
    Case(
        "responses-no-last-event", R_START + R_WORDS, ("error", ERROR_PROTOCOL, 2), api="responses"
    ),
    Case(
        "responses-last-event-without-response",
        R_WORDS + typed("response.completed"),
        ("error", ERROR_PROTOCOL, 2),
        api="responses",
    ),
    Case("messages-vllm", M_START + M_WORDS + M_END, ("ok", None, 9), api="messages"),
    Case(
        "messages-thinking-signature-tool-input-crlf",
        (
            M_START
            + m_delta("hm", "thinking_delta", "thinking")
            + m_delta("c2ln", "signature_delta", "signature")
            + m_delta('{"a":', "input_json_delta", "partial_json")
            + m_delta("", "input_json_delta", "partial_json")
            + M_END
        ).replace(b"\n", b"\r\n"),
        ("ok", None, 9),
        api="messages",
    ),
    Case(
        "messages-stop-without-message-stop",
        M_START + M_WORDS + M_STOP,
        ("ok", None, 9),
        api="messages",
    ),
    Case(
        "messages-the-output-of-message-start-is-no-count",
        M_START + M_WORDS + typed("message_delta", delta={"stop_reason": "end_turn"}),
        ("ok", None, 2),
        api="messages",
    ),
    Case(
        "messages-error",
        M_WORDS + typed("error", error={"type": "overloaded_error", "message": "busy"}),
        ("error", ERROR_STREAM, 2),
        api="messages",
    ),
    Case(
        "messages-untyped",
        M_WORDS + data(compact({"delta": {"text": "x"}})) + M_END,
        ("error", ERROR_PROTOCOL, 2),
        api="messages",
    ),
    Case(
        "messages-start-without-message",
        typed("message_start") + M_WORDS + M_END,
        ("error", ERROR_PROTOCOL, 0),
        api="messages",
    ),
    Case("messages-no-end", M_START + M_WORDS, ("error", ERROR_PROTOCOL, 2), api="messages"),
]

APIS: dict[str, tuple[ContentOf, ContentMarkers, EventRules]] = {
    "responses": (responses_has_content, Responses.content_markers, read_responses_event),
    "messages": (messages_has_content, Messages.content_markers, read_messages_event),
}

Key = tuple[str, str | None, int | None, bool, int]


@dataclass(frozen=True)
class Result:
    """What one path made of one cut: the sample's key values and the exact receive times."""

    key: Key  # status, error kind, output tokens, TTFT present, ITL count
    chunk_ns: tuple[int, ...]
    message: str | None


def run_reads(
    reads: list[bytes],
    content_of: ContentOf,
    markers: ContentMarkers,
    rules: EventRules = read_chunk,
    learnt: LearntTemplate | None = None,
) -> Result:
    """Feed ``reads`` to a stream reader as reads received at 1, 2, 3, … ns."""
    m = Measurement(0)
    reader = StreamReader(m, content_of, markers, MAX_EVENT_BYTES, rules, learnt)
    now = 0
    try:
        for now, read in enumerate(reads, start=1):
            if reader.feed(read, now):
                break
        else:
            reader.finish()
    except TargetError as exc:
        m.fail(exc.kind, exc.message, now)
    sample = m.to_sample(group="g", client=0, worker=0, name="n", scheduled_ns=0, now_ns=now)
    key = (
        sample.status,
        sample.error_kind,
        sample.output_tokens,
        sample.first_token_ns is not None,
        len(sample.itl_s),
    )
    return Result(key, tuple(m.chunk_ns), sample.error_message)


def learnt_from(body: bytes, has_content: ContentOf, markers: Any, rules: EventRules) -> Any:
    """Reads of a stream starting with the template an earlier stream (``body``) left:
    the interaction's next stream."""
    learnt = LearntTemplate()
    run_reads([body], has_content, markers, rules, learnt)

    def run(reads: list[bytes]) -> Result:
        shared = LearntTemplate()
        shared.template = learnt.template
        return run_reads(reads, has_content, markers, rules, shared)

    return run


def paths(case: Case) -> dict[str, Callable[[list[bytes]], Result]]:
    """The fast path (on its own, then after a stream of the same body and, for chat, after
    an ordinary token stream), the plain rules and the ctx helper's collector, for one case."""
    if case.api != "openai":
        has_content, markers, rules = APIS[case.api]

        def events(reads: list[bytes]) -> Result:
            collected = _EventsCollected()
            of = collected.responses_event if case.api == "responses" else collected.messages_event
            return run_reads(reads, of, (), rules)

        return {
            "fast": lambda reads: run_reads(reads, has_content, markers, rules),
            "next": learnt_from(case.body, has_content, markers, rules),
            "plain": lambda reads: run_reads(reads, has_content, (), rules),
            "ctx": events,
        }
    if case.completion:
        has_content, markers = completion_has_content, Completion.content_markers
    else:
        has_content, markers = chat_has_content, Chat.content_markers

    def collector(reads: list[bytes]) -> Result:
        collected = _Collected()
        of = collected.completion_choice if case.completion else collected.chat_choice
        return run_reads(reads, of, ())

    after = ROLE + WORDS + STOP + DONE if not case.completion else case.body
    return {
        "fast": lambda reads: run_reads(reads, has_content, markers),
        "next": learnt_from(case.body, has_content, markers, read_chunk),
        "after": learnt_from(after, has_content, markers, read_chunk),
        "plain": lambda reads: run_reads(reads, has_content, ()),
        "ctx": collector,
    }


def cuts(body: bytes, seed: int) -> Iterator[list[bytes]]:
    """One read per event (a paced stream's reads: the reader's one-event path), byte by
    byte, every two-way cut, then random cuts into 2 to 12 reads."""
    yield [event for event in re.split(rb"(?<=\n\n)|(?<=\r\n\r\n)|(?<=\r\r)", body) if event]
    yield [body[i : i + 1] for i in range(len(body))]
    for at in range(1, len(body)):
        yield [body[:at], body[at:]]
    rng = random.Random(seed)
    for _ in range(60):
        points = sorted(rng.sample(range(1, len(body)), min(len(body) - 1, rng.randint(1, 11))))
        yield [body[a:b] for a, b in zip([0, *points], [*points, len(body)], strict=True)]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_every_cut_gives_the_same_sample_on_every_path(case: Case) -> None:
    runs = paths(case)
    whole = {name: run([case.body]) for name, run in runs.items()}
    status, kind, tokens = case.expected
    assert whole["plain"].key[:3] == (status, kind, tokens), whole["plain"].message
    assert whole["fast"] == whole["plain"]
    assert whole["ctx"].key == whole["plain"].key
    shared = [name for name in ("next", "after") if name in runs]
    for name in shared:
        assert whole[name] == whole["plain"], name
    for n, reads in enumerate(cuts(case.body, seed=len(case.name))):
        fast, plain, ctx = (runs[name](reads) for name in ("fast", "plain", "ctx"))
        where = f"cut {n}: {[len(r) for r in reads][:16]}"
        assert fast == plain, where
        assert plain.key == whole["plain"].key, where
        assert ctx.key == whole["ctx"].key, where
        for name in shared:
            assert runs[name](reads) == plain, f"{name}, {where}"


def test_the_fast_path_counts_runs_of_token_chunks_and_parses_only_the_rest() -> None:
    """Not only the same answers: the fast path does take the recognised chunks unparsed."""
    parsed: list[bytes] = []

    def counting(choice: dict[str, Any]) -> bool:
        parsed.append(json.dumps(choice).encode())
        return chat_has_content(choice)

    tokens = data(*(chunk({"content": f" w{i}"}) for i in range(40)))
    body = ROLE + tokens + STOP + DONE
    result = run_reads([body], counting, Chat.content_markers)
    assert result.key == ("ok", None, 40, True, 39)
    # The role chunk, the first token (learnt, then checked with its text empty) and the stop.
    assert len(parsed) == 4
    parsed.clear()  # the same, one event per read (a paced stream)
    result = run_reads(re.findall(rb".*?\n\n", body, re.S), counting, Chat.content_markers)
    assert result.key == ("ok", None, 40, True, 39)
    assert result.chunk_ns == tuple(range(2, 42))  # each token its own read's time
    assert len(parsed) == 4
    learnt = LearntTemplate()  # the interaction's next streams start with the template
    run_reads([body], counting, Chat.content_markers, learnt=learnt)
    # The role chunk and the stop only; a role chunk with content is learnt from (checked
    # with its text empty), and the tokens after it go back to the interaction's template.
    role_with_content = data(chunk({"role": "assistant", "content": " w"}))
    for role, parses in ((ROLE, 2), (role_with_content, 3)):
        parsed.clear()
        reads = [role, *re.findall(rb".*?\n\n", tokens, re.S), STOP + DONE]
        for cut in ([b"".join(reads)], reads):  # one read, and one read per event
            parsed.clear()
            result = run_reads(cut, counting, Chat.content_markers, learnt=learnt)
            assert result.key[:3] == ("ok", None, 40 + (role != ROLE))
            assert len(parsed) == parses


def test_streams_whose_chunks_differ_learn_as_if_nothing_were_shared() -> None:
    """A target that gives each stream its own chunk id (vLLM) never matches the template
    an earlier stream left: each stream parses what it would parse on its own."""
    parsed: list[bytes] = []

    def counting(choice: dict[str, Any]) -> bool:
        parsed.append(json.dumps(choice).encode())
        return chat_has_content(choice)

    def stream(n: int) -> list[bytes]:
        def own(delta: dict[str, Any] | None, finish: str | None = None) -> bytes:
            return data(compact(json.loads(chunk(delta, finish)) | {"id": f"chatcmpl-{n}"}))

        words = [own({"content": f" w{i}"}) for i in range(20)]
        return [own({"role": "assistant", "content": ""}), *words, own({}, "stop"), DONE]

    alone = []
    for n in range(3):
        parsed.clear()
        run_reads(stream(n), counting, Chat.content_markers)
        alone.append(len(parsed))
    learnt = LearntTemplate()
    for n in range(3):
        parsed.clear()
        result = run_reads(stream(n), counting, Chat.content_markers, learnt=learnt)
        assert result.key[:3] == ("ok", None, 20)
        assert len(parsed) == alone[n] == 4  # role, the first token and its check, stop


@pytest.mark.parametrize("unfinished", [b": keep", b"data: ", b"\r"])
def test_a_read_that_is_a_token_event_after_an_unfinished_line_is_decoded(
    unfinished: bytes,
) -> None:
    """The one-event path takes a read whole only from an event's start: after a read that
    left a line unfinished (a comment, a data line, a CR whose LF may follow) the same bytes
    mean something else, or are not an event at all."""
    token = data(chunk({"content": " w"}))
    reads = [ROLE, token, token, unfinished, token, token, STOP + DONE]
    fast = run_reads(reads, chat_has_content, Chat.content_markers)
    plain = run_reads(reads, chat_has_content, ())
    assert fast == plain
