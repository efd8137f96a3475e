"""Exact distributions of any number of values in bounded memory.

:class:`ExactValues` collects one metric's values batch by batch. Up to ``memory_values`` of
them stay in memory, and their distribution is :func:`~clientswarm.metrics.dist.distribution`
of them, as before. Beyond that they go to an anonymous temporary file (nothing is left behind,
whatever happens to the process), and the distribution is computed from the file in chunks,
still exactly:

- ``count``, ``min`` and ``max`` are kept while adding, and so is the exact sum of the values
  in the file (:class:`~clientswarm.metrics.exactsum.ExactSum`); the mean is that sum plus the
  exact sum of those still in memory, over the count, correctly rounded once: the same float
  whatever the order of the values and however they were batched, in memory or not;
- each percentile is numpy's ``linear`` method (the one ``numpy.percentile`` and pandas use)
  applied to the exact order statistics it needs, which are found by radix selection: each
  float64 is mapped to an unsigned 64-bit key of the same order. How many keys have each top
  16 bits is counted while adding; then every pass over the file counts the next 20 bits of
  the keys that share the prefix found so far (and notes their least and greatest: when those
  are equal, the value is found), until the candidates are few enough to gather and partition
  in memory, or the whole key is known. Usually one pass suffices, at most three; memory is
  one chunk plus a count of 2**20 entries per prefix followed.

:func:`exact_distribution` takes several of them as one (a total over groups) without copying
their values.

Values are float64 seconds; NaN (no value) is dropped on the way in."""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Iterator, Sequence
from typing import IO

import numpy as np
import numpy.typing as npt

from clientswarm.metrics.dist import PERCENTILES, Dist, distribution, empty_distribution
from clientswarm.metrics.exactsum import ExactSum

F64 = npt.NDArray[np.float64]
U64 = npt.NDArray[np.uint64]

MEMORY_VALUES = 1 << 18
"""Values one :class:`ExactValues` keeps in memory before it writes them to its file (2 MiB)."""

CHUNK_VALUES = 1 << 19
"""Values read from the file at a time while computing the distribution (4 MiB)."""

GATHER_VALUES = 1 << 20
"""Candidates of an order statistic few enough to gather and partition in memory (8 MiB)."""

_DIGIT_BITS = 16  # the bits counted while adding (a 65,536-entry count per distribution)
_PASS_BITS = 20  # the bits each pass over the file counts next (1 Mi entries, 8 MiB)
_SIGN = np.uint64(1 << 63)


def sort_keys(values: F64, nonnegative: bool = False) -> U64:
    """Unsigned keys that sort like ``values`` (no NaN among them; -0.0 counts as 0.0).

    ``nonnegative``: no value is below zero, which makes the key one operation.
    """
    bits = np.ascontiguousarray(values, dtype=np.float64).view(np.uint64)
    if nonnegative:
        return bits | _SIGN  # -0.0 (the sign bit alone) becomes the key of 0.0
    bits = (values + 0.0).view(np.uint64)
    negative = (bits & _SIGN) != 0
    return np.where(negative, ~bits, bits | _SIGN)


def from_key(key: int) -> float:
    """The float64 of a key of :func:`sort_keys`."""
    bits = key & ~(1 << 63) if key >> 63 else ~key & ((1 << 64) - 1)
    return float(np.array([bits], dtype=np.uint64).view(np.float64)[0])


