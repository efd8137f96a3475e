"""The internal API (``/internal/v1``): what workers call. See :mod:`.protocol`."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from clientswarm.metrics.ticks import TICK_MEDIA_TYPE, TickFormatError
from clientswarm.metrics.ticks import decode as decode_tick
from clientswarm.metrics.wire import (
    PACKED_DESCRIPTION,
    PACKED_MEDIA_TYPE,
    BatchFormatError,
    decode_columns,
)
from clientswarm.protocol.internal import (
    INTERNAL_PREFIX,
    Assignment,
    BatchAck,
    Control,
    EngineMetricsReport,
    Heartbeat,
    NotYet,
    PreflightReport,
    RegisterReply,
    RegisterRequest,
    SampleBatch,
    WorkerReport,
)
from clientswarm.service.auth import BEARER_CHALLENGE, bearer_token
from clientswarm.service.errors import error_responses
from clientswarm.service.ingest import IngestBusy
from clientswarm.service.manager import ClusterManager, Gone
from clientswarm.service.params import ClusterId, WorkerIndex
from clientswarm.service.ratelimit import retry_after
from clientswarm.service.state import ClusterState
from clientswarm.store import BatchRejected, StoreUnavailable

TICK_DESCRIPTION = (
    "A tick's tallies as clientswarm.metrics.ticks encodes them: one JSON object of seq, "
    "samples, parts (counters and sparse histograms per target, group, step, stage, replica), "
    "clients and outcomes"
)

_WITH_BODY = error_responses(400, 413)
"""The statuses of a route with a JSON body besides those of every route of the router."""


def internal_router(manager: ClusterManager) -> APIRouter:
    """Routes for workers, each authenticated with its cluster's token."""
    router = APIRouter(
        prefix=INTERNAL_PREFIX,
        tags=["internal"],
        responses=error_responses(401, 403, 404, 410, 422, 503),
    )
    base = "/clusters/{cluster_id}/workers/{index}"

    async def authorised(request: Request, cluster_id: str, index: int) -> ClusterState:
        # Whether a cluster exists is told to its workers only: without its token, an unknown
        # id and a known one get the same 403, never a 404 that would confirm guessed ids.
        token = bearer_token(request)
        if token is None:
            raise HTTPException(401, "missing the cluster's bearer token", BEARER_CHALLENGE)
        if not await manager.worker_token_matches(cluster_id, token):
            raise HTTPException(403, f"the bearer token is not the one of cluster {cluster_id}")
        return manager.cluster_for_worker(cluster_id, index)

    @router.post(base + "/register", response_model=RegisterReply, responses=_WITH_BODY)
    async def register(
        request: Request, cluster_id: ClusterId, index: WorkerIndex, body: RegisterRequest
    ) -> RegisterReply:
        """A worker announces itself."""
        state = await authorised(request, cluster_id, index)
        return await manager.register(state, index, body)

    @router.get(
        base + "/assignment",
        response_model=Assignment,
        responses={202: {"model": NotYet, "description": "Not yet: the others still start"}},
    )
    async def assignment(request: Request, cluster_id: ClusterId, index: WorkerIndex) -> object:
        """The worker's clients, config and shared start time (202 while others start)."""
        state = await authorised(request, cluster_id, index)
        reply = await manager.assignment(state, index)
        if isinstance(reply, NotYet):
            return JSONResponse(reply.model_dump(), status_code=202)
        return JSONResponse(reply.model_dump(mode="json"))

    @router.post(
        base + "/samples",
        response_model=BatchAck,
        responses=error_responses(413, 429),
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {"schema": SampleBatch.model_json_schema()},
                    PACKED_MEDIA_TYPE: {
                        "schema": {
                            "type": "string",
                            "format": "binary",
                            "description": PACKED_DESCRIPTION,
                        }
                    },
                },
            }
        },
    )
    async def samples(request: Request, cluster_id: ClusterId, index: WorkerIndex) -> BatchAck:
        """A batch of samples, acknowledged once committed (idempotent by seq).

        410 once the cluster has finished: its results are final, a late batch is refused
        (never acknowledged, so nothing acknowledged is lost). 422 for a value of the wrong
        type, naming its column; 503 while the store fails, or while the service still has
        more batches to commit than its backlog holds (:mod:`clientswarm.service.ingest`):
        nothing of the batch is stored, the worker sends it again after Retry-After.
        """
        state = await authorised(request, cluster_id, index)
        if state.config.sample_path == "files":
            raise HTTPException(
                409,
                f"cluster {cluster_id} keeps its samples in files (sample_path: files): "
                "POST …/ticks, not …/samples",
            )
        wait_s = manager.batch_wait_s(cluster_id, index)
        if wait_s > 0:  # the worker keeps the batch and sends it again: nothing is lost
            raise HTTPException(
                429,
                f"worker {index} sends more than {manager.max_batches_per_s:g} sample "
                "batches a second (the operator's --max-batches-per-s); retry later",
                {"Retry-After": retry_after(wait_s)},
            )
        body = await request.body()
        try:
            with manager.ingest.admit(len(body)):
                return await _commit(state, index, body, request.headers.get("content-type"))
        except IngestBusy as exc:  # the worker keeps the batch and sends it again later
            raise HTTPException(
                503, str(exc), {"Retry-After": retry_after(exc.retry_after_s)}
            ) from None

    async def _commit(
        state: ClusterState, index: int, body: bytes, content_type: str | None
    ) -> BatchAck:
        try:
            # orjson + dataclasses, not pydantic: this is the service's hottest path.
            media_type = (content_type or "application/json").split(";")[0].strip()
            seq, batch = decode_columns(body, media_type)
        except BatchFormatError as exc:
            raise HTTPException(422, f"invalid sample batch: {exc}") from None
        try:
            return await manager.add_batch(state, index, seq, batch, size_bytes=len(body))
        except BatchRejected as exc:  # a value the database refuses: resending cannot help
            raise HTTPException(422, f"invalid sample batch: {exc}") from None
        except StoreUnavailable as exc:  # nothing was stored: the worker sends it again
            raise HTTPException(
                503, f"{exc}; the batch was not stored, send it again", {"Retry-After": "1"}
            ) from None

    @router.post(
        base + "/ticks",
        response_model=BatchAck,
        responses=error_responses(409, 413, 429),
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {"type": "object", "description": TICK_DESCRIPTION}
                    },
                    TICK_MEDIA_TYPE: {
                        "schema": {
                            "type": "string",
                            "format": "binary",
                            "description": TICK_DESCRIPTION,
                        }
                    },
                },
            }
        },
    )
    async def ticks(request: Request, cluster_id: ClusterId, index: WorkerIndex) -> BatchAck:
        """A tick of the high-rate path (``sample_path: files``): what the worker's samples of
        one tick add to the statistics, its samples already durable in its files;
        acknowledged once counted (idempotent by seq).

        409 for a cluster whose samples are posted (``sample_path: service``); 410 once the
        cluster has finished; 422 for a tick in no valid form, naming the field; 503 while the
        store fails or the backlog is full (nothing is counted; the worker sends it again).
        """
        state = await authorised(request, cluster_id, index)
        if state.config.sample_path != "files":
            raise HTTPException(
                409,
                f"cluster {cluster_id} posts its samples (sample_path: service): "
                "POST …/samples, not …/ticks",
            )
        wait_s = manager.batch_wait_s(cluster_id, index)
        if wait_s > 0:
            raise HTTPException(
                429,
                f"worker {index} sends more than {manager.max_batches_per_s:g} ticks a second "
                "(the operator's --max-batches-per-s); retry later",
                {"Retry-After": retry_after(wait_s)},
            )
        body = await request.body()
        try:
            seq, tick = decode_tick(body)
        except TickFormatError as exc:
            raise HTTPException(422, f"invalid tick: {exc}") from None
        try:
            with manager.ingest.admit(len(body)):
                return await manager.add_tick(state, index, seq, tick, size_bytes=len(body))
        except IngestBusy as exc:
            raise HTTPException(
                503, str(exc), {"Retry-After": retry_after(exc.retry_after_s)}
            ) from None
        except StoreUnavailable as exc:
            raise HTTPException(
                503, f"{exc}; the tick was not counted, send it again", {"Retry-After": "1"}
            ) from None

    @router.post(base + "/engine-metrics", responses=_WITH_BODY)
    async def engine_metrics(
        request: Request, cluster_id: ClusterId, index: WorkerIndex, body: EngineMetricsReport
    ) -> dict[str, str]:
        """Worker 0 scraped the targets' engine metrics (its assignment asked it to)."""
        state = await authorised(request, cluster_id, index)
        targets = state.config.target_map()
        scrapes = [(s.target, s.t_s, s.values) for s in body.scrapes if s.target in targets]
        await manager.engine.record(state.id, scrapes)
        for problem in body.problems:
            if problem.target in targets:
                await manager.engine.problem(state.id, problem.target, problem.message)
        return {}

    @router.post(base + "/preflight", responses=_WITH_BODY)
    async def preflight(
        request: Request, cluster_id: ClusterId, index: WorkerIndex, body: PreflightReport
    ) -> dict[str, str]:
        """Worker 0 checked the targets (its registration's reply asked it to): the start
        waits for this report, and a failed check fails the cluster."""
        state = await authorised(request, cluster_id, index)
        await manager.preflights.reported(state, index, body)
        return {}

    @router.post(base + "/heartbeat", response_model=Control, responses=_WITH_BODY)
    async def heartbeat(
        request: Request, cluster_id: ClusterId, index: WorkerIndex, body: Heartbeat
    ) -> Control:
        """The worker is alive; the reply says what it should stop."""
        state = await authorised(request, cluster_id, index)
        return await manager.heartbeat(state, index, body)

    @router.post(base + "/finish", responses=_WITH_BODY)
    async def finish(
        request: Request, cluster_id: ClusterId, index: WorkerIndex, body: WorkerReport
    ) -> dict[str, str]:
        """The worker is done."""
        try:
            state = await authorised(request, cluster_id, index)
        except Gone:
            return {}
        await manager.finish(state, index, body)
        return {}

    return router
