"""The store: clusters, workers, clients, sample batches and events behind one small API.

Thread-safe: every call takes a connection from the engine's pool for its own short
transaction (see :class:`~clientswarm.store.database.Database`), so the service may call it
from any worker thread. Nothing is cached.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Iterable, Iterator, Sequence
from types import TracebackType
from typing import Any, Self

import orjson
from sqlalchemy import Connection, Row, Table, bindparam, func, inspect, select
from sqlalchemy.engine import URL
from sqlalchemy.exc import DataError, IntegrityError
from sqlalchemy.schema import CreateColumn

from clientswarm.metrics.columns import SampleColumns
from clientswarm.metrics.sample import Sample
from clientswarm.store import schema
from clientswarm.store.database import Database
from clientswarm.store.engine import sqlite_file, url_from
from clientswarm.store.health import StoreHealth
from clientswarm.store.owner import OwnerLock, claim
from clientswarm.store.records import (
    UNFINISHED_STATUSES,
    BatchRejected,
    ClientRecord,
    ClusterRecord,
    EventRecord,
    StoreError,
    StoreUnavailable,
    WorkerRecord,
)
from clientswarm.store.samples import (
    SAMPLE_COLUMNS,
    SampleInserter,
    as_columns,
    client_counts,
    columns_of_rows,
)
from clientswarm.store.series import SeriesRows


@dataclasses.dataclass(frozen=True, slots=True)
class Arrival:
    """A batch (its ``samples``) or a tick (``samples`` None: counted only, ``count`` samples
    and the clients' ``[succeeded, failed]``) of one worker, for :meth:`Store.add_arrivals`."""

    cluster_id: str
    worker: int
    seq: int
    samples: SampleColumns | None
    count: int
    clients: dict[int, list[int]] = dataclasses.field(default_factory=dict)

    @classmethod
    def batch(cls, cluster_id: str, worker: int, seq: int, samples: SampleColumns) -> Arrival:
        """A batch of samples."""
        return cls(cluster_id, worker, seq, samples, len(samples))


Move = tuple[str, dict[str, Any], int | None, tuple[str, str, dict[str, Any] | None] | None]
"""A move for :meth:`Store.record_moves`: cluster id, fields, worker (None: the cluster's
own), event."""

log = logging.getLogger(__name__)

_IN_CHUNK = 500  # ids per IN (...) list: well under every backend's bound-parameter limit
_DELETE_CHUNK = 50_000  # samples deleted per transaction, so other writers get a turn

_c, _w, _cl, _b, _s, _e = (
    schema.clusters,
    schema.workers,
    schema.clients,
    schema.batches,
    schema.samples,
    schema.events,
)


class Store:
    """Persistence of the service, on any SQLAlchemy URL (SQLite by default)."""

    def __init__(self, url: str | URL) -> None:
        self._db = Database(url if isinstance(url, URL) else url_from(url))
        self.url = self._db.url
        self.engine = self._db.engine
        self._samples = SampleInserter(self.engine.dialect)
        self.series = SeriesRows(self._db)
        """The repeat series (:mod:`clientswarm.store.series`)."""
        self._owner: OwnerLock | None = None
        dbapi = self.engine.dialect.loaded_dbapi
        self._data_errors: tuple[type[Exception], ...] = (DataError, dbapi.DataError)
        self._one_by_one: tuple[type[Exception], ...] = (
            IntegrityError,
            StoreError,
            *self._data_errors,
        )

    @property
    def health(self) -> StoreHealth:
        """Whether the database works, from the outcome of this store's calls."""
        return self._db.health

    @property
    def name(self) -> str:
        """The store for messages: a SQLite file's path, else the URL without its password."""
        return sqlite_file(self.url) or self.url.render_as_string(hide_password=True)

    @classmethod
    def from_url_or_path(cls, value: str | os.PathLike[str]) -> Store:
        """A store on a SQLAlchemy URL, or on a SQLite file when ``value`` is a plain path."""
        return cls(url_from(value))

    def create_all(self) -> None:
        """Create the tables that are missing (idempotent); refuse a database of another version.

        A database of this version that predates a compatible addition (a column of
        :data:`~clientswarm.store.schema.ADDED_COLUMNS`) gets the column, with its default.
        """
        with self._db.begin("create_all") as conn:
            schema.metadata.create_all(conn)
            _add_missing_columns(conn)
            meta = schema.store_meta
            found = conn.execute(
                select(meta.c.value).where(meta.c.key == "schema_version")
            ).scalar_one_or_none()
            if found is None:
                conn.execute(
                    meta.insert().values(key="schema_version", value=str(schema.SCHEMA_VERSION))
                )
            elif found != str(schema.SCHEMA_VERSION):
                raise StoreError(
                    f"{self.url.render_as_string()}: the database has schema version {found}, "
                    f"this clientswarm expects {schema.SCHEMA_VERSION}; "
                    "use a new database file or URL"
                )

    def claim(self) -> None:
        """Become the one service of this store until :meth:`close` (see
        :mod:`clientswarm.store.owner`); StoreInUse names the service that has it."""
        if self._owner is None:
            with self._db.tracked("claim"):
                self._owner = claim(self.url, self.engine, self.name)

    def keep_claim(self) -> bool:
        """Make sure this process still owns the store (:meth:`OwnerLock.keep`): True when the
        lock had been lost and was taken again; StoreInUse when another service took it."""
        return self._owner.keep() if self._owner is not None else False

    def close(self) -> None:
        """Stop background checkpoints (after a last one), give up the store when claimed,
        and close every pooled connection."""
        if self._owner is not None:
            self._owner.release()
            self._owner = None
        self._db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- clusters -----------------------------------------------------------------------

    def create_cluster(self, rec: ClusterRecord) -> None:
        """Insert a new cluster; an id already taken raises :class:`StoreError`."""
        try:
            with self._db.begin("create_cluster") as conn:
                conn.execute(_c.insert().values(**dataclasses.asdict(rec)))
        except IntegrityError as exc:
            raise StoreError(f"cluster {rec.id!r} exists already; pick a new id") from exc

    def get_cluster(self, cluster_id: str) -> ClusterRecord | None:
        """The cluster, or None."""
        with self._db.read("get_cluster") as conn:
            row = conn.execute(select(_c).where(_c.c.id == cluster_id)).first()
        return None if row is None else ClusterRecord(**row._asdict())

    def list_clusters(self, status: str | None = None) -> list[ClusterRecord]:
        """Every cluster (only those of ``status`` when given), newest first."""
        query = select(_c).order_by(_c.c.created_at.desc(), _c.c.id.desc())
        if status is not None:
            query = query.where(_c.c.status == status)
        with self._db.read("list_clusters") as conn:
            return [ClusterRecord(**row._asdict()) for row in conn.execute(query)]

    def unfinished_clusters(self) -> list[ClusterRecord]:
        """Clusters to recover on restart (pending, starting or running), oldest first."""
        query = (
            select(_c)
            .where(_c.c.status.in_(UNFINISHED_STATUSES))
            .order_by(_c.c.created_at, _c.c.id)
        )
        with self._db.read("unfinished_clusters") as conn:
            return [ClusterRecord(**row._asdict()) for row in conn.execute(query)]

    def update_cluster(self, cluster_id: str, **fields: Any) -> bool:
        """Set ``fields`` of a cluster; False when there is no such cluster."""
        values = _checked_fields(_c, fields, key=("id",))
        with self._db.begin("update_cluster") as conn:
            result = conn.execute(_c.update().where(_c.c.id == cluster_id).values(values))
        return result.rowcount > 0

    def delete_cluster(self, cluster_id: str) -> bool:
        """Delete a cluster and everything of it; False when there was no such cluster.

        Samples go first, in chunks of their own transactions, so deleting millions of them
        does not hold the write lock for long; the last ones go with the cluster row, from
        which the rest cascades.
        """
        while True:
            with self._db.begin("delete_cluster") as conn:
                ids = (
                    select(_s.c.id)
                    .where(_s.c.cluster_id == cluster_id)
                    .order_by(_s.c.id)
                    .limit(_DELETE_CHUNK)
                )
                deleted = conn.execute(_s.delete().where(_s.c.id.in_(ids))).rowcount
            if deleted < _DELETE_CHUNK:
                break
        with self._db.begin("delete_cluster") as conn:
            # Samples committed since the loop above go in the same transaction as the cluster.
            conn.execute(_s.delete().where(_s.c.cluster_id == cluster_id))
            return conn.execute(_c.delete().where(_c.c.id == cluster_id)).rowcount > 0

    # -- workers ------------------------------------------------------------------------

    def create_workers(self, cluster_id: str, count: int) -> None:
        """Insert workers ``0 … count-1`` of a cluster, each ``pending``."""
        if count < 1:
            return
        rows = [dataclasses.asdict(WorkerRecord(cluster_id, index)) for index in range(count)]
        try:
            with self._db.begin("create_workers") as conn:
                conn.execute(_w.insert(), rows)
        except IntegrityError as exc:
            raise StoreError(
                f"cannot create {count} workers of cluster {cluster_id!r}: the cluster is "
                "missing or has workers already"
            ) from exc

    def update_worker(self, cluster_id: str, index: int, **fields: Any) -> bool:
        """Set ``fields`` of a worker; False when there is no such worker."""
        values = _checked_fields(_w, fields, key=("cluster_id", "index"))
        query = _w.update().where(_w.c.cluster_id == cluster_id, _w.c.index == index)
        with self._db.begin("update_worker") as conn:
            return conn.execute(query.values(values)).rowcount > 0

    def update_workers(self, rows: Sequence[tuple[str, int, dict[str, Any]]]) -> None:
        """Set fields of many workers, ``(cluster_id, index, fields)`` each, in one
        transaction (rows of workers that do not exist change nothing)."""
        shapes: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        for cluster_id, index, fields in rows:
            values = _checked_fields(_w, fields, key=("cluster_id", "index"))
            params = {f"v_{name}": value for name, value in values.items()}
            params.update(k_cluster=cluster_id, k_index=index)
            shapes.setdefault(tuple(sorted(values)), []).append(params)
        if not shapes:
            return
        with self._db.begin("update_workers") as conn:
            for names, shaped in shapes.items():
                query = (
                    _w.update()
                    .where(_w.c.cluster_id == bindparam("k_cluster"))
                    .where(_w.c.index == bindparam("k_index"))
                    .values({name: bindparam(f"v_{name}") for name in names})
                )
                conn.execute(query, shaped)

    def get_worker(self, cluster_id: str, index: int) -> WorkerRecord | None:
        """The worker, or None."""
        query = select(_w).where(_w.c.cluster_id == cluster_id, _w.c.index == index)
        with self._db.read("get_worker") as conn:
            row = conn.execute(query).first()
        return None if row is None else WorkerRecord(**row._asdict())

    def list_workers(self, cluster_id: str) -> list[WorkerRecord]:
        """The workers of a cluster by index."""
        query = select(_w).where(_w.c.cluster_id == cluster_id).order_by(_w.c.index)
        with self._db.read("list_workers") as conn:
            return [WorkerRecord(**row._asdict()) for row in conn.execute(query)]

    # -- clients ------------------------------------------------------------------------

    def create_clients(self, cluster_id: str, clients: Sequence[ClientRecord]) -> None:
        """Insert the clients of a cluster (their ``cluster_id`` is taken from the argument)."""
        if not clients:
            return
        rows = [{**dataclasses.asdict(c), "cluster_id": cluster_id} for c in clients]
        try:
            with self._db.begin("create_clients") as conn:
                conn.execute(_cl.insert(), rows)
        except IntegrityError as exc:
            raise StoreError(
                f"cannot create clients of cluster {cluster_id!r}: the cluster is missing or "
                "a client id is taken"
            ) from exc

    def set_client_state(self, cluster_id: str, ids: Iterable[int], state: str) -> int:
        """Set the state of the clients ``ids``; the number of clients changed."""
        wanted = sorted(set(ids))  # ascending, like add_batch: row locks in one order
        changed = 0
        with self._db.begin("set_client_state") as conn:
            for start in range(0, len(wanted), _IN_CHUNK):
                chunk = wanted[start : start + _IN_CHUNK]
                query = _cl.update().where(_cl.c.cluster_id == cluster_id, _cl.c.id.in_(chunk))
                changed += conn.execute(query.values(state=state)).rowcount
        return changed

    def move_clients(self, cluster_id: str, from_state: str, to_state: str) -> int:
        """Set every client of a cluster in ``from_state`` to ``to_state`` in one statement;
        the number of clients changed."""
        query = _cl.update().where(_cl.c.cluster_id == cluster_id, _cl.c.state == from_state)
        with self._db.begin("move_clients") as conn:
            return int(conn.execute(query.values(state=to_state)).rowcount)

    def count_clients(self, cluster_id: str, *, state: str) -> dict[str, int]:
        """How many clients of a cluster are in ``state``, by group (groups without any are
        left out)."""
        query = (
            select(_cl.c.group, func.count())
            .where(_cl.c.cluster_id == cluster_id, _cl.c.state == state)
            .group_by(_cl.c.group)
        )
        with self._db.read("count_clients") as conn:
            return {group: int(n) for group, n in conn.execute(query)}

    def list_clients(
        self, cluster_id: str, *, group: str | None = None, state: str | None = None
    ) -> list[ClientRecord]:
        """The clients of a cluster by id, optionally only of ``group`` and/or ``state``."""
        query = select(_cl).where(_cl.c.cluster_id == cluster_id).order_by(_cl.c.id)
        if group is not None:
            query = query.where(_cl.c.group == group)
        if state is not None:
            query = query.where(_cl.c.state == state)
        with self._db.read("list_clients") as conn:
            return [ClientRecord(**row._asdict()) for row in conn.execute(query)]

    def get_client(self, cluster_id: str, client_id: int) -> ClientRecord | None:
        """The client, or None."""
        query = select(_cl).where(_cl.c.cluster_id == cluster_id, _cl.c.id == client_id)
        with self._db.read("get_client") as conn:
            row = conn.execute(query).first()
        return None if row is None else ClientRecord(**row._asdict())

    # -- samples ------------------------------------------------------------------------

    def add_batch(
        self, cluster_id: str, worker: int, seq: int, samples: SampleColumns | Sequence[Sample]
    ) -> bool:
        """Store one batch of a worker in one committed transaction; False for a seen ``seq``.

        ``samples``: the batch as columns (as the wire decoded them: their ITL bytes are stored
        as they are), or as samples.

        BatchRejected when the database refuses a value (nothing is stored; sending the same
        batch again cannot help), StoreUnavailable when the database fails (nothing is stored;
        send it again later).

        The batch row is the idempotency record: a second ``(cluster_id, worker, seq)`` —
        resent, or racing in from another thread — violates its primary key, the transaction
        rolls back and nothing of it is stored. Counters of the clients and the worker grow
        in the same transaction.
        """
        batch = as_columns(samples)
        batch_row = {
            "cluster_id": cluster_id,
            "worker": worker,
            "seq": seq,
            "received_at": time.time(),
            "count": len(batch),
        }
        try:
            with self._db.begin("add_batch") as conn:
                conn.execute(_b.insert().values(batch_row))
                if len(batch):
                    self._samples.insert(conn, cluster_id, batch)
                    self._count(conn, cluster_id, worker, client_counts(batch), len(batch))
        except IntegrityError as exc:
            if self._batch_exists(cluster_id, worker, seq):
                return False
            # Not a duplicate: another constraint failed, which can only be the cluster's.
            raise StoreError(
                f"cannot store batch {seq} of worker {worker}: no cluster {cluster_id!r}"
            ) from exc
        except self._data_errors as exc:  # e.g. a value out of an int4 column's range
            cause = getattr(exc, "orig", None) or exc
            raise BatchRejected(
                f"the store refused batch {seq} of worker {worker}: "
                f"{' '.join(str(cause).split())[:300]}"
            ) from exc
        return True

    def add_tick(
        self,
        cluster_id: str,
        worker: int,
        seq: int,
        samples: int,
        clients: dict[int, list[int]],
    ) -> bool:
        """Count one tick of the high-rate path (``sample_path: files``: its ``samples`` are in
        the worker's files, not here) in one committed transaction; False for a seen ``seq``.

        As :meth:`add_batch` does for a batch: the batch row (with the tick's sample count) is
        the idempotency record, and the counters of the clients (``clients``:
        ``{client: [succeeded, failed]}``) and of the worker grow in the same transaction.
        StoreUnavailable when the database fails (nothing is counted; send it again later).
        """
        row = {
            "cluster_id": cluster_id,
            "worker": worker,
            "seq": seq,
            "received_at": time.time(),
            "count": samples,
        }
        try:
            with self._db.begin("add_tick") as conn:
                conn.execute(_b.insert().values(row))
                self._count(conn, cluster_id, worker, clients, samples)
        except IntegrityError as exc:
            if self._batch_exists(cluster_id, worker, seq):
                return False
            raise StoreError(
                f"cannot count tick {seq} of worker {worker}: no cluster {cluster_id!r}"
            ) from exc
        return True

    def add_arrivals(self, arrivals: Sequence[Arrival]) -> list[bool | Exception]:
        """Store many batches and count many ticks (:class:`Arrival`) in one transaction —
        the ones that arrived while the last commit ran — and return, for each, True when new,
        False when its ``seq`` was seen (nothing of it stored), or the error that refused it.

        A group commit, as one :meth:`add_batch` or :meth:`add_tick` each would do it: the
        seqs seen already are looked up first (inside the write transaction), the others
        stored with their counters. When anything fails in the group (a value the database
        refuses, a cluster deleted meanwhile, another writer's insert of the same seq), it is
        rolled back and each arrival is stored on its own instead, so one bad batch is refused
        alone. StoreUnavailable (the database fails) is raised for the whole group: nothing of
        it is stored."""
        if len(arrivals) == 1:
            return [self._add_one(arrivals[0])]
        try:
            with self._db.begin("add_arrivals") as conn:
                seen = self._seen_seqs(conn, arrivals)
                done: list[bool | Exception] = []
                for a in arrivals:
                    key = (a.cluster_id, a.worker, a.seq)
                    if key in seen:
                        done.append(False)
                        continue
                    seen.add(key)
                    self._insert_arrival(conn, a)
                    done.append(True)
                return done
        except StoreUnavailable:
            raise
        except self._one_by_one as exc:
            log.info("a group of %d arrivals is stored one by one: %s", len(arrivals), exc)
            return [self._add_one(a) for a in arrivals]

    def _add_one(self, a: Arrival) -> bool | Exception:
        try:
            if a.samples is not None:
                return self.add_batch(a.cluster_id, a.worker, a.seq, a.samples)
            return self.add_tick(a.cluster_id, a.worker, a.seq, a.count, a.clients)
        except StoreUnavailable:
            raise
        except StoreError as exc:  # BatchRejected among them: this one's alone
            return exc

    def _seen_seqs(
        self, conn: Connection, arrivals: Sequence[Arrival]
    ) -> set[tuple[str, int, int]]:
        wanted = {(a.cluster_id, a.worker, a.seq) for a in arrivals}
        query = select(_b.c.cluster_id, _b.c.worker, _b.c.seq).where(
            _b.c.cluster_id.in_(sorted({k[0] for k in wanted})),
            _b.c.seq.in_(sorted({k[2] for k in wanted})),
        )
        found = {(c, w, q) for c, w, q in conn.execute(query)}
        return found & wanted

    def _insert_arrival(self, conn: Connection, a: Arrival) -> None:
        row = {
            "cluster_id": a.cluster_id,
            "worker": a.worker,
            "seq": a.seq,
            "received_at": time.time(),
            "count": a.count,
        }
        conn.execute(_b.insert().values(row))
        if a.samples is None:
            self._count(conn, a.cluster_id, a.worker, a.clients, a.count)
        elif len(a.samples):
            self._samples.insert(conn, a.cluster_id, a.samples)
            self._count(conn, a.cluster_id, a.worker, client_counts(a.samples), a.count)

    def count_ticked_samples(self, cluster_id: str) -> int:
        """The samples of every batch row of a cluster (on the high-rate path: its ticks')."""
        query = select(func.coalesce(func.sum(_b.c.count), 0)).where(_b.c.cluster_id == cluster_id)
        with self._db.read("count_ticked_samples") as conn:
            return int(conn.execute(query).scalar_one())

    def _count(
        self,
        conn: Connection,
        cluster_id: str,
        worker: int,
        counts: dict[int, list[int]],
        samples: int,
    ) -> None:
        if counts:  # none in a batch of steps only
            conn.execute(
                _cl.update()
                .where(_cl.c.cluster_id == cluster_id, _cl.c.id == bindparam("b_client"))
                .values(
                    succeeded=_cl.c.succeeded + bindparam("b_ok"),
                    failed=_cl.c.failed + bindparam("b_failed"),
                ),
                # Ascending client ids: concurrent batches lock rows in one order, never deadlock.
                [
                    {"b_client": k, "b_ok": ok, "b_failed": bad}
                    for k, (ok, bad) in sorted(counts.items())
                ],
            )
        conn.execute(
            _w.update()
            .where(_w.c.cluster_id == cluster_id, _w.c.index == worker)
            .values(samples=_w.c.samples + samples)
        )

    def _batch_exists(self, cluster_id: str, worker: int, seq: int) -> bool:
        query = select(_b.c.seq).where(
            _b.c.cluster_id == cluster_id, _b.c.worker == worker, _b.c.seq == seq
        )
        with self._db.read("batch_exists") as conn:
            return conn.execute(query).first() is not None

    def iter_columns(self, cluster_id: str, *, chunk: int = 10_000) -> Iterator[SampleColumns]:
        """Every sample of a cluster in insertion (id) order, as columns of at most ``chunk``
        samples (the ITLs as stored, packed).

        Pages through id windows ``(lo, lo + chunk]`` rather than ``LIMIT``: a window bounds
        the rows a query can touch whatever plan the database picks (PostgreSQL without fresh
        statistics would sort every remaining row for each ``LIMIT`` page). No connection or
        transaction is held between chunks, so a slow consumer (a streaming HTTP response)
        blocks no writer and memory stays flat. Samples of a cluster that is still running
        are read up to the newest at the time the end is reached.
        """
        if chunk < 1:
            raise ValueError(f"chunk must be at least 1, got {chunk}")
        first, last = self._sample_id_span(cluster_id)
        if first is None or last is None:
            return
        lo = first - 1
        while True:
            while lo < last:
                query = (
                    select(*SAMPLE_COLUMNS)
                    .where(_s.c.cluster_id == cluster_id, _s.c.id > lo, _s.c.id <= lo + chunk)
                    .order_by(_s.c.id)
                )
                with self._db.read("iter_samples") as conn:
                    rows = conn.execute(query).all()
                lo += chunk
                if rows:
                    yield columns_of_rows(rows)
            _, newest = self._sample_id_span(cluster_id)
            if newest is None or newest <= last:
                return
            last = newest

    def iter_samples(self, cluster_id: str, *, chunk: int = 5000) -> Iterator[Sample]:
        """Every sample of a cluster in insertion order, as ``Sample`` objects (read as
        :meth:`iter_columns` reads them, ``chunk`` at a time)."""
        for columns in self.iter_columns(cluster_id, chunk=chunk):
            yield from columns.to_samples()

    def _sample_id_span(self, cluster_id: str) -> tuple[int | None, int | None]:
        query = select(func.min(_s.c.id), func.max(_s.c.id)).where(_s.c.cluster_id == cluster_id)
        with self._db.read("sample_id_span") as conn:
            first, last = conn.execute(query).one()
        return first, last

    def count_samples(self, cluster_id: str, *, group: str | None = None) -> int:
        """How many samples a cluster has (of ``group`` only, when given)."""
        query = select(func.count()).select_from(_s).where(_s.c.cluster_id == cluster_id)
        if group is not None:
            query = query.where(_s.c.group == group)
        with self._db.read("count_samples") as conn:
            return int(conn.execute(query).scalar_one())

    # -- events -------------------------------------------------------------------------

    def add_event(
        self, cluster_id: str, kind: str, message: str, data: dict[str, Any] | None = None
    ) -> int:
        """Append an event to a cluster's log; its id."""
        row = _event_row(cluster_id, kind, message, data)
        with self._db.begin("add_event") as conn:
            key = conn.execute(_e.insert().values(row)).inserted_primary_key
        assert key is not None
        return int(key[0])

    def record_move(
        self,
        cluster_id: str,
        fields: dict[str, Any],
        *,
        worker: int | None = None,
        event: tuple[str, str, dict[str, Any] | None] | None = None,
    ) -> bool:
        """Set ``fields`` of a cluster (of its worker ``worker`` when given) and append
        ``event`` (kind, message, data) to its log in one transaction: both or neither. False
        when there is no such cluster or worker, and then nothing is written."""
        return self.record_moves([(cluster_id, fields, worker, event)])[0]

    def record_moves(self, moves: Sequence[Move]) -> list[bool]:
        """:meth:`record_move` for each of ``moves`` (``(cluster_id, fields, worker, event)``),
        in order, all in one transaction (many workers registering at once commit together);
        for each, False when there is no such cluster or worker (nothing of it is written)."""
        prepared = []
        for cluster_id, fields, worker, event in moves:
            if worker is None:
                values = _checked_fields(_c, fields, key=("id",))
                query = _c.update().where(_c.c.id == cluster_id)
            else:
                values = _checked_fields(_w, fields, key=("cluster_id", "index"))
                query = _w.update().where(_w.c.cluster_id == cluster_id, _w.c.index == worker)
            row = None if event is None else _event_row(cluster_id, *event)
            prepared.append((query.values(values), row))
        done: list[bool] = []
        with self._db.begin("record_move") as conn:
            for update, row in prepared:
                if conn.execute(update).rowcount == 0:
                    done.append(False)
                    continue
                if row is not None:
                    conn.execute(_e.insert().values(row))
                done.append(True)
        return done

    def add_engine_scrapes(
        self, cluster_id: str, scrapes: list[tuple[str, float, dict[str, Any]]]
    ) -> None:
        """Store scrapes of a cluster's targets' engine metrics: (target, seconds from the
        shared start, values as JSON-able data) each."""
        if not scrapes:
            return
        rows = [
            {
                "cluster_id": cluster_id,
                "target": target,
                "t_s": t_s,
                "values_json": orjson.dumps(values).decode(),
            }
            for target, t_s, values in scrapes
        ]
        with self._db.begin("add_engine_scrapes") as conn:
            conn.execute(schema.engine_scrapes.insert(), rows)

    def list_engine_scrapes(self, cluster_id: str) -> list[tuple[str, float, dict[str, Any]]]:
        """Every stored scrape of a cluster's engine metrics, in the order they came:
        (target, seconds from the shared start, values)."""
        table = schema.engine_scrapes
        query = (
            select(table.c.target, table.c.t_s, table.c.values_json)
            .where(table.c.cluster_id == cluster_id)
            .order_by(table.c.id)
        )
        with self._db.read("list_engine_scrapes") as conn:
            return [
                (str(target), float(t_s), orjson.loads(values))
                for target, t_s, values in conn.execute(query)
            ]

    def list_events(
        self, cluster_id: str, *, after_id: int = 0, limit: int = 1000
    ) -> list[EventRecord]:
        """Up to ``limit`` events of a cluster with an id above ``after_id``, oldest first."""
        query = (
            select(_e)
            .where(_e.c.cluster_id == cluster_id, _e.c.id > after_id)
            .order_by(_e.c.id)
            .limit(limit)
        )
        with self._db.read("list_events") as conn:
            return [_event(row) for row in conn.execute(query)]


def _add_missing_columns(conn: Connection) -> None:
    """Add each column of ``schema.ADDED_COLUMNS`` that its (existing) table lacks."""
    inspector = inspect(conn)
    quote = conn.dialect.identifier_preparer.quote
    for table_name, column_name in schema.ADDED_COLUMNS:
        present = {c["name"] for c in inspector.get_columns(table_name)}
        if column_name in present:
            continue
        column = schema.metadata.tables[table_name].c[column_name]
        ddl = CreateColumn(column).compile(dialect=conn.dialect)
        conn.exec_driver_sql(f"ALTER TABLE {quote(table_name)} ADD COLUMN {ddl}")


def _event_row(
    cluster_id: str, kind: str, message: str, data: dict[str, Any] | None
) -> dict[str, Any]:
    return {
        "cluster_id": cluster_id,
        "ts": time.time(),
        "kind": kind,
        "message": message,
        "data_json": None if data is None else orjson.dumps(data).decode(),
    }


def _event(row: Row[Any]) -> EventRecord:
    data = None if row.data_json is None else orjson.loads(row.data_json)
    return EventRecord(row.id, row.cluster_id, row.ts, row.kind, row.message, data)


def _checked_fields(
    table: Table, fields: dict[str, Any], *, key: tuple[str, ...]
) -> dict[str, Any]:
    """``fields`` if each names a non-key column of ``table``; else a ValueError listing them."""
    valid = [c.name for c in table.columns if c.name not in key]
    unknown = sorted(set(fields) - set(valid))
    if unknown:
        raise ValueError(
            f"cannot update {table.name}: unknown field(s) {', '.join(unknown)}; "
            f"valid: {', '.join(valid)}"
        )
    if not fields:
        raise ValueError(f"cannot update {table.name}: no fields given; valid: {', '.join(valid)}")
    return fields


__all__ = ["Store"]
