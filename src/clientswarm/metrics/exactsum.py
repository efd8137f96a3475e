"""The exact sum of float64 values, vectorised: a mean that is the same float whatever the
order of the values and however they were split into batches.

Every finite float64 is ``±M * 2**(max(E, 1) - 1075)`` with ``E`` its 11-bit exponent field
and ``M`` its 52 stored mantissa bits, plus ``2**52`` when ``E > 0``. So ``2**1074`` times any
sum of them is an integer, which :class:`ExactSum` keeps as a Python int. A batch is added
without a Python loop over its values:

- the top 12 bits of each value (sign and exponent) pick a bin; the value's stored mantissa
  is split into its high and low 26 bits, and ``numpy.bincount`` sums each half per bin.
  Each half is below ``2**26``, so a bin's sum is exact in float64 for up to ``2**27`` values
  (batches go in chunks of :data:`CHUNK_VALUES`, far fewer); the implicit ``2**52`` comes from
  the bin's count;
- each bin with values is then folded into the integer at its scale: one Python operation
  per sign and exponent present (a few dozen for latencies), not per value.

:meth:`ExactSum.total` and :meth:`ExactSum.mean` round that integer to float64 once
(Python's int division is correctly rounded). NaN is left out (and not counted); with
infinities the result is what IEEE arithmetic gives whatever the order: ``inf`` or ``-inf``,
and NaN when both are present. A sum of only ``-0.0`` is ``-0.0``, as in IEEE arithmetic.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]

CHUNK_VALUES = 1 << 14
"""Values summed per ``bincount`` at most: far below the ``2**27`` up to which the sums of
26-bit halves are exact, and few enough for the temporaries (128 KiB) to stay in cache and be
reused by the allocator: larger ones, when it maps them afresh for each chunk, made the sum 2-3
times slower on a busy machine (``bench/exactsum.py`` measures it)."""

_SCALE = 1 << 1074  # 2**1074 * value is an integer for every finite float64
_HALF_BITS = 26
_HALF_MASK = np.uint64((1 << _HALF_BITS) - 1)
_HALF_SHIFT = np.uint64(_HALF_BITS)
_EXP_SHIFT = np.uint64(52)
_NAN_OR_INF = 0x7FF  # the exponent field of NaN and the infinities
_NEG_ZERO_BIN = 0x800  # sign bit set, exponent field 0: -0.0 and negative subnormals


class ExactSum:
    """The exact sum and count of the values added (see the module docstring)."""

    def __init__(self) -> None:
        self.count = 0
        """Values added, NaN not counted."""
        self._scaled = 0  # 2**1074 times the sum of the finite values
        self._pos_inf = 0
        self._neg_inf = 0
        self._all_neg_zero = True  # every value so far is -0.0 (vacuously, while none)

    def add(self, values: F64) -> None:
        """Add ``values`` (float64; NaN entries are left out)."""
        bits = np.ascontiguousarray(values, dtype=np.float64).ravel().view(np.uint64)
        for start in range(0, bits.size, CHUNK_VALUES):
            self._add_bits(bits[start : start + CHUNK_VALUES])

    def _add_bits(self, bits: npt.NDArray[np.uint64]) -> None:
        if not bits.size:
            return
        bins = (bits >> _EXP_SHIFT).view(np.int64)  # a view: astype from uint64 is slow
        counts = np.bincount(bins)
        high = np.bincount(bins, weights=(bits >> _HALF_SHIFT) & _HALF_MASK)
        low = np.bincount(bins, weights=bits & _HALF_MASK)
        present = counts.nonzero()[0]
        bin_list = present.tolist()
        per_bin = zip(
            bin_list,
            counts[present].tolist(),
            high[present].tolist(),
            low[present].tolist(),
            strict=True,
        )
        counted = int(bits.size)
        # 2**1074 * value = M * 2**(max(E, 1) - 1), M = (2**26 * (E > 0) + high) * 2**26 + low;
        # the bins are summed relative to the smallest scale present, so that the ints stay small
        base = max(min(b & 0x7FF for b in bin_list), 1) - 1
        scaled = 0
        for b, n, h, lo in per_bin:
            exponent = b & 0x7FF
            if exponent == _NAN_OR_INF:
                counted -= self._add_special(bits, b != exponent, n)
                continue
            if b != _NEG_ZERO_BIN or h or lo:
                self._all_neg_zero = False
            implicit = n << _HALF_BITS if exponent else 0
            mantissas = ((int(h) + implicit) << _HALF_BITS) + int(lo)
            term = mantissas << (max(exponent, 1) - 1 - base)
            scaled += -term if b >> 11 else term
        self._scaled += scaled << base
        self.count += counted

    def _add_special(self, bits: npt.NDArray[np.uint64], negative: bool, n: int) -> int:
        """Count the infinities of sign ``negative`` among ``n`` NaN-or-inf ``bits``; the NaNs
        among them are left out. Returns how many NaNs there were."""
        inf = np.array([-math.inf if negative else math.inf]).view(np.uint64)[0]
        infinities = int(np.count_nonzero(bits == inf))
        if infinities:
            self._all_neg_zero = False
        if negative:
            self._neg_inf += infinities
        else:
            self._pos_inf += infinities
        return n - infinities

    def merge(self, other: ExactSum) -> None:
        """Add every value ``other`` has summed."""
        self.count += other.count
        self._scaled += other._scaled
        self._pos_inf += other._pos_inf
        self._neg_inf += other._neg_inf
        self._all_neg_zero = self._all_neg_zero and other._all_neg_zero

    def total(self) -> float:
        """The sum, correctly rounded (``±inf`` beyond the float64 range; 0.0 for none)."""
        special = self._special()
        if special is not None:
            return special
        try:
            return self._scaled / _SCALE
        except OverflowError:
            return math.inf if self._scaled > 0 else -math.inf

    def mean(self, count: int | None = None) -> float:
        """The sum over ``count`` (this one's :attr:`count` by default), correctly rounded."""
        count = self.count if count is None else count
        if count <= 0:
            raise ValueError(f"mean of count {count}: the count must be above 0")
        special = self._special()
        if special is not None:
            return special
        return self._scaled / (count * _SCALE)

    def _special(self) -> float | None:
        """The result when it is not the finite sum's: infinities, NaN, or -0.0."""
        if self._pos_inf and self._neg_inf:
            return math.nan
        if self._pos_inf or self._neg_inf:
            return math.inf if self._pos_inf else -math.inf
        if self.count and self._all_neg_zero:
            return -0.0
        return None


def exact_mean(values: npt.ArrayLike) -> float:
    """The correctly rounded mean of ``values`` (NaN left out; NaN when none are left)."""
    summed = ExactSum()
    summed.add(np.asarray(values, dtype=np.float64))
    return summed.mean() if summed.count else math.nan


__all__ = ["CHUNK_VALUES", "ExactSum", "exact_mean"]
