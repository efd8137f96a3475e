"""Raw samples as files and downloads (JSONL, Parquet, CSV), and reading them back.

Samples are encoded chunk by chunk (a Parquet row group per chunk), so neither a download nor a
results file of millions of samples is ever built in memory. Every row has
each :class:`~clientswarm.metrics.sample.Sample` field plus the derived ``ttft_s``, ``e2e_s``,
``tpot_s`` and ``schedule_lag_s`` (seconds; ``null`` where a sample has no such value).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import itertools
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from clientswarm.metrics.sample import Sample

SampleFormat = Literal["jsonl", "parquet", "csv"]

#: Field names of a sample, in declaration order.
SAMPLE_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(Sample))
#: Derived columns added to every exported row.
DERIVED_FIELDS: tuple[str, ...] = ("ttft_s", "e2e_s", "tpot_s", "schedule_lag_s")

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


def sample_row(sample: Sample) -> dict[str, Any]:
    """One exported row: every sample field plus the derived seconds."""
    row = {name: getattr(sample, name) for name in SAMPLE_FIELDS}
    row["ttft_s"] = sample.ttft_s
    row["e2e_s"] = sample.e2e_s
    row["tpot_s"] = sample.tpot_s
    row["schedule_lag_s"] = sample.schedule_lag_s
    return row


def csv_cells(sample: Sample) -> list[Any]:
    """One CSV row: ``itl_s`` as a JSON array, ``None`` as an empty cell."""
    row = sample_row(sample)
    row["itl_s"] = orjson.dumps(row["itl_s"]).decode()
    return ["" if v is None else v for v in row.values()]


def sample_from_row(row: dict[str, Any]) -> Sample:
    """Rebuild a sample from an exported row (derived and unknown columns are ignored).

    A field missing from the row takes its default (files written before the field existed:
    no ``step`` column reads as an interaction, ``step=False``).
    """
    data = {name: row[name] for name in SAMPLE_FIELDS if name in row}
    if data.get("itl_s") is None:
        data["itl_s"] = []
    return Sample.from_dict(data)


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
        writer.write_table(samples_table(part))
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


def write_samples(path: str | os.PathLike[str], samples: Iterable[Sample], fmt: str) -> Path:
    """Write ``samples`` to ``path`` as ``fmt``, chunk by chunk (never all in memory)."""
    target = Path(path)
    with target.open("wb") as out:
        for chunk in stream_samples(samples, fmt):
            out.write(chunk)
    return target


def read_samples_jsonl(path: str | os.PathLike[str]) -> Iterator[Sample]:
    """Samples of a JSONL file written by :func:`write_samples`, one at a time."""
    with Path(path).open("rb") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                yield sample_from_row(orjson.loads(line))
            except (orjson.JSONDecodeError, TypeError, KeyError) as exc:
                raise ValueError(f"{path}:{number}: not a sample: {exc}") from exc


def read_samples_parquet(path: str | os.PathLike[str]) -> Iterator[Sample]:
    """Samples of a Parquet file written by :func:`write_samples`, row group by row group."""
    parquet = pq.ParquetFile(path)
    present = set(parquet.schema_arrow.names)  # older files lack newer fields, e.g. ``step``
    columns = [name for name in SAMPLE_FIELDS if name in present]
    for batch in parquet.iter_batches(columns=columns):
        for row in batch.to_pylist():
            yield sample_from_row(row)


def read_samples(path: str | os.PathLike[str]) -> Iterator[Sample]:
    """Samples of a ``.jsonl`` or ``.parquet`` file, chosen by the file's suffix."""
    suffix = Path(path).suffix.lower()
    if suffix in (".jsonl", ".ndjson", ".json"):
        return read_samples_jsonl(path)
    if suffix in (".parquet", ".pq"):
        return read_samples_parquet(path)
    raise ValueError(f"{path}: cannot tell the samples format; expected a .jsonl or .parquet file")


__all__ = [
    "DERIVED_FIELDS",
    "MEDIA_TYPES",
    "PARQUET_SCHEMA",
    "SAMPLE_FIELDS",
    "SampleFormat",
    "csv_cells",
    "read_samples",
    "read_samples_jsonl",
    "read_samples_parquet",
    "sample_from_row",
    "sample_row",
    "samples_table",
    "stream_samples",
    "write_samples",
]
