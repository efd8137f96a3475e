"""The public API for writing interactions: :class:`Interaction`, :class:`Context`, steps.

A user-defined interaction is a class with a pydantic ``Params`` model and one async ``run``
method, or a plain ``async def name(ctx)``. One run of it is one *journey*, recorded as one
sample named after it; inside, every ``ctx.measure(name)`` span and every LLM call made
through ``ctx.chat`` / ``ctx.completion`` / ``ctx.responses`` / ``ctx.messages`` /
``ctx.embedding`` is recorded as a *step* sample
(with TTFT, ITL and tokens for the LLM calls, measured exactly as the built-ins measure
them). Group statistics count journeys; steps are summarised by name.

    from pydantic import BaseModel
    from clientswarm import Context, Interaction

    class Journey(Interaction):
        class Params(BaseModel):
            question: str = "What is HPC?"

        async def run(self, ctx: Context) -> None:
            async with ctx.measure("retrieve"):
                await ctx.http.get("/health")
            await ctx.chat([{"role": "user", "content": self.params.question}], max_tokens=16)

A failed step raises :class:`StepFailed` (after it was recorded), which fails the journey
unless ``run`` catches it. Anything else ``run`` raises fails the journey as well: a failure
of the target is a failed sample, never a crash.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import orjson
from pydantic import BaseModel, ConfigDict

from clientswarm.errors import ClientswarmError
from clientswarm.interactions.errortext import http_error_text
from clientswarm.interactions.http import classify_exception
from clientswarm.interactions.messages import messages_request
from clientswarm.interactions.openai import generation_request
from clientswarm.interactions.responses import responses_request
from clientswarm.interactions.streaming import MAX_ERROR_MESSAGE, TargetError, error_message_of
from clientswarm.metrics.sample import ERROR_CANCELLED, Sample, http_error_kind

if TYPE_CHECKING:
    from clientswarm.config.models import TargetConfig
    from clientswarm.interactions.base import ClientContext
    from clientswarm.interactions.llm import (
        ChatResult,
        CompletionResult,
        EmbeddingResult,
        MessagesResult,
        ResponsesResult,
    )


class NoParams(BaseModel):
    """The parameters of an interaction that takes none."""

    model_config = ConfigDict(extra="forbid")


class Interaction:
    """Base class of a user-defined interaction: declare ``Params``, implement ``run``.

    One instance is made per client (so ``self`` may keep per-client state), with its
    validated parameters in ``self.params``. ``on_start`` runs once per client before its
    first run.
    """

    Params: ClassVar[type[BaseModel]] = NoParams

    def __init__(self, params: BaseModel) -> None:
        self.params: Any = params

    async def on_start(self, ctx: Context) -> None:
        """Called once per client before its first run; nothing by default."""

    async def run(self, ctx: Context) -> None:
        """One journey of one client. Raise (or let a step raise) to fail it."""
        raise NotImplementedError(f"{type(self).__name__} must implement async run(self, ctx)")


class StepFailed(ClientswarmError):
    """A step of a journey failed (it was recorded as a failed step sample)."""

    def __init__(self, step: str, kind: str, message: str) -> None:
        super().__init__(f"step {step!r} failed: {message}")
        self.step = step
        self.kind = kind
        self.message = message


class HttpStatusError(TargetError):
    """The target answered an HTTP request with an error status (``check=True``).

    ``message`` is what the body says; ``text``, when given, is the whole one-line message of
    the sample (:func:`~clientswarm.interactions.errortext.http_error_text`: status, method,
    path and the start of the body), else ``HTTP <status>: <message>``.
    """

    def __init__(self, status: int, message: str, *, text: str | None = None) -> None:
        super().__init__(http_error_kind(status), text or f"HTTP {status}: {message}")
        self.status = status


@dataclass(frozen=True, slots=True)
class Response:
    """A complete HTTP answer of :class:`TargetHttp` (the body is read)."""

    status: int
    headers: Mapping[str, str]
    body: bytes

    @property
    def text(self) -> str:
        """The body decoded as UTF-8 (invalid bytes replaced)."""
        return self.body.decode("utf-8", errors="replace")

    def json(self) -> Any:
        """The body parsed as JSON."""
        return orjson.loads(self.body)

    @property
    def ok(self) -> bool:
        """True for a status below 400."""
        return self.status < 400


class TargetHttp:
    """The client's HTTP session bound to the target: base URL, auth headers, timeout.

    Paths are relative to ``target.url``; an absolute ``http(s)://`` URL is used as is. With
    ``check=True`` (the default) an error status raises :class:`HttpStatusError`, which fails
    the surrounding ``measure`` span with the kind ``http_<status>``.
    """

    def __init__(self, ctx: ClientContext) -> None:
        import aiohttp  # here, not at the top: the service validates interactions without it

        self._ctx = ctx
        self.timeout = aiohttp.ClientTimeout(total=ctx.target.timeout_s)
        """The per-request timeout: ``target.timeout_s`` for the whole request."""

    def url(self, path: str) -> str:
        """The absolute URL of ``path`` on the target."""
        if path.startswith(("http://", "https://")):
            return path
        return self._ctx.base_url + (path if path.startswith("/") else "/" + path)

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        data: bytes | str | None = None,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
        check: bool = True,
    ) -> Response:
        """Send one request and read the whole answer."""
        merged = dict(self._ctx.headers)
        body = data
        if json is not None:
            body = orjson.dumps(json)
            merged["Content-Type"] = "application/json"
        if headers:
            merged.update(headers)
        async with self._ctx.session.request(
            method, self.url(path), data=body, headers=merged, params=params, timeout=self.timeout
        ) as answer:
            raw = await answer.read()
            response = Response(answer.status, dict(answer.headers), raw)
        if check and response.status >= 400:
            raise HttpStatusError(
                response.status,
                error_message_of(raw) if raw else "",
                text=http_error_text(response.status, method, self.url(path), raw),
            )
        return response

    async def get(self, path: str, **kwargs: Any) -> Response:
        """GET ``path``."""
        return await self.request("GET", path, **kwargs)

    async def post(self, path: str, **kwargs: Any) -> Response:
        """POST ``path`` (``json=`` for a JSON body)."""
        return await self.request("POST", path, **kwargs)

    async def put(self, path: str, **kwargs: Any) -> Response:
        """PUT ``path``."""
        return await self.request("PUT", path, **kwargs)

    async def delete(self, path: str, **kwargs: Any) -> Response:
        """DELETE ``path``."""
        return await self.request("DELETE", path, **kwargs)


@dataclass
class Span:
    """A ``measure`` span while it runs; set ``input_tokens``/``output_tokens`` if known."""

    name: str
    started_ns: int
    input_tokens: int | None = None
    output_tokens: int | None = None


@dataclass
class _Journey:
    """What the steps of one journey add up to (for the journey's own sample)."""

    first_token_ns: int | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    failed_step: StepFailed | None = None
    steps: list[Sample] = field(default_factory=list)

    def add(self, step: Sample) -> None:
        self.steps.append(step)
        if self.first_token_ns is None and step.first_token_ns is not None:
            self.first_token_ns = step.first_token_ns
        if step.input_tokens is not None:
            self.input_tokens = (self.input_tokens or 0) + step.input_tokens
        if step.output_tokens is not None:
            self.output_tokens = (self.output_tokens or 0) + step.output_tokens


class Context:
    """What a user-defined interaction gets for one journey of one client.

    ``http`` is the client's session bound to the target; ``client`` its id in the cluster,
    ``group`` its group's name, ``rng`` its own seeded random generator and ``state`` a dict
    kept across its journeys (history of a conversation, a session id).
    """

    def __init__(self, base: ClientContext) -> None:
        self._base = base
        self.http = TargetHttp(base)
        self._journey = _Journey()

    @property
    def client(self) -> int:
        """The client's id in the cluster."""
        return self._base.client

    @property
    def group(self) -> str:
        """The name of the client's group."""
        return self._base.group

    @property
    def worker(self) -> int:
        """The index of the worker hosting the client."""
        return self._base.worker

    @property
    def rng(self) -> random.Random:
        """The client's random generator, seeded from the cluster's seed and its id."""
        return self._base.rng

    @property
    def state(self) -> dict[str, object]:
        """Per-client state, kept across the client's journeys."""
        return self._base.state

    @property
    def target(self) -> TargetConfig:
        """The target's configuration (``url``, ``model``, ``timeout_s``)."""
        return self._base.target

    def now_ns(self) -> int:
        """Now, on the clock every sample uses (Unix epoch nanoseconds)."""
        return self._base.clock.now_ns()

    def record_step(self, step: Sample) -> None:
        """Record a finished step sample of this journey (``step`` is set on it)."""
        step.step = True
        self._journey.add(step)
        self._base.emit(step)

    @asynccontextmanager
    async def measure(self, name: str) -> AsyncIterator[Span]:
        """Record the block as a step named ``name``; failed (and re-raised) if it raises."""
        span = Span(name, self.now_ns())
        error: tuple[str, str] | None = None
        try:
            yield span
        except asyncio.CancelledError:
            error = (ERROR_CANCELLED, "the run stopped while the step was in progress")
            raise
        except StepFailed as exc:
            error = (exc.kind, exc.message)
            raise
        except Exception as exc:
            error = classify_exception(exc, self.target.timeout_s)
            raise StepFailed(name, *error) from exc
        finally:
            self.record_step(self._span_sample(span, error))

    def _span_sample(self, span: Span, error: tuple[str, str] | None) -> Sample:
        return Sample(
            group=self.group,
            client=self.client,
            worker=self.worker,
            name=span.name,
            scheduled_ns=span.started_ns,
            sent_ns=span.started_ns,
            end_ns=self.now_ns(),
            status="ok" if error is None else "error",
            input_tokens=span.input_tokens,
            output_tokens=span.output_tokens,
            error_kind=error[0] if error else None,
            error_message=error[1][:MAX_ERROR_MESSAGE] if error else None,
        )

    async def chat(
        self,
        messages: Sequence[Mapping[str, Any]],
        *,
        max_tokens: int | None = None,
        stream: bool = True,
        model: str | None = None,
        tools: Sequence[Mapping[str, Any]] | None = None,
        name: str = "chat",
        **extra_body: Any,
    ) -> ChatResult:
        """POST /v1/chat/completions; recorded as step ``name`` with TTFT, ITL and tokens.

        Returns the assistant's answer (``text``, ``message`` to append to the history,
        ``tool_calls``); raises :class:`StepFailed` when the request failed.
        """
        from clientswarm.interactions.llm import chat

        body: dict[str, Any] = {"messages": list(messages), **extra_body}
        if tools:
            body["tools"] = list(tools)
        model = model or self.target.model
        return await chat(
            self, generation_request(model, body, max_tokens=max_tokens, stream=stream), name=name
        )

    async def completion(
        self,
        prompt: str,
        *,
        max_tokens: int | None = None,
        stream: bool = True,
        model: str | None = None,
        name: str = "completion",
        **extra_body: Any,
    ) -> CompletionResult:
        """POST /v1/completions; recorded as step ``name`` with TTFT, ITL and tokens."""
        from clientswarm.interactions.llm import completion

        body: dict[str, Any] = {"prompt": prompt, **extra_body}
        model = model or self.target.model
        request = generation_request(model, body, max_tokens=max_tokens, stream=stream)
        return await completion(self, request, name=name)

    async def responses(
        self,
        input: str | Sequence[Mapping[str, Any]],
        *,
        instructions: str | None = None,
        max_output_tokens: int | None = None,
        stream: bool = True,
        model: str | None = None,
        name: str = "responses",
        **extra_body: Any,
    ) -> ResponsesResult:
        """POST /v1/responses (``store: false`` unless given); recorded as step ``name`` with
        TTFT, ITL and tokens.

        ``input`` is a text or a list of input items (messages). Returns the output ``text``,
        the ``response`` object, its ``status`` and ``usage``; raises :class:`StepFailed` when
        the request failed.
        """
        from clientswarm.interactions.llm import responses

        items: str | list[Any] = input if isinstance(input, str) else [dict(m) for m in input]
        request = responses_request(
            model or self.target.model,
            items,
            instructions=instructions,
            max_output_tokens=max_output_tokens,
            stream=stream,
        )
        return await responses(self, {**request, **extra_body}, name=name)

    async def messages(
        self,
        messages: Sequence[Mapping[str, Any]],
        *,
        system: str | None = None,
        max_tokens: int = 128,
        stream: bool = True,
        model: str | None = None,
        name: str = "messages",
        **extra_body: Any,
    ) -> MessagesResult:
        """POST /v1/messages (the Anthropic Messages API); recorded as step ``name`` with
        TTFT, ITL and tokens.

        Returns the assistant's answer (``text``, ``message`` to append to the messages,
        ``stop_reason``, ``usage``); raises :class:`StepFailed` when the request failed.
        """
        from clientswarm.interactions.llm import messages as post_messages

        request = messages_request(
            model or self.target.model,
            [dict(m) for m in messages],
            system=system,
            max_tokens=max_tokens,
            stream=stream,
        )
        return await post_messages(self, {**request, **extra_body}, name=name)

    async def embedding(
        self,
        inputs: str | Sequence[str],
        *,
        model: str | None = None,
        name: str = "embedding",
        **extra_body: Any,
    ) -> EmbeddingResult:
        """POST /v1/embeddings; recorded as step ``name``; returns the vectors."""
        from clientswarm.interactions.llm import embedding

        items = [inputs] if isinstance(inputs, str) else list(inputs)
        model = model or self.target.model
        head: dict[str, Any] = {"model": model} if model is not None else {}
        return await embedding(self, {**head, "input": items, **extra_body}, name=name)

    # -- for the runner --------------------------------------------------------------------
    @property
    def base(self) -> ClientContext:
        """The worker's context of this client (for the runner)."""
        return self._base

    @property
    def journey(self) -> _Journey:
        """What the steps so far add up to (for the runner)."""
        return self._journey
