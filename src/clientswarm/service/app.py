"""The service's ASGI application: frontend, monitor and internal routers on one FastAPI app."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from clientswarm import __version__
from clientswarm.config.loader import config_json_schema
from clientswarm.config.models import ClusterConfig
from clientswarm.protocol.internal import INTERNAL_PREFIX
from clientswarm.service.apidocs import install_api_docs
from clientswarm.service.auth import api_token_guard
from clientswarm.service.bodylimit import BodySizeLimit
from clientswarm.service.compare_route import compare_router
from clientswarm.service.errors import install_error_handlers
from clientswarm.service.frontend import frontend_router
from clientswarm.service.internal import internal_router
from clientswarm.service.manager import ClusterManager
from clientswarm.service.monitor import monitor_router
from clientswarm.service.repeats import SeriesRunner
from clientswarm.service.repeats_route import repeats_router
from clientswarm.service.ui import install_ui


def create_app(
    manager: ClusterManager,
    *,
    before_serving: Callable[[ClusterManager], Awaitable[None]] | None = None,
) -> FastAPI:
    """The service around ``manager``; its lifespan starts and stops the manager (and runs
    ``before_serving`` after the start, before uvicorn accepts the first request)."""

    series = SeriesRunner(manager)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await manager.start()
        try:
            await series.start()  # after the manager recovered the series' clusters
            if before_serving is not None:
                await before_serving(manager)
            yield
        finally:
            await series.close()
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
        docs_url=None,  # served from the wheel's assets, not a CDN: install_api_docs
        redoc_url=None,
    )
    guard = api_token_guard(settings.api_token)
    # FastAPI prepares a router's routes on the first request that reaches it, in the order
    # routers were included. The workers' router comes first so that their first requests, on
    # the start-up path of every cluster, prepare only its few routes, not all of the service's.
    app.include_router(internal_router(manager))
    app.include_router(frontend_router(manager, guard))
    app.include_router(monitor_router(manager, guard))
    app.include_router(repeats_router(series, guard))
    app.include_router(compare_router(manager, guard, series))
    install_api_docs(app)
    install_ui(app, token_required=settings.api_token is not None)
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
        """Liveness: always open, no data. ``status`` is ``degraded`` while the store fails,
        and ``store`` says since when and what kind of failure (never the database's own
        message, which may name hosts and paths: the cluster view has it). Still 200: the
        service is alive, and restarting it would not mend a full disk."""
        health = manager.health()
        return {
            "status": "ok" if health.ok else "degraded",
            "version": __version__,
            "active_clusters": health.active_clusters,
            "store": health.store,
        }

    _register_config_schema(app, token_required=settings.api_token is not None)
    return app


def _register_config_schema(app: FastAPI, *, token_required: bool) -> None:
    """Finish the OpenAPI document: ClusterConfig in the components (the create/validate
    bodies refer to it), the bearer tokens each route takes, and the workers' paths last
    (their router is included first only for speed)."""
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
        config = config_json_schema(ref_template="#/components/schemas/{model}")
        config.pop("$schema")
        config["title"] = ClusterConfig.__name__
        definitions = config.pop("$defs", {})
        components = schema.setdefault("components", {})
        schemas = components.setdefault("schemas", {})
        schemas.update(definitions)
        schemas["ClusterConfig"] = config
        # Every error is an ErrorBody: FastAPI's own 422 shape is never sent.
        for unused in ("HTTPValidationError", "ValidationError"):
            schemas.pop(unused, None)
        components["securitySchemes"] = SECURITY_SCHEMES
        api: list[dict[str, list[str]]] = [{"apiToken": []}]
        if not token_required:  # open: a token is taken, none is needed
            api.append({})
        for path, item in schema["paths"].items():
            if path == "/health":
                continue
            for operation in item.values():
                operation["security"] = [{"clusterToken": []}] if path in internal else api
                operation["responses"] = dict(sorted(operation["responses"].items()))
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


SECURITY_SCHEMES = {
    "apiToken": {
        "type": "http",
        "scheme": "bearer",
        "description": "The service's API token (clientswarm serve --token-file or "
        "CLIENTSWARM_API_TOKEN); without one, the service is open on loopback only",
    },
    "clusterToken": {
        "type": "http",
        "scheme": "bearer",
        "description": "The cluster's own token, which only its workers are given",
    },
}
"""The bearer tokens of the OpenAPI document: the frontend's and monitor's, and the workers'."""
