"""The sample's field table, derived from :class:`~clientswarm.metrics.sample.Sample`.

``Sample``'s annotated fields are the one declaration of what a sample holds. This module
reads them once into :data:`SAMPLE_FIELDS` (name, kind, nullable, choices, default, how the
store keeps it), and every format is derived from that table:

- the wire's columns and the type each accepts (:mod:`clientswarm.metrics.wire`);
- the store's ``samples`` columns (:mod:`clientswarm.store.schema`);
- the Parquet schema of exported samples (:mod:`clientswarm.reports.parquet`);
- the numpy dtype each column has in the statistics (:attr:`SampleField.dtype`, used by
  :mod:`clientswarm.metrics.columns`).

Every field but ``itl_s`` is a scalar *column*; ``itl_s`` (kind ``seconds``) is a list of
float64 seconds per sample, kept packed (:mod:`clientswarm.metrics.itl`) from the wire to the
store.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from enum import StrEnum
from typing import Any, Literal

import numpy as np

from clientswarm.metrics.sample import Sample, Stored


class FieldKind(StrEnum):
    """What a field's values are."""

    INT = "int"
    """A 64-bit integer (32-bit in the store when the field is ``Stored(int32=True)``)."""
    TEXT = "text"
    BOOL = "bool"
    SECONDS = "seconds"
    """A list of float64 seconds (``itl_s``)."""


class _Required:
    def __repr__(self) -> str:
        return "NO_DEFAULT"


NO_DEFAULT: Any = _Required()
"""The :attr:`SampleField.default` of a field every sample must give."""

_KINDS: dict[type, FieldKind] = {int: FieldKind.INT, str: FieldKind.TEXT, bool: FieldKind.BOOL}
_DTYPES: dict[FieldKind, np.dtype[Any]] = {
    FieldKind.INT: np.dtype(np.int64),
    FieldKind.TEXT: np.dtype(object),
    FieldKind.BOOL: np.dtype(np.bool_),
    FieldKind.SECONDS: np.dtype("<f8"),
}


@dataclasses.dataclass(frozen=True, slots=True)
class SampleField:
    """One field of a sample, as every format sees it."""

    name: str
    kind: FieldKind
    nullable: bool
    default: Any = NO_DEFAULT
    choices: frozenset[str] | None = None
    """The only values a text field takes (from a ``Literal``), if it is so restricted."""
    int32: bool = False
    max_length: int | None = None
    """Characters a text field's store column holds; None: unbounded text."""

    @property
    def has_default(self) -> bool:
        """Whether a sample may leave this field out."""
        return self.default is not NO_DEFAULT

    @property
    def dtype(self) -> np.dtype[Any]:
        """The numpy dtype of the field's values in the statistics (text stays Python
        objects; ``seconds`` are the float64 of the packed gaps)."""
        return _DTYPES[self.kind]

    @property
    def json_types(self) -> frozenset[type]:
        """The Python types of its JSON values (``NoneType`` when nullable)."""
        base = {FieldKind.INT: int, FieldKind.TEXT: str, FieldKind.BOOL: bool}[self.kind]
        return frozenset({base, type(None)} if self.nullable else {base})


def _field_of(f: dataclasses.Field[Any], hint: Any) -> SampleField:
    stored = Stored()
    if typing.get_origin(hint) is typing.Annotated:
        hint, *extras = typing.get_args(hint)
        stored = next((e for e in extras if isinstance(e, Stored)), stored)
    default = NO_DEFAULT if f.default is dataclasses.MISSING else f.default
    if f.name == "itl_s":
        return SampleField(f.name, FieldKind.SECONDS, nullable=False, default=())
    args = typing.get_args(hint)
    nullable = typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in args
    if nullable:
        (hint,) = [a for a in args if a is not type(None)]
    choices = None
    if typing.get_origin(hint) is Literal:
        choices = frozenset(typing.get_args(hint))
        hint = type(next(iter(choices)))
    return SampleField(
        f.name,
        _KINDS[hint],
        nullable=nullable,
        default=default,
        choices=choices,
        int32=stored.int32,
        max_length=stored.max_length,
    )


def fields_of(declaration: type) -> tuple[SampleField, ...]:
    """The field table of a dataclass declared like :class:`Sample`."""
    hints = typing.get_type_hints(declaration, include_extras=True)
    return tuple(_field_of(f, hints[f.name]) for f in dataclasses.fields(declaration))


SAMPLE_FIELDS: tuple[SampleField, ...] = fields_of(Sample)
"""Every field of a sample, in declaration order."""

FIELDS: dict[str, SampleField] = {f.name: f for f in SAMPLE_FIELDS}
"""The fields by name."""

ITL_FIELD = "itl_s"
"""The one field that is not a scalar column: every inter-token gap, packed float64."""

ITL_POSITION = [f.name for f in SAMPLE_FIELDS].index(ITL_FIELD)
"""Where ``itl_s`` sits among the fields (rows of the store and ``Sample`` are positional)."""

COLUMNS: tuple[str, ...] = tuple(f.name for f in SAMPLE_FIELDS if f.name != ITL_FIELD)
"""The scalar columns, in field order."""


__all__ = [
    "COLUMNS",
    "FIELDS",
    "ITL_FIELD",
    "ITL_POSITION",
    "NO_DEFAULT",
    "SAMPLE_FIELDS",
    "FieldKind",
    "SampleField",
    "fields_of",
]
