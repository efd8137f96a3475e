"""``calibrate --itl-ms``: the step search, the offered tokens, and reading a step's summary."""

from __future__ import annotations

import math

import pytest

from clientswarm.run.calibrate_streams import StreamsStep, offered_tok_s, search, step_of
from clientswarm.service.results import LOOP_LAG_BOUND_S


def fake_worker(holds_up_to: int) -> tuple[list[int], object]:
    """A worker that holds up to ``holds_up_to`` streams; the steps it was asked."""
    asked: list[int] = []

    def measure(streams: int) -> StreamsStep:
        asked.append(streams)
        held = streams <= holds_up_to
        lag = 0.001 if held else 0.05
        return StreamsStep(streams, lag, streams * 10.0, streams * 10.0, 0, held)

    return asked, measure


@pytest.mark.parametrize(
    ("holds", "asked", "best"),
    [
        (1000, [64, 128, 256, 512, 1024, 768], 768),  # doubles, then once halfway
        (90, [64, 128, 96], 64),  # halfway fails: the last that held
        (10, [64], None),  # not even the first
        (5000, [64, 128, 256, 512, 1024, 2048, 4096], 4096),  # the largest step holds
    ],
)
def test_doubling_then_once_halfway(holds: int, asked: list[int], best: int | None) -> None:
    steps_asked, measure = fake_worker(holds)
    steps, found = search(measure, start=64, most=4096)  # type: ignore[arg-type]
    assert steps_asked == asked
    assert [s.streams for s in steps] == asked
    assert (found.streams if found else None) == best


def test_a_step_the_target_limited_ends_the_search_below_it() -> None:
    asked: list[int] = []

    def measure(streams: int) -> StreamsStep:  # the target serves 3,000 tokens/s at most
        asked.append(streams)
        return StreamsStep(streams, 0.001, min(streams * 10.0, 3000.0), streams * 10.0, 0, True)

    steps, found = search(measure, start=64, most=4096)
    assert asked == [64, 128, 256, 512]  # 512 streams asked 5,120 tokens/s, got 3,000
    assert steps[-1].target_limited and not steps[-2].target_limited
    assert found is not None and found.streams == 256


def test_the_largest_step_is_capped() -> None:
    asked, measure = fake_worker(10_000)
    search(measure, start=64, most=300)  # type: ignore[arg-type]
    assert asked == [64, 128, 256, 300]


def test_offered_tokens_are_the_streams_over_an_answers_time() -> None:
    # 64 tokens: the first after 50 ms, then 63 gaps of 20 ms = 1.31 s an answer
    assert offered_tok_s(100, itl_ms=20, ttft_ms=50, tokens=64) == pytest.approx(100 * 64 / 1.31)
    assert offered_tok_s(1, itl_ms=0, ttft_ms=0, tokens=1) == math.inf


def summary(lag_s: float, failed: int = 0, status: str = "completed") -> dict[str, object]:
    return {
        "cluster": {"status": status},
        "total": {"failed": failed, "succeeded": 50, "output_token_rate": 900.0},
        "workers": [{"loop_lag_p99_s": lag_s}],
    }


def test_a_step_holds_with_no_failure_and_the_lag_within_its_bound() -> None:
    shape = {"itl_ms": 20.0, "ttft_ms": 50.0, "tokens": 64}
    held = step_of(summary(LOOP_LAG_BOUND_S), 10, **shape)
    assert held.held and held.output_tok_s == 900.0 and held.streams == 10
    assert not step_of(summary(LOOP_LAG_BOUND_S * 1.01), 10, **shape).held
    assert not step_of(summary(0.001, failed=1), 10, **shape).held
    assert not step_of(summary(0.001, status="failed"), 10, **shape).held
