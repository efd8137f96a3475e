"""The base of the built-in interactions, and the plain-HTTP ones: ``hello`` and ``http``.

:class:`BuiltinInteraction` owns what every built-in does the same way: the sample skeleton,
turning failures into error kinds, and per-target URLs, headers and timeouts built once.

Error kinds, decided at this boundary (see ``clientswarm.metrics.sample``)::

    HTTP status >= 400                                 http_<status>: "HTTP 404 POST /path: <body>"
    {"error": ...} event inside a stream               stream_error
    invalid JSON, stream without [DONE] or finish      protocol  (also a malformed HTTP answer)
    asyncio.TimeoutError (target.timeout_s)            timeout
    refused, reset, dropped, incomplete payload        connection
    any other exception in the interaction             client
    asyncio.CancelledError                             cancelled (emitted, then re-raised)
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

import orjson
from pydantic import BaseModel

from clientswarm.config.interactions import HelloInteraction, HttpInteraction
from clientswarm.config.paths import ANYWHERE, FileScope
from clientswarm.interactions.base import ClientContext
from clientswarm.interactions.errortext import http_error_text
from clientswarm.interactions.http1 import Http1Error
from clientswarm.interactions.streaming import Measurement, TargetError
from clientswarm.metrics.sample import (
    ERROR_CANCELLED,
    ERROR_CLIENT,
    ERROR_CONNECTION,
    ERROR_PROTOCOL,
    ERROR_TIMEOUT,
    Sample,
    http_error_kind,
)

if TYPE_CHECKING:
    import aiohttp

# aiohttp is imported where it is used, not here: the service and ``clientswarm run`` build
# (and so validate) interactions without ever sending, and its import costs them 0.25 s.

_JSON_HEADERS = {"Content-Type": "application/json"}


class BuiltinInteraction(ABC):
    """A pre-built interaction: subclasses fill in :meth:`exchange`; ``perform`` does the rest.

    Built once per client configuration (prompt sources included), shared by its clients.
    """

    kind: str
    config_model: ClassVar[type[BaseModel]]

    def __init__(self, config: Any, *, seed: int = 0, files: FileScope = ANYWHERE) -> None:
        self.config = config
        # Built on first use and reused by every request: header dicts and timeouts.
        self._headers: dict[int, tuple[dict[str, str], dict[str, str]]] = {}
        self._timeouts: dict[float, aiohttp.ClientTimeout] = {}

    async def perform(self, ctx: ClientContext, scheduled_ns: int) -> None:
        """Run once and emit one sample; failures of the target become failed samples."""
        clock = ctx.clock
        m = Measurement(clock.now_ns())
        try:
            await self.exchange(ctx, m)
        except asyncio.CancelledError:
            if not m.done:
                m.fail(
                    ERROR_CANCELLED,
                    "the run stopped while the request was in flight",
                    clock.now_ns(),
                )
            ctx.emit(self._sample(ctx, m, scheduled_ns))
            raise
        except Exception as exc:
            kind, message = classify_exception(exc, ctx.target.timeout_s)
            m.fail(kind, message, clock.now_ns())
        ctx.emit(self._sample(ctx, m, scheduled_ns))

    @abstractmethod
    async def exchange(self, ctx: ClientContext, m: Measurement) -> None:
        """Send the request(s) and record into ``m``; set ``m.sent_ns`` just before sending."""

    def _sample(self, ctx: ClientContext, m: Measurement, scheduled_ns: int) -> Sample:
        return m.to_sample(
            group=ctx.group,
            client=ctx.client,
            worker=ctx.worker,
            name=self.kind,
            scheduled_ns=scheduled_ns,
            now_ns=ctx.clock.now_ns(),
        )

    def url(self, ctx: ClientContext, path: str) -> str:
        """The absolute URL of ``path`` on the context's target."""
        return ctx.base_url + path  # TargetConfig strips the URLs' trailing slash

    def json_headers(self, ctx: ClientContext) -> dict[str, str]:
        """The client's headers plus JSON content headers, built once per header dict."""
        cached = self._headers.get(id(ctx.headers))
        if cached is None or cached[0] is not ctx.headers:
            cached = (ctx.headers, {**_JSON_HEADERS, **ctx.headers})
            self._headers[id(ctx.headers)] = cached  # keeps ctx.headers alive: ids stay unique
        return cached[1]

    def timeout(self, ctx: ClientContext) -> aiohttp.ClientTimeout:
        """The per-request timeout: ``target.timeout_s`` for the whole request."""
        total = ctx.target.timeout_s
        timeout = self._timeouts.get(total)
        if timeout is None:
            import aiohttp

            timeout = self._timeouts[total] = aiohttp.ClientTimeout(total=total)
        return timeout


