"""Durable per-worker sample files (the high-rate path): written, rolled up, crashed, read back.

The files are real files in a temporary directory; the store compared against is a real
SQLite store.
"""

from __future__ import annotations

import math
import os
import random
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import orjson
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
import pytest

from clientswarm.config.models import SLOConfig
from clientswarm.metrics.columns import SampleColumns
from clientswarm.metrics.fields import COLUMNS, FIELDS, FieldKind
from clientswarm.metrics.sample import Sample
from clientswarm.metrics.stats import ClusterStatistics
from clientswarm.metrics.summary import ClusterInfo
from clientswarm.reports import samplefiles
from clientswarm.reports.parquet import PARQUET_SCHEMA
from clientswarm.reports.samplefiles import (
    TICKS_KEY,
    SampleFileError,
    SampleFiles,
    SampleFileWriter,
    TickFile,
)
from clientswarm.store import ClusterRecord, Store

T0 = 1_700_000_000_000_000_000
MS = 1_000_000
CLUSTER = "c1"
GROUPS = ["chat", "embed", "journey"]


def make_batch(rng: random.Random, worker: int, size: int, t_ms: float = 0.0) -> SampleColumns:
    """``size`` varied samples of one worker: streamed successes (some ITLs NaN, -0.0 or
    none), non-streamed ones, errors of several kinds, warm-up, steps, stages, two targets
    with replicas, every nullable field sometimes None."""
    samples = []
    for i in range(size):
        group = rng.choice(GROUPS)
        sched = T0 + round((t_ms + i * 3.7) * MS)
        sent = sched + rng.randrange(0, 5 * MS)
        roll = rng.random()
        if roll < 0.15:  # failed
            kind = rng.choice(["timeout", "http_500", "connection", "stream_error"])
            samples.append(
                Sample(
                    group=group,
                    client=rng.randrange(64),
                    worker=worker,
                    name=group,
                    scheduled_ns=sched,
                    sent_ns=sent,
                    end_ns=sent + rng.randrange(MS, 900 * MS),
                    status="error",
                    error_kind=kind,
                    error_message=f"{kind}: ünïcode message {i}" if rng.random() < 0.7 else None,
                    http_status=500 if kind == "http_500" else None,
                    stage=rng.randrange(3),
                    target=rng.choice(["default", "other"]),
                )
            )
            continue
        streamed = group != "embed"
        ttft = rng.randrange(10 * MS, 400 * MS)
        out = rng.randrange(1, 200) if streamed else None
        gaps = [rng.expovariate(50.0) for _ in range(max(0, (out or 1) - 1) % 40)]
        if gaps and rng.random() < 0.05:
            gaps[0] = math.nan  # a gap a server's clock could not give
        if gaps and rng.random() < 0.05:
            gaps[-1] = -0.0
        end = sent + ttft + round(sum(g for g in gaps if not math.isnan(g)) * 1e9) + MS
        samples.append(
            Sample(
                group=group,
                client=rng.randrange(64),
                worker=worker,
                name=rng.choice(["plan", "answer"]) if group == "journey" else group,
                scheduled_ns=sched,
                sent_ns=sent,
                end_ns=end,
                first_token_ns=sent + ttft if streamed else None,
                last_token_ns=end - MS if streamed else None,
                input_tokens=rng.randrange(1, 4000) if rng.random() < 0.9 else None,
                output_tokens=out,
                token_source=rng.choice(["usage", "tokenizer", "chunks"]) if streamed else None,
                itl_s=gaps,
                stage=rng.randrange(3),
                warmup=rng.random() < 0.05,
                step=group == "journey" and rng.random() < 0.5,
                target=rng.choice(["default", "other"]),
                replica=rng.randrange(2),
            )
        )
    return SampleColumns.from_samples(samples)


def assert_same_columns(got: SampleColumns, want: SampleColumns) -> None:
    """Every column equal value for value and type for type; the ITLs byte for byte."""
    assert len(got) == len(want)
    for name in COLUMNS:
        a, b = got.columns[name], want.columns[name]
        assert a == b, name
        assert [type(v) for v in a] == [type(v) for v in b], name
    assert bytes(got.itl_packed()) == bytes(want.itl_packed())
    assert got.itl_counts().tolist() == want.itl_counts().tolist()
    assert got.itl_blobs() == want.itl_blobs()


