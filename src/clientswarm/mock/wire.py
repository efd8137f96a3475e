"""The OpenAI/vLLM wire format, as pure functions: parse a request body, build response bytes.

Token accounting of the mock: a prompt token is one whitespace-separated word (chat: the words of
every message's content, and an image part's tokens by :mod:`.media`); output token ``i`` is the
word ``tok{i}`` followed by a space.

Tool calls (chat only), like vLLM's OpenAI server with a tool parser: a request with a non-empty
``tools`` list whose ``tool_choice`` is not ``"none"`` and whose last message is not a ``tool``
message is answered with one call of a function tool (the named ``tool_choice``, else the first
tool) instead of text. Its arguments are a compact JSON object holding a placeholder for every
required property of the tool's ``parameters`` schema (a string is ``"x"``); each of its JSON
tokens (a string, a number, a punctuation mark) is one output token. Once the last message is a
``tool`` message (the tool's result), the answer is text again, so an agent loop ends.
"""

from __future__ import annotations

import re
import time
import uuid
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from clientswarm.errors import ClientswarmError
from clientswarm.mock.media import image_words

Endpoint = Literal["completion", "chat", "responses", "messages", "transcription"]
"""Which generation endpoint a request came to (responses and messages: :mod:`.event_wire`;
transcription: :mod:`.audio`)."""

DONE_EVENT = b"data: [DONE]\n\n"
SSE_CONTENT_TYPE = "text/event-stream; charset=utf-8"


TOOL_CHOICES = ("none", "auto", "required")
"""The string values of ``tool_choice``; a named function is ``{"type": "function", ...}``."""

_JSON_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[-+.\w]+|\S')
_SCHEMA_DEPTH = 8


class InvalidRequest(ClientswarmError, ValueError):
    """A request body the mock cannot serve; answered with HTTP 400 and this message.

    ``param`` names the request field at fault (the error body's ``param``), when known.
    """

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


@dataclass(frozen=True, slots=True)
class ToolCallPlan:
    """The function call the mock answers with: the tool's name and its arguments' pieces."""

    name: str
    pieces: tuple[str, ...]
    """The JSON text of the arguments, cut into output tokens (joined, it is the whole text)."""

    @property
    def arguments(self) -> str:
        """The arguments as a JSON object string."""
        return "".join(self.pieces)

    def text(self, start: int, end: int) -> str:
        """The arguments' text of output tokens ``start`` to ``end - 1``."""
        return "".join(self.pieces[start:end])


@dataclass(frozen=True, slots=True)
class GenerationRequest:
    """What the mock needs from a completion or chat request body."""

    endpoint: Endpoint
    prompt_tokens: int
    max_tokens: int | None
    stream: bool
    include_usage: bool
    model: str | None
    tool_call: ToolCallPlan | None = None
    """The call to answer with instead of text (chat with tools), or None for text."""
    prompt_words: tuple[str, ...] = ()
    """The prompt's tokens (words, or token ids as text), keyed by the prefix cache."""


def token_text(start: int, end: int) -> str:
    """The output text of tokens ``start`` to ``end - 1``: ``"tok{start} ... tok{end-1} "``."""
    return "".join([f"tok{i} " for i in range(start, end)])


def count_words(text: str) -> int:
    """Prompt tokens of a text: its whitespace-separated words."""
    return len(text.split())


def _prompt_words(prompt: Any) -> tuple[str, ...]:
    if isinstance(prompt, str):
        return tuple(prompt.split())
    if isinstance(prompt, list):
        if all(isinstance(item, int) for item in prompt):
            return tuple(str(item) for item in prompt)
        if len(prompt) == 1:
            return _prompt_words(prompt[0])
    raise InvalidRequest(
        "prompt must be a string, a list of token ids, or a list holding one of those "
        "(the mock serves one prompt per request)"
    )


def _message_text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    raise InvalidRequest("message content must be a string or a list of content parts")


def _positive_int(body: dict[str, Any], name: str) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidRequest(f"{name} must be an integer >= 1, got {value!r}")
    return value


def placeholder(schema: Any, depth: int = 0) -> Any:
    """A value that fits a JSON Schema well enough for a mock: enum/const/default, else by type."""
    if not isinstance(schema, dict):
        return "x"
    enum = schema.get("enum")
    if isinstance(enum, list) and enum:
        return enum[0]
    for key in ("const", "default"):
        if key in schema:
            return schema[key]
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object" or (kind is None and "properties" in schema):
        return arguments_for(schema, depth + 1)
    values: dict[Any, Any] = {
        "string": "x",
        "integer": 1,
        "number": 1,
        "boolean": True,
        "array": [],
        "null": None,
    }
    return values.get(kind, "x")


