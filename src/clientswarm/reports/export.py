"""Raw samples as files and downloads (JSONL, Parquet, CSV), and reading them back.

Samples are encoded a batch of columns at a time (a Parquet row group per batch), so neither a
download nor a results file of millions of samples is ever built in memory. Every row has
each field of the sample's field table (:mod:`clientswarm.metrics.fields`) plus the derived
``ttft_s``, ``e2e_s``, ``tpot_s`` and ``schedule_lag_s`` (seconds; ``null`` where a sample has
no such value), computed as the statistics compute them (:mod:`clientswarm.metrics.derive`).
The ITLs are written from the packed bytes (JSON arrays, Parquet lists), never unpacked into
Python floats first.
"""

from __future__ import annotations

import csv
import io
import os
import queue
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import orjson

from clientswarm.metrics.columns import SampleColumns, chunks_of
from clientswarm.metrics.derive import derive
from clientswarm.metrics.fields import COLUMNS, ITL_FIELD, ITL_POSITION
from clientswarm.metrics.sample import Sample

SampleFormat = Literal["jsonl", "parquet", "csv"]

#: Field names of a sample, in declaration order.
SAMPLE_FIELDS: tuple[str, ...] = (*COLUMNS[:ITL_POSITION], ITL_FIELD, *COLUMNS[ITL_POSITION:])
#: Derived columns added to every exported row.
DERIVED_FIELDS: tuple[str, ...] = ("ttft_s", "e2e_s", "tpot_s", "schedule_lag_s")

CHUNK = 10_000
"""Samples encoded at a time when they come as ``Sample`` objects."""

SINK_BATCH = 2_500
"""Samples a :class:`SamplesFile` gathers before it encodes them (a Parquet row group): few
enough that encoding them takes little memory beside the service's own."""

_JSON_OPTIONS = orjson.OPT_SERIALIZE_NUMPY


def derived_columns(cols: SampleColumns) -> dict[str, list[float | None]]:
    """The derived seconds of every sample of ``cols`` (None where a sample has none)."""
    d = derive(cols)
    out: dict[str, list[float | None]] = {}
    for name in DERIVED_FIELDS:
        values = getattr(d, name)
        missing = np.isnan(values)
        listed: list[float | None] = values.tolist()
        if missing.any():
            for i in np.flatnonzero(missing).tolist():
                listed[i] = None
        out[name] = listed
    return out


def _itl_arrays(cols: SampleColumns) -> list[Any]:
    """Each sample's gaps as a numpy view of the packed bytes (orjson writes them directly)."""
    values = cols.itl_values()
    ends = np.cumsum(cols.itl_counts()).tolist()
    starts = [0, *ends[:-1]]
    return [values[a:b] for a, b in zip(starts, ends, strict=True)]


def _rows(cols: SampleColumns, itl: list[Any]) -> Iterator[tuple[Any, ...]]:
    """Every exported value of each sample, in :data:`SAMPLE_FIELDS` + DERIVED_FIELDS order."""
    derived = derived_columns(cols)
    head = [cols.columns[name] for name in COLUMNS[:ITL_POSITION]]
    tail = [cols.columns[name] for name in COLUMNS[ITL_POSITION:]]
    extra = [derived[name] for name in DERIVED_FIELDS]
    return zip(*head, itl, *tail, *extra, strict=True)


_ALL_FIELDS = (*SAMPLE_FIELDS, *DERIVED_FIELDS)


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


class Encoder(Protocol):
    """Encodes samples as one file format, a batch of columns at a time."""

    def chunk(self, cols: SampleColumns) -> bytes:
        """The bytes of one batch (a row group, lines, rows)."""
        ...

    def end(self) -> bytes:
        """The bytes that end the file."""
        ...


class _Jsonl:
    """One JSON object per line."""

    def chunk(self, cols: SampleColumns) -> bytes:
        dumps = orjson.dumps
        return b"".join(
            dumps(dict(zip(_ALL_FIELDS, row, strict=True)), option=_JSON_OPTIONS) + b"\n"
            for row in _rows(cols, _itl_arrays(cols))
        )

    def end(self) -> bytes:
        return b""


class _Csv:
    """A header row, then one row per sample (``itl_s`` as a JSON array, ``None`` empty)."""

    def __init__(self) -> None:
        self._buffer = io.StringIO()
        self._writer = csv.writer(self._buffer)
        self._writer.writerow(_ALL_FIELDS)

    def _take(self) -> bytes:
        data = self._buffer.getvalue().encode()
        self._buffer.seek(0)
        self._buffer.truncate()
        return data

    def chunk(self, cols: SampleColumns) -> bytes:
        itl = [orjson.dumps(a, option=_JSON_OPTIONS).decode() for a in _itl_arrays(cols)]
        self._writer.writerows(["" if v is None else v for v in row] for row in _rows(cols, itl))
        return self._take()

    def end(self) -> bytes:
        return self._take()  # the header of a file without samples


