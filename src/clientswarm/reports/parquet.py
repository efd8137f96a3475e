"""Raw samples as Parquet files: the fixed schema, streamed writing, reading back.

Its own module so that pyarrow (a few tens of milliseconds to import) loads only when a Parquet
file is written or read, not whenever samples are exported (the service and ``clientswarm run``
start without it).
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from clientswarm.metrics.sample import Sample
from clientswarm.reports.export import SAMPLE_FIELDS, chunks, sample_from_row

#: The fixed Parquet schema: one column per sample field, then the derived ones.
PARQUET_SCHEMA = pa.schema(
    [
        ("group", pa.string()),
        ("client", pa.int64()),
        ("worker", pa.int64()),
        ("name", pa.string()),
        ("scheduled_ns", pa.int64()),
        ("sent_ns", pa.int64()),
        ("end_ns", pa.int64()),
        ("status", pa.string()),
        ("first_token_ns", pa.int64()),
        ("last_token_ns", pa.int64()),
        ("input_tokens", pa.int64()),
        ("output_tokens", pa.int64()),
        ("token_source", pa.string()),
        ("itl_s", pa.list_(pa.float64())),
        ("error_kind", pa.string()),
        ("error_message", pa.string()),
        ("http_status", pa.int64()),
        ("stage", pa.int64()),
        ("warmup", pa.bool_()),
        ("step", pa.bool_()),
        ("ttft_s", pa.float64()),
        ("e2e_s", pa.float64()),
        ("tpot_s", pa.float64()),
        ("schedule_lag_s", pa.float64()),
    ]
)


def samples_table(samples: Sequence[Sample]) -> pa.Table:
    """``samples`` as an Arrow table with :data:`PARQUET_SCHEMA`, built column by column."""
    columns: dict[str, list[Any]] = {
        name: [getattr(s, name) for s in samples] for name in SAMPLE_FIELDS
    }
    columns["ttft_s"] = [s.ttft_s for s in samples]
    columns["e2e_s"] = [s.e2e_s for s in samples]
    columns["tpot_s"] = [s.tpot_s for s in samples]
    columns["schedule_lag_s"] = [s.schedule_lag_s for s in samples]
    return pa.Table.from_pydict(columns, schema=PARQUET_SCHEMA)


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


def stream_parquet(samples: Iterable[Sample], chunk: int = 10_000) -> Iterator[bytes]:
    """A Parquet file written one row group per chunk, each handed on as soon as written."""
    sink = _Pending()
    writer = pq.ParquetWriter(pa.PythonFile(sink, mode="w"), PARQUET_SCHEMA)
    for part in chunks(samples, chunk):
        writer.write_table(samples_table(part))
        if data := sink.take():
            yield data
    writer.close()
    if data := sink.take():
        yield data


def read_samples_parquet(path: str | os.PathLike[str]) -> Iterator[Sample]:
    """Samples of a Parquet file written by :func:`write_samples`, row group by row group."""
    parquet = pq.ParquetFile(path)
    present = set(parquet.schema_arrow.names)  # older files lack newer fields, e.g. ``step``
    columns = [name for name in SAMPLE_FIELDS if name in present]
    for batch in parquet.iter_batches(columns=columns):
        for row in batch.to_pylist():
            yield sample_from_row(row)


__all__ = ["PARQUET_SCHEMA", "read_samples_parquet", "samples_table", "stream_parquet"]