class ExactValues:
    """Every value of one metric (see the module docstring); :meth:`close` frees its file.

    ``spool_dir``: where the file goes (the system's temporary directory when None);
    ``gather_values``: see :data:`GATHER_VALUES`.
    """

    def __init__(
        self,
        memory_values: int = MEMORY_VALUES,
        spool_dir: str | None = None,
        gather_values: int = GATHER_VALUES,
    ) -> None:
        self.memory_values = memory_values
        self.spool_dir = spool_dir
        self.gather_values = gather_values
        self.count = 0
        self._memory: list[F64] = []
        self._in_memory = 0
        self._file: IO[bytes] | None = None
        self._min = math.inf
        self._max = -math.inf
        self._file_sum = ExactSum()
        """The exact sum of the values in the file (those in memory are summed when needed)."""
        self._top: npt.NDArray[np.int64] | None = None
        """Once in the file: how many values' keys have each top 16 bits (the first radix
        pass, made while adding)."""

    @property
    def spilled(self) -> bool:
        """Whether the values went to a file."""
        return self._file is not None

    def add(self, values: F64) -> None:
        """Add ``values`` (float64 seconds; NaN entries are left out)."""
        if not values.size:
            return
        nan = np.isnan(values)
        if nan.any():
            values = values[~nan]
            if not values.size:
                return
        self.count += int(values.size)
        self._min = min(self._min, float(values.min()))
        self._max = max(self._max, float(values.max()))
        if self._file is not None:
            self._spill(values)
            return
        self._memory.append(np.array(values, dtype=np.float64))  # a copy: batches are reused
        self._in_memory += int(values.size)
        if self._in_memory > self.memory_values:
            self.spill()

    @property
    def in_memory(self) -> int:
        """How many values are held in memory (not yet in the file)."""
        return self._in_memory

    def spill(self) -> None:
        """Move the values held in memory to the file (made now if need be); every later
        value goes there too. For values that will hardly grow any more (a finished load
        stage's), so that they stop holding memory."""
        if self._file is None:
            # Anonymous (unlinked at once): nothing is left behind, however the process ends.
            self._file = tempfile.TemporaryFile(dir=self.spool_dir)  # noqa: SIM115 - kept open
            self._top = np.zeros(1 << _DIGIT_BITS, dtype=np.int64)
        if self._memory:  # at once: one write, one count and one sum, not one per batch
            self._spill(np.concatenate(self._memory))
        self._memory, self._in_memory = [], 0

    def _spill(self, values: F64) -> None:
        """Append ``values`` to the file (their bytes as they are), sum them and count their
        top bits."""
        assert self._file is not None and self._top is not None
        values = np.ascontiguousarray(values, dtype="<f8")
        self._file.write(values.data)
        self._file_sum.add(values)
        top = sort_keys(values, self._min >= 0) >> np.uint64(64 - _DIGIT_BITS)
        self._top += np.bincount(top.astype(np.intp), minlength=1 << _DIGIT_BITS)

    def close(self) -> None:
        """Forget every value (and delete the file)."""
        if self._file is not None:
            self._file.close()
            self._file = None
        self._memory, self._in_memory, self.count, self._top = [], 0, 0, None
        self._file_sum = ExactSum()

    def distribution(self) -> Dist:
        """The exact distribution of every value added."""
        return exact_distribution([self])

    def _chunks(self) -> Iterator[F64]:
        """Every value, a chunk at a time: the file's, then those still in memory."""
        if self._file is not None:
            self._file.flush()
            fd = self._file.fileno()
            size = os.fstat(fd).st_size
            for offset in range(0, size, CHUNK_VALUES * 8):
                data = os.pread(fd, min(CHUNK_VALUES * 8, size - offset), offset)
                yield np.frombuffer(data, dtype="<f8")
        yield from self._memory

    def _top_counts(self, nonnegative: bool) -> npt.NDArray[np.int64]:
        """How many values' keys have each top 16 bits."""
        counts = np.zeros(1 << _DIGIT_BITS, dtype=np.int64) if self._top is None else self._top
        for part in self._memory:
            top = sort_keys(part, nonnegative) >> np.uint64(64 - _DIGIT_BITS)
            counts = counts + np.bincount(top.astype(np.intp), minlength=1 << _DIGIT_BITS)
        return counts


def exact_distribution(parts: Sequence[ExactValues]) -> Dist:
    """The exact distribution of the values of every one of ``parts`` together (e.g. the total
    of several groups' values, without a copy of them)."""
    count = sum(p.count for p in parts)
    if count == 0:
        return empty_distribution()
    if not any(p.spilled for p in parts):
        return distribution(np.concatenate([m for p in parts for m in p._memory]))
    low, high = min(p._min for p in parts), max(p._max for p in parts)
    positions = _positions(count)
    wanted = sorted({i for lo, hi, _ in positions for i in (lo, hi)})
    found = _order_statistics(parts, count, low >= 0, wanted)
    pcts = [_lerp(found[lo], found[hi], gamma) for lo, hi, gamma in positions]
    summed = ExactSum()
    for p in parts:
        summed.merge(p._file_sum)
        if p._memory:
            summed.add(np.concatenate(p._memory))
    return Dist(
        count=count,
        mean=summed.mean(count),
        min=low,
        p50=pcts[0],
        p90=pcts[1],
        p95=pcts[2],
        p99=pcts[3],
        max=high,
    )


