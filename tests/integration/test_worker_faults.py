"""Following workers through faults of the service itself: a paused service loses no worker that
heartbeats, and a worker's state changes reach memory and store alike, in order.

The manager-level tests play the workers' part against a real store (their spawner starts
nothing); the last one pauses a real ``clientswarm serve`` (SIGSTOP, SIGCONT) while its real
workers run against the simulator.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import pytest

from clientswarm.config.loader import validate_config_data
from clientswarm.protocol.internal import Heartbeat, RegisterRequest
from clientswarm.service.manager import ClusterManager
from clientswarm.service.settings import ServiceSettings
from clientswarm.service.state import ClusterState
from clientswarm.store import Store
from service_process import ServiceProcess, simulator
from stand_in_spawner import StandInSpawner

LOST_AFTER_S = 1.0


async def running_cluster(tmp_path: Path) -> tuple[ClusterManager, ClusterState]:
    """A manager following a cluster of two workers that have registered and started."""
    store = Store.from_url_or_path(str(tmp_path / "store.sqlite"))
    store.create_all()
    manager = ClusterManager(
        store,
        ServiceSettings(data_dir=tmp_path, lost_after_s=LOST_AFTER_S),
        spawners={"local": StandInSpawner()},
    )
    await manager.start()
    config = validate_config_data(
        {
            "name": "faults",
            "target": {"url": "http://127.0.0.1:9", "model": "m"},
            "preflight": False,  # the test plays the workers: nothing listens there
            "spawner": {"kind": "local", "workers": 2},
            "groups": [
                {
                    "name": "g",
                    "clients": 2,
                    "interaction": {"kind": "hello"},
                    "stop": {"duration_s": 60},
                }
            ],
        }
    )
    record = await manager.create(config, base_dir=tmp_path)
    state = manager.active[record.id]
    for index in (0, 1):
        await manager.register(state, index, RegisterRequest(pid=1, host="h", version="0"))
    await asyncio.gather(*(manager.assignment(state, index) for index in (0, 1)))
    return manager, state


async def beat(
    manager: ClusterManager, state: ClusterState, workers: tuple[int, ...], duration_s: float
) -> None:
    """Heartbeat ``workers`` every 0.1 s for ``duration_s``."""
    deadline = time.monotonic() + duration_s
    while time.monotonic() < deadline:
        for index in workers:
            await manager.heartbeat(state, index, Heartbeat())
        await asyncio.sleep(0.1)


def worker_events(manager: ClusterManager, cluster_id: str) -> list[tuple[str, str]]:
    return [
        (e.kind, e.message)
        for e in manager.store.list_events(cluster_id)
        if e.kind.startswith("worker_")
    ]


async def test_a_stalled_service_loses_no_worker_that_heartbeats(tmp_path: Path) -> None:
    manager, state = await running_cluster(tmp_path)
    try:
        await beat(manager, state, (0, 1), 0.6)
        time.sleep(2.5 * LOST_AFTER_S)  # noqa: ASYNC251 - its loop stands still (as if SIGSTOP)
        # On waking, its watchdog runs before the heartbeats that waited are handled.
        await asyncio.sleep(0.05)
        await beat(manager, state, (0, 1), 0.6)
        assert [w.state for w in state.workers] == ["running", "running"]
        assert [w.state for w in manager.store.list_workers(state.id)] == ["running", "running"]
        assert worker_events(manager, state.id) == []
    finally:
        await manager.close()


async def test_a_silent_worker_is_lost_then_back_in_memory_and_store_alike(
    tmp_path: Path,
) -> None:
    manager, state = await running_cluster(tmp_path)
    try:
        await beat(manager, state, (1,), 2.2 * LOST_AFTER_S)  # worker 0 says nothing
        assert [w.state for w in state.workers] == ["lost", "running"]
        stored = manager.store.get_worker(state.id, 0)
        assert stored is not None and (stored.state, stored.error) == (
            "lost",
            "no heartbeat for 1 s",
        )
        await manager.heartbeat(state, 0, Heartbeat())  # it was only paused
        stored = manager.store.get_worker(state.id, 0)
        assert state.workers[0].state == "running"
        assert stored is not None and (stored.state, stored.error, stored.finished_at) == (
            "running",
            None,
            None,
        )
        await manager.heartbeat(state, 0, Heartbeat())  # a repeat changes nothing
        assert worker_events(manager, state.id) == [
            ("worker_lost", "worker 0: no heartbeat for 1 s"),
            ("worker_back", "worker 0 is heard from again"),
        ]
    finally:
        await manager.close()


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_pausing_the_service_loses_no_worker(tmp_path: Path) -> None:
    group = {
        "name": "hello",
        "clients": 2,
        "interaction": {"kind": "hello"},
        "load": {"kind": "open", "rate": 20, "arrival": "constant"},
        "stop": {"duration_s": 4},
    }
    with (
        simulator("--seed", "1") as target,
        ServiceProcess(tmp_path / "svc", extra=("--lost-after-s", "1")) as svc,
    ):
        config = {
            "name": "paused",
            "target": {"url": target, "model": "mock-model", "timeout_s": 10},
            "spawner": {"kind": "local", "workers": 2},
            "groups": [group],
        }
        status, created = svc.api("POST", "/clusters", config)
        assert status == 201, created
        cluster_id = created["id"]
        svc.wait_status(cluster_id, ("running",), timeout_s=60)
        time.sleep(0.5)
        assert svc.process is not None
        os.kill(svc.process.pid, signal.SIGSTOP)
        try:
            time.sleep(2.5)  # more than twice --lost-after-s, while the workers deliver
        finally:
            os.kill(svc.process.pid, signal.SIGCONT)
        view = svc.wait_status(cluster_id, timeout_s=60)
        _, events = svc.api("GET", f"/clusters/{cluster_id}/events")
        assert [w["state"] for w in view["workers"]] == ["completed", "completed"], events
        assert view["status"] == "completed"
        assert not [e for e in events if e["kind"] in ("worker_lost", "worker_back")]
        assert sum(w["samples"] for w in view["workers"]) == 80  # every arrival, none lost
