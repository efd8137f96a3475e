"""The tables of the store (SQLAlchemy Core).

Every table but ``clusters``, ``store_meta`` and ``samples`` hangs off ``clusters.id`` with
``ON DELETE CASCADE``; ``samples`` has no foreign key, for ingest speed (see below), so
:meth:`Store.delete_cluster` deletes a cluster's samples itself.

Units: ``*_at`` are Unix epoch seconds (float64), ``*_ns`` Unix epoch nanoseconds (bigint),
``*_s`` seconds. JSON columns (``*_json``) are UTF-8 JSON text, written by the caller.

``samples.itl_s`` holds the inter-token latencies as packed little-endian float64 bytes
(8 bytes per gap, empty for none): a third of the size of JSON text, exact, and cheap to
pack and unpack (see :mod:`clientswarm.store.samples`).
"""

from __future__ import annotations

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
)

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

samples = Table(
    "samples",
    metadata,
    Column("id", _BigId, primary_key=True, autoincrement=True),
    # No foreign key: checking it per row would cost a fifth of the ingest speed. Samples only
    # arrive through Store.add_batch, whose batch row checks the cluster in the same
    # transaction, and Store.delete_cluster deletes them explicitly.
    Column("cluster_id", String(64), nullable=False),
    # From here on: the fields of clientswarm.metrics.sample.Sample, in declaration order.
    Column("group", String(255), nullable=False),
    Column("client", Integer, nullable=False),
    Column("worker", Integer, nullable=False),
    Column("name", String(255), nullable=False),
    Column("scheduled_ns", BigInteger, nullable=False),
    Column("sent_ns", BigInteger, nullable=False),
    Column("end_ns", BigInteger, nullable=False),
    Column("status", String(16), nullable=False),
    Column("first_token_ns", BigInteger),
    Column("last_token_ns", BigInteger),
    Column("input_tokens", Integer),
    Column("output_tokens", Integer),
    Column("token_source", String(16)),
    Column("itl_s", LargeBinary, nullable=False),
    Column("error_kind", String(64)),
    Column("error_message", Text),
    Column("http_status", Integer),
    Column("stage", Integer, nullable=False),
    Column("warmup", Boolean, nullable=False),
    # Added after schema version 1 shipped: Store.create_all adds it to an older database
    # (ADD COLUMN), whose rows read as interactions (false), hence the server default.
    Column("step", Boolean, nullable=False, server_default=false()),
    # The one secondary index (each costs ingest speed): iter_samples' id windows, counts and
    # cascading deletes find a cluster's rows through it. Counting by group scans them.
    Index("ix_samples_cluster_id", "cluster_id", "id"),
)

#: Columns added since their table first shipped, as (table, column name): ``Store.create_all``
#: adds each one that an existing database lacks (``ALTER TABLE … ADD COLUMN``).
ADDED_COLUMNS: tuple[tuple[str, str], ...] = (("samples", "step"),)

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

__all__ = [
    "ADDED_COLUMNS",
    "SCHEMA_VERSION",
    "batches",
    "clients",
    "clusters",
    "events",
    "metadata",
    "samples",
    "store_meta",
    "workers",
]