def encoder(fmt: str) -> Encoder:
    """A fresh encoder of ``fmt`` (jsonl, csv or parquet)."""
    if fmt == "jsonl":
        return _Jsonl()
    if fmt == "csv":
        return _Csv()
    if fmt == "parquet":
        from clientswarm.reports.parquet import ParquetEncoder  # pyarrow loads when needed

        return ParquetEncoder()
    raise ValueError(f"unknown samples format {fmt!r}; expected one of: jsonl, csv, parquet")


def stream_samples(samples: Iterable[Sample | SampleColumns], fmt: str) -> Iterator[bytes]:
    """The samples (or batches of their columns, e.g. :meth:`Store.iter_columns`) encoded as
    ``fmt`` (jsonl, csv or parquet), a batch at a time."""
    return _encoded(samples, encoder(fmt))


def _encoded(samples: Iterable[Sample | SampleColumns], enc: Encoder) -> Iterator[bytes]:
    for cols in chunks_of(samples, CHUNK):
        if data := enc.chunk(cols):
            yield data
    if data := enc.end():
        yield data


def write_samples(
    path: str | os.PathLike[str], samples: Iterable[Sample | SampleColumns], fmt: str
) -> Path:
    """Write ``samples`` to ``path`` as ``fmt``, chunk by chunk (never all in memory)."""
    target = Path(path)
    with target.open("wb") as out:
        for chunk in stream_samples(samples, fmt):
            out.write(chunk)
    return target


class SamplesFile:
    """A samples file written while the samples come: a sample sink of the service
    (:attr:`ClusterManager.sinks <clientswarm.service.manager.ClusterManager.sinks>`), fed
    each batch as it is committed, so that ``clientswarm run`` has its file when the run ends.

    One thread of its own encodes and writes, ``batch_samples`` at a time (a Parquet row group
    each): the commits that feed it only queue their batch (waiting when ``queued_batches``
    wait already, which bounds its memory), and the encoders' buffers stay in one thread.
    :meth:`add` never raises: the batch it is given is committed already, so a failure (a full
    disk) is kept in :attr:`error` and the file is to be written again from the store
    (:attr:`samples` counts what it took).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        fmt: str,
        *,
        batch_samples: int = SINK_BATCH,
        queued_batches: int = 8,
    ) -> None:
        self.path = Path(path)
        self.fmt = fmt
        self.samples = 0
        self.error: Exception | None = None
        if fmt not in MEDIA_TYPES:
            encoder(fmt)  # the error that lists the formats
        self._batch_samples = batch_samples
        self._queue: queue.Queue[SampleColumns | None] = queue.Queue(maxsize=queued_batches)
        self._lock = threading.Lock()
        self._closed = False
        self._out = self.path.open("wb")
        self._writer = threading.Thread(target=self._write, name="samples-file", daemon=True)
        self._writer.start()

    def add(self, cols: SampleColumns) -> None:
        """Take one committed batch."""
        with self._lock:
            if self._closed:
                return
            self.samples += len(cols)
            self._queue.put(cols)

    def close(self) -> Path:
        """Write what is queued and the end of the file; close it (once)."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._queue.put(None)
        self._writer.join()
        return self.path

    def _write(self) -> None:
        """The writer thread: encode and write until :meth:`close`."""
        enc: Encoder | None = None  # made with the first batch: pyarrow loads late
        pending: list[SampleColumns] = []
        count = 0
        with self._out:
            while True:
                cols = self._queue.get()
                if cols is not None:
                    pending.append(cols)
                    count += len(cols)
                    if count < self._batch_samples:
                        continue
                try:
                    if self.error is None:
                        enc = enc or encoder(self.fmt)
                        if pending:
                            self._out.write(enc.chunk(SampleColumns.concat(pending)))
                        if cols is None:
                            self._out.write(enc.end())
                except Exception as exc:  # the batches are stored: the file is made again
                    self.error = exc
                pending, count = [], 0
                if cols is None:
                    return


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
    "Encoder",
    "SampleFormat",
    "SamplesFile",
    "derived_columns",
    "encoder",
    "read_samples",
    "read_samples_jsonl",
    "sample_from_row",
    "stream_samples",
    "write_samples",
]
