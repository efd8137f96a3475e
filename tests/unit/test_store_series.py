"""The stored repeat series: rows that round-trip, and the table added to an older store."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import inspect, text

from clientswarm.service.repeats import seeds_of
from clientswarm.store import Store, StoreError
from clientswarm.store.series import SeriesRecord


def record(series_id: str, created_at: float, status: str = "running") -> SeriesRecord:
    return SeriesRecord(
        id=series_id,
        name="bench",
        status=status,
        config_json="{}",
        count=3,
        same_seed=False,
        confidence=0.9,
        cluster_ids=("c0",),
        created_at=created_at,
    )


def test_a_series_round_trips_and_lists_newest_first(tmp_path: Path) -> None:
    with Store.from_url_or_path(tmp_path / "s.db") as store:
        store.create_all()
        store.series.create(record("a", 1.0))
        store.series.create(record("b", 2.0, status="completed"))
        with pytest.raises(StoreError, match="exists already"):
            store.series.create(record("a", 3.0))
        assert store.series.update("a", cluster_ids=["c0", "c1"], stop_requested_at=5.0)
        got = store.series.get("a")
        assert got is not None and got.cluster_ids == ("c0", "c1")
        assert got.stop_requested_at == 5.0 and got.confidence == 0.9
        assert [r.id for r in store.series.all()] == ["b", "a"]
        assert [r.id for r in store.series.unfinished()] == ["a"]
        assert store.series.get("nope") is None and not store.series.update("nope", reason="x")
        with pytest.raises(ValueError, match="valid: name, status"):
            store.series.update("a", colour="red")


def test_create_all_adds_the_table_to_a_store_that_predates_it(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with Store.from_url_or_path(path) as store:
        store.create_all()
        with store.engine.begin() as conn:
            conn.execute(text("DROP TABLE repeat_series"))
    with Store.from_url_or_path(path) as store:
        store.create_all()
        assert "repeat_series" in inspect(store.engine).get_table_names()
        store.series.create(record("a", 1.0))
        assert store.series.get("a") is not None


def test_seeds_follow_run_repeat() -> None:
    assert seeds_of(7, 3, same_seed=False) == [7, 8, 9]
    assert seeds_of(7, 3, same_seed=True) == [7, 7, 7]
