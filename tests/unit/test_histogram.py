"""The mergeable log-linear histogram: accuracy against numpy, merging, serialisation."""

from __future__ import annotations

import math

import numpy as np
import orjson
import pytest

from clientswarm.metrics.histogram import (
    MAX_EXP,
    MIN_EXP,
    RELATIVE_ERROR,
    Histogram,
    bucket_index,
    bucket_indices,
)

QS = (0.0, 0.001, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.999, 1.0)
LOWEST, HIGHEST = 2.0**MIN_EXP, 2.0**MAX_EXP


def _datasets() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(20240601)
    return {
        "lognormal_ttft": rng.lognormal(mean=math.log(0.2), sigma=1.0, size=50_000),
        "itl_ms": rng.gamma(shape=4.0, scale=0.005, size=50_000),
        "uniform_us_to_hour": np.exp(rng.uniform(math.log(1e-6), math.log(3600.0), 20_000)),
        "few": rng.exponential(0.1, size=7),
        "bimodal": np.concatenate([rng.normal(0.05, 0.001, 5000), rng.normal(30.0, 1.0, 500)]),
    }


@pytest.mark.parametrize("name", list(_datasets()))
def test_quantiles_are_within_the_relative_error_of_numpy(name: str) -> None:
    values = _datasets()[name]
    h = Histogram()
    h.record_many(values)
    assert RELATIVE_ERROR <= 0.01
    for q in QS:
        exact = float(np.quantile(values, q, method="nearest"))
        got = h.quantile(q)
        assert got is not None
        assert abs(got - exact) <= RELATIVE_ERROR * exact * (1 + 1e-9), (q, got, exact)
    assert h.count == values.size
    assert h.mean == pytest.approx(values.mean(), rel=1e-12)
    assert (h.min, h.max) == (values.min(), values.max())
    assert h.quantile(0.0) == values.min() and h.quantile(1.0) == values.max()


def test_bucket_edges_hold_their_values() -> None:
    rng = np.random.default_rng(7)
    values = np.exp(rng.uniform(math.log(LOWEST), math.log(HIGHEST), 100_000))
    edges = np.ldexp(1.0, np.arange(MIN_EXP, MAX_EXP + 1))  # octave boundaries, exactly
    values = np.concatenate([values, edges, np.nextafter(edges, 0)])
    vector = bucket_indices(values)
    assert [bucket_index(float(v)) for v in values] == vector.tolist()
    assert np.all(np.diff(vector[np.argsort(values, kind="stable")]) >= 0)  # monotone in value
    assert bucket_index(0.0) == bucket_index(-1.0) == bucket_index(LOWEST / 2) == 0
    assert bucket_index(HIGHEST) == bucket_index(1e9) == vector.max()


def test_the_vectorised_buckets_agree_below_and_above_the_tracked_range() -> None:
    """bucket_indices reads the float's bits: zero, negatives, subnormals and huge values
    must land where bucket_index puts them."""
    odd = [0.0, -0.0, -1.0, -1e-300, -1e300, 5e-324, 1e-310, LOWEST / 2, 1e300, 1e9]
    values = np.array([*odd, float(np.nextafter(LOWEST, 0)), LOWEST, HIGHEST])
    assert bucket_indices(values).tolist() == [bucket_index(v) for v in values.tolist()]


def test_record_and_record_many_agree_and_skip_non_finite() -> None:
    values = [0.0, -0.002, 1e-7, 0.0123, 0.5, 7.0, 5000.0, math.nan, math.inf, -math.inf]
    one, many = Histogram(), Histogram()
    for v in values:
        one.record(v)
    many.record_many(values)
    assert one == many
    assert one.count == 7 and one.min == -0.002 and one.max == 5000.0
    assert one.quantile(1.0) == 5000.0 and one.quantile(0.99) == 5000.0  # overflow: the max


def test_merge_equals_recording_everything() -> None:
    rng = np.random.default_rng(3)
    parts = [rng.lognormal(-2 + i, 1.0, size=1000 * (i + 1)) for i in range(4)]
    whole = Histogram()
    whole.record_many(np.concatenate(parts))
    pieces = []
    for p in parts:
        h = Histogram()
        h.record_many(p)
        pieces.append(h)
    merged = Histogram.merged(pieces)
    assert merged == whole
    assert merged.quantiles(QS) == whole.quantiles(QS)
    assert merged.merge(Histogram()) == whole  # merging an empty one changes nothing
    assert Histogram().merge(whole) == whole


def test_merged_percentiles_are_not_averages() -> None:
    fast, slow = Histogram(), Histogram()
    fast.record_many(np.full(900, 0.01))
    slow.record_many(np.full(100, 1.0))
    fleet = Histogram.merged([fast, slow])
    assert fleet.quantile(0.5) == 0.01  # the average of the p50s would be 0.505
    assert fleet.quantile(0.95) == 1.0


def test_round_trip_through_json() -> None:
    rng = np.random.default_rng(11)
    h = Histogram()
    h.record_many(rng.lognormal(-1, 2, size=10_000))
    data = orjson.loads(orjson.dumps(h.to_dict()))
    assert len(data["buckets"]) < 2000  # only the non-empty buckets travel
    back = Histogram.from_dict(data)
    assert back == h and back.quantiles(QS) == h.quantiles(QS)
    empty = Histogram.from_dict(orjson.loads(orjson.dumps(Histogram().to_dict())))
    assert empty == Histogram() and empty.quantile(0.5) is None and empty.mean is None


def test_from_dict_rejects_other_layouts_and_inconsistent_counts() -> None:
    h = Histogram()
    h.record_many([0.1, 0.2])
    with pytest.raises(ValueError, match="layout"):
        Histogram.from_dict({**h.to_dict(), "scheme": "loglinear/32/-20/12"})
    with pytest.raises(ValueError, match="hold 2 values but count is 3"):
        Histogram.from_dict({**h.to_dict(), "count": 3})


def test_cumulative_buckets_match_exact_counts_up_to_resolution() -> None:
    rng = np.random.default_rng(5)
    values = rng.lognormal(math.log(0.3), 1.5, size=20_000)
    bounds = [0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 60.0, 600.0]
    h = Histogram()
    h.record_many(values)
    counts = h.cumulative_buckets(bounds)
    assert counts == sorted(counts) and counts[-1] <= h.count
    for bound, n in zip(bounds, counts, strict=True):
        exact = int((values <= bound).sum())
        near = int((np.abs(values - bound) <= 2 * RELATIVE_ERROR * bound).sum())
        assert abs(n - exact) <= near, (bound, n, exact)
    assert h.cumulative_buckets([h.max]) == [h.count]
    assert h.cumulative_buckets([h.min / 2]) == [0]
    assert Histogram().cumulative_buckets(bounds) == [0] * len(bounds)


def test_quantile_rejects_out_of_range() -> None:
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        Histogram().quantile(1.5)