def classify_exception(exc: Exception, timeout_s: float) -> tuple[str, str]:
    """The error kind and message of an exception raised while performing an interaction."""
    if isinstance(exc, TargetError):
        return exc.kind, exc.message
    if isinstance(exc, TimeoutError):  # before ClientConnectionError: ServerTimeoutError is both
        return ERROR_TIMEOUT, f"no complete answer within target.timeout_s={timeout_s:g} s"
    description = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, Http1Error):
        return ERROR_PROTOCOL, str(exc)
    if isinstance(exc, OSError):  # refused, reset, closed, DNS, TLS (the hot path's errors)
        return ERROR_CONNECTION, description
    import aiohttp

    if isinstance(exc, aiohttp.ClientConnectionError | aiohttp.ClientPayloadError):
        return ERROR_CONNECTION, description
    if isinstance(exc, aiohttp.ClientResponseError):
        return ERROR_PROTOCOL, description  # the answer was not valid HTTP
    if isinstance(exc, aiohttp.ClientError):
        return ERROR_CONNECTION, description
    return ERROR_CLIENT, description


async def fail_http(
    response: aiohttp.ClientResponse, m: Measurement, now_ns: Callable[[], int]
) -> None:
    """Record an HTTP error status with the message of its body, ending when the body is read."""
    import aiohttp

    try:
        body = await response.read()
    except aiohttp.ClientError:
        body = b""
    where = (response.method, response.url.path)
    fail_status(response.status, response.reason or "", body, m, now_ns(), where)


def fail_status(
    status: int,
    reason: str,
    body: bytes,
    m: Measurement,
    end_ns: int,
    request: tuple[str, str],
) -> None:
    """Record an HTTP error status of ``request`` (method, path or URL): its message says the
    status, method, path and the start of the body (else the reason phrase), on one line."""
    method, path = request
    m.fail(http_error_kind(status), http_error_text(status, method, path, body, reason), end_ns)


class Hello(BuiltinInteraction):
    """GET the target's hello-world route (``config.path`` or ``target.hello_path``)."""

    kind = "hello"
    config_model = HelloInteraction

    def __init__(
        self, config: HelloInteraction, *, seed: int = 0, files: FileScope = ANYWHERE
    ) -> None:
        super().__init__(config, seed=seed, files=files)
        self._path = config.path

    async def exchange(self, ctx: ClientContext, m: Measurement) -> None:
        """GET the route and read the whole answer."""
        url = self.url(ctx, self._path or ctx.target.hello_path)
        clock = ctx.clock
        m.sent_ns = clock.now_ns()
        async with ctx.session.get(url, headers=ctx.headers, timeout=self.timeout(ctx)) as response:
            m.http_status = response.status
            if response.status >= 400:
                await fail_http(response, m, clock.now_ns)
                return
            await response.read()
            m.end_ns = clock.now_ns()
            m.done = True


class HttpCall(BuiltinInteraction):
    """One plain HTTP request; success when the status is below 400 or in ``expect_status``."""

    kind = "http"
    config_model = HttpInteraction

    def __init__(
        self, config: HttpInteraction, *, seed: int = 0, files: FileScope = ANYWHERE
    ) -> None:
        super().__init__(config, seed=seed, files=files)
        self._method = config.method
        self._path = config.path if config.path.startswith("/") else "/" + config.path
        self._body = orjson.dumps(config.body) if config.body is not None else None
        self._extra_headers = config.headers
        self._expect = frozenset(config.expect_status or ())
        self._merged: dict[int, tuple[dict[str, str], dict[str, str]]] = {}

    async def exchange(self, ctx: ClientContext, m: Measurement) -> None:
        """Send the request and read the whole answer."""
        url = self.url(ctx, self._path)
        headers = self._request_headers(ctx)
        clock = ctx.clock
        m.sent_ns = clock.now_ns()
        async with ctx.session.request(
            self._method, url, data=self._body, headers=headers, timeout=self.timeout(ctx)
        ) as response:
            m.http_status = status = response.status
            if status >= 400 and status not in self._expect:
                await fail_http(response, m, clock.now_ns)
                return
            await response.read()
            m.end_ns = clock.now_ns()
            m.done = True

    def _request_headers(self, ctx: ClientContext) -> dict[str, str]:
        base = self.json_headers(ctx) if self._body is not None else ctx.headers
        if not self._extra_headers:
            return base
        cached = self._merged.get(id(base))
        if cached is None or cached[0] is not base:
            cached = (base, {**base, **self._extra_headers})
            self._merged[id(base)] = cached
        return cached[1]
