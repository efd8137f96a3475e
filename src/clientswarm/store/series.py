"""The stored repeat series: one row each in ``repeat_series`` (:mod:`clientswarm.store.schema`).

A series is one configuration run ``count`` times, one cluster after another (the service's
:mod:`clientswarm.service.repeats` drives it); the row keeps what a restarted service needs to
go on: the configuration, the ids of the clusters run so far, whether a stop was asked for,
and, once the series has ended, its aggregate (``summary_json``).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from clientswarm.store import schema
from clientswarm.store.database import Database
from clientswarm.store.records import StoreError

_r = schema.repeat_series

UNFINISHED_SERIES: tuple[str, ...] = ("pending", "running")
"""The statuses of a series that a restarted service goes on with."""


@dataclass(frozen=True, slots=True)
class SeriesRecord:
    """One repeat series: its request, its clusters so far (in run order) and its outcome."""

    id: str
    name: str
    status: str
    config_json: str
    count: int
    same_seed: bool
    confidence: float
    cluster_ids: tuple[str, ...] = ()
    reason: str | None = None
    created_at: float = field(default_factory=time.time)
    finished_at: float | None = None
    stop_requested_at: float | None = None
    summary_json: str | None = None


def _row(record: SeriesRecord) -> dict[str, Any]:
    row = dataclasses.asdict(record)
    row["cluster_ids_json"] = orjson.dumps(list(row.pop("cluster_ids"))).decode()
    return row


def _record(row: Any) -> SeriesRecord:
    values = row._asdict()
    values["cluster_ids"] = tuple(orjson.loads(values.pop("cluster_ids_json")))
    return SeriesRecord(**values)


class SeriesRows:
    """The ``repeat_series`` table of one store (its :attr:`Store.series`)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def create(self, record: SeriesRecord) -> None:
        """Insert a new series; an id already taken raises :class:`StoreError`."""
        try:
            with self._db.begin("create_series") as conn:
                conn.execute(_r.insert().values(**_row(record)))
        except IntegrityError as exc:
            raise StoreError(f"repeat series {record.id!r} exists already") from exc

    def get(self, series_id: str) -> SeriesRecord | None:
        """The series, or None."""
        with self._db.read("get_series") as conn:
            row = conn.execute(select(_r).where(_r.c.id == series_id)).first()
        return None if row is None else _record(row)

    def all(self) -> list[SeriesRecord]:
        """Every series, newest first."""
        query = select(_r).order_by(_r.c.created_at.desc(), _r.c.id.desc())
        with self._db.read("list_series") as conn:
            return [_record(row) for row in conn.execute(query)]

    def unfinished(self) -> list[SeriesRecord]:
        """The series a restarted service goes on with, oldest first."""
        query = (
            select(_r).where(_r.c.status.in_(UNFINISHED_SERIES)).order_by(_r.c.created_at, _r.c.id)
        )
        with self._db.read("unfinished_series") as conn:
            return [_record(row) for row in conn.execute(query)]

    def update(self, series_id: str, **fields: Any) -> bool:
        """Set ``fields`` of a series (``cluster_ids`` as a sequence of ids); False when there
        is no such series. ValueError naming the valid fields for an unknown one."""
        if "cluster_ids" in fields:
            fields["cluster_ids_json"] = orjson.dumps(list(fields.pop("cluster_ids"))).decode()
        valid = [c.name for c in _r.columns if c.name != "id"]
        unknown = sorted(set(fields) - set(valid))
        if unknown or not fields:
            raise ValueError(
                f"cannot update repeat_series: unknown or no field(s) {', '.join(unknown)}; "
                f"valid: {', '.join(valid)}"
            )
        with self._db.begin("update_series") as conn:
            result = conn.execute(_r.update().where(_r.c.id == series_id).values(fields))
        return result.rowcount > 0


__all__ = ["UNFINISHED_SERIES", "SeriesRecord", "SeriesRows"]
