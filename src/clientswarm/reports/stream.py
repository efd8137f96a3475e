"""Raw samples as a stream of bytes (JSONL, CSV, Parquet) for HTTP downloads.

Samples are read, encoded and handed on chunk by chunk, so a download of millions of samples
never builds the file in memory. Rows are those of :mod:`clientswarm.reports.export`.
"""

from __future__ import annotations

import csv
import io
import itertools
from collections.abc import Iterable, Iterator

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from clientswarm.metrics.sample import Sample
from clientswarm.reports.export import (
    DERIVED_FIELDS,
    PARQUET_SCHEMA,
    SAMPLE_FIELDS,
    csv_cells,
    sample_row,
)

MEDIA_TYPES = {
    "jsonl": "application/x-ndjson",
    "csv": "text/csv; charset=utf-8",
    "parquet": "application/vnd.apache.parquet",
}
"""Content type of each download format."""


def _chunks(samples: Iterable[Sample], size: int) -> Iterator[list[Sample]]:
    iterator = iter(samples)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk


def stream_jsonl(samples: Iterable[Sample], chunk: int = 2000) -> Iterator[bytes]:
    """One JSON object per line."""
    for part in _chunks(samples, chunk):
        yield b"".join(orjson.dumps(sample_row(s)) + b"\n" for s in part)


def stream_csv(samples: Iterable[Sample], chunk: int = 2000) -> Iterator[bytes]:
    """A header row, then one row per sample (``itl_s`` as a JSON array)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow([*SAMPLE_FIELDS, *DERIVED_FIELDS])
    for part in _chunks(samples, chunk):
        writer.writerows(csv_cells(s) for s in part)
        yield buffer.getvalue().encode()
        buffer.seek(0)
        buffer.truncate()
    if buffer.tell():
        yield buffer.getvalue().encode()


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
    for part in _chunks(samples, chunk):
        writer.write_table(pa.Table.from_pylist([sample_row(s) for s in part], PARQUET_SCHEMA))
        if data := sink.take():
            yield data
    writer.close()
    if data := sink.take():
        yield data


def stream_samples(samples: Iterable[Sample], fmt: str) -> Iterator[bytes]:
    """The samples encoded as ``fmt`` (jsonl, csv or parquet)."""
    if fmt == "jsonl":
        return stream_jsonl(samples)
    if fmt == "csv":
        return stream_csv(samples)
    if fmt == "parquet":
        return stream_parquet(samples)
    raise ValueError(f"unknown samples format {fmt!r}; expected one of: jsonl, csv, parquet")
