"""The service keeps a spawner's handle without looking inside: it stores the handle's JSON
form with the cluster, and after a restart has the spawner restore it and follows the same
workers again. Real processes (started by the test as the local spawner's workers), a real
store, the manager driven directly.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import orjson

from clientswarm.config.loader import validate_config_data
from clientswarm.config.models import ClusterConfig
from clientswarm.protocol.spawning import ClusterLaunch
from clientswarm.service.manager import ClusterManager
from clientswarm.service.settings import ServiceSettings
from clientswarm.spawners.local import LocalSpawner
from clientswarm.store import Store
from stand_in_spawner import StandInSpawner


def one_worker() -> ClusterConfig:
    return validate_config_data(
        {
            "name": "handles",
            "target": {"url": "http://127.0.0.1:9", "model": "m"},
            "preflight": False,  # the test plays the workers: nothing listens there
            "spawner": {"kind": "local", "workers": 1},
            "groups": [{"name": "g", "interaction": {"kind": "hello"}, "stop": {"requests": 1}}],
        }
    )


async def stored_cluster(tmp_path: Path, store: Store) -> str:
    """A cluster as a service left it when it stopped: created and submitted to a spawner
    that started nothing (the test stores what a real one would have returned)."""
    settings = ServiceSettings(data_dir=tmp_path)
    manager = ClusterManager(store, settings, spawners={"local": StandInSpawner()})
    await manager.start()
    try:
        record = await manager.create(one_worker(), base_dir=tmp_path)
        async with manager.changed:  # the submission runs in the background
            await asyncio.wait_for(
                manager.changed.wait_for(lambda: manager.active[record.id].status == "starting"),
                10,
            )
    finally:
        await manager.close()
    return record.id


async def restarted(tmp_path: Path, store: Store, spawner: LocalSpawner) -> ClusterManager:
    manager = ClusterManager(
        store,
        ServiceSettings(data_dir=tmp_path, watch_interval_s=0.05),
        spawners={"local": spawner},
    )
    await manager.start()
    return manager


async def test_a_restarted_service_follows_the_workers_its_stored_handle_names(
    tmp_path: Path,
) -> None:
    store = Store.from_url_or_path(str(tmp_path / "store.sqlite"))
    store.create_all()
    cluster_id = await stored_cluster(tmp_path, store)
    # A "worker" that waits for its stop, started by the local spawner of the first service.
    fake = tmp_path / "fake-python"
    fake.write_text(f"#!{sys.executable}\nimport time\ntime.sleep(60)\n")
    fake.chmod(0o755)
    first = LocalSpawner()
    launch = ClusterLaunch(
        cluster_id=cluster_id,
        service_url="http://127.0.0.1:9",
        token="t",
        log_dir=str(tmp_path / "logs"),
        python=str(fake),
        options=one_worker().spawner,
    )
    handle = await first.submit(launch)
    try:
        stored = orjson.dumps({"base_dir": str(tmp_path), **handle.to_json()}).decode()
        store.update_cluster(cluster_id, status="running", spawner_state_json=stored)
        store.update_worker(cluster_id, 0, state="running")
        manager = await restarted(tmp_path, store, LocalSpawner())
        try:
            state = manager.active[cluster_id]
            assert state.handle == handle  # restored by the spawner, not read by the service
            await asyncio.sleep(0.3)  # several watchdog ticks: the process lives on
            assert not state.workers[0].final
            await first.stop(cluster_id, handle, grace_s=2.0)  # the worker's process ends
            async with manager.changed:
                await asyncio.wait_for(
                    manager.changed.wait_for(lambda: cluster_id not in manager.active), 10
                )
        finally:
            await manager.close()
    finally:
        await first.stop(cluster_id, handle, grace_s=0.5)
    (worker,) = store.list_workers(cluster_id)
    assert worker.state == "lost"
    assert worker.error is not None and "its process is gone" in worker.error
    store.close()


async def test_a_stored_handle_its_spawner_cannot_read_fails_the_cluster_saying_why(
    tmp_path: Path,
) -> None:
    store = Store.from_url_or_path(str(tmp_path / "store.sqlite"))
    store.create_all()
    cluster_id = await stored_cluster(tmp_path, store)
    unreadable = orjson.dumps({"base_dir": str(tmp_path), "pids": "not a mapping"}).decode()
    store.update_cluster(cluster_id, status="starting", spawner_state_json=unreadable)
    manager = await restarted(tmp_path, store, LocalSpawner())
    await manager.close()
    record = store.get_cluster(cluster_id)
    assert record is not None and record.status == "failed"
    assert record.reason is not None
    assert record.reason.startswith("the service restarted and the stored LocalHandle cannot")
    assert "pids" in record.reason
    store.close()
