"""Repeated runs: each statistic's mean across runs and its confidence interval.

``clientswarm run --repeat N`` runs one cluster N times; every run's ``summary.json`` gives one
value of each statistic (a rate, a percentile, an error rate). Across the runs a statistic has
a mean, a standard deviation (``n - 1`` in the denominator) and a confidence interval for its
mean from Student's t distribution with ``n - 1`` degrees of freedom: ``mean ± t *
std / sqrt(n)``, at ``confidence`` (0.95 by default) — what AIPerf's multi-run confidence report
gives. With one run, or no variation, the interval is the value itself (``std`` 0; one run:
``None`` bounds).

The t quantile is computed here (no SciPy): the regularized incomplete beta function by its
continued fraction (Lentz), inverted by bisection.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from clientswarm.metrics.compare import Direction, PercentileDiff

STATISTICS: tuple[str, ...] = (
    "requests",
    "request_rate",
    "send_rate",
    "output_token_rate",
    "goodput_rate",
    "error_rate",
    *(
        f"{m}.{q}"
        for m in ("ttft_s", "itl_s", "tpot_s", "e2e_s")
        for q in ("mean", "p50", "p90", "p99")
    ),
    "schedule_lag_s.p99",
)
"""The statistics of a summary's ``total`` and ``groups.<g>`` aggregated across runs."""


def _beta_fraction(a: float, b: float, x: float) -> float:
    """The continued fraction of the regularized incomplete beta function (modified Lentz)."""
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 300):
        for numerator in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),
        ):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 1e-15:
            break
    return h


def incomplete_beta(a: float, b: float, x: float) -> float:
    """The regularized incomplete beta function ``I_x(a, b)``."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = (
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _beta_fraction(a, b, x) / a
    return 1.0 - math.exp(log_front) * _beta_fraction(b, a, 1.0 - x) / b


def t_cdf(t: float, df: float) -> float:
    """Student's t distribution's CDF at ``t`` with ``df`` degrees of freedom."""
    tail = 0.5 * incomplete_beta(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t > 0 else tail


def t_quantile(p: float, df: float) -> float:
    """The ``p`` quantile of Student's t with ``df`` degrees of freedom (``0 < p < 1``)."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"p must be in (0, 1), got {p}")
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    low, high = 0.0, 1.0
    while t_cdf(high, df) < p:
        high *= 2.0
    for _ in range(200):
        mid = (low + high) / 2.0
        if t_cdf(mid, df) < p:
            low = mid
        else:
            high = mid
        if high - low <= 1e-12 * max(1.0, high):
            break
    return (low + high) / 2.0


@dataclass(frozen=True)
class Spread:
    """One statistic across runs: its values, mean, standard deviation and the interval of
    the mean at ``confidence`` (``None`` bounds with a single run)."""

    n: int
    mean: float
    std: float
    low: float | None
    high: float | None
    min: float
    max: float
    values: tuple[float, ...]

    def as_dict(self) -> dict[str, Any]:
        """As JSON-ready data."""
        return {**asdict(self), "values": list(self.values)}


def spread(values: Sequence[float], confidence: float) -> Spread:
    """The mean of ``values`` with its ``confidence`` interval (Student's t)."""
    if not values:
        raise ValueError("spread of no values")
    n = len(values)
    mean = math.fsum(values) / n
    std = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
    low: float | None = None
    high: float | None = None
    if n > 1:
        half = t_quantile(0.5 + confidence / 2.0, n - 1) * std / math.sqrt(n)
        low, high = mean - half, mean + half
    return Spread(n, mean, std, low, high, min(values), max(values), tuple(values))


def value_of(stats: Mapping[str, Any], path: str) -> float | None:
    """The number at ``path`` (``ttft_s.p99``) of a Stats mapping, None when absent."""
    value: Any = stats
    for key in path.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _scope(stats_of_runs: Sequence[Mapping[str, Any]], confidence: float) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for path in STATISTICS:
        values = [value_of(stats, path) for stats in stats_of_runs]
        present = [v for v in values if v is not None]
        if len(present) == len(values) and present:
            out[path] = spread(present, confidence).as_dict()
    return out


def aggregate(summaries: Sequence[Mapping[str, Any]], confidence: float) -> dict[str, Any]:
    """Every statistic of :data:`STATISTICS`, for the total and each group present in every
    run, across ``summaries`` (a statistic missing from a run is left out)."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    groups = [set((s.get("groups") or {}).keys()) for s in summaries]
    common = sorted(set.intersection(*groups)) if groups else []
    order = [g for g in (summaries[0].get("groups") or {}) if g in common] if summaries else []
    return {
        "total": _scope([s.get("total") or {} for s in summaries], confidence),
        "groups": {
            g: _scope([(s.get("groups") or {})[g] for s in summaries], confidence) for g in order
        },
    }


def compare_means(
    a: Sequence[float],
    b: Sequence[float],
    percent: float,
    *,
    confidence: float,
    min_effect: float,
) -> PercentileDiff | None:
    """The difference of a statistic's mean between two sets of repeats, B - A, with Welch's
    t interval (unequal variances, Welch-Satterthwaite degrees of freedom) in the shape of a
    bootstrap :class:`~clientswarm.metrics.compare.PercentileDiff` (``percent`` names the
    statistic's percentile; the counts are numbers of runs). None without two runs on each
    side."""
    if len(a) < 2 or len(b) < 2:
        return None
    sa, sb = spread(a, confidence), spread(b, confidence)
    va, vb = sa.std**2 / sa.n, sb.std**2 / sb.n
    diff = sb.mean - sa.mean
    if va + vb == 0.0:
        low = high = diff
    else:
        df = (va + vb) ** 2 / (va**2 / (sa.n - 1) + vb**2 / (sb.n - 1))
        half = t_quantile(0.5 + confidence / 2.0, df) * math.sqrt(va + vb)
        low, high = diff - half, diff + half
    relative = diff / sa.mean if sa.mean > 0 else None
    small = relative is not None and abs(relative) < min_effect
    direction: Direction = "same"
    if not (low <= 0.0 <= high) and not small:
        direction = "higher" if diff > 0 else "lower"
    return PercentileDiff(
        percent=percent,
        a=sa.mean,
        b=sb.mean,
        diff=diff,
        relative=relative,
        low=low,
        high=high,
        rel_low=None if sa.mean <= 0 else low / sa.mean,
        rel_high=None if sa.mean <= 0 else high / sa.mean,
        count_a=sa.n,
        count_b=sb.n,
        used_a=sa.n,
        used_b=sb.n,
        direction=direction,
        below_min_effect=small,
    )