def arguments_for(parameters: Any, depth: int = 0) -> dict[str, Any]:
    """Arguments for a function whose ``parameters`` schema is given: each required property."""
    if not isinstance(parameters, dict) or depth > _SCHEMA_DEPTH:
        return {}
    properties = parameters.get("properties")
    properties = properties if isinstance(properties, dict) else {}
    required = parameters.get("required")
    names = (
        [name for name in required if isinstance(name, str)] if isinstance(required, list) else []
    )
    return {name: placeholder(properties.get(name), depth) for name in names}


def json_pieces(text: str) -> tuple[str, ...]:
    """Compact JSON ``text`` cut into tokens: strings, numbers and literals whole, else by char."""
    return tuple(_JSON_TOKEN.findall(text)) or (text,)


def _check_tools(tools: Any) -> list[dict[str, Any]]:
    """The function definitions of a ``tools`` list; raises :class:`InvalidRequest`."""
    if tools is None:
        return []
    if not isinstance(tools, list):
        raise InvalidRequest("tools must be a list of tools", "tools")
    functions: list[dict[str, Any]] = []
    for index, tool in enumerate(tools):
        where = f"tools[{index}]"
        if not isinstance(tool, dict):
            raise InvalidRequest(f"{where} must be an object", "tools")
        if tool.get("type", "function") != "function":
            raise InvalidRequest(
                f"{where}.type must be 'function', got {tool.get('type')!r}", "tools"
            )
        function = tool.get("function")
        if not isinstance(function, dict):
            raise InvalidRequest(f"{where}.function is required (an object)", "tools")
        name = function.get("name")
        if not isinstance(name, str) or not name:
            raise InvalidRequest(f"{where}.function.name is required (a string)", "tools")
        parameters = function.get("parameters")
        if parameters is not None and not isinstance(parameters, dict):
            raise InvalidRequest(f"{where}.function.parameters must be an object", "tools")
        functions.append(function)
    return functions


def _chosen_function(functions: list[dict[str, Any]], choice: Any) -> dict[str, Any] | None:
    """The function ``tool_choice`` asks for (the first one unless named); None: answer text."""
    if choice is None or choice in ("auto", "required"):
        return functions[0] if functions else None
    if choice == "none":
        return None
    if isinstance(choice, dict) and choice.get("type", "function") == "function":
        named = choice.get("function")
        name = named.get("name") if isinstance(named, dict) else None
        if isinstance(name, str):
            for function in functions:
                if function["name"] == name:
                    return function
            raise InvalidRequest(
                f"tool_choice names {name!r}, which is not in tools", "tool_choice"
            )
    raise InvalidRequest(
        "tool_choice must be none, auto, required or "
        '{"type": "function", "function": {"name": ...}}',
        "tool_choice",
    )


def _check_messages(messages: list[Any]) -> None:
    for index, message in enumerate(messages):
        if not isinstance(message, dict):
            continue  # counted as no words, as before tool calls were served
        if message.get("role") == "tool":
            call_id = message.get("tool_call_id")
            if not isinstance(call_id, str) or not call_id:
                raise InvalidRequest(
                    f"messages[{index}]: a tool message needs a tool_call_id (a string)",
                    "messages",
                )
        calls = message.get("tool_calls")
        if calls is not None and not isinstance(calls, list):
            raise InvalidRequest(f"messages[{index}].tool_calls must be a list", "messages")


def _tool_call(body: dict[str, Any], messages: list[Any]) -> ToolCallPlan | None:
    functions = _check_tools(body.get("tools"))
    function = _chosen_function(functions, body.get("tool_choice"))
    last = messages[-1]
    if function is None or (isinstance(last, dict) and last.get("role") == "tool"):
        return None
    arguments = orjson.dumps(arguments_for(function.get("parameters"))).decode()
    return ToolCallPlan(name=function["name"], pieces=json_pieces(arguments))


