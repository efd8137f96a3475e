"""The internal API (``/internal/v1``): what workers call. See :mod:`.protocol`."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from clientswarm.metrics.wire import (
    PACKED_DESCRIPTION,
    PACKED_MEDIA_TYPE,
    BatchFormatError,
    decode_batch,
)
from clientswarm.service.auth import BEARER_CHALLENGE, bearer_token
from clientswarm.service.manager import ClusterManager, Gone, NotFound
from clientswarm.service.protocol import (
    INTERNAL_PREFIX,
    Assignment,
    BatchAck,
    Control,
    Heartbeat,
    NotYet,
    RegisterReply,
    RegisterRequest,
    SampleBatch,
    WorkerReport,
)
from clientswarm.service.state import ClusterState, token_matches


def internal_router(manager: ClusterManager) -> APIRouter:
    """Routes for workers, each authenticated with its cluster's token."""
    router = APIRouter(prefix=INTERNAL_PREFIX, tags=["internal"])
    base = "/clusters/{cluster_id}/workers/{index}"

    async def authorised(request: Request, cluster_id: str, index: int) -> ClusterState:
        token = bearer_token(request)
        if token is None:
            raise HTTPException(401, "missing the cluster's bearer token", BEARER_CHALLENGE)
        state = manager.active.get(cluster_id)
        if state is not None:
            token_hash = state.token_hash
        else:
            record = await asyncio.to_thread(manager.store.get_cluster, cluster_id)
            if record is None:
                raise NotFound(f"no cluster with id {cluster_id!r}")
            token_hash = record.token_hash
        if not token_matches(token, token_hash):
            raise HTTPException(403, f"the token is not the one of cluster {cluster_id}")
        return manager.cluster_for_worker(cluster_id, index)

    @router.post(base + "/register", response_model=RegisterReply)
    async def register(
        request: Request, cluster_id: str, index: int, body: RegisterRequest
    ) -> RegisterReply:
        """A worker announces itself."""
        state = await authorised(request, cluster_id, index)
        return await manager.register(state, index, body)

    @router.get(
        base + "/assignment",
        response_model=Assignment,
        responses={202: {"model": NotYet}, 410: {"description": "the cluster stopped"}},
    )
    async def assignment(request: Request, cluster_id: str, index: int) -> object:
        """The worker's clients, config and shared start time (202 while others start)."""
        state = await authorised(request, cluster_id, index)
        reply = await manager.assignment(state, index)
        if isinstance(reply, NotYet):
            return JSONResponse(reply.model_dump(), status_code=202)
        return JSONResponse(reply.model_dump(mode="json"))

    @router.post(
        base + "/samples",
        response_model=BatchAck,
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
    async def samples(request: Request, cluster_id: str, index: int) -> BatchAck:
        """A batch of samples, acknowledged once committed (idempotent by seq).

        410 once the cluster has finished: its results are final, a late batch is refused
        (never acknowledged, so nothing acknowledged is lost).
        """
        state = await authorised(request, cluster_id, index)
        try:
            # orjson + dataclasses, not pydantic: this is the service's hottest path.
            media_type = request.headers.get("content-type", "application/json")
            seq, samples = decode_batch(await request.body(), media_type.split(";")[0].strip())
        except BatchFormatError as exc:
            raise HTTPException(422, f"invalid sample batch: {exc}") from None
        return await manager.add_batch(state, index, seq, samples)

    @router.post(base + "/heartbeat", response_model=Control)
    async def heartbeat(request: Request, cluster_id: str, index: int, body: Heartbeat) -> Control:
        """The worker is alive; the reply says what it should stop."""
        state = await authorised(request, cluster_id, index)
        return await manager.heartbeat(state, index, body)

    @router.post(base + "/finish")
    async def finish(
        request: Request, cluster_id: str, index: int, body: WorkerReport
    ) -> dict[str, str]:
        """The worker is done."""
        try:
            state = await authorised(request, cluster_id, index)
        except Gone:
            return {}
        await manager.finish(state, index, body)
        return {}

    return router
