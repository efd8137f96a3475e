"""The route table of the mock target and its small handlers (health, hello, models, telemetry)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

import orjson
from aiohttp import web

from clientswarm.mock.audio import transcriptions
from clientswarm.mock.embeddings import embeddings
from clientswarm.mock.event_api import messages, responses
from clientswarm.mock.metrics import PROMETHEUS_CONTENT_TYPE
from clientswarm.mock.openai import chat_completions, completions
from clientswarm.mock.state import STATE_KEY

HELLO_MESSAGE = "Hello from the clientswarm mock server"
_HELLO_BODY = orjson.dumps({"message": HELLO_MESSAGE})
_STARTED = int(time.time())

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _json(document: object) -> web.Response:
    return web.Response(body=orjson.dumps(document), content_type="application/json")


async def hello(request: web.Request) -> web.Response:
    """``GET /`` and ``GET /hello``: the hello-world interaction's target."""
    return web.Response(body=_HELLO_BODY, content_type="application/json")


async def health(request: web.Request) -> web.Response:
    """``GET /health``: 200 with an empty body, like vLLM."""
    return web.Response()


async def models(request: web.Request) -> web.Response:
    """``GET /v1/models``: the one served model."""
    model = request.app[STATE_KEY].settings.model
    card = {
        "id": model,
        "object": "model",
        "created": _STARTED,
        "owned_by": "clientswarm",
        "root": model,
        "parent": None,
    }
    return _json({"object": "list", "data": [card]})


async def prometheus_metrics(request: web.Request) -> web.Response:
    """``GET /metrics``: vLLM-style Prometheus exposition of this server."""
    body = request.app[STATE_KEY].metrics.exposition()
    return web.Response(body=body, headers={"Content-Type": PROMETHEUS_CONTENT_TYPE})


async def mock_stats(request: web.Request) -> web.Response:
    """``GET /mock/stats``: requests by route, faults by kind, completed, in flight (JSON)."""
    return _json(request.app[STATE_KEY].metrics.snapshot())


@web.middleware
async def count_requests(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Count every routed request under its route's path pattern."""
    resource = request.match_info.route.resource
    if resource is not None:
        request.app[STATE_KEY].metrics.request(resource.canonical)
    return await handler(request)


def add_routes(app: web.Application) -> None:
    """Register every route of the mock target on ``app``."""
    app.router.add_post("/v1/completions", completions)
    app.router.add_post("/v1/chat/completions", chat_completions)
    app.router.add_post("/v1/responses", responses)
    app.router.add_post("/v1/messages", messages)
    app.router.add_post("/v1/embeddings", embeddings)
    app.router.add_post("/v1/audio/transcriptions", transcriptions)
    app.router.add_get("/v1/models", models)
    app.router.add_get("/health", health)
    app.router.add_get("/", hello)
    app.router.add_get("/hello", hello)
    app.router.add_get("/metrics", prometheus_metrics)
    app.router.add_get("/mock/stats", mock_stats)
