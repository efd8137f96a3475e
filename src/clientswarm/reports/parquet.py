"""Raw samples as Parquet files: the fixed schema, streamed writing, reading back.

Its own module so that pyarrow (a few tens of milliseconds to import) loads only when a Parquet
file is written or read, not whenever samples are exported (the service and ``clientswarm run``
start without it).
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from clientswarm.metrics.columns import SampleColumns, chunks_of
from clientswarm.metrics.fields import SAMPLE_FIELDS, FieldKind, SampleField
from clientswarm.metrics.sample import Sample
from clientswarm.reports.export import CHUNK, DERIVED_FIELDS, derived_columns, sample_from_row


def _arrow_type(f: SampleField) -> pa.DataType:
    """The Parquet column type of a sample field (every integer as int64)."""
    return {
        FieldKind.INT: pa.int64(),
        FieldKind.TEXT: pa.string(),
        FieldKind.BOOL: pa.bool_(),
        FieldKind.SECONDS: pa.list_(pa.float64()),
    }[f.kind]


#: The fixed Parquet schema: one column per field of the field table, then the derived ones.
PARQUET_SCHEMA = pa.schema(
    [(f.name, _arrow_type(f)) for f in SAMPLE_FIELDS]
    + [(name, pa.float64()) for name in DERIVED_FIELDS]
)


def samples_table(cols: SampleColumns) -> pa.Table:
    """A batch of columns as an Arrow table with :data:`PARQUET_SCHEMA`; the ITL list column
    is made over the packed bytes (offsets from the counts), not from Python floats."""
    arrays = []
    derived = derived_columns(cols)
    for f in PARQUET_SCHEMA:
        if f.name == "itl_s":
            offsets = np.zeros(len(cols) + 1, dtype=np.int32)
            np.cumsum(cols.itl_counts(), out=offsets[1:])
            values = pa.array(cols.itl_values(), type=pa.float64())
            arrays.append(pa.ListArray.from_arrays(pa.array(offsets), values, type=f.type))
        elif f.name in derived:
            arrays.append(pa.array(derived[f.name], type=f.type))
        else:
            arrays.append(pa.array(cols.columns[f.name], type=f.type))
    return pa.Table.from_arrays(arrays, schema=PARQUET_SCHEMA)


class _Pending(io.RawIOBase):
    """A write-only file that keeps what was written until it is taken."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self.parts.append(bytes(data))
        return len(data)

    def take(self) -> bytes:
        data = b"".join(self.parts)
        self.parts.clear()
        return data


WRITE_OPTIONS: dict[str, Any] = {
    "compression": "zstd",
    "use_dictionary": [name for name in PARQUET_SCHEMA.names if name != "itl_s"],
}
"""How the columns are encoded. Inter-token gaps are measured to the nanosecond, so they
rarely repeat: a dictionary of them costs the writer most of its memory (a hash of every
value of a row group) and seldom pays. zstd makes smaller files than the default snappy at
about its speed (``bench/longrun.py`` reports the bytes per sample of each format)."""


class ParquetEncoder:
    """A Parquet file a row group per batch, its bytes handed on as soon as written."""

    def __init__(self) -> None:
        self._sink = _Pending()
        self._writer = pq.ParquetWriter(
            pa.PythonFile(self._sink, mode="w"), PARQUET_SCHEMA, **WRITE_OPTIONS
        )

    def chunk(self, cols: SampleColumns) -> bytes:
        """One row group."""
        self._writer.write_table(samples_table(cols))
        return self._sink.take()

    def end(self) -> bytes:
        """The footer."""
        self._writer.close()
        return self._sink.take()


def stream_parquet(
    samples: Iterable[Sample | SampleColumns], chunk: int = CHUNK
) -> Iterator[bytes]:
    """A Parquet file written one row group per chunk of ``chunk`` samples (or per batch of
    columns), each handed on as soon as written."""
    enc = ParquetEncoder()
    for part in chunks_of(samples, chunk):
        if data := enc.chunk(part):
            yield data
    if data := enc.end():
        yield data


def read_samples_parquet(path: str | os.PathLike[str]) -> Iterator[Sample]:
    """Samples of a Parquet file written by :func:`write_samples`, row group by row group."""
    parquet = pq.ParquetFile(path)
    present = set(parquet.schema_arrow.names)  # older files lack newer fields, e.g. ``step``
    columns = [f.name for f in SAMPLE_FIELDS if f.name in present]
    for batch in parquet.iter_batches(columns=columns):
        for row in batch.to_pylist():
            yield sample_from_row(row)


__all__ = [
    "PARQUET_SCHEMA",
    "WRITE_OPTIONS",
    "ParquetEncoder",
    "read_samples_parquet",
    "samples_table",
    "stream_parquet",
]
