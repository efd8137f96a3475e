"""The worker's sample recorder: tagging, batching, and no loss on an interrupted send."""

from __future__ import annotations

import asyncio

import pytest

from clientswarm.metrics.sample import Sample
from clientswarm.protocol.assignment import WorkerReport
from clientswarm.worker.recorder import SampleRecorder

START_NS = 1_000_000_000_000


class FlakySink:
    """Takes batches; the first ``failures`` sends raise before anything is taken."""

    def __init__(self, failures: int = 0, block: asyncio.Event | None = None) -> None:
        self.failures = failures
        self.block = block
        self.batches: list[tuple[int, list[Sample]]] = []

    async def send_batch(self, seq: int, samples: list[Sample]) -> None:
        if self.block is not None:
            await self.block.wait()
        if self.failures:
            self.failures -= 1
            raise ConnectionError("service unreachable")
        self.batches.append((seq, list(samples)))

    async def send_status(self, status: dict[str, float | int]) -> None:
        pass

    async def finish(self, report: WorkerReport) -> None:
        pass


def sample(offset_s: float, group: str = "g") -> Sample:
    at = START_NS + int(offset_s * 1e9)
    return Sample(
        group=group, client=0, worker=0, name="hello", scheduled_ns=at, sent_ns=at, end_ns=at
    )


def recorder(sink: FlakySink, batch_max: int = 2) -> SampleRecorder:
    return SampleRecorder(
        sink,
        start_ns=START_NS,
        warmup_s=1.0,
        stage_of=lambda group, offset_s: 0 if offset_s < 2.0 else 1,
        interval_s=10.0,
        batch_max=batch_max,
    )


async def test_samples_are_tagged_by_scheduled_time_and_batched_in_order() -> None:
    sink = FlakySink()
    rec = recorder(sink)
    for offset in (0.5, 1.0, 1.5, 2.5, 3.0):
        rec.record(sample(offset))
    await rec.flush()
    assert [seq for seq, _ in sink.batches] == [1, 2, 3]
    flat = [s for _, batch in sink.batches for s in batch]
    assert [s.warmup for s in flat] == [True, False, False, False, False]
    assert [s.stage for s in flat] == [0, 0, 0, 1, 1]
    assert rec.recorded == 5


async def test_a_failed_send_is_retried_with_the_same_seq() -> None:
    sink = FlakySink(failures=1)
    rec = recorder(sink)
    for offset in (0.0, 1.0, 2.0):
        rec.record(sample(offset))
    with pytest.raises(ConnectionError):
        await rec.flush()
    rec.record(sample(3.0))
    await rec.flush()
    assert [(seq, len(batch)) for seq, batch in sink.batches] == [(1, 2), (2, 2)]


async def test_a_cancelled_send_is_resent_by_the_final_flush() -> None:
    gate = asyncio.Event()
    sink = FlakySink(block=gate)
    rec = recorder(sink, batch_max=1)
    rec.record(sample(1.0))
    running = asyncio.create_task(rec.run())
    await asyncio.sleep(0.01)  # the batch is now in flight, blocked in the sink
    running.cancel()
    await asyncio.gather(running, return_exceptions=True)
    gate.set()
    await rec.flush()
    assert [(seq, len(batch)) for seq, batch in sink.batches] == [(1, 1)]


async def test_the_periodic_flush_ships_one_batch_a_tick() -> None:
    """What arrives while a batch ships waits for the next tick: a busy worker sends a few
    large batches, not a stream of small ones."""
    gate = asyncio.Event()
    sink = FlakySink(block=gate)
    rec = SampleRecorder(
        sink,
        start_ns=START_NS,
        warmup_s=0.0,
        stage_of=lambda group, offset_s: 0,
        interval_s=0.2,
        batch_max=100,
    )
    rec.record(sample(1.0))
    running = asyncio.create_task(rec.run())
    await asyncio.sleep(0.25)  # the first tick: one sample in flight, blocked in the sink
    for offset in (2.0, 3.0, 4.0):
        rec.record(sample(offset))  # arrive while it ships
    gate.set()
    await asyncio.sleep(0.05)  # the send returns well before the next tick
    assert [len(batch) for _, batch in sink.batches] == [1]
    await asyncio.sleep(0.3)  # the next tick takes all three at once
    assert [len(batch) for _, batch in sink.batches] == [1, 3]
    for offset in range(5, 5 + 150):
        rec.record(sample(offset))  # a full batch does not wait for the tick
    await asyncio.sleep(0.05)
    assert [len(batch) for _, batch in sink.batches] == [1, 3, 100]
    running.cancel()
    await asyncio.gather(running, return_exceptions=True)
    await rec.flush()
    assert [len(batch) for _, batch in sink.batches] == [1, 3, 100, 50]
