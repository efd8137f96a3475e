"""A mergeable log-linear histogram of seconds, for live statistics.

The layout is HDR-style: each power-of-two range ("octave") of ``[2**-20 s, 2**12 s)`` — about
1 µs to 68 min — is cut into :data:`SUB_BUCKETS` equal sub-buckets, so a bucket is never wider
than 1/64 of its lower edge. A value is reported as the midpoint of its bucket, within 0.78 %
of any value in it (:data:`RELATIVE_ERROR`). Values below 1 µs (zero and negative ones too, e.g. a
send a hair before its schedule) share one underflow bucket, values from 68 min up one overflow
bucket; ``count``, ``sum``, ``min`` and ``max`` are exact, and reported quantiles are clamped to
``[min, max]``, so ``quantile(0)`` is the minimum and ``quantile(1)`` the maximum.

Every histogram has the same fixed layout, so merging is adding counts: fleet-wide or window
percentiles are computed from merged histograms, never by averaging percentiles. Bucket indices
come from the float's exponent and mantissa (``frexp``), exact and vectorised.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

#: Sub-buckets per power of two.
SUB_BUCKETS = 64
#: The lowest tracked value is 2**MIN_EXP seconds (0.95 µs).
MIN_EXP = -20
#: Values from 2**MAX_EXP seconds (68 min) up share the overflow bucket.
MAX_EXP = 12
#: Bound on the relative error of a reported value within the tracked range.
RELATIVE_ERROR = 1 / (2 * SUB_BUCKETS)

_OCTAVES = MAX_EXP - MIN_EXP
_TRACKED = _OCTAVES * SUB_BUCKETS
#: Bucket 0 is the underflow bucket, bucket N_BUCKETS - 1 the overflow bucket.
N_BUCKETS = _TRACKED + 2
_OVERFLOW = N_BUCKETS - 1
_LOWEST = math.ldexp(1.0, MIN_EXP)
_HIGHEST = math.ldexp(1.0, MAX_EXP)
#: Identifies the layout in :meth:`Histogram.to_dict`, so a mismatch fails loudly.
SCHEME = f"loglinear/{SUB_BUCKETS}/{MIN_EXP}/{MAX_EXP}"
#: The most values :meth:`Histogram.from_wire` takes in one histogram (or one bucket): beyond,
#: float sums and means would no longer count every value.
MAX_WIRE_COUNT = 2**53

_F64 = npt.NDArray[np.float64]
_I64 = npt.NDArray[np.int64]


def _edges() -> tuple[_F64, _F64]:
    """Lower and upper edges of every bucket."""
    i = np.arange(_TRACKED)
    width = np.ldexp(1.0, MIN_EXP + i // SUB_BUCKETS) / SUB_BUCKETS
    lower = width * (SUB_BUCKETS + i % SUB_BUCKETS)
    lower = np.concatenate([[-np.inf], lower, [_HIGHEST]])
    upper = np.concatenate([[_LOWEST], lower[1:-1] + width, [np.inf]])
    return lower, upper


_LOWER, _UPPER = _edges()
#: Reported value of each bucket (the overflow bucket reports the exact maximum instead).
_MIDPOINT = np.concatenate([[_LOWEST / 2], (_LOWER[1:-1] + _UPPER[1:-1]) / 2, [_HIGHEST]])


def bucket_index(value_s: float) -> int:
    """The bucket of one value."""
    if not value_s >= _LOWEST:  # also NaN, which callers filter out before
        return 0
    if value_s >= _HIGHEST:
        return _OVERFLOW
    mantissa, exp = math.frexp(value_s)
    return 1 + (exp - 1 - MIN_EXP) * SUB_BUCKETS + int((2.0 * mantissa - 1.0) * SUB_BUCKETS)


_SUB_BITS = SUB_BUCKETS.bit_length() - 1  # 6: the mantissa bits that pick the sub-bucket
if 1 << _SUB_BITS != SUB_BUCKETS:  # pragma: no cover - guards a layout change
    raise RuntimeError("SUB_BUCKETS must be a power of two")
_SHIFT = 52 - _SUB_BITS  # float64: 52 mantissa bits below the 11 exponent bits
_FIRST = (MIN_EXP + 1023) << _SUB_BITS  # (biased exponent, sub-bucket) of 2**MIN_EXP


def bucket_indices(values_s: _F64) -> _I64:
    """The bucket of each value (finite values only).

    Straight from the bits: a positive float64's bits shifted right by 46 are its biased
    exponent and the top 6 bits of its mantissa — the octave and the sub-bucket, what
    :func:`bucket_index` computes with ``frexp``. Negative values (sign bit set) come out
    negative and, like zero and values below 2**MIN_EXP, land in the underflow bucket.
    """
    idx = np.ascontiguousarray(values_s, dtype=np.float64).view(np.int64) >> _SHIFT
    idx += 1 - _FIRST
    return np.clip(idx, 0, _OVERFLOW, out=idx)


class Histogram:
    """Counts of values in fixed log-linear buckets, plus exact count, sum, min and max.

    Counts are allocated on the first recorded value, so an empty histogram costs little.
    """

    __slots__ = ("_counts", "count", "max", "min", "sum")

    def __init__(self) -> None:
        self._counts: _I64 | None = None
        self.count = 0
        self.sum = 0.0
        self.min = math.inf
        self.max = -math.inf

    def _buckets(self) -> _I64:
        if self._counts is None:
            self._counts = np.zeros(N_BUCKETS, dtype=np.int64)
        return self._counts

    def record(self, value_s: float) -> None:
        """Add one value; NaN and infinities are ignored."""
        if not math.isfinite(value_s):
            return
        self._buckets()[bucket_index(value_s)] += 1
        self.count += 1
        self.sum += value_s
        self.min = min(self.min, value_s)
        self.max = max(self.max, value_s)

    def record_many(self, values_s: npt.ArrayLike) -> None:
        """Add many values at once; NaN and infinities are ignored."""
        arr = np.asarray(values_s, dtype=np.float64).ravel()
        finite = np.isfinite(arr)
        if not finite.all():
            arr = arr[finite]
        if arr.size == 0:
            return
        self._buckets()[:] += np.bincount(bucket_indices(arr), minlength=N_BUCKETS)
        self.count += int(arr.size)
        self.sum += float(arr.sum())
        self.min = min(self.min, float(arr.min()))
        self.max = max(self.max, float(arr.max()))

    def merge(self, other: Histogram) -> Histogram:
        """Add ``other``'s values to this histogram (in place); returns ``self``."""
        if other.count == 0 or other._counts is None:
            return self
        self._buckets()[:] += other._counts
        self.count += other.count
        self.sum += other.sum
        self.min = min(self.min, other.min)
        self.max = max(self.max, other.max)
        return self

    @classmethod
    def merged(cls, histograms: Iterable[Histogram]) -> Histogram:
        """A new histogram holding the values of all ``histograms``."""
        out = cls()
        for h in histograms:
            out.merge(h)
        return out

    def copy(self) -> Histogram:
        """An independent copy."""
        return Histogram().merge(self)

    def clear(self) -> None:
        """Forget every value (keeps the allocated counts)."""
        if self._counts is not None:
            self._counts[:] = 0
        self.count = 0
        self.sum = 0.0
        self.min = math.inf
        self.max = -math.inf

    @property
    def mean(self) -> float | None:
        """The exact mean; None when empty."""
        return self.sum / self.count if self.count else None

    def quantile(self, q: float) -> float | None:
        """The value at quantile ``q`` (0..1); None when empty.

        The estimate is of the order statistic at rank ``round(q * (count - 1))`` (numpy's
        ``method="nearest"``), within :data:`RELATIVE_ERROR` of it inside the tracked range.
        """
        return self.quantiles([q])[0]

    def quantiles(self, qs: Sequence[float]) -> list[float | None]:
        """:meth:`quantile` of each of ``qs``, with one pass over the counts."""
        if not all(0.0 <= q <= 1.0 for q in qs):
            raise ValueError(f"quantiles must lie in [0, 1], got {list(qs)}")
        if self.count == 0 or self._counts is None:
            return [None for _ in qs]
        cum = np.cumsum(self._counts)
        ranks = np.rint(np.asarray(qs, dtype=np.float64) * (self.count - 1))
        idx = np.searchsorted(cum, ranks, side="right")
        values = _MIDPOINT[idx]
        values[idx == _OVERFLOW] = self.max
        values = np.clip(values, self.min, self.max)
        out: list[float | None] = [float(v) for v in values]
        for i, q in enumerate(qs):  # the extremes are known exactly
            if q == 0.0:
                out[i] = self.min
            elif q == 1.0:
                out[i] = self.max
        return out

    def cumulative_buckets(self, bounds: Sequence[float]) -> list[int]:
        """How many values lie at or below each bound (ascending), for Prometheus ``le`` buckets.

        A bucket counts towards a bound when its reported value does, so a count may be off by
        the values within :data:`RELATIVE_ERROR` of the bound; a bound at or above the maximum
        counts everything, one below the minimum nothing. The ``+Inf`` bucket is ``count``.
        """
        if self.count == 0 or self._counts is None:
            return [0 for _ in bounds]
        cum = np.cumsum(self._counts)
        reported = _MIDPOINT.copy()
        reported[_OVERFLOW] = max(self.max, _HIGHEST)  # stays sorted for searchsorted
        k = np.searchsorted(reported, np.asarray(bounds, dtype=np.float64), side="right")
        out: list[int] = []
        for bound, n in zip(bounds, k.tolist(), strict=True):
            if bound >= self.max:
                out.append(self.count)
            elif bound < self.min or n == 0:
                out.append(0)
            else:
                out.append(int(cum[n - 1]))
        return out

    def to_dict(self) -> dict[str, Any]:
        """A compact JSON-ready form: the non-empty buckets as ``[index, count]`` pairs."""
        buckets: list[list[int]] = []
        if self._counts is not None and self.count:
            nonzero = np.flatnonzero(self._counts)
            buckets = np.stack([nonzero, self._counts[nonzero]], axis=1).tolist()
        return {
            "scheme": SCHEME,
            "count": self.count,
            "sum": self.sum,
            "min": self.min if self.count else None,
            "max": self.max if self.count else None,
            "buckets": buckets,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Histogram:
        """Rebuild a histogram from :meth:`to_dict` output."""
        if data.get("scheme") != SCHEME:
            raise ValueError(
                f"histogram layout {data.get('scheme')!r} is not this version's {SCHEME!r}; "
                "send histograms between equal clientswarm versions"
            )
        h = cls()
        if not data["count"]:
            return h
        pairs = np.asarray(data["buckets"], dtype=np.int64).reshape(-1, 2)
        counts = h._buckets()
        np.add.at(counts, pairs[:, 0], pairs[:, 1])
        if int(counts.sum()) != int(data["count"]):
            raise ValueError(
                f"histogram buckets hold {int(counts.sum())} values but count is {data['count']}"
            )
        h.count = int(data["count"])
        h.sum = float(data["sum"])
        h.min = float(data["min"])
        h.max = float(data["max"])
        return h

    def to_wire(self) -> list[Any]:
        """The most compact exact JSON-ready form, for untrusted transport (:meth:`from_wire`):
        ``[count, sum, min, max, gaps, counts]``, the non-empty buckets' indices as gaps (the
        first index, then each one's distance from the one before) with their counts;
        ``[0, 0.0, None, None, [], []]`` when empty. The layout is :data:`SCHEME`'s: send it
        beside."""
        if self._counts is None or self.count == 0:
            return [0, 0.0, None, None, [], []]
        nonzero = np.flatnonzero(self._counts)
        gaps = np.diff(nonzero, prepend=0)
        return [
            self.count,
            self.sum,
            self.min,
            self.max,
            gaps.tolist(),
            self._counts[nonzero].tolist(),
        ]

    @classmethod
    def from_wire(cls, data: Any) -> Histogram:
        """Rebuild a histogram from :meth:`to_wire` output that came from anywhere: ValueError,
        naming what is wrong, unless every part is of the right type, in range and consistent
        (bucket counts adding up to ``count``, ``min`` and ``max`` in the first and last
        non-empty buckets, ``sum`` between ``count * min`` and ``count * max``)."""
        if not isinstance(data, list) or len(data) != 6:
            raise ValueError(
                f"a histogram is [count, sum, min, max, gaps, counts], got {_kind(data)}"
            )
        count, total, low, high, gaps, counts = data
        if not _is_int(count) or not 0 <= count <= MAX_WIRE_COUNT:
            raise ValueError(f"count must be an integer in [0, 2**53], got {_kind(count)}")
        if count == 0:
            if total != 0 or low is not None or high is not None or gaps != [] or counts != []:
                raise ValueError("an empty histogram is [0, 0.0, null, null, [], []]")
            return cls()
        for name, value in (("sum", total), ("min", low), ("max", high)):
            if not _is_number(value) or not math.isfinite(value):
                raise ValueError(f"{name} must be a finite number, got {_kind(value)}")
        low, high, total = float(low), float(high), float(total)
        if low > high:
            raise ValueError(f"min {low!r} is above max {high!r}")
        slack = 1e-9 * count * max(abs(low), abs(high))
        if not count * low - slack <= total <= count * high + slack:
            raise ValueError(f"sum {total!r} is not between count * min and count * max")
        index = _bucket_positions(gaps, counts)
        if sum(counts) != count:  # Python integers: 2,050 counts of 2**53 overflow int64
            raise ValueError(f"the buckets hold {sum(counts)} values but count is {count}")
        if bucket_index(low) != index[0] or bucket_index(high) != index[-1]:
            raise ValueError(
                f"min {low!r} and max {high!r} do not lie in the first and last non-empty buckets"
            )
        h = cls()
        h._buckets()[index] = counts
        h.count, h.sum, h.min, h.max = count, total, low, high
        return h

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Histogram):
            return NotImplemented
        if (self.count, self.min, self.max) != (other.count, other.min, other.max):
            return False
        if not math.isclose(self.sum, other.sum, rel_tol=1e-12, abs_tol=1e-12):
            return False
        if self.count == 0:
            return True
        return bool(np.array_equal(self._buckets(), other._buckets()))

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Histogram(count={self.count}, min={self.min}, max={self.max})"


