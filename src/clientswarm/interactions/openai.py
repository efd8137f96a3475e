"""The OpenAI-API interactions: ``completion``, ``chat`` (streamed or not) and ``embedding``.

Request bodies: ``model`` (``config.model`` or ``target.model``; left out when both are None),
the prompt (picked from the prompt source, or the arrival's own in a trace replay,
:mod:`.arrival`), ``max_tokens`` (a prompt's own output length overrides ``config.max_tokens``),
``stream`` and, for streams, ``stream_options: {"include_usage": true}`` so the server counts
the tokens; ``extra_body`` is merged last, so it can set vLLM options such as ``ignore_eos``
or override anything above.

A chat with images (``images``, or a dataset entry's) sends its user message's content as a
``text`` part followed by one ``{"type": "image_url", "image_url": {"url": …}}`` part per
image, as the OpenAI chat API defines them; synthetic images are data URLs of PNGs made once
(:mod:`.media`), each request picking ``images.count`` of them at random.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import orjson

from clientswarm.config.interactions import (
    ChatInteraction,
    CompletionInteraction,
    EmbeddingInteraction,
    MessagesInteraction,
    ResponsesInteraction,
)
from clientswarm.config.paths import ANYWHERE, FileScope
from clientswarm.interactions.arrival import ARRIVAL_PROMPT
from clientswarm.interactions.base import ClientContext
from clientswarm.interactions.chunk_template import LearntTemplate
from clientswarm.interactions.http import BuiltinInteraction, fail_status
from clientswarm.interactions.http1 import Http1Client
from clientswarm.interactions.media import ImagePool
from clientswarm.interactions.prompts import Prompt, build_prompt_source
from clientswarm.interactions.sse import DEFAULT_MAX_EVENT_BYTES
from clientswarm.interactions.streaming import (
    ContentMarkers,
    ContentOf,
    EventRules,
    Measurement,
    TargetError,
    parse_json_body,
    read_chunk,
    read_sse_stream,
)
from clientswarm.metrics.sample import ERROR_PROTOCOL

_STREAM_OPTIONS = {"include_usage": True}

AnswerCheck = Callable[[dict[str, Any], Measurement], None]
"""Checks a non-streamed answer and records its usage in the measurement (in the OpenAI
names); raises TargetError if the answer is malformed."""


def completion_has_content(choice: dict[str, Any]) -> bool:
    """A streamed completion choice carries content when its ``text`` is not empty."""
    return bool(choice.get("text"))


def chat_has_content(choice: dict[str, Any]) -> bool:
    """A streamed chat choice carries content when its delta has (reasoning) text or a piece
    of a tool call's arguments.

    The role-only first chunk does not count, nor a tool call's piece that only names it (its
    id and function name). ``reasoning`` is the newer vLLM name of ``reasoning_content``. The
    built-in ``chat`` and ``ctx.chat`` of user-defined interactions both count by this.
    """
    delta = choice.get("delta")
    if not isinstance(delta, dict):
        return False
    if delta.get("content") or delta.get("reasoning_content") or delta.get("reasoning"):
        return True
    calls = delta.get("tool_calls")
    return isinstance(calls, list) and any(_has_arguments(call) for call in calls)


def _has_arguments(call: Any) -> bool:
    """Whether one streamed piece of a tool call carries text of its arguments."""
    if not isinstance(call, dict):
        return False
    function = call.get("function")
    if not isinstance(function, dict):
        return False
    arguments = function.get("arguments")
    return isinstance(arguments, str) and bool(arguments)


def generation_request(
    model: str | None, body: dict[str, Any], *, max_tokens: int | None, stream: bool
) -> dict[str, Any]:
    """A chat or completion request: model, max_tokens, stream (with usage), then ``body``."""
    head: dict[str, Any] = {"model": model} if model is not None else {}
    if max_tokens is not None:
        head["max_tokens"] = max_tokens
    head["stream"] = stream
    if stream:
        head["stream_options"] = _STREAM_OPTIONS
    return {**head, **body}


def check_answer(answer: dict[str, Any], what: str, key: str, m: Measurement) -> None:
    """Record the usage of a non-streamed answer; raise TargetError if it is malformed."""
    if "error" in answer:
        raise TargetError(ERROR_PROTOCOL, f"error in a successful answer: {answer['error']}")
    if not isinstance(answer.get(key), list):
        raise TargetError(ERROR_PROTOCOL, f'the {what} answer has no "{key}" list')
    usage = answer.get("usage")
    if isinstance(usage, dict):
        m.usage = usage


async def post_measured(
    client: Http1Client,
    url: str,
    data: bytes,
    headers: dict[str, str],
    timeout_s: float,
    m: Measurement,
    now_ns: Callable[[], int],
    *,
    what: str,
    answer_key: str,
    stream: bool,
    content_of: ContentOf,
    markers: ContentMarkers = (),
    max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
    rules: EventRules = read_chunk,
    check: AnswerCheck | None = None,
    learnt: LearntTemplate | None = None,
) -> dict[str, Any] | None:
    """POST one OpenAI request, measured into ``m`` (the built-ins and the LLM helpers of
    user-defined interactions alike): the checked JSON answer when not streamed, else None.

    An error status is recorded in ``m``; a malformed answer (or a streamed event longer than
    ``max_event_bytes``) raises TargetError; no complete answer within ``timeout_s`` raises
    TimeoutError. Another API's stream and answer are read by its ``rules`` and ``check``
    (the Responses and Messages APIs); the default is an OpenAI chat or completion's.
    ``learnt``: the stream template the caller's streams share (:class:`LearntTemplate`).
    """
    pool, target = client.route(url)
    async with client.deadlines.within(timeout_s):
        m.sent_ns = now_ns()
        conn = await pool.post(target, data, headers)
        try:
            m.http_status = conn.status
            if conn.status >= 400:
                body = await conn.read()
                fail_status(conn.status, conn.reason, body, m, now_ns(), ("POST", target))
                return None
            if stream:
                await read_sse_stream(conn, m, content_of, markers, max_event_bytes, rules, learnt)
                return None
            raw = await conn.read()
            m.end_ns = now_ns()
        finally:
            pool.release(conn)
    answer = parse_json_body(raw, what)
    if check is None:
        check_answer(answer, what, answer_key, m)
    else:
        check(answer, m)
    m.done = True
    return answer


_GenerationConfig = (
    CompletionInteraction | ChatInteraction | ResponsesInteraction | MessagesInteraction
)


class _OpenAIInteraction(BuiltinInteraction):
    """POST a JSON body to an OpenAI route and read a JSON answer or an SSE stream.

    ``event_rules`` and ``answer_check`` read another API's stream and answer (the Responses
    and Messages APIs set theirs); by default an OpenAI chat or completion's.
    """

    path: ClassVar[str]
    answer_key: ClassVar[str] = "choices"  # the list a non-streamed answer must have
    stream: bool = False

    def __init__(
        self,
        config: _GenerationConfig | EmbeddingInteraction,
        *,
        seed: int = 0,
        files: FileScope = ANYWHERE,
    ) -> None:
        super().__init__(config, seed=seed, files=files)
        self.prompts = build_prompt_source(config, seed=seed, files=files)
        self._model = config.model
        self._extra_body = config.extra_body
        self.event_rules: EventRules = read_chunk
        self.answer_check: AnswerCheck | None = None
        self.learnt = LearntTemplate()
        """The token chunk template this interaction's streams share."""

    def _start_body(self, ctx: ClientContext) -> dict[str, Any]:
        model = self._model or ctx.target.model
        return {"model": model} if model is not None else {}

    async def _post(self, ctx: ClientContext, m: Measurement, body: dict[str, Any]) -> None:
        if self._extra_body:
            body.update(self._extra_body)
        await post_measured(
            ctx.http1,
            self.url(ctx, self.path),
            orjson.dumps(body),
            self.json_headers(ctx),
            ctx.target.timeout_s,
            m,
            ctx.clock.now_ns,
            what=self.kind,
            answer_key=self.answer_key,
            stream=self.stream,
            content_of=self.has_content,
            markers=self.content_markers,
            max_event_bytes=ctx.target.max_event_bytes,
            rules=self.event_rules,
            check=self.answer_check,
            learnt=self.learnt,
        )

    content_markers: ClassVar[ContentMarkers] = (b'"text":"',)
    """Where the text that :meth:`has_content` reads starts in a chunk's bytes (the fast
    path learns its token chunks around it)."""

    def has_content(self, choice: dict[str, Any]) -> bool:
        """Whether one choice of a streamed chunk carries content."""
        return completion_has_content(choice)


