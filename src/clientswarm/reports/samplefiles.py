"""Raw samples as durable Parquet files, one directory per worker: the high-rate path's store.

A worker writes each tick's batch to its own file and the service reads them all back, out of
core, for the exact summary. The layout under the directory the spawner names (``root``)::

    <root>/<cluster_id>/worker-<NNNNN>/tick-<seq:010d>.arrow              one tick's samples
    <root>/<cluster_id>/worker-<NNNNN>/part-<first:010d>-<last:010d>.parquet  ticks first..last
    <root>/<cluster_id>/worker-<NNNNN>/.<final name>.<pid>.<random>.tmp    being written

A tick is an uncompressed Arrow IPC file (``pyarrow.ipc.open_file``; cheap to write, which is
what a worker does many times a second: ``bench/fleet_tickcost.py``); a part is a zstd Parquet
file, made once per :data:`~clientswarm.worker.file_sink.ROLL_UP_TICKS` ticks, that a user opens
as they would a ``samples.parquet``. Both have the schema of exported samples
(:data:`~.parquet.PARQUET_SCHEMA`), and their schema's key-value metadata maps each seq they
hold to its row count (:data:`TICKS_KEY`). A worker's end rolls every tick up: a finished
worker's directory holds Parquet parts only.

The rules that make them safe across crashes and restarts:

- **Durable before acknowledged.** A file is written under a temporary name in its final
  directory, flushed and fsynced, renamed to its final name (:func:`os.replace`, atomic), and
  the directory is fsynced (so are the directories above it that were created for it). A file
  under a final name is therefore complete; a temporary one is ignored by every reader (and
  removed by the next writer of its directory).
- **Idempotent by (worker, seq).** Writing a seq that is durable already (as a tick, or inside
  a part) keeps the copy there and writes nothing.
- **Roll-up.** Runs of consecutive ticks are merged into one part (streamed a row group at a
  time), made durable the same way, and only then are the ticks it covers deleted. A part
  supersedes the ticks its name covers: a crash between the part's rename and the deletions
  leaves both, and readers count each seq once. Parts cover consecutive seqs only (never a gap),
  so a part's name alone says which seqs it holds.
- **One writer per worker directory** (the worker, or the one restarted in its place); any
  number of readers, while it writes and rolls up: a tick that a roll-up deletes under a reader
  is found again in its part. The writer lists its directory once, when it starts (clearing
  what a crash left: temporary files, ticks a part holds already), and keeps its files in
  memory from then on.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import threading
from bisect import bisect_right
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import NoReturn

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from clientswarm.errors import ClientswarmError
from clientswarm.metrics.columns import SampleColumns
from clientswarm.metrics.fields import COLUMNS, ITL_FIELD, SAMPLE_FIELDS
from clientswarm.reports.parquet import PARQUET_SCHEMA, WRITE_OPTIONS, samples_table

TICKS_KEY = b"clientswarm.ticks"
"""Key of a file's metadata: JSON ``{"<seq>": rows, …}`` of every tick the file holds."""

MAX_SEQ = 10**10 - 1
"""The largest seq a file name holds (ten digits)."""

ROLL_UP_ROW_GROUP = 65_536
"""Rows a part's row groups hold at most: the samples a roll-up keeps in memory at a time."""

READ_CHUNK = 10_000
"""Samples :meth:`SampleFiles.iter_columns` yields at a time unless told otherwise."""

_TICK = re.compile(r"tick-(\d{10})\.arrow")
_PART = re.compile(r"part-(\d{10})-(\d{10})\.parquet")
_WORKER = re.compile(r"worker-(\d{5,})")
_FIELD_NAMES = [f.name for f in SAMPLE_FIELDS]


class SampleFileError(ClientswarmError):
    """A sample file under a final name cannot be read (truncated, corrupt, another schema),
    or a worker directory holds parts that overlap; the message names the file."""


@dataclass(frozen=True, slots=True)
class TickFile:
    """A tick durable on disk: the file holding it (a tick file, or the part it was rolled
    into), its seq, how many samples the tick has and the file's size in bytes."""

    path: Path
    seq: int
    samples: int
    bytes: int


