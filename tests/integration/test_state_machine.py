"""A cluster's state machine against a real store: every move writes the store (with its event,
in one transaction), memory and the monitor together, or nothing at all; the lifecycle's
refusals write nothing; and what only reads gets frozen snapshots.

The manager is driven directly and the test plays the workers (their spawner starts nothing);
a failing database is a real SQLite trigger that aborts the transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from clientswarm.config.loader import validate_config_data
from clientswarm.errors import SpawnerError
from clientswarm.protocol.internal import Heartbeat, RegisterRequest, WorkerReport
from clientswarm.protocol.spawning import ClusterLaunch
from clientswarm.service.lifecycle import ClusterStatus, WorkerState
from clientswarm.service.manager import ClusterManager
from clientswarm.service.settings import ServiceSettings
from clientswarm.service.state import ClusterState
from clientswarm.store import Store
from stand_in_spawner import NothingStarted, StandInSpawner

HELLO = RegisterRequest(pid=1, host="h", version="0")
CONFIG = {
    "name": "machine",
    "target": {"url": "http://127.0.0.1:9", "model": "m"},
    "preflight": False,  # the test plays the workers: nothing listens there
    "spawner": {"kind": "local", "workers": 2},
    "groups": [
        {"name": "g", "clients": 2, "interaction": {"kind": "hello"}, "stop": {"duration_s": 60}}
    ],
}


class RefusingSpawner(StandInSpawner):
    """A spawner whose scheduler refuses every submission (as ``sbatch`` failing would)."""

    async def submit(self, launch: ClusterLaunch) -> NothingStarted:
        raise SpawnerError("sbatch: error: invalid partition specified: nope")


@pytest.fixture
async def manager(tmp_path: Path) -> AsyncIterator[ClusterManager]:
    store = Store.from_url_or_path(str(tmp_path / "store.sqlite"))
    store.create_all()
    manager = ClusterManager(
        store,
        ServiceSettings(data_dir=tmp_path, watch_interval_s=0.05),
        spawners={"local": StandInSpawner()},
    )
    await manager.start()
    try:
        yield manager
    finally:
        await manager.close()
        store.close()


async def starting(manager: ClusterManager, tmp_path: Path) -> ClusterState:
    """A cluster whose workers the spawner took."""
    record = await manager.create(validate_config_data(CONFIG), base_dir=tmp_path)
    state = manager.active[record.id]
    async with manager.changed:
        await asyncio.wait_for(
            manager.changed.wait_for(lambda: state.status is ClusterStatus.STARTING), 5
        )
    return state


async def running(manager: ClusterManager, tmp_path: Path) -> ClusterState:
    """A cluster whose two workers registered and received their assignment."""
    state = await starting(manager, tmp_path)
    for index in (0, 1):
        await manager.register(state, index, HELLO)
    await asyncio.gather(*(manager.assignment(state, index) for index in (0, 1)))
    return state


def event_kinds(store: Store, cluster_id: str) -> list[str]:
    return [e.kind for e in store.list_events(cluster_id)]


def abort_events(database: Path, on: bool) -> None:
    """Make the database refuse (or take again) every new event: the transaction aborts."""
    with contextlib.closing(sqlite3.connect(database)) as conn, conn:
        if on:
            conn.execute(
                "CREATE TRIGGER no_events BEFORE INSERT ON events "
                "BEGIN SELECT RAISE(ABORT, 'the disk is full'); END"
            )
        else:
            conn.execute("DROP TRIGGER no_events")


async def test_running_is_one_transaction_with_the_start_time_and_its_event(
    manager: ClusterManager, tmp_path: Path
) -> None:
    state = await running(manager, tmp_path)
    record = manager.store.get_cluster(state.id)
    assert record is not None
    assert (record.status, record.start_ns) == ("running", state.start_ns)
    assert state.status is ClusterStatus.RUNNING and state.live.status == "running"
    assert event_kinds(manager.store, state.id) == ["created", "submitted", "starting", "running"]
    assert [w.state for w in manager.store.list_workers(state.id)] == ["running", "running"]


async def test_a_move_the_lifecycle_refuses_writes_nothing(
    manager: ClusterManager, tmp_path: Path
) -> None:
    state = await running(manager, tmp_path)
    events = event_kinds(manager.store, state.id)
    assert not await state.move(ClusterStatus.RUNNING)  # never to itself
    assert not await state.move(ClusterStatus.STARTING)  # never back
    await manager.finish(state, 0, WorkerReport(outcome="completed"))
    assert not await state.move_worker(0, WorkerState.LOST)  # completed is settled
    assert not await state.move_worker(1, WorkerState.REGISTERED)  # never back
    record = manager.store.get_cluster(state.id)
    assert record is not None and record.status == "running"
    assert [w.state for w in manager.store.list_workers(state.id)] == ["completed", "running"]
    assert event_kinds(manager.store, state.id) == events
    assert state.status is ClusterStatus.RUNNING
    assert [w.state for w in state.workers] == [WorkerState.COMPLETED, WorkerState.RUNNING]


async def test_a_move_the_database_refuses_changes_neither_store_nor_memory(
    manager: ClusterManager, tmp_path: Path
) -> None:
    state = await running(manager, tmp_path)
    events = event_kinds(manager.store, state.id)
    abort_events(tmp_path / "store.sqlite", on=True)
    with pytest.raises(Exception, match="the disk is full"):
        await state.move(ClusterStatus.FAILED, reason="a test")
    with pytest.raises(Exception, match="the disk is full"):
        await state.move_worker(1, WorkerState.LOST, why="a test")
    record, worker = manager.store.get_cluster(state.id), manager.store.get_worker(state.id, 1)
    assert record is not None and (record.status, record.reason) == ("running", None)
    assert worker is not None and worker.state == "running"
    assert event_kinds(manager.store, state.id) == events
    assert state.status is ClusterStatus.RUNNING and state.live.status == "running"
    assert state.workers[1].state is WorkerState.RUNNING
    assert state.live.workers == {"running": 2}

    abort_events(
        tmp_path / "store.sqlite", on=False
    )  # the database works again: the same move is made
    assert await state.move_worker(1, WorkerState.LOST, why="a test")
    assert event_kinds(manager.store, state.id) == [*events, "worker_lost"]
    assert state.live.workers == {"running": 1, "lost": 1}


async def test_a_refused_submission_fails_the_cluster_once_with_the_reason(
    tmp_path: Path,
) -> None:
    with Store.from_url_or_path(str(tmp_path / "store.sqlite")) as store:
        store.create_all()
        manager = ClusterManager(
            store, ServiceSettings(data_dir=tmp_path), spawners={"local": RefusingSpawner()}
        )
        await manager.start()
        try:
            record = await manager.create(validate_config_data(CONFIG), base_dir=tmp_path)
            await asyncio.wait_for(manager.wait_finished(record.id), 5)
        finally:
            await manager.close()
        ended = store.get_cluster(record.id)
        events = store.list_events(record.id)
    assert ended is not None and ended.status == "failed" and ended.summary_json is not None
    assert ended.reason == "sbatch: error: invalid partition specified: nope"
    assert [(e.kind, e.message) for e in events if e.kind == "failed"] == [
        ("failed", "sbatch: error: invalid partition specified: nope")
    ]


async def test_a_stopped_cluster_ends_cancelled_and_then_refuses_every_move(
    manager: ClusterManager, tmp_path: Path
) -> None:
    state = await running(manager, tmp_path)
    await manager.stop_cluster(state.id, "enough")
    for index in (0, 1):
        await manager.finish(state, index, WorkerReport(outcome="cancelled"))
    await asyncio.wait_for(manager.wait_finished(state.id), 5)
    assert state.status is ClusterStatus.CANCELLED and not manager.is_following(state.id)
    assert not any([await state.move(status) for status in ClusterStatus])
    record = manager.store.get_cluster(state.id)
    assert record is not None and (record.status, record.reason) == ("cancelled", "enough")
    assert event_kinds(manager.store, state.id).count("cancelled") == 1


async def test_readers_get_frozen_snapshots(manager: ClusterManager, tmp_path: Path) -> None:
    state = await running(manager, tmp_path)
    await manager.heartbeat(state, 0, Heartbeat(in_flight=3))
    before = manager.snapshot(state.id)
    assert before is not None
    assert (before.status, before.start_ns, before.in_flight) == ("running", state.start_ns, 3)
    assert before.worker_counts() == {"running": 2} and before.warnings() == []
    assert (before.succeeded, before.failed) == (0, 0)
    assert dict(before.schedule_lag_p99_s) == {"g": None}  # no sample yet
    with pytest.raises(dataclasses.FrozenInstanceError):
        before.status = ClusterStatus.FAILED  # type: ignore[misc]
    with pytest.raises(TypeError):
        before.schedule_lag_p99_s["g"] = 1.0  # type: ignore[index]

    await manager.heartbeat(state, 0, Heartbeat(in_flight=0))
    await manager.finish(state, 0, WorkerReport(outcome="completed"))
    after = manager.snapshot(state.id)
    assert after is not None and after.worker_counts() == {"completed": 1, "running": 1}
    assert before.worker_counts() == {"running": 2} and before.in_flight == 3  # as it was
    assert manager.health().active_clusters == 1 and manager.health().ok
    assert manager.snapshot("no-such-cluster") is None
