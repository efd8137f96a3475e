"""The frontend API (``/api/v1``): clusters, clients, results, samples, live progress."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator
from typing import Any, Literal
from urllib.parse import quote

import orjson
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse

from clientswarm.config.loader import config_json_schema, parse_config_text
from clientswarm.config.locate import locate_problems
from clientswarm.config.models import ClusterConfig
from clientswarm.errors import ConfigError
from clientswarm.interactions.journeys import params_model
from clientswarm.interactions.loader import entry_point_interactions
from clientswarm.interactions.registry import BUILTIN_INTERACTIONS
from clientswarm.metrics.summary import Summary
from clientswarm.metrics.timeseries import TimeSeriesDocument
from clientswarm.reports.export import MEDIA_TYPES, stream_samples
from clientswarm.service.errors import CONFIG_REFUSED, error_responses
from clientswarm.service.manager import ClusterManager
from clientswarm.service.params import (
    ClientId,
    ClusterId,
    ClusterStatusFilter,
    EventId,
    GroupFilter,
    GroupName,
    StatusFilter,
)
from clientswarm.service.views import client_view, cluster_view

API_PREFIX = "/api/v1"
YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml")
EXAMPLE_CONFIG: dict[str, Any] = {
    "name": "example",
    "seed": 42,
    "target": {"url": "http://127.0.0.1:8000", "model": "mock-model", "timeout_s": 10},
    "spawner": {"kind": "local", "workers": 1},
    "groups": [
        {
            "name": "hello",
            "clients": 1,
            "interaction": {"kind": "hello"},
            "load": {"kind": "open", "rate": 2, "arrival": "constant"},
            "stop": {"duration_s": 5},
        }
    ],
}
"""The configuration the OpenAPI document shows (and API testers post): a small, valid one."""
_CONFIG_SCHEMA = {"$ref": "#/components/schemas/ClusterConfig"}
_CONFIG_BODY = {
    "requestBody": {
        "required": True,
        "description": "A cluster configuration: JSON, or YAML with Content-Type application/yaml",
        "content": {
            # YAML is a superset of JSON: the same schema describes both.
            "application/json": {"schema": _CONFIG_SCHEMA, "example": EXAMPLE_CONFIG},
            "application/yaml": {"schema": _CONFIG_SCHEMA},
        },
    }
}
_CONFIG_ERRORS = error_responses(413, 422, descriptions={422: CONFIG_REFUSED})
_CLUSTER_LINKS = {
    name: {
        # A JSON pointer into the document: '/' is '~1' and the braces are percent-encoded.
        "operationRef": "#/paths/"
        + quote(f"{API_PREFIX}/clusters/{{cluster_id}}{tail}".replace("/", "~1"), safe="~")
        + f"/{method}",
        "parameters": {"cluster_id": "$response.body#/id"},
    }
    for name, method, tail in (
        ("ShowCluster", "get", ""),
        ("ClusterClients", "get", "/clients"),
        ("ClusterEvents", "get", "/events"),
        ("ClusterResults", "get", "/results"),
        ("ClusterTimeseries", "get", "/timeseries"),
        ("StopCluster", "post", "/stop"),
        ("DeleteCluster", "delete", ""),
    )
}
"""How a created cluster's id feeds the routes about it (OpenAPI links, for API testers)."""


async def read_config(request: Request) -> tuple[str, ClusterConfig]:
    """The configuration in the body (and its text): YAML by content type, else JSON.
    ConfigError → 422, with where each problem is (:func:`located`)."""
    body = (await request.body()).decode("utf-8", errors="replace")
    media = request.headers.get("content-type", "application/json").split(";")[0].strip().lower()
    fmt: Literal["yaml", "json"] = "yaml" if media in YAML_TYPES else "json"
    # The parsers are bounded (depth, aliases, numbers) but their work is linear in a body of
    # up to --max-body-mb: off the event loop, so other requests and workers are not held up.
    async with located(body):
        config = await asyncio.to_thread(parse_config_text, body, source="request body", fmt=fmt)
    return body, config


@contextlib.asynccontextmanager
async def located(text: str) -> AsyncIterator[None]:
    """A ConfigError raised inside learns where each of its problems is in ``text``."""
    try:
        yield
    except ConfigError as exc:
        if exc.locations is None:
            found = await asyncio.to_thread(locate_problems, text, exc.problems)
            exc.locations = [place.as_dict() for place in found]
        raise