@dataclass(frozen=True, slots=True)
class _Entry:
    """A final file of a worker directory and the seqs ``first..last`` it holds."""

    first: int
    last: int
    path: Path

    @property
    def is_part(self) -> bool:
        return self.path.name.startswith("part-")


def worker_dir(root: Path, cluster_id: str, worker: int) -> Path:
    """The directory of one worker's sample files."""
    return cluster_dir(root, cluster_id) / f"worker-{worker:05d}"


def cluster_dir(root: Path, cluster_id: str) -> Path:
    """The directory of one cluster's sample files; ValueError for an id that is not one
    plain path component."""
    if not cluster_id or cluster_id in (".", "..") or "/" in cluster_id or "\0" in cluster_id:
        raise ValueError(
            f"cluster_id {cluster_id!r} cannot name a directory: expected one path component"
        )
    return Path(root) / cluster_id


LIVE_SUFFIX = ".live"
"""Workers write a cluster's files under ``<cluster id>.live`` (:func:`live_name`) until the
service freezes them for its summary (:func:`freeze`)."""


def live_name(cluster_id: str) -> str:
    """The directory name a cluster's workers write in while it runs."""
    return cluster_id + LIVE_SUFFIX


def freeze(root: Path, cluster_id: str) -> Path:
    """Rename the cluster's live directory to its final name (``<root>/<cluster id>``), once
    and durably, and return the final one: the summary and every later reader read exactly
    what it held then. A worker still writing afterwards (one the service gave up as lost)
    finds its directory gone and fails its tick, which was never acknowledged; nothing
    appears in the frozen files after the summary was made from them."""
    live, final = cluster_dir(root, live_name(cluster_id)), cluster_dir(root, cluster_id)
    if live.is_dir() and not final.exists():
        os.replace(live, final)
        _fsync_dir(Path(root))
    return final


def tick_name(seq: int) -> str:
    """The final file name of tick ``seq``."""
    return f"tick-{seq:010d}.arrow"


def part_name(first: int, last: int) -> str:
    """The final file name of the part holding ticks ``first..last``."""
    return f"part-{first:010d}-{last:010d}.parquet"


def columns_from_table(table: pa.Table | pa.RecordBatch) -> SampleColumns:
    """The columns of samples read back from Parquet, exactly as they were written: the
    scalar columns as Python values, the ITLs as packed little-endian float64 with a count
    per sample (NaN and -0.0 kept bit for bit). Derived columns are ignored."""
    columns = {name: table.column(name).to_pylist() for name in COLUMNS}
    itl = table.column(ITL_FIELD)
    if isinstance(itl, pa.ChunkedArray):
        itl = itl.combine_chunks() if itl.num_chunks != 1 else itl.chunk(0)
    if len(itl):
        offsets = itl.offsets.to_numpy()  # sliced arrays: the offsets need not start at 0
        counts = np.diff(offsets).astype(np.int64)
        values = itl.flatten().to_numpy(zero_copy_only=False)
        packed = np.ascontiguousarray(values, dtype="<f8").tobytes()
    else:
        counts, packed = np.zeros(0, dtype=np.int64), b""
    return SampleColumns(columns, itl_packed=packed, itl_counts=counts)


# -- durable files ------------------------------------------------------------------------


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _make_dirs(path: Path) -> None:
    """Create ``path`` and the directories above it that are missing, each made durable in
    its parent."""
    missing: list[Path] = []
    at = path
    while not at.is_dir():
        missing.append(at)
        at = at.parent
    for d in reversed(missing):
        with contextlib.suppress(FileExistsError):  # another worker made the cluster's
            d.mkdir()
        _fsync_dir(d.parent)


def _temp_path(final: Path) -> Path:
    return final.with_name(f".{final.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")


def _ticks_metadata(ticks: dict[int, int]) -> dict[bytes, bytes]:
    return {TICKS_KEY: json.dumps({str(s): n for s, n in sorted(ticks.items())}).encode()}