def parse_generation(endpoint: Endpoint, raw: bytes) -> GenerationRequest:
    """Validate a completion or chat request body; raises :class:`InvalidRequest`."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"request body is not valid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise InvalidRequest("request body must be a JSON object")
    if endpoint == "chat":
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise InvalidRequest("messages must be a non-empty list", "messages")
        _check_messages(messages)
        text = " ".join(_message_text(m.get("content")) for m in messages if isinstance(m, dict))
        words = tuple(text.split()) + image_words(messages)
        max_tokens = _positive_int(body, "max_completion_tokens") or _positive_int(
            body, "max_tokens"
        )
        tool_call = _tool_call(body, messages)
    else:
        if "prompt" not in body:
            raise InvalidRequest("prompt is required")
        words = _prompt_words(body["prompt"])
        max_tokens = _positive_int(body, "max_tokens")
        tool_call = None
    n = body.get("n", 1)
    if n not in (None, 1):
        raise InvalidRequest(f"n={n!r} is not supported by the mock (only n=1)")
    options = body.get("stream_options")
    include_usage = isinstance(options, dict) and bool(options.get("include_usage"))
    model = body.get("model")
    return GenerationRequest(
        endpoint=endpoint,
        prompt_tokens=len(words),
        max_tokens=max_tokens,
        stream=bool(body.get("stream", False)),
        include_usage=include_usage,
        model=model if isinstance(model, str) else None,
        tool_call=tool_call,
        prompt_words=words,
    )


def tool_call_id() -> str:
    """A fresh tool call id, ``call_<hex>``."""
    return f"call_{uuid.uuid4().hex[:24]}"


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    """The OpenAI ``usage`` object."""
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


class ResponseWriter:
    """Builds the bytes of one response: SSE chunks or the whole non-stream JSON body."""

    __slots__ = ("_chat", "_head")

    def __init__(self, endpoint: Endpoint, model: str) -> None:
        self._chat = endpoint == "chat"
        prefix, obj = (
            ("chatcmpl", "chat.completion.chunk") if self._chat else ("cmpl", "text_completion")
        )
        self._head: dict[str, Any] = {
            "id": f"{prefix}-{uuid.uuid4().hex}",
            "object": obj,
            "created": int(time.time()),
            "model": model,
        }

    def _event(self, choices: list[dict[str, Any]], **extra: Any) -> bytes:
        return b"data: " + orjson.dumps({**self._head, "choices": choices, **extra}) + b"\n\n"

    def role_chunk(self) -> bytes:
        """Chat's first chunk, ``delta: {"role": "assistant", "content": ""}``: not a token."""
        delta = {"role": "assistant", "content": ""}
        return self._event([{"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}])

    def content_chunk(self, text: str, finish_reason: str | None = None) -> bytes:
        """One streamed chunk carrying ``text``; the last one carries the finish reason."""
        if self._chat:
            choice: dict[str, Any] = {
                "index": 0,
                "delta": {"content": text},
                "logprobs": None,
                "finish_reason": finish_reason,
            }
        else:
            choice = {
                "index": 0,
                "text": text,
                "logprobs": None,
                "finish_reason": finish_reason,
                "stop_reason": None,
            }
        return self._event([choice])

    def tool_call_chunk(self, call_id: str, name: str) -> bytes:
        """A tool call's first chunk: its index, id, type and name, with empty arguments."""
        call = {
            "index": 0,
            "id": call_id,
            "type": "function",
            "function": {"name": name, "arguments": ""},
        }
        return self._tool_delta(call)

    def tool_arguments_chunk(self, text: str) -> bytes:
        """A piece of the tool call's ``function.arguments``."""
        return self._tool_delta({"index": 0, "function": {"arguments": text}})

    def _tool_delta(self, call: dict[str, Any]) -> bytes:
        delta = {"tool_calls": [call]}
        return self._event([{"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}])

    def finish_chunk(self, finish_reason: str) -> bytes:
        """A last chunk with an empty delta that carries only the finish reason."""
        choice = {"index": 0, "delta": {}, "logprobs": None, "finish_reason": finish_reason}
        return self._event([choice])

    def usage_chunk(self, prompt_tokens: int, completion_tokens: int) -> bytes:
        """The ``stream_options.include_usage`` chunk: ``choices: []`` and ``usage``."""
        return self._event([], usage=usage(prompt_tokens, completion_tokens))

    def full_body(
        self,
        text: str,
        finish_reason: str,
        prompt_tokens: int,
        completion_tokens: int,
        tool_call: tuple[str, str, str] | None = None,
    ) -> bytes:
        """The non-stream response body (``text_completion`` or ``chat.completion``).

        ``tool_call`` is ``(id, name, arguments)``: chat's message then has ``content: null``
        and that call in ``tool_calls`` (``text`` is not used).
        """
        if self._chat:
            message: dict[str, Any] = {"role": "assistant", "content": text}
            if tool_call is not None:
                call_id, name, arguments = tool_call
                function = {"name": name, "arguments": arguments}
                call = {"id": call_id, "type": "function", "function": function}
                message = {"role": "assistant", "content": None, "tool_calls": [call]}
            choice: dict[str, Any] = {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": finish_reason,
            }
            head = {**self._head, "object": "chat.completion"}
        else:
            choice = {
                "index": 0,
                "text": text,
                "logprobs": None,
                "finish_reason": finish_reason,
                "stop_reason": None,
            }
            head = self._head
        body = {**head, "choices": [choice], "usage": usage(prompt_tokens, completion_tokens)}
        return orjson.dumps(body)
