"""The exact sum: correctly rounded against exact rational arithmetic, and the same float (to
the bit) whatever the order and the batching of the values; and so the summaries' means."""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from fractions import Fraction

import numpy as np
import pytest

from clientswarm.metrics.columns import SampleColumns
from clientswarm.metrics.dist import distribution
from clientswarm.metrics.exactsum import CHUNK_VALUES, ExactSum, exact_mean
from clientswarm.metrics.sample import Sample
from clientswarm.metrics.stats import ClusterStatistics
from clientswarm.metrics.summary import ClusterInfo

rng = np.random.default_rng(23)


def bits(x: float) -> int:
    """The float's bits (tells -0.0 from 0.0, and NaN equal to itself)."""
    return int(np.array([x]).view(np.uint64)[0])


def wide(n: int) -> np.ndarray:
    """``n`` values of both signs over the whole float64 range: normals of every magnitude,
    subnormals, zeros of both signs and values with every mantissa bit set."""
    values = rng.standard_normal(n) * np.exp2(rng.integers(-1074, 1000, n).astype(np.float64))
    pick = rng.random(n)
    values[pick < 0.05] = 0.0
    values[(pick >= 0.05) & (pick < 0.08)] = -0.0
    tiny = (pick >= 0.08) & (pick < 0.12)
    values[tiny] = 5e-324 * rng.integers(-(1 << 52), 1 << 52, int(tiny.sum()))
    values[(pick >= 0.12) & (pick < 0.14)] = np.nextafter(2.0, 0.0)  # 53 bits set
    return values


def exact(values: np.ndarray) -> tuple[Fraction, int]:
    """The exact sum and the count of the values that are not NaN."""
    kept = [v for v in values.tolist() if not math.isnan(v)]
    return sum(map(Fraction, kept), Fraction(0)), len(kept)


def summed(*batches: np.ndarray) -> ExactSum:
    out = ExactSum()
    for batch in batches:
        out.add(batch)
    return out


def rounded(value: Fraction, values: np.ndarray | None = None) -> float:
    """``value`` correctly rounded to float64 (±inf beyond its range); a zero sum of
    ``values`` has IEEE arithmetic's sign: -0.0 when every one of them is -0.0."""
    if value == 0 and values is not None and values.size and np.signbit(values).all():
        return -0.0
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf


@pytest.mark.parametrize("n", [1, 2, 17, 1000, 5000])
@pytest.mark.parametrize(
    "make",
    [
        wide,
        lambda n: rng.lognormal(-5, 2, n),  # latencies
        lambda n: rng.uniform(-1, 1, n) * 1e-310,  # subnormals and their neighbours
        lambda n: rng.choice([1e308, -1e308, 1.7976931348623157e308, 3.0, -2.5e-300], n),
    ],
    ids=["wide", "latencies", "subnormal", "huge"],
)
def test_the_sum_and_the_mean_are_the_exact_ones_correctly_rounded(
    make: Callable[[int], np.ndarray], n: int
) -> None:
    values = make(n)
    total, count = exact(values)
    got = summed(*np.array_split(values, 3))
    assert got.count == count
    assert bits(got.total()) == bits(rounded(total, values))
    assert bits(got.mean()) == bits(rounded(total / count, values))


@pytest.mark.parametrize("seed", range(5))
def test_shuffled_and_rebatched_values_give_the_same_floats_to_the_bit(seed: int) -> None:
    values = wide(20_000)
    reference = summed(values)
    order = random.Random(seed)
    shuffled = values.copy()
    np.random.default_rng(seed).shuffle(shuffled)
    cuts = sorted(order.sample(range(1, shuffled.size), 40))
    again = summed(*np.split(shuffled, cuts))
    assert (again.count, bits(again.total()), bits(again.mean())) == (
        reference.count,
        bits(reference.total()),
        bits(reference.mean()),
    )
    total, count = exact(values)
    assert again.mean() == float(total / count)
    # numpy's float sums depend on the order, the exact mean does not
    merged = ExactSum()
    for part in np.array_split(shuffled, 7):
        merged.merge(summed(part))
    assert bits(merged.mean()) == bits(reference.mean())


def test_many_equal_values_have_their_own_value_as_mean() -> None:
    n = 3 * CHUNK_VALUES + 5  # several chunks of one batch
    for value in (0.1, 1e-7, np.nextafter(2.0, 0.0), 5e-324, -3.3e300):
        values = np.full(n, value)
        got = summed(values)
        assert got.mean() == value
        assert got.total() == rounded(Fraction(value) * n)
    assert summed(np.full(n, 0.1)).mean() != float(np.full(n, 0.1).mean())  # numpy's drifts