def _publish(tmp: Path, final: Path) -> None:
    """Rename a fsynced temporary file to its final name and make that durable."""
    os.replace(tmp, final)
    _fsync_dir(final.parent)


def _unlink_quietly(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def _unreadable(path: Path, exc: BaseException) -> NoReturn:
    raise SampleFileError(
        f"sample file {path} cannot be read ({type(exc).__name__}: {exc}); it is under a "
        "final name, so it was complete once: restore it, or move it away to summarise "
        "without its samples"
    ) from exc


class _SampleFile:
    """A final sample file open for reading: a part (Parquet) or a tick (Arrow IPC)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._parquet: pq.ParquetFile | None = None
        self._ipc: pa.ipc.RecordBatchFileReader | None = None
        if path.name.endswith(".parquet"):
            self._parquet = pq.ParquetFile(path)
            self.schema: pa.Schema = self._parquet.schema_arrow
        else:
            self._source = pa.OSFile(str(path))
            try:
                self._ipc = pa.ipc.open_file(self._source)
            except BaseException:
                self._source.close()
                raise
            self.schema = self._ipc.schema

    def batches(
        self, batch_size: int, columns: list[str] | None = None
    ) -> Iterator[pa.RecordBatch]:
        """The file's rows in order, ``batch_size`` at most at a time (Arrow and OS errors
        pass)."""
        if self._parquet is not None:
            yield from self._parquet.iter_batches(batch_size=batch_size, columns=columns)
            return
        assert self._ipc is not None
        for i in range(self._ipc.num_record_batches):
            batch = self._ipc.get_batch(i)
            if columns is not None:
                batch = batch.select(columns)
            for start in range(0, batch.num_rows, batch_size):
                yield batch.slice(start, batch_size)

    def close(self) -> None:
        if self._parquet is not None:
            self._parquet.close()
        else:
            self._source.close()

    def __enter__(self) -> _SampleFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _open(path: Path) -> _SampleFile:
    """A final sample file, its schema checked (SampleFileError naming it, if unreadable);
    FileNotFoundError passes (a roll-up may have just deleted a tick)."""
    try:
        opened = _SampleFile(path)
    except FileNotFoundError:
        raise
    except (pa.ArrowException, OSError) as exc:
        _unreadable(path, exc)
    if not opened.schema.equals(PARQUET_SCHEMA):
        opened.close()
        raise SampleFileError(
            f"sample file {path} has another schema than the samples of this version: "
            f"{opened.schema.names}; expected {PARQUET_SCHEMA.names}"
        )
    return opened


def _ticks_of(path: Path, opened: _SampleFile) -> dict[int, int]:
    """The rows of each seq a file holds, from its metadata."""
    try:
        raw = (opened.schema.metadata or {})[TICKS_KEY]
        return {int(seq): int(rows) for seq, rows in json.loads(raw).items()}
    except (KeyError, ValueError, TypeError, AttributeError) as exc:
        raise SampleFileError(
            f"sample file {path} lacks its {TICKS_KEY.decode()} metadata: "
            "it was not written by clientswarm's sample files"
        ) from exc


def _entries(directory: Path) -> list[_Entry]:
    """The final files of a worker directory that readers use, in seq order: its parts, and
    the ticks no part covers (temporary and unknown files ignored). SampleFileError when two
    parts overlap."""
    parts: list[_Entry] = []
    ticks: list[_Entry] = []
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    for name in names:
        if m := _TICK.fullmatch(name):
            seq = int(m[1])
            ticks.append(_Entry(seq, seq, directory / name))
        elif m := _PART.fullmatch(name):
            parts.append(_Entry(int(m[1]), int(m[2]), directory / name))
    parts.sort(key=lambda e: e.first)
    for before, after in pairwise(parts):
        if after.first <= before.last:
            raise SampleFileError(
                f"sample parts {before.path.name} and {after.path.name} in {directory} "
                "overlap; one writer per worker directory keeps them apart: move one away"
            )
    covered = _Coverage(parts)
    kept = [t for t in ticks if not covered.holds(t.first)]
    return sorted([*parts, *kept], key=lambda e: e.first)


class _Coverage:
    """Which seqs a directory's parts (sorted, not overlapping) hold."""

    def __init__(self, parts: list[_Entry]) -> None:
        self._firsts = [p.first for p in parts]
        self._parts = list(parts)

    def add(self, part: _Entry) -> None:
        """Count a new part in (one that overlaps none of them)."""
        i = bisect_right(self._firsts, part.first)
        self._firsts.insert(i, part.first)
        self._parts.insert(i, part)

    def holds(self, seq: int) -> _Entry | None:
        i = bisect_right(self._firsts, seq) - 1
        if i >= 0 and self._parts[i].last >= seq:
            return self._parts[i]
        return None