def read_all(files: SampleFiles, chunk_rows: int = 10_000) -> SampleColumns:
    return SampleColumns.concat(list(files.iter_columns(chunk_rows=chunk_rows)))


def worker_files(root: Path, worker: int = 0) -> list[str]:
    return sorted(os.listdir(samplefiles.worker_dir(root, CLUSTER, worker)))


# -- writing and reading back ----------------------------------------------------------------


def test_every_field_kind_reads_back_exactly(tmp_path: Path) -> None:
    rng = random.Random(1)
    batches = [make_batch(rng, 0, n, t_ms=100.0 * k) for k, n in enumerate([300, 0, 1, 257])]
    kinds = {FIELDS[name].kind for name in COLUMNS}
    assert kinds == {FieldKind.INT, FieldKind.TEXT, FieldKind.BOOL}  # and itl_s: SECONDS
    whole = SampleColumns.concat(batches)
    assert None in whole.columns["input_tokens"] and None in whole.columns["error_message"]
    assert True in whole.columns["warmup"] and True in whole.columns["step"]
    values = whole.itl_values()
    assert np.isnan(values).any() and np.signbit(values[values == 0]).any()
    assert 0 in whole.itl_counts().tolist()

    writer = SampleFileWriter(tmp_path, CLUSTER, 0)
    for seq, cols in enumerate(batches):
        writer.write_tick(seq, cols)
    files = SampleFiles(tmp_path, CLUSTER)
    for chunk_rows in (10_000, 7, 1):  # chunks that span files and cut them mid-way
        chunks = list(files.iter_columns(chunk_rows=chunk_rows))
        assert all(0 < len(c) <= chunk_rows for c in chunks)
        assert_same_columns(SampleColumns.concat(chunks), whole)
    writer.close()
    assert_same_columns(read_all(files), whole)


def test_a_tick_is_one_named_file_and_an_empty_tick_is_one_too(tmp_path: Path) -> None:
    writer = SampleFileWriter(tmp_path, CLUSTER, 3)
    cols = make_batch(random.Random(2), 3, 40)
    tick = writer.write_tick(7, cols)
    path = tmp_path / CLUSTER / "worker-00003" / "tick-0000000007.arrow"
    assert tick == TickFile(path, 7, 40, path.stat().st_size)
    empty = writer.write_tick(8, SampleColumns.empty())
    assert empty.samples == 0 and ipc.open_file(empty.path).read_all().num_rows == 0
    files = SampleFiles(tmp_path, CLUSTER)
    assert files.workers() == [3]
    assert files.seqs(3) == {7, 8}
    assert files.count_samples() == 40
    assert [len(c) for c in files.iter_columns()] == [40]  # no empty chunk
    with ipc.open_file(path) as tick_file:  # Arrow IPC, uncompressed: cheap to write
        assert tick_file.schema.metadata[TICKS_KEY] == b'{"7": 40}'
        assert tick_file.schema.equals(PARQUET_SCHEMA)
        assert tick_file.read_all().num_rows == 40


def test_workers_are_read_in_order_of_worker_then_seq(tmp_path: Path) -> None:
    rng = random.Random(3)
    for worker in (12, 2):
        writer = SampleFileWriter(tmp_path, CLUSTER, worker)
        for seq in (5, 1, 3):
            writer.write_tick(seq, make_batch(rng, worker, 4, t_ms=seq * 1000.0))
    back = read_all(SampleFiles(tmp_path, CLUSTER))
    keys = list(zip(back.columns["worker"], back.columns["scheduled_ns"], strict=True))
    assert keys == sorted(keys)
    assert SampleFiles(tmp_path, CLUSTER).workers() == [2, 12]


def test_a_tick_is_durable_before_write_tick_returns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[str] = []
    real_fsync = os.fsync

    def spy(fd: int) -> None:
        real_fsync(fd)
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))

    monkeypatch.setattr(os, "fsync", spy)
    tick = SampleFileWriter(tmp_path / "new", CLUSTER, 0).write_tick(0, SampleColumns.empty())
    worker = tick.path.parent
    # each new directory durable in its parent, the file's data, then its name
    assert synced[:3] == [str(tmp_path), str(tmp_path / "new"), str(worker.parent)]
    assert synced[3].startswith(str(worker / ".tick-0000000000.arrow."))
    assert synced[3].endswith(".tmp")
    assert synced[4:] == [str(worker)]