def _is_int(value: Any) -> bool:
    return type(value) is int


def _is_number(value: Any) -> bool:
    return type(value) is int or type(value) is float


def _kind(value: Any) -> str:
    """A short description of an untrusted value, for a message."""
    if isinstance(value, list):
        return f"a list of {len(value)}"
    if isinstance(value, dict):
        return "an object"
    text = repr(value)
    return text if len(text) <= 40 else text[:39] + "…"


def _bucket_positions(gaps: Any, counts: Any) -> _I64:
    """The bucket indices of :meth:`Histogram.to_wire`'s ``gaps`` (and ``counts`` checked
    beside them): ValueError unless both are lists of as many integers, the gaps leading to
    increasing indices in range and every count at least 1."""
    if not isinstance(gaps, list) or not isinstance(counts, list):
        raise ValueError("gaps and counts must be lists of integers")
    if not 1 <= len(gaps) <= N_BUCKETS or len(counts) != len(gaps):
        raise ValueError(
            f"gaps and counts must be lists of as many integers, 1 to {N_BUCKETS}; "
            f"got {len(gaps)} gaps and {len(counts)} counts"
        )
    if not all(map(_is_int, gaps)) or not all(map(_is_int, counts)):
        raise ValueError("gaps and counts must hold integers only")
    if gaps[0] < 0 or min(gaps[1:], default=1) < 1 or sum(gaps) > _OVERFLOW:
        raise ValueError(
            f"gaps must lead to increasing bucket indices in [0, {_OVERFLOW}] (the first >= 0, "
            "the others >= 1)"
        )
    if min(counts) < 1 or max(counts) > MAX_WIRE_COUNT:
        raise ValueError(
            "bucket counts must be integers from 1 to 2**53 (empty buckets are left out)"
        )
    return np.cumsum(np.asarray(gaps, dtype=np.int64))


__all__ = [
    "MAX_EXP",
    "MAX_WIRE_COUNT",
    "MIN_EXP",
    "N_BUCKETS",
    "RELATIVE_ERROR",
    "SUB_BUCKETS",
    "Histogram",
    "bucket_index",
    "bucket_indices",
]