def _covered_ticks(directory: Path) -> list[Path]:
    """Ticks that a part of the directory holds already (left by a crash mid-roll-up)."""
    names = os.listdir(directory)
    parts = sorted(
        (_Entry(int(m[1]), int(m[2]), directory / n) for n in names if (m := _PART.fullmatch(n))),
        key=lambda e: e.first,
    )
    covered = _Coverage(parts)
    return [directory / n for n in names if (m := _TICK.fullmatch(n)) and covered.holds(int(m[1]))]


# -- the worker's side ----------------------------------------------------------------------


class SampleFileWriter:
    """Writes one worker's ticks durably and rolls them up (see the module docstring).

    Construction creates the worker's directory (durably), removes what a previous writer of
    it left half done (temporary files; ticks that a part holds already) and lists the files
    it keeps. Safe to use from several threads of one process; one writer per worker
    directory at a time.
    """

    def __init__(self, root: Path, cluster_id: str, worker: int) -> None:
        if worker < 0:
            raise ValueError(f"worker must be 0 or more, got {worker}")
        self.cluster_id = cluster_id
        self.worker = worker
        self.directory = worker_dir(root, cluster_id, worker)
        self._lock = threading.Lock()
        _make_dirs(self.directory)
        for name in os.listdir(self.directory):
            if name.startswith(".") and name.endswith(".tmp"):
                _unlink_quietly(self.directory / name)
        self._delete_covered()
        entries = _entries(self.directory)
        self._parts = _Coverage([e for e in entries if e.is_part])
        self._ticks: dict[int, int | None] = {e.first: None for e in entries if not e.is_part}
        """Ticks durable under their own name: seq → rows (None: not read yet)."""

    def write_tick(self, seq: int, cols: SampleColumns) -> TickFile:
        """Make tick ``seq`` (``cols``, possibly no samples) durable; return once it is (the
        tick may be acknowledged then). A seq durable already keeps its copy: nothing is
        written, and the file holding it is returned."""
        if not 0 <= seq <= MAX_SEQ:
            raise ValueError(f"seq must be between 0 and {MAX_SEQ}, got {seq}")
        with self._lock:
            found = self._durable(seq)
            if found is not None:
                return found
            final = self.directory / tick_name(seq)
            table = samples_table(cols).replace_schema_metadata(_ticks_metadata({seq: len(cols)}))
            sink = pa.BufferOutputStream()
            with pa.ipc.new_file(sink, table.schema) as ipc:
                ipc.write_table(table)
            data = sink.getvalue()
            tmp = _temp_path(final)
            try:
                with tmp.open("xb") as out:
                    out.write(memoryview(data))
                    out.flush()
                    os.fsync(out.fileno())
                _publish(tmp, final)
            except BaseException:
                _unlink_quietly(tmp)
                raise
            self._ticks[seq] = len(cols)
            return TickFile(final, seq, len(cols), data.size)

    def _durable(self, seq: int) -> TickFile | None:
        """The file that holds ``seq`` already, if one does."""
        if seq in self._ticks:
            path = self.directory / tick_name(seq)
        elif (part := self._parts.holds(seq)) is not None:
            path = part.path
        else:
            return None
        with _open(path) as opened:
            rows = _ticks_of(path, opened).get(seq, 0)
        return TickFile(path, seq, rows, path.stat().st_size)

    def roll_up(self, max_ticks: int = 60) -> list[Path]:
        """Merge every full group of ``max_ticks`` consecutive ticks into a part, and delete
        the ticks a part holds; return the parts written. Call it as often as suits (it
        touches no file when there is nothing to merge)."""
        if max_ticks < 1:
            raise ValueError(f"max_ticks must be at least 1, got {max_ticks}")
        return self._roll_up(max_ticks, partial=False)

    def close(self) -> list[Path]:
        """Roll every tick up, runs shorter than a group included (the worker's end): the
        directory is left holding parts only. Return the parts written."""
        return self._roll_up(None, partial=True)

    def _roll_up(self, max_ticks: int | None, *, partial: bool) -> list[Path]:
        with self._lock:
            written = []
            for group in _groups(sorted(self._ticks), max_ticks):
                if partial or len(group) == max_ticks:
                    written.append(self._merge(group))
            return written

    def _delete_covered(self) -> None:
        covered = _covered_ticks(self.directory)
        for path in covered:
            _unlink_quietly(path)
        if covered:
            _fsync_dir(self.directory)

    def _merge(self, seqs: list[int]) -> Path:
        """Write the part of ticks ``seqs`` (consecutive) durably, then delete the ticks."""
        ticks = [self.directory / tick_name(s) for s in seqs]
        rows: dict[int, int] = {}
        for seq, path in zip(seqs, ticks, strict=True):
            known = self._ticks[seq]
            if known is None:  # a tick of the writer before a restart
                with _open(path) as opened:
                    rows.update(_ticks_of(path, opened))
            else:
                rows[seq] = known
        final = self.directory / part_name(seqs[0], seqs[-1])
        tmp = _temp_path(final)
        try:
            with tmp.open("xb") as out:
                schema = PARQUET_SCHEMA.with_metadata(_ticks_metadata(rows))
                with pq.ParquetWriter(out, schema, **WRITE_OPTIONS) as writer:
                    _copy_rows(ticks, writer)
                out.flush()
                os.fsync(out.fileno())
            _publish(tmp, final)
        except BaseException:
            _unlink_quietly(tmp)
            raise
        self._parts.add(_Entry(seqs[0], seqs[-1], final))
        for seq, path in zip(seqs, ticks, strict=True):
            del self._ticks[seq]
            _unlink_quietly(path)
        _fsync_dir(self.directory)
        return final


