"""Collects a worker's samples and ships them in batches through a sink."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Protocol

from clientswarm.metrics.sample import Sample
from clientswarm.worker.assignment import WorkerReport


class SampleSink(Protocol):
    """Where a worker's batches, live status and final report go (the service, in production)."""

    async def send_batch(self, seq: int, samples: list[Sample]) -> None:
        """Deliver one batch; return only once it is acknowledged."""
        ...

    async def send_status(self, status: dict[str, float | int]) -> None:
        """Deliver a live status (in flight, loop lag); may be dropped."""
        ...

    async def finish(self, report: WorkerReport) -> None:
        """Deliver the worker's final report."""
        ...


class SampleRecorder:
    """Buffers samples and flushes them every ``interval_s`` or ``batch_max`` samples.

    ``record`` is synchronous and cheap (it runs on the hot path, inside interactions): it tags
    the sample's warm-up flag and stage from its scheduled time and appends it to the buffer.
    """

    def __init__(
        self,
        sink: SampleSink,
        *,
        start_ns: int,
        warmup_s: float,
        stage_of: Callable[[str, float], int],
        interval_s: float,
        batch_max: int,
    ) -> None:
        self._sink = sink
        self._start_ns = start_ns
        self._warmup_end_ns = start_ns + int(warmup_s * 1e9)
        self._stage_of = stage_of
        self._interval_s = interval_s
        self._batch_max = batch_max
        self._buffer: list[Sample] = []
        self._seq = 0
        self._pending: tuple[int, list[Sample]] | None = None
        self._full = asyncio.Event()
        self.recorded = 0

    def record(self, sample: Sample) -> None:
        """Tag and buffer one sample."""
        sample.warmup = sample.scheduled_ns < self._warmup_end_ns
        sample.stage = self._stage_of(sample.group, (sample.scheduled_ns - self._start_ns) / 1e9)
        self._buffer.append(sample)
        self.recorded += 1
        if len(self._buffer) >= self._batch_max:
            self._full.set()

    async def flush(self) -> None:
        """Ship everything buffered now.

        A batch keeps its sequence number until the sink has taken it: when a send is
        interrupted (cancelled, or the sink raised), the next flush sends the same batch with
        the same ``seq`` again, so a receiver that dedupes by ``(worker, seq)`` loses nothing
        and counts nothing twice.
        """
        while self._pending is not None or self._buffer:
            if self._pending is None:
                batch = self._buffer[: self._batch_max]
                del self._buffer[: self._batch_max]
                self._seq += 1
                self._pending = (self._seq, batch)
            seq, batch = self._pending
            await self._sink.send_batch(seq, batch)
            self._pending = None

    async def run(self) -> None:
        """Flush periodically until cancelled; the caller flushes once more at the end."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._full.wait(), self._interval_s)
            self._full.clear()
            await self.flush()