def test_a_strided_or_two_dimensional_batch_is_summed_as_its_values() -> None:
    values = wide(3000)
    total, count = exact(values[::3])
    assert summed(values[::3]).mean() == float(total / count)
    assert bits(summed(values.reshape(30, 100)).mean()) == bits(summed(values).mean())


def test_nan_is_left_out_and_infinities_give_what_ieee_arithmetic_gives() -> None:
    nan, inf = math.nan, math.inf
    with_nan = summed(np.array([nan, 1.0, nan]), np.array([2.0, -nan]))
    assert (with_nan.count, with_nan.total(), with_nan.mean()) == (2, 3.0, 1.5)
    assert summed(np.array([1.0, inf, 2.0])).mean() == inf
    assert summed(np.array([-inf, 1e308]), np.array([nan])).total() == -inf
    both = summed(np.array([inf]), np.array([-inf, 1.0]))
    assert math.isnan(both.total()) and math.isnan(both.mean()) and both.count == 3
    only_nan = summed(np.array([nan, nan]))
    assert only_nan.count == 0 and only_nan.total() == 0.0
    assert math.isnan(exact_mean([nan]))


def test_zeros_keep_their_ieee_sign_and_no_values_sum_to_zero() -> None:
    assert bits(summed(np.array([-0.0, -0.0])).mean()) == bits(-0.0)
    assert bits(summed(np.array([-0.0]), np.array([0.0])).total()) == bits(0.0)
    assert bits(summed(np.array([-1.0, 1.0])).mean()) == bits(0.0)  # x + -x is +0
    nothing = ExactSum()
    assert (nothing.count, bits(nothing.total())) == (0, bits(0.0))
    with pytest.raises(ValueError, match="count must be above 0"):
        nothing.mean()


def test_a_sum_beyond_the_float_range_is_exact_until_rounded() -> None:
    big = 1.7976931348623157e308
    assert summed(np.array([big, big])).total() == math.inf
    assert summed(np.array([big, big])).mean() == big
    assert summed(np.array([big, big, -big])).total() == big  # numpy: inf
    assert summed(np.array([-big, -big])).total() == -math.inf


def test_the_distributions_mean_is_the_correctly_rounded_one() -> None:
    values = rng.lognormal(-4, 1, 10_001)
    total, count = exact(values)
    assert distribution(values)["mean"] == float(total / count)
    assert distribution(values[::-1])["mean"] == distribution(values)["mean"]


def sample(rnd: random.Random, i: int) -> Sample:
    t0 = 1_700_000_000_000_000_000 + i * 10_000_000
    ttft = rnd.lognormvariate(-3, 1)
    itl = [rnd.lognormvariate(-5, 1) for _ in range(rnd.randrange(0, 12))]
    e2e = ttft + sum(itl) + rnd.random() * 1e-3
    return Sample(
        group=rnd.choice(["chat", "code"]),
        client=i % 7,
        worker=i % 3,
        name="chat",
        scheduled_ns=t0,
        sent_ns=t0 + rnd.randrange(0, 2_000_000),
        end_ns=t0 + 2_000_000 + round(e2e * 1e9),
        status="ok",
        first_token_ns=t0 + 2_000_000 + round(ttft * 1e9),
        output_tokens=len(itl) + 1,
        input_tokens=rnd.randrange(1, 100),
        itl_s=itl,
        error_kind=None,
        warmup=False,
    )


def summary(samples: list[Sample], cuts: list[int], memory_values: int) -> str:
    with ClusterStatistics(group_order=["chat", "code"], memory_values=memory_values) as stats:
        for lo, hi in zip([0, *cuts], [*cuts, len(samples)], strict=True):
            if hi > lo:
                stats.add(SampleColumns.from_samples(samples[lo:hi]))
        return stats.summary(ClusterInfo(id="c1")).model_dump_json()


def test_cluster_statistics_of_reordered_rebatched_samples_are_the_same_bytes() -> None:
    rnd = random.Random(8)
    samples = [sample(rnd, i) for i in range(3000)]
    reference = summary(samples, list(range(0, 3000, 100)), memory_values=1 << 18)
    shuffled = samples.copy()
    rnd.shuffle(shuffled)
    cuts = sorted(rnd.sample(range(1, 3000), 25))
    assert summary(shuffled, cuts, memory_values=1 << 18) == reference
    assert summary(shuffled, cuts, memory_values=500) == reference  # partly in files
    assert summary(samples[::-1], [1500], memory_values=0) == reference  # all in files
