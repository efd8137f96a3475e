"""What the worker's two sinks share: posting a batch (or a tick) until the service
acknowledges it, counting what was acknowledged, and the final report."""

from __future__ import annotations

import logging

from clientswarm.errors import WorkerError
from clientswarm.protocol.assignment import WorkerReport
from clientswarm.protocol.internal import BatchAck
from clientswarm.worker.internal_api import InternalApiClient, ServiceRejectedError, parse_reply

log = logging.getLogger("clientswarm.worker")


class PostingSink:
    """Posts to the service and counts its acknowledgements (the base of
    :class:`~clientswarm.worker.service_client.ServiceSink` and
    :class:`~clientswarm.worker.file_sink.FileTickSink`)."""

    def __init__(self, api: InternalApiClient) -> None:
        self._api = api
        self.acknowledged_batches = 0
        self.acknowledged_samples = 0
        self.duplicate_acks = 0

    async def post_acknowledged(
        self, action: str, what: str, seq: int, body: bytes, media_type: str, samples: int
    ) -> None:
        """Post ``body`` (``what`` number ``seq``, holding ``samples``) to ``action`` until the
        service acknowledges that very ``seq``; a refusal is the worker's fatal error."""
        try:
            _, data = await self._api.call("POST", action, body, media_type=media_type)
            ack = parse_reply(BatchAck, data, f"POST {action}")
        except WorkerError as exc:
            raise self._api.fail(exc) from None
        if ack.seq != seq:
            raise self._api.fail(
                ServiceRejectedError(f"the service acknowledged {what} {ack.seq} for {what} {seq}")
            )
        self.acknowledged_batches += 1
        self.acknowledged_samples += samples
        self.duplicate_acks += ack.duplicate

    async def send_status(self, status: dict[str, float | int]) -> None:
        """Nothing: heartbeats carry the live status."""

    async def finish(self, report: WorkerReport) -> None:
        """Post the final report (retried like batches; 410, cluster gone, ends it too)."""
        body = report.model_dump_json().encode()
        status, _ = await self._api.call("POST", "finish", body, accept=(200, 201, 204, 410))
        if status == 410:
            log.info("the cluster is gone; the final report was not needed")


__all__ = ["PostingSink"]
