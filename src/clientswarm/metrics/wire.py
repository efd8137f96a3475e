"""The wire form of a sample batch, from a worker to the service: columns, ITLs packed.

A busy worker ships a few thousand streamed samples a second, each with a hundred or more
inter-token latencies. Sent as JSON rows, formatting those floats on the worker and parsing
them on the service cost more than anything else the sample does on its way to the store.
The packed form (media type :data:`PACKED_MEDIA_TYPE`) is one line of JSON with one list per
:class:`~clientswarm.metrics.sample.Sample` field, a newline, then every ITL of the batch as
little-endian float64 seconds (the store's own format, :mod:`clientswarm.metrics.itl`),
``itl_counts[i]`` values for sample ``i``::

    {"seq":7,"count":2,"columns":{"group":["chat","chat"],"client":[0,1],...},"itl_counts":[127,0]}
    <127 x 8 bytes>

Every field but ``itl_s`` is a column; a column of a field with a default (``step``,
``stage``, …) may be left out. The row form, a JSON body ``{"seq": 7, "samples": [{...}]}``
with one object per sample, is accepted as well: it is what a hand-written client sends most
easily.

Both forms are checked against the types of the sample's field table
(:data:`FIELD_TYPES`, derived from :mod:`clientswarm.metrics.fields`) before anything is
stored: a value of the wrong type (``"soon"`` for ``scheduled_ns``), an integer beyond 64 bits
or a status outside its choices is a :class:`BatchFormatError` that names the column, the
sample and the value. Stored, such a value would fail every statistic computed from the
samples later.

:func:`decode_columns` gives the service the batch as it travels on: a
:class:`~clientswarm.metrics.columns.SampleColumns` of the checked columns and the ITL bytes
as they came, which the store keeps untouched and the statistics read in place.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from operator import attrgetter
from typing import Any

import orjson

from clientswarm.errors import ClientswarmError
from clientswarm.metrics.columns import SampleColumns
from clientswarm.metrics.fields import COLUMNS, FIELDS, SampleField
from clientswarm.metrics.itl import pack_itl
from clientswarm.metrics.sample import Sample

_DEFAULTS: dict[str, Any] = {
    name: FIELDS[name].default for name in COLUMNS if FIELDS[name].has_default
}
_row_of = attrgetter(*COLUMNS)

PACKED_MEDIA_TYPE = "application/x-clientswarm-samples"
"""The media type of the packed form (a JSON line, then the packed ITLs)."""

PACKED_DESCRIPTION = (
    "The packed form workers send: one line of JSON, "
    '{"seq": n, "count": N, "columns": {<Sample field>: [N values], ...}, '
    '"itl_counts": [N integers]} (every Sample field but itl_s is a column; one with a default '
    "may be left out), a newline, then sum(itl_counts) little-endian float64 values: the "
    "samples' inter-token latencies in seconds, in sample order."
)
"""How the packed form looks, for the API reference."""


class BatchFormatError(ClientswarmError, ValueError):
    """A sample batch that is neither a valid columnar nor a valid row form."""


_INT64 = (-(2**63), 2**63 - 1)  # what every store's integer columns hold at the most
_TYPE_WORDS = {int: "an integer", str: "a string", bool: "true or false", type(None): "null"}


@dataclasses.dataclass(frozen=True, slots=True)
class FieldType:
    """What one Sample field accepts from the wire: JSON value types, and choices if any."""

    kinds: frozenset[type]
    choices: frozenset[Any] | None = None

    @classmethod
    def of(cls, f: SampleField) -> FieldType:
        """What field ``f`` of the field table accepts."""
        if f.choices is None:
            return cls(f.json_types)
        return cls(f.json_types, f.choices | ({None} if f.nullable else set()))

    def expected(self) -> str:
        """What the field takes, in words."""
        if self.choices is not None:
            return "one of " + ", ".join(sorted(map(_json, self.choices)))
        return " or ".join(_TYPE_WORDS.get(t, t.__name__) for t in _by_name(self.kinds))

    def bad_value(self, values: list[Any]) -> tuple[int, str] | None:
        """The first value this field does not take, as ``(index, what is wrong)``; None if
        every one fits. One pass over the types for the usual, valid batch."""
        if not set(map(type, values)) <= self.kinds:
            return next(
                (i, f"expected {self.expected()}")
                for i, v in enumerate(values)
                if type(v) not in self.kinds
            )
        if self.choices is not None and not set(values) <= self.choices:
            return next(
                (i, f"expected {self.expected()}")
                for i, v in enumerate(values)
                if v not in self.choices
            )
        if int in self.kinds:
            # filter(None, …) drops None (and 0, which fits): C speed, no list built.
            low, high = min(filter(None, values), default=0), max(filter(None, values), default=0)
            if low < _INT64[0] or high > _INT64[1]:
                return next(
                    (i, "expected an integer within 64 bits")
                    for i, v in enumerate(values)
                    if v is not None and not _INT64[0] <= v <= _INT64[1]
                )
        return None


def _json(value: Any) -> str:
    return "null" if value is None else orjson.dumps(value).decode()


def _by_name(kinds: frozenset[type]) -> list[type]:
    return sorted(kinds, key=lambda t: (t is type(None), t.__name__))


FIELD_TYPES: dict[str, FieldType] = {name: FieldType.of(FIELDS[name]) for name in COLUMNS}
"""What each column accepts, derived from the field table (``itl_s`` is packed floats, or in
the row form checked as a list of numbers)."""


def _check_column(name: str, values: list[Any], *, rows: bool = False) -> None:
    """BatchFormatError naming the first value of field ``name`` that does not fit, as
    ``samples[i].name`` (``rows``: the row form) or ``columns.name[i]``."""
    problem = FIELD_TYPES[name].bad_value(values)
    if problem is not None:
        i, expected = problem
        where = f"samples[{i}].{name}" if rows else f"columns.{name}[{i}]"
        raise BatchFormatError(f"{where}: {expected}, got {_shown(values[i])}")


def _shown(value: Any) -> str:
    text = repr(value) if not isinstance(value, str | int | float | bool | None) else _json(value)
    return text if len(text) <= 60 else text[:59] + "…"


class ColumnarBatch:
    """A batch in the making: add samples a slice at a time, then :meth:`encode` it once.

    Adding copies each sample's field values and packs its ITLs, so the samples may change
    afterwards.
    """

    def __init__(self) -> None:
        self._rows: list[tuple[Any, ...]] = []
        self._counts: list[int] = []
        self._packed: list[bytes] = []

    def __len__(self) -> int:
        return len(self._rows)

    def add(self, samples: Sequence[Sample]) -> None:
        """Take the values of ``samples``."""
        self._rows.extend(map(_row_of, samples))
        for s in samples:
            self._counts.append(len(s.itl_s))
            self._packed.append(pack_itl(s.itl_s))

    def columns(self) -> SampleColumns:
        """This batch as columns (as :meth:`SampleColumns.from_samples` makes them)."""
        if not self._rows:
            return SampleColumns.empty()
        values = zip(*self._rows, strict=True)
        columns = {name: list(column) for name, column in zip(COLUMNS, values, strict=True)}
        return SampleColumns(columns, itl_blobs=list(self._packed))

    def encode(self, seq: int) -> bytes:
        """The body of this batch as batch number ``seq``, in the packed form."""
        if self._rows:
            columns = dict(zip(COLUMNS, map(list, zip(*self._rows, strict=True)), strict=True))
        else:
            columns = {name: [] for name in COLUMNS}
        head = {
            "seq": seq,
            "count": len(self._rows),
            "columns": columns,
            "itl_counts": self._counts,
        }
        return orjson.dumps(head) + b"\n" + b"".join(self._packed)


def decode_columns(body: bytes, media_type: str = "application/json") -> tuple[int, SampleColumns]:
    """``(seq, columns)`` of a batch body of ``media_type``: the packed form, or the row form
    as JSON, every value checked against its field's type. BatchFormatError says what is
    wrong (the field, the value, what is valid). The packed form's ITL bytes are kept as they
    came (a view of ``body``)."""
    packed = media_type == PACKED_MEDIA_TYPE
    line_end = body.find(b"\n") if packed else len(body)
    if line_end < 0:
        raise BatchFormatError("the packed form is a JSON line, a newline, then the ITLs")
    try:
        raw = orjson.loads(body[:line_end])
    except orjson.JSONDecodeError as exc:
        raise BatchFormatError(f"not JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise BatchFormatError(f"a batch is a JSON object, got {type(raw).__name__}")
    seq = raw.get("seq")
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 1:
        raise BatchFormatError(f"seq must be an integer >= 1, got {seq!r}")
    if packed:
        return seq, _from_columns(raw, memoryview(body)[line_end + 1 :])
    return seq, SampleColumns.from_samples(_from_rows(raw.get("samples")))


def decode_batch(body: bytes, media_type: str = "application/json") -> tuple[int, list[Sample]]:
    """``(seq, samples)`` of a batch body: :func:`decode_columns`, as ``Sample`` objects."""
    seq, columns = decode_columns(body, media_type)
    return seq, columns.to_samples()


def _from_rows(rows: Any) -> list[Sample]:
    """The samples of the row form, checked."""
    if not isinstance(rows, list):
        raise BatchFormatError(
            f"a JSON batch needs 'samples', one object per sample (or send {PACKED_MEDIA_TYPE})"
        )
    if not all(isinstance(fields, dict) for fields in rows):
        index = next(i for i, fields in enumerate(rows) if not isinstance(fields, dict))
        raise BatchFormatError(f"samples[{index}] must be an object of Sample fields")
    try:
        samples = [Sample(**fields) for fields in rows]
    except TypeError as exc:
        raise BatchFormatError(f"samples: {exc}") from None
    for name in FIELD_TYPES:
        column = [getattr(s, name) for s in samples]
        _check_column(name, column, rows=True)
    for index, sample in enumerate(samples):
        itl = sample.itl_s
        if type(itl) is not list or not all(type(v) in (float, int) for v in itl):
            raise BatchFormatError(
                f"samples[{index}].itl_s: expected a list of numbers (seconds), got {_shown(itl)}"
            )
    return samples


def _from_columns(raw: dict[str, Any], itl_bytes: memoryview) -> SampleColumns:
    count, columns = raw.get("count"), raw.get("columns")
    if not isinstance(count, int) or isinstance(count, bool) or count < 0:
        raise BatchFormatError(f"count must be an integer >= 0, got {count!r}")
    if not isinstance(columns, dict):
        raise BatchFormatError("columns must be an object of one list per Sample field")
    unknown = sorted(set(columns) - set(COLUMNS))
    if unknown:
        raise BatchFormatError(f"unknown columns {unknown}; valid: {', '.join(COLUMNS)}")
    checked = dict(zip(COLUMNS, _lists(columns, COLUMNS, count), strict=True))
    counts = _itl_counts(raw.get("itl_counts"), count, len(itl_bytes))
    return SampleColumns(checked, itl_packed=itl_bytes, itl_counts=counts)


def _lists(columns: dict[str, Any], names: tuple[str, ...], count: int) -> list[list[Any]]:
    out = []
    for name in names:
        column = columns.get(name)
        if column is None:
            if name not in _DEFAULTS:
                raise BatchFormatError(f"columns.{name} is missing; it has no default")
            column = [_DEFAULTS[name]] * count
        if not isinstance(column, list) or len(column) != count:
            got = len(column) if isinstance(column, list) else type(column).__name__
            raise BatchFormatError(f"columns.{name} must be a list of {count} values, got {got}")
        _check_column(name, column)
        out.append(column)
    return out


def _itl_counts(counts: Any, count: int, size: int) -> list[int]:
    if (
        not isinstance(counts, list)
        or len(counts) != count
        or any(not isinstance(k, int) or isinstance(k, bool) or k < 0 for k in counts)
    ):
        raise BatchFormatError(f"itl_counts must be a list of {count} integers >= 0")
    if sum(counts) * 8 != size:
        raise BatchFormatError(
            f"{size} bytes of ITLs follow the JSON line; itl_counts say {sum(counts)} float64 "
            f"values ({sum(counts) * 8} bytes)"
        )
    return counts


__all__ = [
    "COLUMNS",
    "FIELD_TYPES",
    "PACKED_DESCRIPTION",
    "PACKED_MEDIA_TYPE",
    "BatchFormatError",
    "ColumnarBatch",
    "FieldType",
    "decode_batch",
    "decode_columns",
]
