"""Sample batches into the ``samples`` table and back, as columns.

A batch arrives as :class:`~clientswarm.metrics.columns.SampleColumns` (the wire's checked
columns) and goes in as positional rows: ``cluster_id``, then every field in the order of the
field table, ``itl_s`` as the packed bytes the worker sent. Rows come back the same way, a
window of ids at a time, as columns again.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, Dialect

from clientswarm.metrics.columns import SampleColumns
from clientswarm.metrics.fields import SAMPLE_FIELDS, FieldKind
from clientswarm.metrics.sample import Sample
from clientswarm.metrics.ticks import client_counts
from clientswarm.store import schema

SAMPLE_FIELDS_ORDER: tuple[str, ...] = tuple(f.name for f in SAMPLE_FIELDS)
"""The sample's fields, in the order of the table's columns after ``cluster_id``."""

#: The columns read back into a sample, in field order.
SAMPLE_COLUMNS = tuple(schema.samples.c[name] for name in SAMPLE_FIELDS_ORDER)

_BOOLS = tuple(f.name for f in SAMPLE_FIELDS if f.kind is FieldKind.BOOL)


def as_columns(batch: SampleColumns | Sequence[Sample]) -> SampleColumns:
    """``batch`` as columns (samples are taken as they are, unchecked)."""
    return batch if isinstance(batch, SampleColumns) else SampleColumns.from_samples(batch)


class SampleInserter:
    """Bulk insert of samples: ``COPY`` on PostgreSQL through psycopg, else one executemany.

    Both skip SQLAlchemy's per-row parameter processing, which would cost as much as the
    insert itself; the rows are positional tuples made from the columns in C (``zip``).
    """

    def __init__(self, dialect: Dialect) -> None:
        quote = dialect.identifier_preparer.quote
        self._names = [c.name for c in schema.samples.columns][1:]  # all but the id
        table, columns = quote(schema.samples.name), ", ".join(quote(n) for n in self._names)
        self._copy_sql = (
            f"COPY {table} ({columns}) FROM STDIN" if dialect.driver == "psycopg" else None
        )
        marker = {"qmark": "?", "format": "%s", "pyformat": "%s"}.get(dialect.paramstyle)
        values = ", ".join([marker or ""] * len(self._names))
        self._insert_sql = (
            None if marker is None else f"INSERT INTO {table} ({columns}) VALUES ({values})"
        )

    def insert(self, conn: Connection, cluster_id: str, batch: SampleColumns) -> None:
        """Insert ``batch`` inside the transaction of ``conn``."""
        rows = batch.rows(cluster_id)
        if self._copy_sql is not None:
            cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
            with cursor, cursor.copy(self._copy_sql) as copy:
                for row in rows:
                    copy.write_row(row)
        elif self._insert_sql is not None:
            conn.exec_driver_sql(self._insert_sql, list(rows))
        else:  # a driver with named parameters: the portable (slower) way
            conn.execute(
                schema.samples.insert(), [dict(zip(self._names, r, strict=True)) for r in rows]
            )


def columns_of_rows(rows: Sequence[Sequence[Any]]) -> SampleColumns:
    """Rows of :data:`SAMPLE_COLUMNS` as columns (booleans as the database returned them are
    made ``bool``: SQLite gives 0 and 1)."""
    cols = SampleColumns.from_rows(rows)
    for name in _BOOLS:
        cols.columns[name] = [bool(v) for v in cols.columns[name]]
    return cols


__all__ = [
    "SAMPLE_COLUMNS",
    "SAMPLE_FIELDS_ORDER",
    "SampleInserter",
    "as_columns",
    "client_counts",
    "columns_of_rows",
]