class _Generation(_OpenAIInteraction):
    """Text generation: one prompt per request, streamed or not."""

    def __init__(
        self,
        config: _GenerationConfig,
        *,
        seed: int = 0,
        files: FileScope = ANYWHERE,
    ) -> None:
        super().__init__(config, seed=seed, files=files)
        self.stream = config.stream
        self._max_tokens = config.max_tokens

    async def exchange(self, ctx: ClientContext, m: Measurement) -> None:
        """Pick a prompt, send it and measure the answer."""
        prompt = ARRIVAL_PROMPT.get() or self.prompts.pick(ctx.rng)
        m.input_tokens = prompt.input_tokens
        await self._post(ctx, m, self.body(ctx, prompt))

    def body(self, ctx: ClientContext, prompt: Prompt) -> dict[str, Any]:
        """The request body for ``prompt`` (before ``extra_body`` is merged)."""
        body: dict[str, Any] = {}
        self._add_prompt(body, prompt)
        return generation_request(
            self._model or ctx.target.model,
            body,
            max_tokens=prompt.output_tokens or self._max_tokens,
            stream=self.stream,
        )

    def _add_prompt(self, body: dict[str, Any], prompt: Prompt) -> None:
        body["prompt"] = prompt.as_text()


class Completion(_Generation):
    """POST /v1/completions with one prompt."""

    kind = "completion"
    config_model = CompletionInteraction
    path = "/v1/completions"

    def __init__(
        self, config: CompletionInteraction, *, seed: int = 0, files: FileScope = ANYWHERE
    ) -> None:
        super().__init__(config, seed=seed, files=files)


