"""Samples as columns: how a batch travels from the wire to the store and the statistics.

A :class:`SampleColumns` holds one Python list per scalar column of the field table
(:data:`~clientswarm.metrics.fields.COLUMNS`, as JSON decoded them or the store returned them)
and every inter-token latency as packed little-endian float64 (:mod:`clientswarm.metrics.itl`),
either as one buffer with a count per sample (the wire's form) or as one ``bytes`` per sample
(the store's form). The ITL bytes are never unpacked into Python floats on the way: the store
gets them as they came, the statistics read them with ``numpy.frombuffer``.

Numeric columns become numpy arrays on demand (:meth:`SampleColumns.array`), with the dtype
the field table gives them (:attr:`~clientswarm.metrics.fields.SampleField.dtype`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from itertools import accumulate, repeat
from operator import attrgetter
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from clientswarm.metrics.fields import COLUMNS, FIELDS, ITL_POSITION, FieldKind
from clientswarm.metrics.itl import pack_itl, unpack_itl
from clientswarm.metrics.sample import Sample

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
Bool = npt.NDArray[np.bool_]

_values_of = attrgetter(*COLUMNS)
_HEAD, _TAIL = COLUMNS[:ITL_POSITION], COLUMNS[ITL_POSITION:]
_NO_ITL = np.empty(0, dtype=np.float64)


class SampleColumns:
    """A batch of samples as columns; see the module docstring.

    Build one with :meth:`from_samples`, :meth:`from_rows` (rows of the store) or the
    constructor (the wire's decoded columns, packed ITLs and their counts). The columns are
    not copied: they must not change afterwards.
    """

    __slots__ = ("_arrays", "_blobs", "_counts", "_packed", "columns", "count")

    def __init__(
        self,
        columns: dict[str, list[Any]],
        *,
        itl_packed: bytes | memoryview | None = None,
        itl_counts: Sequence[int] | I64 | None = None,
        itl_blobs: list[bytes] | None = None,
    ) -> None:
        self.columns = columns
        self.count = len(columns[COLUMNS[0]])
        if itl_blobs is None and (itl_packed is None or itl_counts is None):
            raise ValueError("give the ITLs packed with their counts, or one blob per sample")
        self._packed = itl_packed
        self._counts: I64 | None = (
            None if itl_counts is None else np.asarray(itl_counts, dtype=np.int64)
        )
        self._blobs = itl_blobs
        self._arrays: dict[str, Any] = {}

    def __len__(self) -> int:
        return self.count

    def __repr__(self) -> str:
        return f"SampleColumns(count={self.count})"

    @classmethod
    def from_samples(cls, samples: Sequence[Sample]) -> SampleColumns:
        """The columns of ``samples`` (their values are taken as they are, unchecked)."""
        if not samples:
            return cls.empty()
        values = zip(*map(_values_of, samples), strict=True)
        columns = {name: list(column) for name, column in zip(COLUMNS, values, strict=True)}
        return cls(columns, itl_blobs=[pack_itl(s.itl_s) for s in samples])

    @classmethod
    def from_rows(cls, rows: Sequence[Sequence[Any]]) -> SampleColumns:
        """The columns of rows holding every field in order, ``itl_s`` as packed bytes (the
        store's rows)."""
        if not rows:
            return cls.empty()
        transposed = [list(column) for column in zip(*rows, strict=True)]
        blobs = transposed.pop(ITL_POSITION)
        columns = dict(zip(COLUMNS, transposed, strict=True))
        return cls(columns, itl_blobs=[b or b"" for b in blobs])

    @classmethod
    def empty(cls) -> SampleColumns:
        """No samples."""
        return cls({name: [] for name in COLUMNS}, itl_packed=b"", itl_counts=[])

    @classmethod
    def concat(cls, parts: Sequence[SampleColumns]) -> SampleColumns:
        """One batch of several, in order."""
        if len(parts) <= 1:
            return parts[0] if parts else cls.empty()
        columns = {name: [v for p in parts for v in p.columns[name]] for name in COLUMNS}
        packed = b"".join(p.itl_packed() for p in parts)
        counts = np.concatenate([p.itl_counts() for p in parts])
        return cls(columns, itl_packed=packed, itl_counts=counts)

    # -- ITLs -------------------------------------------------------------------------------

    def itl_counts(self) -> I64:
        """How many inter-token gaps each sample has."""
        if self._counts is None:
            assert self._blobs is not None
            sizes = np.fromiter(map(len, self._blobs), dtype=np.int64, count=self.count)
            if (sizes % 8).any():
                i = int(np.flatnonzero(sizes % 8)[0])
                raise ValueError(f"itl_s of sample {i} is {sizes[i]} bytes, not float64 values")
            self._counts = sizes // 8
        return self._counts

    def itl_packed(self) -> bytes | memoryview:
        """Every gap of every sample, in sample order, as little-endian float64 bytes."""
        if self._packed is None:
            assert self._blobs is not None
            self._packed = b"".join(self._blobs)
        return self._packed

    def itl_values(self) -> F64:
        """Every gap of every sample, in sample order (a view of the packed bytes)."""
        packed = self.itl_packed()
        return np.frombuffer(packed, dtype="<f8") if len(packed) else _NO_ITL

    def itl_blobs(self) -> list[bytes]:
        """Each sample's gaps as packed bytes (what the store keeps per sample)."""
        if self._blobs is None:
            data = bytes(self.itl_packed())
            ends = list(accumulate(int(k) * 8 for k in self.itl_counts()))
            starts = [0, *ends[:-1]] if ends else []
            self._blobs = [data[a:b] for a, b in zip(starts, ends, strict=True)]
        return self._blobs

    # -- numeric columns ------------------------------------------------------------------

    def array(self, name: str) -> tuple[npt.NDArray[Any], Bool | None]:
        """A scalar column as a numpy array of its field's dtype (the field table's), and
        which samples have a value (None: every one); a missing value reads as zero. ValueError
        for a value the dtype cannot take (a store written behind the wire's checks)."""
        cached = self._arrays.get(name)
        if cached is None:
            cached = self._arrays[name] = _array(name, self.columns[name])
        values, present = cached
        return values, present

    def ints(self, name: str) -> tuple[I64, Bool | None]:
        """An integer column (see :meth:`array`)."""
        assert FIELDS[name].kind is FieldKind.INT, name
        return self.array(name)

    def bools(self, name: str) -> Bool:
        """A true/false column (see :meth:`array`)."""
        assert FIELDS[name].kind is FieldKind.BOOL, name
        values, _ = self.array(name)
        return values

    # -- back to rows ---------------------------------------------------------------------

    def rows(self, *leading: Any) -> Iterator[tuple[Any, ...]]:
        """One tuple per sample with every field in order, ``itl_s`` as packed bytes, after
        the ``leading`` values (the same in every row, e.g. a cluster id)."""
        head = [self.columns[name] for name in _HEAD]
        tail = [self.columns[name] for name in _TAIL]
        before = [repeat(value, self.count) for value in leading]
        return zip(*before, *head, self.itl_blobs(), *tail, strict=True)

    def to_samples(self) -> list[Sample]:
        """The samples themselves (ITLs unpacked into lists of floats)."""
        new: Any = Sample  # positional: the fields in order
        return [
            new(*row[:ITL_POSITION], unpack_itl(row[ITL_POSITION]), *row[ITL_POSITION + 1 :])
            for row in self.rows()
        ]


def _array(name: str, values: list[Any]) -> tuple[npt.NDArray[Any], Bool | None]:
    dtype = FIELDS[name].dtype
    try:
        return np.array(values, dtype=dtype), None
    except TypeError:  # None among the values (or a value of another type, found below)
        pass
    objects = np.array(values, dtype=object)
    missing = np.array([v is None for v in values], dtype=np.bool_)
    if missing.any() and not FIELDS[name].nullable:
        raise ValueError(f"{name} has no value in sample {int(np.flatnonzero(missing)[0])}")
    objects[missing] = 0
    return objects.astype(dtype), ~missing


class SampleSink(Protocol):
    """Takes every batch of a cluster once it is committed, in commit order (the samples file
    ``clientswarm run`` writes while it runs). ``add`` must not raise: the batch is stored."""

    def add(self, cols: SampleColumns) -> None:
        """Take one committed batch."""
        ...


def chunks_of(samples: Iterable[Sample | SampleColumns], size: int) -> Iterator[SampleColumns]:
    """``samples`` as columns of at most ``size`` samples (column batches pass through)."""
    pending: list[Sample] = []
    for item in samples:
        if isinstance(item, SampleColumns):
            if pending:
                yield SampleColumns.from_samples(pending)
                pending = []
            yield item
            continue
        pending.append(item)
        if len(pending) >= size:
            yield SampleColumns.from_samples(pending)
            pending = []
    if pending:
        yield SampleColumns.from_samples(pending)


__all__ = ["F64", "I64", "Bool", "SampleColumns", "SampleSink", "chunks_of"]
