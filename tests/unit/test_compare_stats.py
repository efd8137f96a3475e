"""The bootstrap of percentile differences (:mod:`clientswarm.metrics.compare`) on synthetic
values whose truth is known."""

from __future__ import annotations

import numpy as np
import pytest

from clientswarm.errors import ConfigError
from clientswarm.metrics.compare import compare_percentiles
from clientswarm.reports.compare import change_bound, parse_fail_if, parse_min_effect

PERCENTS = [50.0, 90.0, 99.0]


def lognormal(seed: int, n: int, scale: float = 1.0) -> np.ndarray:
    return np.random.default_rng(seed).lognormal(np.log(0.05), 0.3, n) * scale


def test_equal_distributions_show_no_difference() -> None:
    diffs = compare_percentiles(lognormal(1, 3000), lognormal(2, 3000), PERCENTS)
    assert diffs is not None
    for d in diffs:
        assert d.direction == "same"
        assert d.rel_low is not None and d.rel_high is not None
        assert d.rel_low < 0.05 and d.rel_high > -0.05


@pytest.mark.parametrize(("scale", "direction"), [(1.2, "higher"), (0.8, "lower")])
def test_a_shift_is_detected_with_its_size(scale: float, direction: str) -> None:
    diffs = compare_percentiles(lognormal(1, 3000), lognormal(2, 3000, scale), PERCENTS)
    assert diffs is not None
    for d in diffs:
        assert d.direction == direction
        assert d.rel_low is not None and d.rel_high is not None
        assert d.rel_low < scale - 1 < d.rel_high  # the interval covers the true shift
        assert d.low < d.diff < d.high


def test_a_shift_under_the_minimum_effect_is_not_a_difference() -> None:
    a = lognormal(1, 20_000)
    b = lognormal(2, 20_000, 1.03)
    strict = compare_percentiles(a, b, [50.0], min_effect=0.0, max_values=20_000)
    default = compare_percentiles(a, b, [50.0], max_values=20_000)
    assert strict is not None and default is not None
    assert strict[0].direction == "higher"
    assert default[0].direction == "same" and default[0].below_min_effect


def test_seeded_subsampled_and_empty() -> None:
    a, b = lognormal(1, 5000), lognormal(2, 5000, 1.5)
    one = compare_percentiles(a, b, PERCENTS, max_values=1000, resamples=200)
    two = compare_percentiles(a, b, PERCENTS, max_values=1000, resamples=200)
    assert one == two
    assert one is not None and one[0].subsampled and one[0].used_a == 1000
    assert one[0].a == pytest.approx(float(np.percentile(a, 50)))  # the point from every value
    assert compare_percentiles([], b, PERCENTS) is None
    assert compare_percentiles([np.nan], b, PERCENTS) is None


def test_fail_if_and_min_effect_parsing() -> None:
    assert change_bound("+10%").value == pytest.approx(0.1)
    assert change_bound("-5%").relative
    assert not change_bound("0.05").relative
    assert parse_fail_if("ttft_s.p99 > +10%").path == ("ttft_s", "p99")
    with pytest.raises(ConfigError, match="right-hand side"):
        parse_fail_if("ttft_s.p99 > 10 ms")
    with pytest.raises(ConfigError, match="unknown statistic"):
        parse_fail_if("ttfb.p99 > +10%")
    assert parse_min_effect("5%") == pytest.approx(0.05)
    assert parse_min_effect("0.1") == pytest.approx(0.1)
    with pytest.raises(ConfigError):
        parse_min_effect("5")
