"""The service's ASGI application: frontend, monitor and internal routers on one FastAPI app."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from clientswarm import __version__
from clientswarm.config.models import ClusterConfig
from clientswarm.service.auth import api_token_guard
from clientswarm.service.bodylimit import BodySizeLimit
from clientswarm.service.errors import install_error_handlers
from clientswarm.service.frontend import frontend_router
from clientswarm.service.internal import internal_router
from clientswarm.service.manager import ClusterManager
from clientswarm.service.monitor import monitor_router
from clientswarm.service.protocol import INTERNAL_PREFIX


def create_app(
    manager: ClusterManager,
    *,
    before_serving: Callable[[ClusterManager], Awaitable[None]] | None = None,
) -> FastAPI:
    """The service around ``manager``; its lifespan starts and stops the manager (and runs
    ``before_serving`` after the start, before uvicorn accepts the first request)."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await manager.start()
        try:
            if before_serving is not None:
                await before_serving(manager)
            yield
        finally:
            await manager.close()

    settings = manager.settings
    app = FastAPI(
        title="clientswarm",
        version=__version__,
        description=(
            "The Client Microservice: spawns clusters of clients that load-test an inference "
            "service, and serves their statistics to a frontend and a monitor."
        ),
        lifespan=lifespan,
    )
    guard = api_token_guard(settings.api_token)
    # FastAPI prepares a router's routes on the first request that reaches it, in the order
    # routers were included. The workers' router comes first so that their first requests, on
    # the start-up path of every cluster, prepare only its few routes, not all of the service's.
    app.include_router(internal_router(manager))
    app.include_router(frontend_router(manager, guard))
    app.include_router(monitor_router(manager, guard))
    install_error_handlers(app)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "Content-Type"],
        )
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)

    @app.get("/health", tags=["monitor"])
    async def health() -> dict[str, Any]:
        """Liveness: always open, no data."""
        return {"status": "ok", "version": __version__, "active_clusters": len(manager.active)}

    _register_config_schema(app)
    return app


def _register_config_schema(app: FastAPI) -> None:
    """Put ClusterConfig into the OpenAPI components (the create/validate bodies refer to it),
    and list the workers' paths last: their router is included first only for speed."""
    original = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = original()
        paths: dict[str, Any] = schema.get("paths", {})
        internal = {path for path in paths if path.startswith(INTERNAL_PREFIX)}
        schema["paths"] = {
            **{path: item for path, item in paths.items() if path not in internal},
            **{path: item for path, item in paths.items() if path in internal},
        }
        config = ClusterConfig.model_json_schema(ref_template="#/components/schemas/{model}")
        definitions = config.pop("$defs", {})
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        components.update(definitions)
        components["ClusterConfig"] = config
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
