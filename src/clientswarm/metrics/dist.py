"""Exact distributions of one metric: the ``Dist`` shape of summary.json.

Percentiles are exact, computed from every raw value with numpy's default (linear)
interpolation, the definition ``numpy.percentile`` and ``pandas.quantile`` use. The mean is the
exact sum of the values over their count, correctly rounded once
(:class:`~clientswarm.metrics.exactsum.ExactSum`): the same float whatever their order, where
``numpy.mean`` may differ in the last bit. A distribution of no values has ``count == 0`` and
``None`` (JSON ``null``) for every number, never NaN.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from typing_extensions import TypedDict  # pydantic reads it on Python < 3.12 (the Summary model)

from clientswarm.metrics.exactsum import ExactSum

#: The percentiles of a :class:`Dist`, as (key, percent).
PERCENTILES: tuple[tuple[str, float], ...] = (
    ("p50", 50.0),
    ("p90", 90.0),
    ("p95", 95.0),
    ("p99", 99.0),
)

#: Every key of a :class:`Dist`, in the order summary.json shows them.
DIST_KEYS: tuple[str, ...] = ("count", "mean", "min", "p50", "p90", "p95", "p99", "max")


class Dist(TypedDict):
    """Summary of one metric's values; numbers are ``None`` when ``count`` is 0."""

    count: int
    mean: float | None
    min: float | None
    p50: float | None
    p90: float | None
    p95: float | None
    p99: float | None
    max: float | None


def empty_distribution() -> Dist:
    """The distribution of no values."""
    return Dist(count=0, mean=None, min=None, p50=None, p90=None, p95=None, p99=None, max=None)


def distribution(values: npt.ArrayLike) -> Dist:
    """The exact distribution of ``values``; NaN entries (missing values) are left out."""
    arr = np.asarray(values, dtype=np.float64).ravel()
    missing = np.isnan(arr)
    if missing.any():
        arr = arr[~missing]
    if arr.size == 0:
        return empty_distribution()
    pcts = np.percentile(arr, [q for _, q in PERCENTILES])
    summed = ExactSum()
    summed.add(arr)
    return Dist(
        count=int(arr.size),
        mean=summed.mean(),
        min=float(arr.min()),
        p50=float(pcts[0]),
        p90=float(pcts[1]),
        p95=float(pcts[2]),
        p99=float(pcts[3]),
        max=float(arr.max()),
    )


__all__ = ["DIST_KEYS", "PERCENTILES", "Dist", "distribution", "empty_distribution"]