def frontend_router(manager: ClusterManager, guard: Any) -> APIRouter:
    """Routes of the frontend API, all behind ``guard`` (the API token)."""
    router = APIRouter(
        prefix=API_PREFIX,
        tags=["frontend"],
        dependencies=[Depends(guard)],
        responses=error_responses(401, 403, 503),
    )

    @router.post(
        "/clusters",
        status_code=201,
        openapi_extra=_CONFIG_BODY,
        responses={
            201: {
                "description": "Created: the cluster's id, name and status",
                "headers": {
                    "Location": {
                        "description": "The new cluster's path",
                        "schema": {"type": "string"},
                    }
                },
                "links": _CLUSTER_LINKS,
            },
            **_CONFIG_ERRORS,
            **error_responses(429),
        },
    )
    async def create_cluster(request: Request) -> JSONResponse:
        """Create a cluster from a configuration and start it; 201 with its id."""
        text, config = await read_config(request)
        async with located(text):  # the operator's refusals name fields too
            record = await manager.create(config)
        view = {"id": record.id, "name": record.name, "status": record.status}
        headers = {"Location": f"{API_PREFIX}/clusters/{record.id}"}
        return JSONResponse(view, status_code=201, headers=headers)

    @router.get("/clusters", responses=error_responses(422))
    async def list_clusters(
        status: ClusterStatusFilter = None,
    ) -> list[dict[str, Any]]:
        """Clusters, newest first (only those in ``status`` when given)."""
        wanted = None if status is None else status.value
        return [cluster_view(r, brief=True) for r in await manager.clusters(wanted)]

    @router.get("/clusters/{cluster_id}", responses=error_responses(404, 422))
    async def show_cluster(cluster_id: ClusterId) -> dict[str, Any]:
        """Status, timings, per-worker and per-group client states."""
        record = await manager.cluster(cluster_id)
        workers = await manager.workers(cluster_id)
        clients = await manager.clients(cluster_id)
        return cluster_view(record, workers=workers, clients=clients, store=manager.store_health())

    @router.get("/clusters/{cluster_id}/clients", responses=error_responses(404, 422))
    async def list_clients(
        cluster_id: ClusterId,
        group: GroupFilter = None,
        state: StatusFilter = None,
    ) -> list[dict[str, Any]]:
        """The cluster's clients (filter by group and state)."""
        record = await manager.cluster(cluster_id)
        config = ClusterConfig.model_validate_json(record.config_json)
        clients = await manager.clients(cluster_id, group=group, state=state)
        return [client_view(c, config) for c in clients]

    @router.get("/clusters/{cluster_id}/clients/{client_id}", responses=error_responses(404, 422))
    async def show_client(cluster_id: ClusterId, client_id: ClientId) -> dict[str, Any]:
        """One client."""
        record = await manager.cluster(cluster_id)
        client = await manager.client(cluster_id, client_id)
        return client_view(client, ClusterConfig.model_validate_json(record.config_json))

    @router.post(
        "/clusters/{cluster_id}/clients/{client_id}/stop",
        responses=error_responses(404, 409, 422),
    )
    async def stop_client(cluster_id: ClusterId, client_id: ClientId) -> dict[str, Any]:
        """Stop one client; the others carry on."""
        return {"stopped": await manager.stop_client(cluster_id, client_id)}

    @router.post(
        "/clusters/{cluster_id}/groups/{group}/stop", responses=error_responses(404, 409, 422)
    )
    async def stop_group(cluster_id: ClusterId, group: GroupName) -> dict[str, Any]:
        """Stop every client of one group; the other groups carry on."""
        return {"stopped": await manager.stop_group(cluster_id, group)}

    @router.post(
        "/clusters/{cluster_id}/stop", status_code=202, responses=error_responses(404, 409, 422)
    )
    async def stop_cluster(cluster_id: ClusterId) -> dict[str, Any]:
        """Stop the whole cluster; it ends ``cancelled`` with what was measured."""
        await manager.stop_cluster(cluster_id)
        return {"id": cluster_id, "status": "stopping"}

    @router.delete(
        "/clusters/{cluster_id}", status_code=204, responses=error_responses(404, 409, 422)
    )
    async def delete_cluster(cluster_id: ClusterId) -> None:
        """Delete a finished cluster and all its data (409 while it runs)."""
        await manager.delete(cluster_id)

    @router.get(
        "/clusters/{cluster_id}/results",
        responses={
            200: {"model": Summary, "description": "The summary.json document"},
            **error_responses(404, 422),
        },
    )
    async def results(cluster_id: ClusterId) -> dict[str, Any]:
        """Statistics in the summary.json shape: final once finished, partial before. A group
        with load stages has one block per stage in ``groups.<name>.stages``."""
        return await manager.results(cluster_id)

    @router.get(
        "/clusters/{cluster_id}/timeseries",
        responses={
            200: {"model": TimeSeriesDocument, "description": "Per-group 1-second time series"},
            **error_responses(404, 422),
        },
    )
    async def timeseries(cluster_id: ClusterId) -> dict[str, Any]:
        """Per group, one value per 1-second bucket from the shared start time: completed
        requests and output tokens per second, TTFT, ITL and schedule lag p50/p99, errors by
        kind, requests in flight and active clients (null where a bucket has no value). Final
        once the cluster finished, as far as it got before."""
        return await manager.timeseries(cluster_id)

    @router.get(
        "/clusters/{cluster_id}/report",
        response_class=Response,  # no media type of its own: the errors stay JSON
        responses={
            200: {
                "content": {"text/html": {"schema": {"type": "string"}}},
                "description": "The report page",
            },
            **error_responses(404, 422),
        },
    )
    async def report(cluster_id: ClusterId) -> HTMLResponse:
        """The HTML report (report.html, as ``clientswarm run`` writes it): one self-contained
        page built from the results, the time series and the configuration."""
        from clientswarm.reports.html import render_report  # its tables load rich: not at start

        record = await manager.cluster(cluster_id)
        summary = await manager.results(cluster_id)
        series = await manager.timeseries(cluster_id)
        config = orjson.loads(record.config_json)
        page = await asyncio.to_thread(render_report, summary, series, config)
        return HTMLResponse(page)

    @router.get(
        "/clusters/{cluster_id}/samples",
        response_class=StreamingResponse,
        responses={
            200: {"content": {t: {} for t in MEDIA_TYPES.values()}},
            **error_responses(404, 422),
        },
    )
    async def samples(
        cluster_id: ClusterId, format: Literal["jsonl", "csv", "parquet"] = "jsonl"
    ) -> StreamingResponse:
        """Every raw sample, streamed (never built in memory)."""
        record = await manager.cluster(cluster_id)
        filename = f"{record.name}-{cluster_id}-samples.{format}"
        return StreamingResponse(
            stream_samples(manager.samples(cluster_id), format),
            media_type=MEDIA_TYPES[format],
            headers={"Content-Disposition": f'attachment; filename="{filename}"'},
        )

    @router.get("/clusters/{cluster_id}/events", responses=error_responses(404, 422))
    async def events(
        cluster_id: ClusterId,
        after: EventId = 0,
    ) -> list[dict[str, Any]]:
        """What happened to the cluster (status changes, workers lost, stops)."""
        return [dataclasses.asdict(e) for e in await manager.events(cluster_id, after)]

    @router.get(
        "/clusters/{cluster_id}/progress",
        response_class=StreamingResponse,
        responses={
            200: {"content": {"text/event-stream": {"schema": {"type": "string"}}}},
            **error_responses(404, 422),
        },
    )
    async def progress(cluster_id: ClusterId, interval_s: float = Query(1.0, ge=0.1, le=60)) -> Any:
        """Live progress as Server-Sent Events: ``progress`` events, then one ``end``."""
        await manager.cluster(cluster_id)
        return StreamingResponse(
            _progress_events(manager, cluster_id, interval_s), media_type="text/event-stream"
        )

    @router.get("/interactions")
    async def interactions() -> list[dict[str, Any]]:
        """The catalogue: the pre-built interactions and the installed entry points
        (group ``clientswarm.interactions``), each with its parameters' JSON Schema."""
        found = [
            {
                "kind": kind,
                "description": (cls.__doc__ or "").strip().splitlines()[0],
                "parameters": cls.config_model.model_json_schema(),
                "source": "built-in",
            }
            for kind, cls in BUILTIN_INTERACTIONS.items()
        ]
        for name, obj in await asyncio.to_thread(entry_point_interactions):
            found.append(
                {
                    "kind": name,
                    "description": (obj.__doc__ or "").strip().splitlines()[0]
                    if obj.__doc__
                    else "",
                    "parameters": params_model(obj).model_json_schema(),
                    "source": "entry point",
                }
            )
        return found

    @router.post("/validate", openapi_extra=_CONFIG_BODY, responses=_CONFIG_ERRORS)
    async def validate(request: Request) -> dict[str, Any]:
        """Validate a configuration without running it (422 with one line per problem): the
        same checks as creating it, against this service's operator policy."""
        text, parsed = await read_config(request)
        async with located(text):
            config = (await manager.admit(parsed)).config
        return {
            "valid": True,
            "name": config.name,
            "groups": [
                {"name": g.name, "clients": g.clients, "interaction": g.interaction.kind}
                for g in config.groups
            ],
        }

    @router.get("/schema")
    async def schema() -> dict[str, Any]:
        """The JSON Schema of the configuration file."""
        return config_json_schema()

    return router


async def _progress_events(
    manager: ClusterManager, cluster_id: str, interval_s: float
) -> AsyncIterator[bytes]:
    while True:
        progress = await manager.progress(cluster_id)
        if progress is None:
            yield b'event: end\ndata: {"status": "deleted"}\n\n'
            return
        kind = b"end" if progress.final else b"progress"
        yield b"event: " + kind + b"\ndata: " + orjson.dumps(progress.view) + b"\n\n"
        if progress.final:
            return
        await asyncio.sleep(interval_s)
