"""The tables of the store (SQLAlchemy Core).

Every table but ``clusters``, ``store_meta``, ``repeat_series`` and ``samples`` hangs off
``clusters.id`` with ``ON DELETE CASCADE``; ``samples`` has no foreign key, for ingest speed
(see below), so :meth:`Store.delete_cluster` deletes a cluster's samples itself.

Units: ``*_at`` are Unix epoch seconds (float64), ``*_ns`` Unix epoch nanoseconds (bigint),
``*_s`` seconds. JSON columns (``*_json``) are UTF-8 JSON text, written by the caller.

The columns of ``samples`` after ``cluster_id`` are derived from the sample's field table
(:mod:`clientswarm.metrics.fields`), in field order, so a row maps to a sample positionally.
``samples.itl_s`` holds the inter-token latencies as packed little-endian float64 bytes
(8 bytes per gap, empty for none), as the wire brought them: a third of the size of JSON text,
exact, and read by the statistics without unpacking.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Double,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    false,
    text,
    true,
)
from sqlalchemy.types import TypeEngine

from clientswarm.metrics.fields import SAMPLE_FIELDS, FieldKind, SampleField

SCHEMA_VERSION = 1
"""Bumped on every incompatible change of the tables below.

Compatible additions (a new nullable or defaulted column) keep the version: they are listed
in :data:`ADDED_COLUMNS` and added to an older database by ``Store.create_all``."""

metadata = MetaData()

# SQLite only makes an INTEGER PRIMARY KEY the rowid alias (and so auto-incrementing).
_BigId = BigInteger().with_variant(Integer(), "sqlite")


def _cluster_fk() -> Column[str]:
    return Column(
        "cluster_id",
        String(64),
        ForeignKey("clusters.id", ondelete="CASCADE"),
        primary_key=True,
    )


store_meta = Table(
    "store_meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

clusters = Table(
    "clusters",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("name", String(255), nullable=False),
    Column("status", String(32), nullable=False),
    Column("reason", Text),
    Column("config_json", Text, nullable=False),
    Column("token_hash", String(255), nullable=False),
    Column("spawner_kind", String(64), nullable=False),
    Column("spawner_state_json", Text),
    Column("created_at", Double, nullable=False),
    Column("started_at", Double),
    Column("finished_at", Double),
    Column("start_ns", BigInteger),
    Column("summary_json", Text),
    # list_clusters (newest first, optionally by status) and unfinished_clusters.
    Index("ix_clusters_status_created", "status", "created_at"),
    Index("ix_clusters_created", "created_at"),
)

workers = Table(
    "workers",
    metadata,
    _cluster_fk(),
    Column("index", Integer, primary_key=True, autoincrement=False),
    Column("state", String(32), nullable=False),
    Column("pid", Integer),
    Column("host", String(255)),
    Column("exit_code", Integer),
    Column("error", Text),
    Column("registered_at", Double),
    Column("last_heartbeat_at", Double),
    Column("finished_at", Double),
    Column("samples", BigInteger, nullable=False, default=0),
    Column("in_flight", Integer, nullable=False, default=0),
    Column("loop_lag_p99_s", Double),
    Column("report_json", Text),
)

clients = Table(
    "clients",
    metadata,
    _cluster_fk(),
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("group", String(255), nullable=False),
    Column("worker", Integer, nullable=False),
    Column("state", String(32), nullable=False),
    Column("succeeded", BigInteger, nullable=False, default=0),
    Column("failed", BigInteger, nullable=False, default=0),
)

batches = Table(
    "batches",
    metadata,
    _cluster_fk(),
    Column("worker", Integer, primary_key=True, autoincrement=False),
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("received_at", Double, nullable=False),
    Column("count", Integer, nullable=False),
)

#: Columns added since their table first shipped, as (table, column name): ``Store.create_all``
#: adds each one that an existing database lacks (``ALTER TABLE … ADD COLUMN``).
#:
#: ``samples.target`` is such an addition rather than a new schema version, which would make
#: every existing store unusable for the sake of one label: rows written before it read as
#: ``default``, the name of the one target of a ``target:`` configuration (``targets:``, the
#: only way to name others, came just before the column, in the same unreleased version).
#: ``samples.replica`` likewise: rows written before it read as replica 0, the one URL of a
#: target without ``urls``.
ADDED_COLUMNS: tuple[tuple[str, str], ...] = (
    ("samples", "step"),
    ("samples", "target"),
    ("samples", "replica"),
)


def _sample_type(f: SampleField) -> TypeEngine[Any]:
    """The column type of a sample field."""
    if f.kind is FieldKind.INT:
        return Integer() if f.int32 else BigInteger()
    if f.kind is FieldKind.TEXT:
        return Text() if f.max_length is None else String(f.max_length)
    if f.kind is FieldKind.BOOL:
        return Boolean()
    return LargeBinary()  # FieldKind.SECONDS: packed float64


def sample_column(f: SampleField) -> Column[Any]:
    """The ``samples`` column of a sample field. A column added after schema version 1
    shipped gets its field's default on the server, so that older rows read as it."""
    server_default: Any = None
    if ("samples", f.name) in ADDED_COLUMNS:
        if isinstance(f.default, bool):
            server_default = true() if f.default else false()
        elif isinstance(f.default, str):
            server_default = f.default
        elif isinstance(f.default, int):
            server_default = text(str(f.default))
        else:  # pragma: no cover - guards a field added later
            raise RuntimeError(f"added sample field {f.name} needs a server default for old rows")
    return Column(f.name, _sample_type(f), nullable=f.nullable, server_default=server_default)


