"""Samples to rows and back.

``itl_s`` is stored as packed little-endian float64 (:mod:`clientswarm.metrics.itl`).

The columns of ``samples`` after ``cluster_id`` are the fields of
:class:`~clientswarm.metrics.sample.Sample` in declaration order, so a row maps to a sample
positionally.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Connection, Dialect

from clientswarm.metrics.itl import float64s, unpack_itl
from clientswarm.metrics.sample import Sample
from clientswarm.store import schema

SAMPLE_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(Sample))
_ITL_POSITION = SAMPLE_FIELDS.index("itl_s")

#: The columns read back into a sample, in Sample field order.
SAMPLE_COLUMNS = tuple(schema.samples.c[name] for name in SAMPLE_FIELDS)

_table_fields = tuple(c.name for c in schema.samples.columns)[2:]
if _table_fields != SAMPLE_FIELDS:  # pragma: no cover - guards a Sample change
    raise RuntimeError(
        f"the samples table {_table_fields} does not match the Sample fields {SAMPLE_FIELDS}; "
        "update clientswarm.store.schema and bump SCHEMA_VERSION"
    )


def sample_params(cluster_id: str, batch: Iterable[Sample]) -> list[tuple[Any, ...]]:
    """Positional insert parameters: ``cluster_id``, then every sample field in order."""
    rows: list[tuple[Any, ...]] = []
    append = rows.append
    for s in batch:
        itl = s.itl_s
        append(
            (
                cluster_id,
                s.group,
                s.client,
                s.worker,
                s.name,
                s.scheduled_ns,
                s.sent_ns,
                s.end_ns,
                s.status,
                s.first_token_ns,
                s.last_token_ns,
                s.input_tokens,
                s.output_tokens,
                s.token_source,
                float64s(len(itl)).pack(*itl) if itl else b"",  # = pack_itl, inlined
                s.error_kind,
                s.error_message,
                s.http_status,
                s.stage,
                s.warmup is True or bool(s.warmup),
                s.step is True or bool(s.step),
            )
        )
    return rows


class SampleInserter:
    """Bulk insert of samples: ``COPY`` on PostgreSQL through psycopg, else one executemany.

    Both skip SQLAlchemy's per-row parameter processing, which would cost as much as the
    insert itself; the rows are the positional tuples of :func:`sample_params`.
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

    def insert(self, conn: Connection, cluster_id: str, batch: Sequence[Sample]) -> None:
        """Insert ``batch`` inside the transaction of ``conn``."""
        rows = sample_params(cluster_id, batch)
        if self._copy_sql is not None:
            cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
            with cursor, cursor.copy(self._copy_sql) as copy:
                for row in rows:
                    copy.write_row(row)
        elif self._insert_sql is not None:
            conn.exec_driver_sql(self._insert_sql, rows)
        else:  # a driver with named parameters: the portable (slower) way
            conn.execute(
                schema.samples.insert(), [dict(zip(self._names, r, strict=True)) for r in rows]
            )


def sample_from_values(values: Sequence[Any]) -> Sample:
    """A sample from the values of :data:`SAMPLE_COLUMNS`."""
    fields = list(values)
    fields[_ITL_POSITION] = unpack_itl(fields[_ITL_POSITION])
    sample = Sample(*fields)
    sample.warmup = bool(sample.warmup)
    sample.step = bool(sample.step)
    return sample


def client_counts(batch: Iterable[Sample]) -> dict[int, list[int]]:
    """``{client: [succeeded, failed]}`` of one batch: interactions only, not their steps."""
    counts: dict[int, list[int]] = {}
    for s in batch:
        if s.step:
            continue
        pair = counts.get(s.client)
        if pair is None:
            pair = counts[s.client] = [0, 0]
        pair[0 if s.status == "ok" else 1] += 1
    return counts


__all__ = [
    "SAMPLE_COLUMNS",
    "SAMPLE_FIELDS",
    "SampleInserter",
    "client_counts",
    "sample_from_values",
    "sample_params",
]
