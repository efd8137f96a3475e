"""Streaming export of raw samples (JSONL, Parquet, CSV) and reading them back.

Writers take samples batch by batch, so a run never holds them all in memory. Every row has
each :class:`~clientswarm.metrics.sample.Sample` field plus the derived ``ttft_s``, ``e2e_s``,
``tpot_s`` and ``schedule_lag_s`` (seconds; ``null`` where a sample has no such value).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Protocol, Self

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
    """Rebuild a sample from an exported row (derived and unknown columns are ignored)."""
    data = {name: row[name] for name in SAMPLE_FIELDS if name in row}
    if data.get("itl_s") is None:
        data["itl_s"] = []
    return Sample.from_dict(data)


class SampleWriter(Protocol):
    """A sink for raw samples, fed batch by batch."""

    def write(self, batch: Sequence[Sample]) -> None:
        """Append a batch of samples."""

    def close(self) -> None:
        """Flush everything and close the file; writing afterwards is an error."""


class _Closing:
    """Context-manager support for writers: ``with open_sample_writer(...) as w``."""

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class JsonlSampleWriter(_Closing):
    """Samples as JSON Lines: one object per line."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._file = self.path.open("wb")

    def write(self, batch: Sequence[Sample]) -> None:
        """Append a batch of samples."""
        self._file.write(b"".join(orjson.dumps(sample_row(s)) + b"\n" for s in batch))

    def close(self) -> None:
        """Flush and close the file (idempotent)."""
        self._file.close()


class CsvSampleWriter(_Closing):
    """Samples as CSV with a header row; ``itl_s`` is a JSON array in its cell."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._file = self.path.open("w", newline="", encoding="utf-8")
        self._csv = csv.writer(self._file)
        self._csv.writerow(PARQUET_SCHEMA.names)

    def write(self, batch: Sequence[Sample]) -> None:
        """Append a batch of samples."""
        self._csv.writerows(csv_cells(s) for s in batch)

    def close(self) -> None:
        """Flush and close the file (idempotent)."""
        self._file.close()


class ParquetSampleWriter(_Closing):
    """Samples as Parquet with :data:`PARQUET_SCHEMA`, in row groups of ``row_group_size``.

    Samples are held (not copied) until their row group is full, so memory stays bounded by
    one row group; do not change a sample after writing it.
    A writer closed without samples still leaves a valid, empty file with the schema.
    """

    def __init__(self, path: str | os.PathLike[str], *, row_group_size: int = 10_000) -> None:
        if row_group_size < 1:
            raise ValueError(f"row_group_size must be at least 1, got {row_group_size}")
        self.path = Path(path)
        self.row_group_size = row_group_size
        self._writer: pq.ParquetWriter | None = pq.ParquetWriter(self.path, PARQUET_SCHEMA)
        self._rows: list[Sample] = []

    def write(self, batch: Sequence[Sample]) -> None:
        """Append a batch of samples; full row groups are written at once."""
        if self._writer is None:
            raise ValueError(f"{self.path}: the writer is closed")
        self._rows.extend(batch)
        while len(self._rows) >= self.row_group_size:
            self._flush(self._rows[: self.row_group_size])
            del self._rows[: self.row_group_size]

    def close(self) -> None:
        """Write the buffered rows and close the file (idempotent)."""
        if self._writer is None:
            return
        if self._rows:
            self._flush(self._rows)
            self._rows = []
        self._writer.close()
        self._writer = None

    def _flush(self, rows: Sequence[Sample]) -> None:
        assert self._writer is not None
        self._writer.write_table(samples_table(rows), row_group_size=self.row_group_size)


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


def open_sample_writer(
    path: str | os.PathLike[str], fmt: SampleFormat | str
) -> JsonlSampleWriter | ParquetSampleWriter | CsvSampleWriter:
    """A writer of ``fmt`` (``jsonl``, ``parquet`` or ``csv``) to ``path``."""
    if fmt == "jsonl":
        return JsonlSampleWriter(path)
    if fmt == "parquet":
        return ParquetSampleWriter(path)
    if fmt == "csv":
        return CsvSampleWriter(path)
    raise ValueError(f"unknown samples format {fmt!r}; expected one of: jsonl, parquet, csv")


def read_samples_jsonl(path: str | os.PathLike[str]) -> Iterator[Sample]:
    """Samples of a JSONL file written by :class:`JsonlSampleWriter`, one at a time."""
    with Path(path).open("rb") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                yield sample_from_row(orjson.loads(line))
            except (orjson.JSONDecodeError, TypeError, KeyError) as exc:
                raise ValueError(f"{path}:{number}: not a sample: {exc}") from exc


def read_samples_parquet(path: str | os.PathLike[str]) -> Iterator[Sample]:
    """Samples of a Parquet file written by :class:`ParquetSampleWriter`, row group by row group."""
    parquet = pq.ParquetFile(path)
    for batch in parquet.iter_batches(columns=list(SAMPLE_FIELDS)):
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


def samples_to_bytes(samples: Sequence[Sample], fmt: SampleFormat | str) -> bytes:
    """``samples`` encoded as one file's bytes (for small downloads; large ones should stream)."""
    if fmt == "jsonl":
        return b"".join(orjson.dumps(sample_row(s)) + b"\n" for s in samples)
    buffer = io.BytesIO()
    if fmt == "parquet":
        pq.write_table(samples_table(samples), buffer)
        return buffer.getvalue()
    if fmt == "csv":
        text = io.StringIO()
        writer = csv.writer(text)
        writer.writerow(PARQUET_SCHEMA.names)
        writer.writerows(csv_cells(s) for s in samples)
        return text.getvalue().encode()
    raise ValueError(f"unknown samples format {fmt!r}; expected one of: jsonl, parquet, csv")


__all__ = [
    "DERIVED_FIELDS",
    "PARQUET_SCHEMA",
    "SAMPLE_FIELDS",
    "CsvSampleWriter",
    "JsonlSampleWriter",
    "ParquetSampleWriter",
    "SampleFormat",
    "SampleWriter",
    "open_sample_writer",
    "read_samples",
    "read_samples_jsonl",
    "read_samples_parquet",
    "sample_from_row",
    "sample_row",
    "samples_table",
    "samples_to_bytes",
]
