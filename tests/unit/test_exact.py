"""Exact distributions in bounded memory: the same numbers as numpy, from a file."""

from __future__ import annotations

import math
import os
from collections.abc import Callable

import numpy as np
import pytest

from clientswarm.metrics.dist import distribution
from clientswarm.metrics.exact import ExactValues, exact_distribution, from_key, sort_keys

rng = np.random.default_rng(15)

DATA: dict[str, Callable[[], np.ndarray]] = {
    "one value": lambda: np.array([0.25]),
    "two values": lambda: np.array([0.5, 0.25]),
    "normal": lambda: rng.normal(size=10_001),
    "lognormal ITLs": lambda: rng.lognormal(-5, 1, size=50_000),
    "rounded, many ties": lambda: np.round(rng.exponential(size=20_000), 2),
    "all zero": lambda: np.zeros(7_000),
    "signs, zeros, extremes": lambda: rng.choice(
        [-1.5, -0.0, 0.0, 2.0, 1e-9, 5e-324, -5e-324, 1e300, -1e300], size=12_345
    ),
}
KEYS = ("count", "min", "max", "p50", "p90", "p95", "p99")


def spilled(values: np.ndarray, *, gather_values: int, parts: int = 5) -> ExactValues:
    exact = ExactValues(memory_values=0, gather_values=gather_values)
    for part in np.array_split(values, parts):
        exact.add(part)
    assert exact.spilled
    return exact


@pytest.mark.parametrize("name", list(DATA))
@pytest.mark.parametrize("gather_values", [0, 1, 100, 10**9])
def test_spilled_percentiles_are_numpys_to_the_bit(name: str, gather_values: int) -> None:
    # gather_values 0 and 1 force the radix descent down to the last 16 bits of the key.
    values = DATA[name]()
    exact = spilled(values, gather_values=gather_values)
    got, expected = exact.distribution(), distribution(values)
    for key in (*KEYS, "mean"):  # the mean is an exact sum rounded once: the same float too
        assert got[key] == expected[key], key  # type: ignore[literal-required]
    exact.close()


def test_in_memory_values_give_exactly_the_distribution_of_them() -> None:
    values = rng.lognormal(size=1000)
    exact = ExactValues()
    exact.add(values[:400])
    exact.add(values[400:])
    assert not exact.spilled
    assert exact.distribution() == distribution(values)


def test_nan_is_no_value_and_nothing_is_an_empty_distribution() -> None:
    exact = ExactValues(memory_values=2)
    assert exact.distribution() == distribution([])
    exact.add(np.array([math.nan, math.nan]))
    assert exact.count == 0 and not exact.spilled
    exact.add(np.array([3.0, math.nan, 1.0, 2.0]))
    assert exact.spilled and exact.count == 3
    assert exact.distribution() == distribution([1.0, 2.0, 3.0])


def test_the_added_values_are_copied_or_written_at_once() -> None:
    batch = np.array([1.0, 2.0, 3.0])
    for memory_values in (10, 0):
        exact = ExactValues(memory_values=memory_values)
        exact.add(batch)
        batch_copy = batch.copy()
        batch[:] = 99.0  # the caller reuses its buffer
        assert exact.distribution() == distribution(batch_copy)
        batch[:] = batch_copy


def test_the_file_is_anonymous_and_goes_with_close(tmp_path: os.PathLike[str]) -> None:
    exact = ExactValues(memory_values=1, spool_dir=str(tmp_path))
    exact.add(np.arange(100, dtype=np.float64))
    assert exact.spilled
    assert os.listdir(tmp_path) == []  # nothing to clean up, whatever happens to the process
    exact.close()
    assert not exact.spilled and exact.count == 0


def test_keys_sort_like_the_values() -> None:
    values = np.array([-np.inf, -1e300, -1.0, -5e-324, -0.0, 0.0, 5e-324, 1e-9, 1.0, np.inf])
    keys = sort_keys(values)
    assert np.all(keys[1:] >= keys[:-1])
    assert keys[4] == keys[5]  # -0.0 is 0.0
    positive = values[5:]
    assert np.array_equal(sort_keys(positive, nonnegative=True), keys[5:])
    assert [from_key(int(k)) for k in keys] == [float(v) for v in values]


def test_the_distribution_of_several_parts_is_the_one_of_all_their_values() -> None:
    spilled_part = spilled(rng.lognormal(size=4_000), gather_values=10)
    in_memory = ExactValues()
    in_memory.add(rng.normal(size=3_000))
    empty = ExactValues(memory_values=0)
    assert spilled_part.spilled and not in_memory.spilled
    every = np.concatenate(
        [np.concatenate(list(spilled_part._chunks())), np.concatenate(list(in_memory._chunks()))]
    )
    got = exact_distribution([spilled_part, in_memory, empty])
    expected = distribution(every)
    for key in KEYS:
        assert got[key] == expected[key], key  # type: ignore[literal-required]
    assert exact_distribution([in_memory, empty]) == in_memory.distribution()
    assert exact_distribution([empty]) == distribution([])