def test_bad_names_are_refused(tmp_path: Path) -> None:
    for bad in ("", "..", "a/b"):
        with pytest.raises(ValueError, match="cluster_id"):
            SampleFileWriter(tmp_path, bad, 0)
    writer = SampleFileWriter(tmp_path, CLUSTER, 0)
    with pytest.raises(ValueError, match="seq must be between 0 and 9999999999, got -1"):
        writer.write_tick(-1, SampleColumns.empty())


# -- idempotency and restarts -----------------------------------------------------------------


def test_a_restarted_writer_resending_a_seq_keeps_the_first_copy(tmp_path: Path) -> None:
    rng = random.Random(4)
    first, other = make_batch(rng, 0, 20), make_batch(rng, 0, 30)
    SampleFileWriter(tmp_path, CLUSTER, 0).write_tick(0, first)
    again = SampleFileWriter(tmp_path, CLUSTER, 0)
    tick = again.write_tick(0, other)
    assert tick.samples == 20
    assert worker_files(tmp_path) == ["tick-0000000000.arrow"]
    assert_same_columns(read_all(SampleFiles(tmp_path, CLUSTER)), first)


def test_a_seq_rolled_up_already_is_not_written_again(tmp_path: Path) -> None:
    rng = random.Random(5)
    writer = SampleFileWriter(tmp_path, CLUSTER, 0)
    batches = [make_batch(rng, 0, n) for n in (5, 6, 7)]
    for seq, cols in enumerate(batches):
        writer.write_tick(seq, cols)
    (part,) = writer.roll_up(max_ticks=3)
    tick = SampleFileWriter(tmp_path, CLUSTER, 0).write_tick(1, make_batch(rng, 0, 50))
    assert tick == TickFile(part, 1, 6, part.stat().st_size)
    assert worker_files(tmp_path) == ["part-0000000000-0000000002.parquet"]
    assert SampleFiles(tmp_path, CLUSTER).count_samples() == 18


# -- roll-up -----------------------------------------------------------------------------------


def test_roll_up_merges_full_groups_and_close_merges_the_rest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(samplefiles, "ROLL_UP_ROW_GROUP", 25)
    rng = random.Random(6)
    writer = SampleFileWriter(tmp_path, CLUSTER, 0)
    batches = {seq: make_batch(rng, 0, 10, t_ms=seq * 50.0) for seq in range(14)}
    del batches[11]  # not durable (yet): a gap no part may span
    for seq, cols in batches.items():
        writer.write_tick(seq, cols)
    assert writer.roll_up(max_ticks=4) == [
        writer.directory / "part-0000000000-0000000003.parquet",
        writer.directory / "part-0000000004-0000000007.parquet",
    ]
    assert writer.roll_up(max_ticks=4) == []
    assert worker_files(tmp_path)[2:] == [f"tick-{s:010d}.arrow" for s in (8, 9, 10, 12, 13)]
    files = SampleFiles(tmp_path, CLUSTER)
    assert files.seqs(0) == set(batches)
    parts = writer.close()
    assert [p.name for p in parts] == [
        "part-0000000008-0000000010.parquet",
        "part-0000000012-0000000013.parquet",
    ]
    assert all(name.startswith("part-") for name in worker_files(tmp_path))
    assert files.seqs(0) == set(batches)
    assert_same_columns(read_all(files), SampleColumns.concat(list(batches.values())))
    # streamed in row groups of at most ROLL_UP_ROW_GROUP rows, not one per tick
    first = pq.ParquetFile(writer.directory / "part-0000000000-0000000003.parquet")
    rows = [first.metadata.row_group(i).num_rows for i in range(first.num_row_groups)]
    assert rows == [30, 10]
    assert pq.read_schema(parts[1]).metadata[TICKS_KEY] == b'{"12": 10, "13": 10}'


