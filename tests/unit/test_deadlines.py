"""Request timeouts from one heap and one timer (clientswarm.interactions.deadlines)."""

from __future__ import annotations

import asyncio
import time

import pytest

from clientswarm.interactions.deadlines import Deadlines


async def test_a_block_that_ends_in_time_is_left_alone() -> None:
    deadlines = Deadlines(resolution_s=0.01)
    async with deadlines.within(0.05):
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.1)  # past the deadline: the timer fires and must cancel nothing
    assert deadlines.live == 0 and len(deadlines) == 0


async def test_an_overrunning_block_raises_timeout_error_on_time() -> None:
    deadlines = Deadlines(resolution_s=0.01)
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        async with deadlines.within(0.05):
            await asyncio.sleep(5)
    took = time.monotonic() - started
    assert 0.05 <= took < 0.5
    assert deadlines.live == 0


async def test_a_shorter_deadline_after_a_longer_one_fires_first() -> None:
    deadlines = Deadlines(resolution_s=0.01)

    async def overrun(timeout_s: float) -> float:
        started = time.monotonic()
        try:
            async with deadlines.within(timeout_s):
                await asyncio.sleep(10)
        except TimeoutError:
            return time.monotonic() - started
        raise AssertionError("no timeout")

    long = asyncio.create_task(overrun(0.6))
    await asyncio.sleep(0)
    assert await overrun(0.05) < 0.4  # not held back by the 0.6 s timer
    assert await long >= 0.6


async def test_a_cancellation_from_outside_stays_a_cancellation() -> None:
    deadlines = Deadlines()
    entered = asyncio.Event()

    async def request() -> None:
        async with deadlines.within(5.0):
            entered.set()
            await asyncio.sleep(10)

    task = asyncio.create_task(request())
    await entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert deadlines.live == 0


async def test_another_error_passes_through_untouched() -> None:
    deadlines = Deadlines()
    with pytest.raises(ValueError):
        async with deadlines.within(5.0):
            raise ValueError("not a timeout")


async def test_the_heap_stays_bounded_by_the_requests_in_flight() -> None:
    deadlines = Deadlines()
    for _ in range(10_000):
        async with deadlines.within(60.0):
            pass
    assert len(deadlines) <= 2 * 0 + 65
    held = [deadlines.within(60.0) for _ in range(100)]
    for d in held:
        await d.__aenter__()
    for _ in range(1_000):
        async with deadlines.within(60.0):
            pass
    assert len(deadlines) <= 2 * 100 + 65
    for d in held:
        await d.__aexit__(None, None, None)


async def test_many_concurrent_requests_each_time_out_once() -> None:
    deadlines = Deadlines(resolution_s=0.01)

    async def request(i: int) -> str:
        try:
            async with deadlines.within(0.05 if i % 2 else 5.0):
                await asyncio.sleep(0.2 if i % 2 else 0.01)
        except TimeoutError:
            return "timeout"
        return "ok"

    outcomes = await asyncio.gather(*(request(i) for i in range(200)))
    assert outcomes.count("timeout") == 100
    assert [o == "timeout" for o in outcomes] == [bool(i % 2) for i in range(200)]
