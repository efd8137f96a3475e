"""``/api/v1/repeats``: repeat series, the API's ``clientswarm run --repeat N``.

``POST /repeats?count=N[&same_seed=true][&confidence=C]`` takes the same body as ``POST
/clusters`` (a configuration, JSON or YAML) and runs it ``count`` times, one cluster after
another (:mod:`clientswarm.service.repeats`); ``GET /repeats/{id}`` shows the runs so far and,
once the series has ended, the aggregate as ``DIR/summary.json`` of ``run --repeat`` holds it.
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import JSONResponse

from clientswarm.service.errors import CONFIG_REFUSED, error_responses
from clientswarm.service.frontend import (
    API_PREFIX,
    EXAMPLE_CONFIG,
    YAML_TYPES,
    located,
    read_config,
)
from clientswarm.service.repeats import RepeatRequest, SeriesRunner, series_view

MIN_COUNT, MAX_COUNT = 2, 100
"""How many runs a series may have (``run --repeat`` takes up to 100 too)."""
MIN_CONFIDENCE, MAX_CONFIDENCE = 0.5, 0.999
"""The confidence of the intervals (as ``run --confidence``)."""

SeriesId = Annotated[
    str,
    Path(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
        max_length=64,
        description="The series' id, as its creation returned it",
    ),
]
"""A repeat series' id (the service makes 12 hexadecimal digits)."""

_CONFIG_SCHEMA = {"$ref": "#/components/schemas/ClusterConfig"}
_BODY = {
    "requestBody": {
        "required": True,
        "description": "A cluster configuration (as for POST /clusters): JSON, or YAML with "
        "Content-Type application/yaml",
        "content": {
            "application/json": {"schema": _CONFIG_SCHEMA, "example": EXAMPLE_CONFIG},
            **{media: {"schema": _CONFIG_SCHEMA} for media in YAML_TYPES[:1]},
        },
    }
}
_LINKS = {
    name: {
        "operationRef": "#/paths/"
        + quote(f"{API_PREFIX}/repeats/{{series_id}}{tail}".replace("/", "~1"), safe="~")
        + f"/{method}",
        "parameters": {"series_id": "$response.body#/id"},
    }
    for name, method, tail in (("ShowSeries", "get", ""), ("StopSeries", "post", "/stop"))
}


def repeats_router(runner: SeriesRunner, guard: Any) -> APIRouter:
    """The repeat-series routes, behind ``guard`` (the API token)."""
    router = APIRouter(
        prefix=API_PREFIX,
        tags=["frontend"],
        dependencies=[Depends(guard)],
        responses=error_responses(401, 403, 503),
    )

    @router.post(
        "/repeats",
        status_code=201,
        openapi_extra=_BODY,
        responses={
            201: {
                "description": "Created: the series' id, its first cluster and its status",
                "headers": {
                    "Location": {"description": "The series' path", "schema": {"type": "string"}}
                },
                "links": _LINKS,
            },
            **error_responses(413, 422, descriptions={422: CONFIG_REFUSED}),
            **error_responses(429),
        },
    )
    async def create_series(
        request: Request,
        count: Annotated[
            int,
            Query(
                ge=MIN_COUNT,
                le=MAX_COUNT,
                description="How many times to run the configuration, one cluster after another",
            ),
        ],
        same_seed: Annotated[
            bool, Query(description="The configuration's seed for every run (else seed + i)")
        ] = False,
        confidence: Annotated[
            float,
            Query(
                ge=MIN_CONFIDENCE,
                le=MAX_CONFIDENCE,
                description="The confidence of each statistic's interval across the runs",
            ),
        ] = 0.95,
    ) -> JSONResponse:
        """Run a configuration ``count`` times, one cluster after another (run ``i`` with the
        seed ``seed + i``, or the same seed with ``same_seed``), and aggregate each statistic
        across the runs: its mean and confidence interval, as ``clientswarm run --repeat``.
        201 once the first run's cluster exists."""
        text, config = await read_config(request)
        async with located(text):  # the operator's refusals name fields too
            record = await runner.create(
                config, RepeatRequest(count=count, same_seed=same_seed, confidence=confidence)
            )
        headers = {"Location": f"{API_PREFIX}/repeats/{record.id}"}
        return JSONResponse(series_view(record), status_code=201, headers=headers)

    @router.get("/repeats")
    async def list_series() -> list[dict[str, Any]]:
        """Repeat series, newest first."""
        return [series_view(r) for r in await runner.all_series()]

    @router.get("/repeats/{series_id}", responses=error_responses(404, 422))
    async def show_series(series_id: SeriesId) -> dict[str, Any]:
        """The series: its status, each run's cluster and seed so far (each an ordinary
        cluster: ``GET /clusters/{id}``), and once it has ended its aggregate in ``summary``,
        the ``summary.json`` of ``clientswarm run --repeat`` (runs named by cluster id)."""
        record = await runner.series(series_id)
        return series_view(record, await runner.runs(record))

    @router.post(
        "/repeats/{series_id}/stop", status_code=202, responses=error_responses(404, 409, 422)
    )
    async def stop_series(series_id: SeriesId) -> dict[str, Any]:
        """Stop the series: its running cluster is stopped and no further run is made; it ends
        ``cancelled``, aggregating the runs that ended before the stop."""
        await runner.stop(series_id)
        return {"id": series_id, "status": "stopping"}

    return router


__all__ = ["MAX_COUNT", "MIN_COUNT", "repeats_router"]
