"""The high-rate path's sink (``sample_path: files``): samples to durable files, tallies to the
service.

Each batch the recorder flushes is one *tick*. The sink writes the tick's samples to this
worker's file for it (:class:`~clientswarm.reports.samplefiles.SampleFileWriter`:
written, fsynced and renamed into place) and only then posts the tick's tallies — counters and
mergeable histograms per part, the clients' counts, the stages' outcomes
(:mod:`clientswarm.metrics.ticks`) — to ``POST ticks``. The service acknowledges a tick once it
has counted it; so an acknowledged tick's samples are on disk, and a tick whose post never got
through is still in the files that the final summary reads. A tick is posted again, same
``seq``, until acknowledged (the service counts each ``seq`` once); every 60 ticks the files are
rolled up into one, and :meth:`FileTickSink.finish` rolls up the rest before ``/finish``.

The samples are gathered into columns a slice at a time on the event loop (as a posted batch
is); writing the file and tallying run in a thread, so the loop keeps reading the target's
answers meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from clientswarm.metrics.columns import SampleColumns
from clientswarm.metrics.sample import Sample
from clientswarm.metrics.ticks import TICK_MEDIA_TYPE, encode, tick_tallies
from clientswarm.metrics.wire import ColumnarBatch
from clientswarm.protocol.assignment import WorkerReport
from clientswarm.worker.internal_api import InternalApiClient
from clientswarm.worker.posting import PostingSink

if TYPE_CHECKING:
    from clientswarm.config.slo import SLOConfig
    from clientswarm.reports.samplefiles import SampleFileWriter

log = logging.getLogger("clientswarm.worker")

ROLL_UP_TICKS = 60
"""Tick files merged into one part file at a time."""

GATHER_SLICE = 256
"""Samples taken into columns between two yields to the event loop."""


async def gather_columns(samples: list[Sample]) -> SampleColumns:
    """``samples`` as columns, a slice at a time with the event loop free in between."""
    batch = ColumnarBatch()
    for start in range(0, len(samples), GATHER_SLICE):
        if start:
            await asyncio.sleep(0)
        batch.add(samples[start : start + GATHER_SLICE])
    return batch.columns()


class FileTickSink(PostingSink):
    """A :class:`~clientswarm.worker.recorder.SampleSink` for ``sample_path: files`` (see the
    module docstring)."""

    def __init__(
        self,
        api: InternalApiClient,
        sample_dir: str,
        cluster_id: str,
        index: int,
        slo: SLOConfig | None,
    ) -> None:
        # pyarrow loads here, on the high-rate path only (and off every other worker's start)
        from clientswarm.reports.samplefiles import SampleFileWriter, live_name

        super().__init__(api)
        self._writer: SampleFileWriter = SampleFileWriter(
            Path(sample_dir), live_name(cluster_id), index
        )
        self._slo = slo
        self.written_samples = 0

    async def send_batch(self, seq: int, samples: list[Sample]) -> None:
        """Write the tick's samples durably, then post its tallies until acknowledged."""
        await self.send_columns(seq, await gather_columns(samples))

    async def send_columns(self, seq: int, cols: SampleColumns) -> None:
        """:meth:`send_batch` of samples gathered into columns already."""
        body = await asyncio.to_thread(self._write_and_tally, seq, cols)
        await self.post_acknowledged("ticks", "tick", seq, body, TICK_MEDIA_TYPE, len(cols))

    def _write_and_tally(self, seq: int, cols: SampleColumns) -> bytes:
        self._writer.write_tick(seq, cols)  # durable before the service hears of it
        self.written_samples += len(cols)
        self._writer.roll_up(ROLL_UP_TICKS)
        return encode(seq, tick_tallies(cols, self._slo))

    async def finish(self, report: WorkerReport) -> None:
        """Roll the tick files up, then post the final report."""
        await asyncio.to_thread(self._writer.close)
        await super().finish(report)


__all__ = ["GATHER_SLICE", "ROLL_UP_TICKS", "FileTickSink", "gather_columns"]
