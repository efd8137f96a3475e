"""Statistics across repeated runs: Student's t quantiles, intervals, the aggregate of
summaries and Welch's comparison of two sets of repeats."""

from __future__ import annotations

import math

import pytest

from clientswarm.metrics.repeats import (
    aggregate,
    compare_means,
    incomplete_beta,
    spread,
    t_cdf,
    t_quantile,
)
from clientswarm.reports.repeats import means_summary

# Student's t quantiles from printed tables (two-sided 95 % and 99 %).
TABLE = {1: (12.706, 63.657), 2: (4.303, 9.925), 5: (2.571, 4.032), 10: (2.228, 3.169)}


@pytest.mark.parametrize("df", sorted(TABLE))
def test_t_quantiles_match_the_tables(df: int) -> None:
    t95, t99 = TABLE[df]
    assert t_quantile(0.975, df) == pytest.approx(t95, abs=1e-3)
    assert t_quantile(0.995, df) == pytest.approx(t99, abs=1e-3)
    assert t_quantile(0.025, df) == pytest.approx(-t95, abs=1e-3)
    assert t_cdf(0.0, df) == pytest.approx(0.5)


def test_incomplete_beta_edges_and_a_known_value() -> None:
    assert incomplete_beta(2, 3, 0) == 0 and incomplete_beta(2, 3, 1) == 1
    # I_x(1, 1) = x; I_x(2, 1) = x^2
    assert incomplete_beta(1, 1, 0.3) == pytest.approx(0.3)
    assert incomplete_beta(2, 1, 0.3) == pytest.approx(0.09)


def test_spread_interval() -> None:
    s = spread([10.0, 12.0, 14.0], 0.95)
    assert s.mean == 12.0 and s.std == 2.0
    half = 4.303 * 2.0 / math.sqrt(3)
    assert s.low == pytest.approx(12.0 - half, abs=1e-3)
    assert s.high == pytest.approx(12.0 + half, abs=1e-3)
    one = spread([5.0], 0.95)
    assert one.low is None and one.high is None and one.std == 0.0


def summary(rate: float, ttft: float) -> dict[str, object]:
    stats = {"request_rate": rate, "ttft_s": {"mean": ttft, "p50": ttft, "p90": ttft, "p99": ttft}}
    return {"total": stats, "groups": {"chat": stats, "other": stats}}


def test_aggregate_and_its_means_view() -> None:
    runs = [summary(10.0, 0.030), summary(12.0, 0.032), summary(11.0, 0.031)]
    runs[2]["groups"] = {"chat": runs[2]["groups"]["chat"]}  # type: ignore[index]
    agg = aggregate(runs, 0.99)
    assert set(agg["groups"]) == {"chat"}  # only groups present in every run
    assert agg["total"]["request_rate"]["values"] == [10.0, 12.0, 11.0]
    assert agg["total"]["ttft_s.p50"]["mean"] == pytest.approx(0.031)
    assert "itl_s.p50" not in agg["total"]  # missing from the runs: left out
    view = means_summary({"count": 3, **agg})
    assert view["groups"]["chat"]["ttft_s"]["p99"] == pytest.approx(0.031)


def test_welch_comparison_of_repeats() -> None:
    slower = compare_means(
        [0.030, 0.031, 0.0305], [0.045, 0.046, 0.044], 50.0, confidence=0.95, min_effect=0.05
    )
    assert slower is not None and slower.direction == "higher"
    assert slower.low > 0 and slower.relative == pytest.approx(0.045 / 0.0305 - 1)
    same = compare_means([0.030, 0.032], [0.031, 0.031], 50.0, confidence=0.95, min_effect=0.05)
    assert same is not None and same.direction == "same"
    assert compare_means([0.03], [0.04, 0.05], 50.0, confidence=0.95, min_effect=0.05) is None