def test_a_crash_after_the_part_leaves_each_seq_counted_once(tmp_path: Path) -> None:
    rng = random.Random(7)
    writer = SampleFileWriter(tmp_path, CLUSTER, 0)
    batches = [make_batch(rng, 0, 9 + seq) for seq in range(6)]
    for seq, cols in enumerate(batches):
        writer.write_tick(seq, cols)
    kept = tmp_path / "kept"
    shutil.copytree(writer.directory, kept)
    writer.roll_up(max_ticks=4)
    for name in os.listdir(kept):  # as if the roll-up died before deleting its ticks
        shutil.copy(kept / name, writer.directory / name)
    files = SampleFiles(tmp_path, CLUSTER)
    assert len(worker_files(tmp_path)) == 7
    assert files.count_samples() == sum(len(b) for b in batches)
    assert files.seqs(0) == set(range(6))
    assert_same_columns(read_all(files, chunk_rows=5), SampleColumns.concat(batches))
    again = SampleFileWriter(tmp_path, CLUSTER, 0)
    assert again.roll_up(max_ticks=4) == []  # the covered ticks go, nothing is merged twice
    assert worker_files(tmp_path) == [
        "part-0000000000-0000000003.parquet",
        "tick-0000000004.arrow",
        "tick-0000000005.arrow",
    ]


def test_a_leftover_temporary_file_is_ignored_then_removed(tmp_path: Path) -> None:
    writer = SampleFileWriter(tmp_path, CLUSTER, 0)
    cols = make_batch(random.Random(8), 0, 12)
    writer.write_tick(0, cols)
    leftover = writer.directory / ".tick-0000000001.arrow.999.abcd.tmp"
    leftover.write_bytes(b"PAR1 half a file")
    files = SampleFiles(tmp_path, CLUSTER)
    assert files.seqs(0) == {0} and files.count_samples() == 12
    assert_same_columns(read_all(files), cols)
    SampleFileWriter(tmp_path, CLUSTER, 0)  # the restarted worker
    assert not leftover.exists()


def test_a_reader_finds_ticks_that_a_roll_up_moved_under_it(tmp_path: Path) -> None:
    rng = random.Random(9)
    writer = SampleFileWriter(tmp_path, CLUSTER, 0)
    batches = [make_batch(rng, 0, 10) for _ in range(5)]
    for seq, cols in enumerate(batches):
        writer.write_tick(seq, cols)
    chunks = SampleFiles(tmp_path, CLUSTER).iter_columns(chunk_rows=10)
    got = [next(chunks), next(chunks)]  # ticks 0 and 1 read, 2..4 listed
    writer.close()  # ticks 0..4 are part-0-4 now
    got.extend(chunks)
    assert_same_columns(SampleColumns.concat(got), SampleColumns.concat(batches))


# -- unreadable files -------------------------------------------------------------------------


def truncated_tick(tmp_path: Path) -> Path:
    writer = SampleFileWriter(tmp_path, CLUSTER, 0)
    rng = random.Random(10)
    writer.write_tick(0, make_batch(rng, 0, 5))
    path = writer.write_tick(1, make_batch(rng, 0, 50)).path
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


@pytest.mark.parametrize(
    "use",
    [
        lambda root: read_all(SampleFiles(root, CLUSTER)),
        lambda root: SampleFiles(root, CLUSTER).count_samples(),
        lambda root: SampleFileWriter(root, CLUSTER, 0).close(),
        lambda root: SampleFileWriter(root, CLUSTER, 0).write_tick(1, SampleColumns.empty()),
    ],
    ids=["iter_columns", "count_samples", "roll_up", "write_tick"],
)
def test_a_truncated_file_is_an_error_that_names_it(
    tmp_path: Path, use: Callable[[Path], object]
) -> None:
    path = truncated_tick(tmp_path)
    with pytest.raises(SampleFileError, match=f"sample file {path} cannot be read"):
        use(tmp_path)


def test_overlapping_parts_are_an_error(tmp_path: Path) -> None:
    writer = SampleFileWriter(tmp_path, CLUSTER, 0)
    for seq in range(4):
        writer.write_tick(seq, SampleColumns.empty())
    (part,) = writer.roll_up(max_ticks=4)
    shutil.copy(part, writer.directory / "part-0000000002-0000000005.parquet")
    with pytest.raises(SampleFileError, match=r"part-0000000000-0000000003\.parquet and "):
        SampleFiles(tmp_path, CLUSTER).count_samples()