samples = Table(
    "samples",
    metadata,
    Column("id", _BigId, primary_key=True, autoincrement=True),
    # No foreign key: checking it per row would cost a fifth of the ingest speed. Samples only
    # arrive through Store.add_batch, whose batch row checks the cluster in the same
    # transaction, and Store.delete_cluster deletes them explicitly.
    Column("cluster_id", String(64), nullable=False),
    # From here on: the sample's fields, in declaration order (clientswarm.metrics.fields).
    *(sample_column(f) for f in SAMPLE_FIELDS),
    # The one secondary index (each costs ingest speed): iter_columns' id windows, counts and
    # cascading deletes find a cluster's rows through it. Counting by group scans them.
    Index("ix_samples_cluster_id", "cluster_id", "id"),
)

events = Table(
    "events",
    metadata,
    Column("id", _BigId, primary_key=True, autoincrement=True),
    Column(
        "cluster_id",
        String(64),
        ForeignKey("clusters.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("ts", Double, nullable=False),
    Column("kind", String(64), nullable=False),
    Column("message", Text, nullable=False),
    Column("data_json", Text),
    Index("ix_events_cluster_id", "cluster_id", "id"),
)

engine_scrapes = Table(
    "engine_scrapes",
    metadata,
    Column("id", _BigId, primary_key=True, autoincrement=True),
    Column(
        "cluster_id",
        String(64),
        ForeignKey("clusters.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("target", String(64), nullable=False),
    Column("t_s", Double, nullable=False),
    Column("values_json", Text, nullable=False),
    Index("ix_engine_scrapes_cluster_id", "cluster_id", "id"),
)
"""One scrape of a target's engine metrics (its replicas merged): ``t_s`` seconds from the
cluster's shared start, the values as :mod:`clientswarm.service.engine_metrics` writes them."""

repeat_series = Table(
    "repeat_series",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("name", String(255), nullable=False),
    Column("status", String(32), nullable=False),
    Column("reason", Text),
    Column("config_json", Text, nullable=False),
    Column("count", Integer, nullable=False),
    Column("same_seed", Boolean, nullable=False),
    Column("confidence", Double, nullable=False),
    Column("cluster_ids_json", Text, nullable=False),
    Column("created_at", Double, nullable=False),
    Column("finished_at", Double),
    Column("stop_requested_at", Double),
    Column("summary_json", Text),
    Index("ix_repeat_series_created", "created_at"),
)
"""A repeat series (:mod:`clientswarm.service.repeats`): one configuration run ``count`` times,
one cluster after another. No foreign key: ``cluster_ids_json`` lists its clusters (a JSON
array of ids, in run order), which are ordinary clusters and may be deleted on their own. A
table added after schema version 1: ``Store.create_all`` creates it in an older database."""

__all__ = [
    "ADDED_COLUMNS",
    "SCHEMA_VERSION",
    "batches",
    "clients",
    "clusters",
    "engine_scrapes",
    "events",
    "metadata",
    "repeat_series",
    "sample_column",
    "samples",
    "store_meta",
    "workers",
]
