"""The worker's pipe protocol: one JSON object per line on stdout.

Messages, in order: ``{"type": "ready"}`` (when waiting for a start time), any number of
``{"type": "batch", "worker", "seq", "samples": [...]}`` and
``{"type": "status", "worker", "in_flight", "recorded"}`` (periodic, may be dropped), and one
``{"type": "finish", "worker", "report": {...}}`` last. A batch counts as delivered once the
pipe has taken it (``drain``); the parent commits it before reading on.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any, BinaryIO

import orjson

from clientswarm.metrics.sample import Sample
from clientswarm.worker.assignment import WorkerReport


class PipeSink:
    """A :class:`~clientswarm.worker.recorder.SampleSink` that writes JSON lines to a pipe."""

    def __init__(self, writer: asyncio.StreamWriter, worker: int) -> None:
        self._writer = writer
        self._worker = worker

    @classmethod
    async def stdout(cls, worker: int, stream: BinaryIO | None = None) -> PipeSink:
        """A sink on this process's stdout (made non-blocking through the event loop)."""
        loop = asyncio.get_running_loop()
        transport, protocol = await loop.connect_write_pipe(
            asyncio.streams.FlowControlMixin, stream or sys.stdout.buffer
        )
        writer = asyncio.StreamWriter(transport, protocol, None, loop)
        return cls(writer, worker)

    async def send_message(self, message: dict[str, Any]) -> None:
        """Write any message of the protocol (e.g. ``{"type": "ready"}``)."""
        self._writer.write(orjson.dumps(message) + b"\n")
        await self._writer.drain()

    async def send_batch(self, seq: int, samples: list[Sample]) -> None:
        """Write one batch (orjson serialises the sample dataclasses natively)."""
        await self.send_message(
            {"type": "batch", "worker": self._worker, "seq": seq, "samples": samples}
        )

    async def send_status(self, status: dict[str, float | int]) -> None:
        """Write a live status line."""
        await self.send_message({"type": "status", "worker": self._worker, **status})

    async def finish(self, report: WorkerReport) -> None:
        """Write the final report and close the pipe."""
        await self.send_message(
            {"type": "finish", "worker": self._worker, "report": report.model_dump()}
        )
        self._writer.close()


def decode_message(line: bytes) -> dict[str, Any]:
    """Parse one line of the pipe protocol; batches come back with :class:`Sample` objects."""
    message: dict[str, Any] = orjson.loads(line)
    if message.get("type") == "batch":
        message["samples"] = [Sample(**s) for s in message["samples"]]
    return message
