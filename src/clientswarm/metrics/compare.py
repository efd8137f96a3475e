"""The statistics of a comparison of two runs: bootstrap intervals of percentile differences.

For each latency metric, the difference of a percentile between a baseline run (A) and a later
one (B) is estimated from their raw values; a percentile bootstrap (resampling each run's values
with replacement, ``resamples`` times, seeded) gives a confidence interval of ``B - A`` and of
``B / A - 1``. The verdict is *no significant difference* when the interval of the difference
contains 0, or when the relative difference is smaller than a minimum effect (5 % by default):
a change of a few percent on a shared machine is noise, not a result.

A run with more than ``max_values`` values of a metric is bootstrapped on a random subset of
that many (without replacement, seeded): the interval is then wider than one from every value
(conservative), and :attr:`PercentileDiff.subsampled` says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]

RESAMPLES = 1000
"""Bootstrap resamples per comparison."""
CONFIDENCE = 0.95
"""Confidence of the intervals."""
MIN_EFFECT = 0.05
"""The smallest relative difference called a change."""
MAX_VALUES = 10_000
"""The most values of one metric of one run a bootstrap resamples (a random subset beyond)."""
SEED = 0
"""Seed of the resampling: the same inputs give the same intervals."""

_CHUNK_VALUES = 4_000_000
"""Resampled values held at once (resamples are drawn in chunks of this many values)."""

Direction = Literal["higher", "lower", "same"]


@dataclass(frozen=True, slots=True)
class PercentileDiff:
    """The difference of one percentile between A and B, with its bootstrap interval.

    ``low``/``high`` bound ``B - A`` (the statistic's unit); ``rel_low``/``rel_high`` bound
    ``B / A - 1`` (None where A's resampled percentile is 0). ``direction`` is ``same``
    unless the difference is significant (interval without 0, relative difference at least
    the minimum effect).
    """

    percent: float
    a: float
    b: float
    diff: float
    relative: float | None
    low: float
    high: float
    rel_low: float | None
    rel_high: float | None
    count_a: int
    count_b: int
    used_a: int
    used_b: int
    direction: Direction
    below_min_effect: bool

    @property
    def subsampled(self) -> bool:
        """Whether a random subset of either run's values was bootstrapped."""
        return self.used_a < self.count_a or self.used_b < self.count_b


def _finite(values: npt.ArrayLike) -> F64:
    arr = np.asarray(values, dtype=np.float64).ravel()
    return arr[np.isfinite(arr)]


def _subset(values: F64, max_values: int, rng: np.random.Generator) -> F64:
    if values.size <= max_values:
        return values
    return rng.choice(values, size=max_values, replace=False)


def resampled_percentiles(
    values: F64, percents: list[float], resamples: int, rng: np.random.Generator
) -> F64:
    """The ``percents`` of ``resamples`` bootstrap resamples of ``values``: shape
    ``(len(percents), resamples)``; vectorised, in chunks of bounded memory."""
    n = values.size
    per_chunk = max(1, _CHUNK_VALUES // max(n, 1))
    out = np.empty((len(percents), resamples))
    done = 0
    while done < resamples:
        count = min(per_chunk, resamples - done)
        index = rng.integers(0, n, size=(count, n))
        out[:, done : done + count] = np.percentile(values[index], percents, axis=1)
        done += count
    return out


def compare_percentiles(
    a: npt.ArrayLike,
    b: npt.ArrayLike,
    percents: list[float],
    *,
    resamples: int = RESAMPLES,
    confidence: float = CONFIDENCE,
    min_effect: float = MIN_EFFECT,
    max_values: int = MAX_VALUES,
    seed: int = SEED,
) -> list[PercentileDiff] | None:
    """The difference of each percentile of ``percents`` between the values ``a`` and ``b``
    (NaN and infinite values left out), with bootstrap intervals; None when either has no
    values."""
    va, vb = _finite(a), _finite(b)
    if va.size == 0 or vb.size == 0:
        return None
    rng = np.random.default_rng(seed)
    sa, sb = _subset(va, max_values, rng), _subset(vb, max_values, rng)
    ra = resampled_percentiles(sa, percents, resamples, rng)
    rb = resampled_percentiles(sb, percents, resamples, rng)
    pa, pb = np.percentile(va, percents), np.percentile(vb, percents)
    tail = (1.0 - confidence) / 2 * 100
    bounds = [tail, 100 - tail]
    diffs = np.percentile(rb - ra, bounds, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = np.where(ra > 0, rb / ra - 1.0, np.nan)
    out: list[PercentileDiff] = []
    for i, percent in enumerate(percents):
        point_a, point_b = float(pa[i]), float(pb[i])
        relative = point_b / point_a - 1.0 if point_a > 0 else None
        finite = ratios[i][np.isfinite(ratios[i])]
        rel = np.percentile(finite, bounds) if finite.size else None
        low, high = float(diffs[0, i]), float(diffs[1, i])
        small = relative is not None and abs(relative) < min_effect
        direction: Direction = "same"
        if not (low <= 0.0 <= high) and not small:
            direction = "higher" if point_b > point_a else "lower"
        out.append(
            PercentileDiff(
                percent=percent,
                a=point_a,
                b=point_b,
                diff=point_b - point_a,
                relative=relative,
                low=low,
                high=high,
                rel_low=None if rel is None else float(rel[0]),
                rel_high=None if rel is None else float(rel[1]),
                count_a=int(va.size),
                count_b=int(vb.size),
                used_a=int(sa.size),
                used_b=int(sb.size),
                direction=direction,
                below_min_effect=small,
            )
        )
    return out


__all__ = [
    "CONFIDENCE",
    "MAX_VALUES",
    "MIN_EFFECT",
    "RESAMPLES",
    "SEED",
    "Direction",
    "PercentileDiff",
    "compare_percentiles",
    "resampled_percentiles",
]