class Chat(_Generation):
    """POST /v1/chat/completions: an optional system prompt, then the user prompt.

    A dataset entry with ``messages`` is sent as those messages.
    """

    kind = "chat"
    config_model = ChatInteraction
    path = "/v1/chat/completions"

    def __init__(
        self, config: ChatInteraction, *, seed: int = 0, files: FileScope = ANYWHERE
    ) -> None:
        super().__init__(config, seed=seed, files=files)
        self._system_prompt = config.system_prompt
        self.images = ImagePool(config.images, seed=seed)

    content_markers: ClassVar[ContentMarkers] = (
        b'"content":"',
        b'"reasoning_content":"',
        b'"reasoning":"',
        b'"arguments":"',
    )

    def has_content(self, choice: dict[str, Any]) -> bool:
        """Whether one choice of a streamed chunk carries content."""
        return chat_has_content(choice)

    def _add_prompt(self, body: dict[str, Any], prompt: Prompt) -> None:
        body["messages"] = prompt.as_messages(self._system_prompt)

    def body(self, ctx: ClientContext, prompt: Prompt) -> dict[str, Any]:
        """The request body for ``prompt``, with its images and ``images.count`` synthetic ones
        (before ``extra_body`` is merged)."""
        body = super().body(ctx, prompt)
        images = self.images.for_request(prompt.images, ctx.rng)
        if images:
            body["messages"] = with_images(body["messages"], images)
        return body


def with_images(
    messages: list[dict[str, Any]], images: tuple[str, ...], *, responses: bool = False
) -> list[dict[str, Any]]:
    """``messages`` with ``images`` (URLs) appended to the last user message (a string content
    becomes a text part first); the given dicts are not changed.

    Chat's parts are ``text`` and ``{"type": "image_url", "image_url": {"url": …}}``; the
    Responses API's (``responses``) ``input_text`` and ``{"type": "input_image", "image_url": …}``.
    """
    text_type = "input_text" if responses else "text"
    parts: list[dict[str, Any]] = [
        {"type": "input_image", "image_url": url}
        if responses
        else {"type": "image_url", "image_url": {"url": url}}
        for url in images
    ]
    out = list(messages)
    for index in range(len(out) - 1, -1, -1):
        message = out[index]
        if message.get("role") != "user":
            continue
        content = message.get("content")
        if isinstance(content, list):
            head = list(content)
        else:
            head = [{"type": text_type, "text": content if isinstance(content, str) else ""}]
        out[index] = {**message, "content": head + parts}
        return out
    out.append({"role": "user", "content": parts})
    return out


class Embedding(_OpenAIInteraction):
    """POST /v1/embeddings with ``batch_size`` inputs picked from the prompt source."""

    kind = "embedding"
    config_model = EmbeddingInteraction
    path = "/v1/embeddings"
    answer_key = "data"

    def __init__(
        self, config: EmbeddingInteraction, *, seed: int = 0, files: FileScope = ANYWHERE
    ) -> None:
        super().__init__(config, seed=seed, files=files)
        self._batch_size = config.batch_size

    async def exchange(self, ctx: ClientContext, m: Measurement) -> None:
        """Pick ``batch_size`` inputs, send them and check the answer."""
        picks = [self.prompts.pick(ctx.rng) for _ in range(self._batch_size)]
        m.input_tokens = sum(p.input_tokens or 0 for p in picks)
        body = self._start_body(ctx)
        body["input"] = [p.as_text() for p in picks]
        await self._post(ctx, m, body)
