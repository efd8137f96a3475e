"""The mock engine's admission queue and token deadlines, without a network."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from clientswarm.errors import ConfigError
from clientswarm.mock.engine import AdmissionQueue, Engine, chunk_bounds
from clientswarm.mock.settings import MockSettings


def test_constant_deadlines_are_absolute() -> None:
    engine = Engine(MockSettings(ttft_ms=50.0, itl_ms=10.0), np.random.default_rng(0))
    deadlines = engine.token_deadlines(100.0, 4)
    assert deadlines == pytest.approx([100.05, 100.06, 100.07, 100.08])
    assert engine.token_deadlines(100.0, 0) == []


def test_random_deadlines_are_cumulative_draws() -> None:
    settings = MockSettings(ttft_ms=50.0, ttft_std_ms=5.0, itl_ms=10.0, itl_std_ms=2.0, seed=1)
    engine = Engine(settings, np.random.default_rng(1))
    deadlines = engine.token_deadlines(0.0, 10_000)
    gaps = np.diff(deadlines)
    assert np.all(gaps >= 0)
    assert gaps.mean() == pytest.approx(0.010, rel=0.01)
    assert gaps.std() == pytest.approx(0.002, rel=0.05)


def test_chunk_bounds() -> None:
    assert chunk_bounds(10, 4) == [(0, 4), (4, 8), (8, 10)]
    assert chunk_bounds(3, 1) == [(0, 1), (1, 2), (2, 3)]
    assert chunk_bounds(2, 8) == [(0, 2)]


async def test_admission_is_fifo_and_bounded() -> None:
    queue = AdmissionQueue(2)
    order: list[int] = []

    async def sequence(index: int) -> None:
        async with queue.slot():
            order.append(index)
            assert queue.running <= 2
            await asyncio.sleep(0.001)

    tasks = [asyncio.create_task(sequence(i)) for i in range(6)]
    await asyncio.sleep(0)
    assert (queue.running, queue.waiting) == (2, 4)
    await asyncio.gather(*tasks)
    assert order == list(range(6))
    assert (queue.running, queue.waiting) == (0, 0)


async def test_cancelled_waiter_leaves_the_queue() -> None:
    queue = AdmissionQueue(1)
    await queue.acquire()
    waiter = asyncio.create_task(queue.acquire())
    await asyncio.sleep(0)
    assert queue.waiting == 1
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert (queue.running, queue.waiting) == (1, 0)
    queue.release()
    assert queue.running == 0


async def test_slot_handed_to_a_cancelled_waiter_is_passed_on() -> None:
    queue = AdmissionQueue(1)
    await queue.acquire()
    first = asyncio.create_task(queue.acquire())
    second = asyncio.create_task(queue.acquire())
    await asyncio.sleep(0)
    queue.release()  # the slot goes to ``first`` ...
    first.cancel()  # ... which is cancelled before it runs
    with pytest.raises(asyncio.CancelledError):
        await first
    await asyncio.wait_for(second, timeout=1)
    assert (queue.running, queue.waiting) == (1, 0)


def test_settings_validation_names_every_problem() -> None:
    with pytest.raises(ConfigError) as caught:
        MockSettings(error_rate_500=0.6, drop_rate=0.6, tokens_per_chunk=0, itl_ms=-1)
    text = "\n".join(caught.value.problems)
    assert "tokens_per_chunk" in text and "itl_ms" in text and "add up to 1.2" in text
    with pytest.raises(ConfigError, match="distribution"):
        MockSettings(distribution="uniform")  # type: ignore[arg-type]
    assert MockSettings().replace(seed=3).seed == 3
