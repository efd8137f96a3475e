"""Collects a worker's samples and ships them in batches through a sink."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Protocol

from clientswarm.metrics.sample import Sample
from clientswarm.protocol.assignment import WorkerReport


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
    A sample is warm-up when scheduled before ``warmup_s``, or inside its stage's
    ``stage_warmup_s`` (``stage_warmup_of``, :func:`~clientswarm.load.stage_plan.stage_warmup_of`).
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
        stage_warmup_of: Callable[[str, float], bool] | None = None,
    ) -> None:
        self._sink = sink
        self._start_ns = start_ns
        self._warmup_end_ns = start_ns + int(warmup_s * 1e9)
        self._stage_of = stage_of
        self._stage_warmup_of = stage_warmup_of
        self._interval_s = interval_s
        self._batch_max = batch_max
        self._buffer: list[Sample] = []
        self._seq = 0
        self._pending: tuple[int, list[Sample]] | None = None
        self._full = asyncio.Event()
        self.recorded = 0

    def record(self, sample: Sample) -> None:
        """Tag and buffer one sample."""
        offset_s = (sample.scheduled_ns - self._start_ns) / 1e9
        sample.warmup = sample.scheduled_ns < self._warmup_end_ns or (
            self._stage_warmup_of is not None and self._stage_warmup_of(sample.group, offset_s)
        )
        sample.stage = self._stage_of(sample.group, offset_s)
        self._buffer.append(sample)
        self.recorded += 1
        if len(self._buffer) >= self._batch_max:
            self._full.set()

    async def flush(self) -> None:
        """Ship everything buffered, including what arrives while earlier batches ship.

        A batch keeps its sequence number until the sink has taken it: when a send is
        interrupted (cancelled, or the sink raised), the next flush sends the same batch with
        the same ``seq`` again, so a receiver that dedupes by ``(worker, seq)`` loses nothing
        and counts nothing twice.
        """
        while self._pending is not None or self._buffer:
            await self._ship_one()

    async def _ship_one(self) -> None:
        """Ship the pending batch, else the next one cut from the buffer."""
        if self._pending is None:
            batch = self._buffer[: self._batch_max]
            del self._buffer[: self._batch_max]
            self._seq += 1
            self._pending = (self._seq, batch)
        seq, batch = self._pending
        await self._sink.send_batch(seq, batch)
        self._pending = None

    async def run(self) -> None:
        """Ship one batch per tick (every ``interval_s``, or as soon as ``batch_max`` samples
        wait) until cancelled; the caller flushes once more at the end.

        One batch per tick, not everything buffered: what arrives while a batch ships waits
        for the next tick, so a busy worker sends a few large batches a second rather than a
        stream of small ones, each of which costs the service a request and a transaction.
        """
        while True:
            if len(self._buffer) < self._batch_max:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._full.wait(), self._interval_s)
            self._full.clear()
            if self._pending is not None or self._buffer:
                await self._ship_one()
