"""``GET /api/v1/compare``: clusters of this service side by side, as ``clientswarm compare``
compares them (:mod:`clientswarm.reports.compare`): the comparison as JSON, or as the page of
``compare --html`` (:mod:`clientswarm.reports.compare_html`), which the web UI shows."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Depends, Query
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import StringConstraints

from clientswarm.reports.export import stream_samples
from clientswarm.service.errors import error_responses
from clientswarm.service.frontend import API_PREFIX
from clientswarm.service.manager import ClusterManager, Conflict, NotFound
from clientswarm.service.repeats import SeriesRunner

MAX_COMPARED = 8
"""Clusters one comparison takes at most."""

_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*(@[A-Za-z0-9][A-Za-z0-9_.-]*)?$"
"""A cluster id, or ``ID@TARGET``: one target of the cluster alone."""
_EFFECT_PATTERN = r"^([0-9]{1,2}([.][0-9]{1,6})?%|0?[.][0-9]{1,6}|0)$"


async def _series_run(series: SeriesRunner | None, label: str, ref: str) -> Any:
    """The compared run of a repeat series (:mod:`clientswarm.service.repeats`): its runs'
    means, compared as ``clientswarm compare`` compares directories of repeats; None when
    ``ref`` names no series. Conflict (409) while the series runs."""
    from clientswarm.reports.compare import RunResult
    from clientswarm.reports.repeats import REPEATS_KEY, means_summary
    from clientswarm.service.repeats import SeriesStatus

    if series is None:
        return None
    try:
        record = await series.series(ref)
    except NotFound:
        return None
    if not SeriesStatus(record.status).final:
        raise Conflict(
            f"repeat series {ref} is {record.status}; compare it once it has ended "
            f"(GET /api/v1/repeats/{ref})"
        )
    if record.summary_json is None:
        raise Conflict(f"repeat series {ref} ended {record.status} with no run to compare")
    repeats = orjson.loads(record.summary_json)[REPEATS_KEY]
    return RunResult(label, ref, means_summary(repeats), None, repeats)


async def _run_of(
    manager: ClusterManager, label: str, ref: str, series: SeriesRunner | None = None
) -> Any:
    """One compared run from the store: its summary and its samples' values (through the
    Parquet export, as ``compare`` reads a cluster of a service); ``ID@TARGET``: one target
    of the cluster alone (422 when it has no such target); a repeat series' id: its runs'
    means (:func:`_series_run`)."""
    from clientswarm.reports.compare import (
        RunResult,
        read_sample_values,
        split_target,
        target_view,
    )

    found = await _series_run(series, label, ref)
    if found is not None:
        return found
    cluster_id, target = split_target(ref)

    await manager.cluster(cluster_id)  # 404 when there is none
    summary = await manager.results(cluster_id)
    with tempfile.TemporaryDirectory(prefix="clientswarm-compare-") as folder:
        path = Path(folder) / "samples.parquet"

        def write() -> None:
            with path.open("wb") as sink:
                for chunk in stream_samples(manager.samples(cluster_id), "parquet"):
                    sink.write(chunk)

        await asyncio.to_thread(write)
        values = await asyncio.to_thread(read_sample_values, path)
    run = RunResult(label, cluster_id, summary, values)
    return run if target is None else target_view(run, target)


def compare_router(
    manager: ClusterManager, guard: Any, series: SeriesRunner | None = None
) -> APIRouter:
    """The compare route, behind ``guard`` (the API token); ids of ``series`` (repeat
    series) are compared as sets of repeats."""
    router = APIRouter(
        prefix=API_PREFIX,
        tags=["frontend"],
        dependencies=[Depends(guard)],
        responses=error_responses(401, 403, 503),
    )

    @router.get(
        "/compare",
        response_class=Response,
        responses={
            200: {
                "content": {
                    "application/json": {"schema": {"type": "object"}},
                    "text/html": {"schema": {"type": "string"}},
                },
                "description": "The comparison (JSON) or its page (format=html)",
            },
            **error_responses(404, 409, 422),
        },
    )
    async def compare(
        clusters: Annotated[
            list[Annotated[str, StringConstraints(pattern=_ID_PATTERN, max_length=64)]],
            Query(
                min_length=2,
                max_length=MAX_COMPARED,
                description="Cluster ids (ID@TARGET: one target of it) or repeat series ids "
                "(their runs' means, with Welch's t intervals); the first is A",
            ),
        ],
        format: Literal["json", "html"] = "json",
        min_effect: Annotated[
            str,
            Query(
                pattern=_EFFECT_PATTERN,
                description="The smallest relative change called a difference: 5% or 0.05",
            ),
        ] = "5%",
    ) -> Response:
        """Compare clusters with the first (A): per group and stage, rates and TTFT/ITL/TPOT/
        E2E percentiles side by side, with the difference and a bootstrap verdict, as
        ``clientswarm compare`` does. A repeat series (``/repeats``) is compared by its runs'
        means, as ``compare`` compares directories of ``run --repeat``."""
        from clientswarm.reports.compare import LABELS, Settings, compare_runs, parse_min_effect

        settings = Settings(min_effect=parse_min_effect(min_effect))
        runs = [await _run_of(manager, LABELS[i], c, series) for i, c in enumerate(clusters)]
        comparison = await asyncio.to_thread(compare_runs, runs, settings, [])
        if format == "html":
            from clientswarm.reports.compare_html import render_comparison_html

            page = await asyncio.to_thread(render_comparison_html, comparison, runs)
            return HTMLResponse(page)
        return JSONResponse(_plain(comparison))

    return router


def _plain(value: Any) -> Any:
    """The comparison with numpy scalars as Python numbers (JSON)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    item = getattr(value, "item", None)
    return item() if callable(item) and not isinstance(value, str | bytes) else value


__all__ = ["MAX_COMPARED", "compare_router"]