# -- the two paths agree ------------------------------------------------------------------------


def summary_json(batches: list[SampleColumns]) -> str:
    slo = SLOConfig(ttft_s=0.2, tpot_s=0.05)
    with ClusterStatistics(slo=slo, group_order=GROUPS) as stats:
        for cols in batches:
            stats.add(cols)
        info = ClusterInfo(id=CLUSTER, name="n", status="completed")
        return stats.summary(info, target_order=["default", "other"]).model_dump_json()


def flat(value: object, path: str = "") -> dict[str, object]:
    """A summary's leaves by their path."""
    if isinstance(value, dict):
        return {k: v for key, item in value.items() for k, v in flat(item, f"{path}.{key}").items()}
    if isinstance(value, list):
        return {k: v for i, item in enumerate(value) for k, v in flat(item, f"{path}[{i}]").items()}
    return {path: value}


def two_paths(tmp_path: Path) -> tuple[dict[tuple[int, int], SampleColumns], Store, SampleFiles]:
    """Three workers' ticks, as they arrive (interleaved), into sample files (a roll-up in the
    middle, one tick sent twice, closed at the end); and a SQLite store holding none yet."""
    rng = random.Random(11)
    ticks = {
        (worker, seq): make_batch(rng, worker, rng.randrange(0, 400), t_ms=seq * 1000.0)
        for seq in range(12)
        for worker in range(3)
    }
    writers = {w: SampleFileWriter(tmp_path / "files", CLUSTER, w) for w in range(3)}
    for (worker, seq), cols in ticks.items():
        writers[worker].write_tick(seq, cols)
        if seq == 6:
            writers[worker].roll_up(max_ticks=4)
    assert writers[1].write_tick(2, ticks[(1, 2)]).samples == len(ticks[(1, 2)])  # a resend
    for writer in writers.values():
        writer.close()
    store = Store.from_url_or_path(str(tmp_path / "s.sqlite"))
    store.create_all()
    store.create_cluster(
        ClusterRecord(
            id=CLUSTER,
            name="n",
            status="running",
            config_json="{}",
            token_hash="h",
            spawner_kind="local",
        )
    )
    store.create_workers(CLUSTER, 3)
    return ticks, store, SampleFiles(tmp_path / "files", CLUSTER)


def test_the_store_and_the_files_give_the_same_summary(tmp_path: Path) -> None:
    ticks, store, files = two_paths(tmp_path)
    # The store takes them in (worker, seq) order, the order the files are read in (the test
    # below takes them in arrival order).
    for (worker, seq), cols in sorted(ticks.items()):
        assert store.add_batch(CLUSTER, worker, seq, cols)
    assert not store.add_batch(CLUSTER, 1, 2, ticks[(1, 2)])
    total = sum(len(c) for c in ticks.values())
    assert files.count_samples() == store.count_samples(CLUSTER) == total
    from_store = summary_json(list(store.iter_columns(CLUSTER)))
    store.close()
    from_files = summary_json(list(files.iter_columns()))
    interactions = sum(
        not (step or warmup)
        for c in ticks.values()
        for step, warmup in zip(c.columns["step"], c.columns["warmup"], strict=True)
    )
    assert orjson.loads(from_store)["total"]["requests"] == interactions
    assert from_files == from_store


def test_in_arrival_order_the_store_gives_the_same_summary_to_the_bit(tmp_path: Path) -> None:
    # Other order, other chunks: means are exact sums rounded once, so nothing differs, not
    # even in the last bit (numpy's float sums differed in 18 means here).
    ticks, store, files = two_paths(tmp_path)
    for (worker, seq), cols in ticks.items():  # as they arrive: interleaved
        assert store.add_batch(CLUSTER, worker, seq, cols)
    from_store = summary_json(list(store.iter_columns(CLUSTER)))
    store.close()
    from_files = summary_json(list(files.iter_columns()))
    a, b = flat(orjson.loads(from_store)), flat(orjson.loads(from_files))
    assert a.keys() == b.keys()
    assert {k for k in a if a[k] != b[k]} == set()
    assert from_files == from_store
