"""The monitor API: Prometheus exposition, HTTP service discovery, live JSON statistics."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Response
from prometheus_client import CONTENT_TYPE_LATEST

from clientswarm.service.errors import error_responses
from clientswarm.service.manager import ClusterManager
from clientswarm.service.params import ClusterId


def monitor_router(manager: ClusterManager, guard: Any) -> APIRouter:
    """``/metrics``, ``/api/v1/monitor/targets`` and ``/api/v1/monitor/clusters/{id}/stats``."""
    router = APIRouter(
        tags=["monitor"], dependencies=[Depends(guard)], responses=error_responses(401, 403)
    )

    @router.get("/metrics", response_class=Response)
    async def metrics() -> Response:
        """Counters, histograms and gauges of every cluster, labelled by cluster and group."""
        return Response(manager.metrics(), media_type=CONTENT_TYPE_LATEST)

    @router.get("/api/v1/monitor/targets")
    async def targets() -> list[dict[str, Any]]:
        """Scrape targets in Prometheus' HTTP service-discovery format."""
        return manager.scrape_targets()

    @router.get("/api/v1/monitor/clusters/{cluster_id}/stats", responses=error_responses(404, 422))
    async def stats(cluster_id: ClusterId) -> dict[str, Any]:
        """Live statistics of one cluster: the last 10 s and since the start."""
        return manager.live_stats(cluster_id)

    return router