def _order_statistics(
    parts: Sequence[ExactValues], count: int, nonnegative: bool, ranks: list[int]
) -> dict[int, float]:
    """The values of rank ``ranks`` (0-based, ascending) among every value of ``parts``, by
    radix selection (see the module docstring)."""
    gather_values = min(p.gather_values for p in parts)
    # rank -> (key prefix, bits of it fixed, rank among the keys with that prefix,
    # how many keys have that prefix); the first 16 bits come from the adding.
    top = sum((p._top_counts(nonnegative) for p in parts), np.zeros(1 << _DIGIT_BITS, np.int64))
    state: dict[int, tuple[int, int, int, int]] = {}
    found: dict[int, float] = {}
    for r in ranks:
        _descend(state, found, r, (0, 0, r, count), top, _DIGIT_BITS)
    while state:
        buckets: dict[tuple[int, int], list[int]] = {}
        for r, (prefix, bits, _, _) in state.items():
            buckets.setdefault((prefix, bits), []).append(r)
        gather = {b for b in buckets if state[buckets[b][0]][3] <= gather_values}
        passes = {b: _Pass(64 - b[1]) for b in buckets if b not in gather}
        gathered: dict[tuple[int, int], list[U64]] = {b: [] for b in gather}
        for chunk in (c for p in parts for c in p._chunks()):
            keys = sort_keys(chunk, nonnegative)
            for prefix, bits in buckets:
                sel = keys[(keys >> np.uint64(64 - bits)) == prefix]
                if (prefix, bits) in gathered:
                    gathered[(prefix, bits)].append(sel)
                else:
                    passes[(prefix, bits)].count(sel)
        for b, rs in buckets.items():
            if b in passes:
                counted = passes[b]
                for r in rs:
                    if counted.low == counted.high:  # every candidate is the same value
                        found[r] = from_key(counted.low)
                        del state[r]
                    else:
                        _descend(state, found, r, state.pop(r), counted.counts, counted.width)
                continue
            keys = np.concatenate(gathered[b]) if gathered[b] else np.empty(0, np.uint64)
            keys.partition(sorted({state[r][2] for r in rs}))
            for r in rs:
                found[r] = from_key(int(keys[state.pop(r)[2]]))
    return found


class _Pass:
    """One pass of the selection over the keys with one prefix: how many have each next
    ``width`` bits (at most :data:`_PASS_BITS`), and the least and greatest of them."""

    def __init__(self, free_bits: int) -> None:
        self.width = min(_PASS_BITS, free_bits)
        self._shift = np.uint64(free_bits - self.width)
        self._mask = np.uint64((1 << self.width) - 1)
        self.counts = np.zeros(1 << self.width, dtype=np.int64)
        self.low, self.high = 1 << 64, -1

    def count(self, keys: U64) -> None:
        if not keys.size:
            return
        self.low, self.high = min(self.low, int(keys.min())), max(self.high, int(keys.max()))
        digits = ((keys >> self._shift) & self._mask).astype(np.intp)
        self.counts += np.bincount(digits, minlength=self.counts.size)


def _descend(
    state: dict[int, tuple[int, int, int, int]],
    found: dict[int, float],
    rank: int,
    at: tuple[int, int, int, int],
    counts: npt.NDArray[np.int64],
    width: int,
) -> None:
    """Fix the next ``width`` bits of the key of ``rank`` from ``counts`` (how many keys with
    the prefix ``at`` has have each next ``width`` bits): into ``state``, or ``found`` once
    the key is whole."""
    prefix, bits, within, _ = at
    cum = np.cumsum(counts)
    digit = int(np.searchsorted(cum, within, side="right"))
    below = int(cum[digit - 1]) if digit else 0
    prefix, bits = (prefix << width) | digit, bits + width
    if bits == 64:
        found[rank] = from_key(prefix)
    else:
        state[rank] = (prefix, bits, within - below, int(counts[digit]))


def _positions(count: int) -> list[tuple[int, int, float]]:
    """For each percentile of :data:`PERCENTILES`, numpy's ``linear`` method: the ranks of the
    two order statistics it interpolates between, and the weight of the upper one."""
    quantiles = np.true_divide(np.array([q for _, q in PERCENTILES], dtype=np.float64), 100)
    out = []
    for virtual in ((count - 1) * quantiles).tolist():
        if virtual >= count - 1:
            out.append((count - 1, count - 1, 0.0))
            continue
        lo = math.floor(virtual)
        out.append((lo, lo + 1, virtual - lo))
    return out


def _lerp(a: float, b: float, t: float) -> float:
    """numpy's ``_lerp``: the same operations, so the same float."""
    diff = b - a
    return b - diff * (1 - t) if t >= 0.5 else a + diff * t


__all__ = [
    "CHUNK_VALUES",
    "GATHER_VALUES",
    "MEMORY_VALUES",
    "ExactValues",
    "exact_distribution",
    "from_key",
    "sort_keys",
]
