"""The choice of requests a group cancels, and which cut samples become ``client_cancel``."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from clientswarm.config.load import CancelConfig
from clientswarm.metrics.sample import Sample
from clientswarm.worker.cancel import Canceller, relabel


def test_the_choice_is_seeded_per_client_with_the_fraction() -> None:
    config = CancelConfig(fraction=0.25, after_s=1)
    one, again = Canceller(config, 7, 3), Canceller(config, 7, 3)
    seq = [one.chosen() for _ in range(4000)]
    assert seq == [again.chosen() for _ in range(4000)]
    assert sum(seq) / len(seq) == pytest.approx(0.25, abs=0.025)
    other = Canceller(config, 7, 4)
    assert [other.chosen() for _ in range(4000)] != seq


class Slow:
    """An interaction that records a ``cancelled`` sample when cancelled, as built-ins do."""

    kind = "slow"

    def __init__(self) -> None:
        self.samples: list[Sample] = []

    async def perform(self, ctx: Any, scheduled_ns: int) -> None:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            sample = Sample(
                group="g",
                client=0,
                worker=0,
                name="slow",
                scheduled_ns=0,
                sent_ns=0,
                end_ns=150_000_000,
                status="error",
                error_kind="cancelled",
                error_message="the run stopped while the request was in flight",
            )
            relabel(sample)
            self.samples.append(sample)
            raise


class Clock:
    def now_ns(self) -> int:
        return 0


class Ctx:
    clock = Clock()


async def test_a_cut_is_client_cancel_and_a_stop_stays_cancelled() -> None:
    cutter = Canceller(CancelConfig(fraction=1, after_s=0.05), 1, 0)
    interaction = Slow()
    await cutter.perform_cut(interaction, Ctx(), 0)  # type: ignore[arg-type]
    assert interaction.samples[-1].error_kind == "client_cancel"
    assert interaction.samples[-1].error_message == (
        "cancelled by the client 0.150 s after it was sent (cancel)"
    )
    slow = Canceller(CancelConfig(fraction=1, after_s=5), 1, 0)
    task = asyncio.create_task(slow.perform_cut(interaction, Ctx(), 0))  # type: ignore[arg-type]
    await asyncio.sleep(0.02)
    task.cancel()  # the run stops before the cut is due
    with pytest.raises(asyncio.CancelledError):
        await task
    assert interaction.samples[-1].error_kind == "cancelled"