def _groups(seqs: list[int], size: int | None) -> Iterator[list[int]]:
    """``seqs`` (sorted) cut into runs of consecutive seqs, each cut into groups of at most
    ``size`` (None: no limit)."""
    run: list[int] = []
    for seq in seqs:
        if run and (seq != run[-1] + 1 or (size is not None and len(run) == size)):
            yield run
            run = []
        run.append(seq)
    if run:
        yield run


def _copy_rows(paths: list[Path], writer: pq.ParquetWriter) -> None:
    """Every row of ``paths`` in order into ``writer``, in row groups of at most
    :data:`ROLL_UP_ROW_GROUP` (never more rows than that in memory)."""
    pending: list[pa.RecordBatch] = []
    held = 0
    for path in paths:
        with _open(path) as opened:
            try:
                for batch in opened.batches(ROLL_UP_ROW_GROUP):
                    pending.append(batch)
                    held += batch.num_rows
                    if held >= ROLL_UP_ROW_GROUP:
                        writer.write_table(pa.Table.from_batches(pending, PARQUET_SCHEMA))
                        pending, held = [], 0
            except (pa.ArrowException, OSError) as exc:
                _unreadable(path, exc)
    if pending:
        writer.write_table(pa.Table.from_batches(pending, PARQUET_SCHEMA))


# -- the service's side ---------------------------------------------------------------------


