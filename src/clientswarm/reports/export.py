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
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Literal

import orjson

from clientswarm.metrics.sample import Sample

SampleFormat = Literal["jsonl", "parquet", "csv"]

#: Field names of a sample, in declaration order.
SAMPLE_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(Sample))
#: Derived columns added to every exported row.
DERIVED_FIELDS: tuple[str, ...] = ("ttft_s", "e2e_s", "tpot_s", "schedule_lag_s")


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


MEDIA_TYPES = {
    "jsonl": "application/x-ndjson",
    "csv": "text/csv; charset=utf-8",
    "parquet": "application/vnd.apache.parquet",
}
"""Content type of each download format."""


def chunks(samples: Iterable[Sample], size: int) -> Iterator[list[Sample]]:
    iterator = iter(samples)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk


def stream_jsonl(samples: Iterable[Sample], chunk: int = 2000) -> Iterator[bytes]:
    """One JSON object per line."""
    for part in chunks(samples, chunk):
        yield b"".join(orjson.dumps(sample_row(s)) + b"\n" for s in part)


def stream_csv(samples: Iterable[Sample], chunk: int = 2000) -> Iterator[bytes]:
    """A header row, then one row per sample (``itl_s`` as a JSON array)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow([*SAMPLE_FIELDS, *DERIVED_FIELDS])
    for part in chunks(samples, chunk):
        writer.writerows(csv_cells(s) for s in part)
        yield buffer.getvalue().encode()
        buffer.seek(0)
        buffer.truncate()
    if buffer.tell():
        yield buffer.getvalue().encode()


def stream_samples(samples: Iterable[Sample], fmt: str) -> Iterator[bytes]:
    """The samples encoded as ``fmt`` (jsonl, csv or parquet)."""
    if fmt == "jsonl":
        return stream_jsonl(samples)
    if fmt == "csv":
        return stream_csv(samples)
    if fmt == "parquet":
        from clientswarm.reports.parquet import stream_parquet  # pyarrow loads when needed

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


def read_samples(path: str | os.PathLike[str]) -> Iterator[Sample]:
    """Samples of a ``.jsonl`` or ``.parquet`` file, chosen by the file's suffix."""
    suffix = Path(path).suffix.lower()
    if suffix in (".jsonl", ".ndjson", ".json"):
        return read_samples_jsonl(path)
    if suffix in (".parquet", ".pq"):
        from clientswarm.reports.parquet import read_samples_parquet

        return read_samples_parquet(path)
    raise ValueError(f"{path}: cannot tell the samples format; expected a .jsonl or .parquet file")


__all__ = [
    "DERIVED_FIELDS",
    "MEDIA_TYPES",
    "SAMPLE_FIELDS",
    "SampleFormat",
    "chunks",
    "csv_cells",
    "read_samples",
    "read_samples_jsonl",
    "sample_from_row",
    "sample_row",
    "stream_samples",
    "write_samples",
]