class SampleFiles:
    """The sample files of one cluster, read by the service (after a restart too), while
    workers may still write and roll them up."""

    def __init__(self, root: Path, cluster_id: str) -> None:
        self.cluster_id = cluster_id
        self.directory = cluster_dir(root, cluster_id)

    def workers(self) -> list[int]:
        """The workers that have a directory, in order."""
        try:
            names = os.listdir(self.directory)
        except FileNotFoundError:
            return []
        return sorted(int(m[1]) for n in names if (m := _WORKER.fullmatch(n)))

    def _dir(self, worker: int) -> Path:
        return self.directory / f"worker-{worker:05d}"

    def seqs(self, worker: int) -> set[int]:
        """Every seq durable for ``worker`` (from the file names alone)."""
        return {s for e in _entries(self._dir(worker)) for s in range(e.first, e.last + 1)}

    def count_samples(self) -> int:
        """How many samples the files hold, each seq counted once (from their metadata,
        no sample read)."""
        return sum(self._worker_rows(worker) for worker in self.workers())

    def _worker_rows(self, worker: int) -> int:
        while True:
            entries = _entries(self._dir(worker))
            try:
                return sum(_metadata_rows(e.path) for e in entries)
            except FileNotFoundError:
                continue  # a roll-up deleted a tick: its part holds it now

    def iter_columns(self, chunk_rows: int = READ_CHUNK) -> Iterator[SampleColumns]:
        """Every sample of every worker, in (worker, seq) order, each seq once, as columns of
        at most ``chunk_rows`` samples (a chunk may span files; no empty chunk is yielded)."""
        if chunk_rows < 1:
            raise ValueError(f"chunk_rows must be at least 1, got {chunk_rows}")
        pending: list[pa.RecordBatch] = []
        held = 0
        for worker in self.workers():
            for batch in self._worker_batches(worker, chunk_rows):
                pending.append(batch)
                held += batch.num_rows
                while held >= chunk_rows:
                    table = pa.Table.from_batches(pending)
                    yield columns_from_table(table.slice(0, chunk_rows))
                    rest = table.slice(chunk_rows)
                    pending, held = rest.to_batches(), rest.num_rows
        if held:
            yield columns_from_table(pa.Table.from_batches(pending))

    def _worker_batches(self, worker: int, chunk_rows: int) -> Iterator[pa.RecordBatch]:
        """The samples of one worker in seq order, each seq once. A tick deleted by a
        roll-up before it was opened is read from its part, past the seqs read already."""
        done = -1  # the last seq read
        while True:
            entries = [e for e in _entries(self._dir(worker)) if e.last > done]
            if not entries:
                return
            for entry in entries:
                try:
                    opened = _open(entry.path)
                except FileNotFoundError:
                    break  # list again: a part holds it now
                with opened:
                    yield from _batches_after(opened, done, chunk_rows)
                done = entry.last
            else:
                return


def _metadata_rows(path: Path) -> int:
    """The rows of a final sample file, from its metadata (no sample read)."""
    with _open(path) as opened:
        return sum(_ticks_of(path, opened).values())


def _batches_after(opened: _SampleFile, done: int, chunk_rows: int) -> Iterator[pa.RecordBatch]:
    """The sample fields of a file's rows, skipping the rows of its seqs up to ``done``."""
    path = opened.path
    skip = sum(rows for seq, rows in _ticks_of(path, opened).items() if seq <= done)
    try:
        for batch in opened.batches(chunk_rows, _FIELD_NAMES):
            if skip >= batch.num_rows:
                skip -= batch.num_rows
                continue
            if skip:
                batch, skip = batch.slice(skip), 0
            yield batch
    except (pa.ArrowException, OSError) as exc:
        _unreadable(path, exc)


__all__ = [
    "LIVE_SUFFIX",
    "MAX_SEQ",
    "READ_CHUNK",
    "ROLL_UP_ROW_GROUP",
    "TICKS_KEY",
    "SampleFileError",
    "SampleFileWriter",
    "SampleFiles",
    "TickFile",
    "cluster_dir",
    "columns_from_table",
    "freeze",
    "live_name",
    "part_name",
    "tick_name",
    "worker_dir",
]
