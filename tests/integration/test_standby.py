"""Start-up overlap: standby workers that ``clientswarm run`` starts before its service, and the
held ``GET assignment`` that gives every worker the start time as soon as the last registers.

The standby tests use real worker processes against the simulator. The held-assignment tests
drive the manager directly, playing the workers' part: their spawner starts nothing.
"""

from __future__ import annotations

import asyncio
import io
import os
import re
import sys
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from clientswarm.config.loader import validate_config_data
from clientswarm.run.local import local_start_margin_s, run_locally
from clientswarm.service.manager import ClusterManager, Gone
from clientswarm.service.protocol import NotYet, RegisterRequest
from clientswarm.service.settings import ServiceSettings
from clientswarm.spawners.base import ClusterLaunch, WorkerExit
from clientswarm.spawners.standby import StandbyWorkers, planned_local_workers
from clientswarm.store import Store
from clientswarm.worker.assignment import Assignment


def config(workers: int, url: str = "http://127.0.0.1:9") -> Any:
    return validate_config_data(
        {
            "name": "standby",
            "target": {"url": url, "model": "m"},
            "groups": [
                {
                    "name": "g",
                    "clients": 2 * workers,
                    "interaction": {"kind": "chat", "max_tokens": 4},
                    "stop": {"requests": 4 * workers},
                }
            ],
            "spawner": {"kind": "local", "workers": workers},
        }
    )


def test_a_run_hands_its_workers_to_the_standbys(tmp_path: Path) -> None:
    standby = StandbyWorkers.start(sys.executable, 2, tmp_path / "standby")
    pids = sorted(p.pid for p in standby._waiting)
    try:
        summary = run_locally(
            config(2),
            base_dir=tmp_path,
            output_dir=tmp_path / "out",
            console=Console(file=io.StringIO()),
            mock_args="--ttft-ms 1 --itl-ms 1",
            standby=standby,
        )
    finally:
        standby.close()
    assert summary["cluster"]["status"] == "completed"
    assert summary["groups"]["g"]["succeeded"] == 8
    assert len(standby) == 0  # both taken, none started afresh
    logs = sorted((tmp_path / "out" / "logs").rglob("worker-*.log"))
    assert [log.name for log in logs] == ["worker-0.log", "worker-1.log"]
    for index, log in enumerate(logs):
        text = log.read_text()
        assert f"worker {index} registered" in text, text
    took_over = [
        re.search(r"standby worker pid (\d+) took these orders", log.read_text()) for log in logs
    ]
    assert sorted(int(m.group(1)) for m in took_over if m) == pids


def test_standbys_nobody_takes_exit_when_dismissed(tmp_path: Path) -> None:
    standby = StandbyWorkers.start(sys.executable, 2, tmp_path)
    processes = list(standby._waiting)
    standby.close()
    assert [p.returncode for p in processes] == [0, 0]
    assert len(standby) == 0


def test_a_dead_standby_is_skipped_and_another_python_gets_none(tmp_path: Path) -> None:
    dead = StandbyWorkers.start(sys.executable, 1, tmp_path)
    dead._waiting[0].kill()
    dead._waiting[0].wait()
    launch = ClusterLaunch(
        cluster_id="c",
        workers=1,
        service_url="http://127.0.0.1:9",
        token="t",
        log_dir=str(tmp_path),
        python=sys.executable,
        options={},
    )
    assert dead.hand_off(launch, 0, tmp_path / "w.log") is None
    other = StandbyWorkers(sys.executable + "-other", [])
    assert other.hand_off(launch, 0, tmp_path / "w.log") is None


class StartsNothing:
    """A spawner for the manager-level tests below, where the test plays the workers."""

    kind = "local"

    def render(self, launch: ClusterLaunch) -> str:
        return ""

    async def submit(self, launch: ClusterLaunch) -> dict[str, Any]:
        return {}

    async def poll(self, cluster_id: str, state: dict[str, Any]) -> list[WorkerExit]:
        return []

    async def stop(self, cluster_id: str, state: dict[str, Any], grace_s: float) -> None:
        return None

    async def release(self, cluster_id: str, state: dict[str, Any]) -> None:
        return None


async def held_manager(tmp_path: Path, **settings: Any) -> tuple[ClusterManager, Any]:
    store = Store.from_url_or_path(str(tmp_path / "store.sqlite"))
    store.create_all()
    manager = ClusterManager(
        store,
        ServiceSettings(data_dir=tmp_path, **settings),
        spawners={"local": StartsNothing()},  # type: ignore[dict-item]
    )
    await manager.start()
    record = await manager.create(config(2), base_dir=tmp_path)
    return manager, manager.active[record.id]


async def test_a_held_assignment_returns_when_the_last_worker_arrives(tmp_path: Path) -> None:
    manager, state = await held_manager(tmp_path)
    try:
        hello = RegisterRequest(pid=1, host="h", version="0")
        assert state.live.workers == {"pending": 2}  # the monitor sees workers from the start
        await manager.register(state, 0, hello)
        assert state.live.workers == {"registered": 1, "pending": 1}
        first = asyncio.create_task(manager.assignment(state, 0))
        await asyncio.sleep(0.2)
        assert not first.done()  # held, not answered "not yet"
        await manager.register(state, 1, hello)
        second = await manager.assignment(state, 1)
        held = await asyncio.wait_for(first, 1.0)
        assert isinstance(held, Assignment) and isinstance(second, Assignment)
        assert held.start_ns == second.start_ns == state.start_ns
        assert state.live.workers == {"running": 2}
    finally:
        await manager.close()


async def test_a_held_assignment_answers_not_yet_then_gone_on_stop(tmp_path: Path) -> None:
    manager, state = await held_manager(tmp_path, assignment_hold_s=0.1)
    try:
        await manager.register(state, 0, RegisterRequest(pid=1, host="h", version="0"))
        reply = await manager.assignment(state, 0)
        assert isinstance(reply, NotYet) and "waiting for workers [1]" in reply.reason
        manager.settings.assignment_hold_s = 30.0
        held = asyncio.create_task(manager.assignment(state, 0))
        await asyncio.sleep(0.1)
        await manager.stop_cluster(state.id, "test")
        with pytest.raises(Gone):
            await asyncio.wait_for(held, 1.0)
    finally:
        await manager.close()


@pytest.mark.parametrize(
    ("name", "text", "override", "expected"),
    [
        ("c.yaml", "name: x\nspawner: {kind: local, workers: 3}\n", None, 3),
        ("c.yaml", "name: x\ngroups: []\n", None, 1),  # local with 1 worker is the default
        ("c.json", '{"spawner": {"workers": 2}}', None, 2),
        ("c.yaml", "spawner: {kind: local, workers: 3}\n", 1, 1),  # --workers
        ("c.yaml", "spawner: {kind: slurm, workers: 3}\n", None, 0),
        ("c.yaml", "spawner: {workers: zero}\n", None, 0),
        ("c.yaml", "spawner: [1, 2]\n", None, 0),
        ("c.yaml", "- not a mapping\n", None, 0),
        ("c.yaml", "spawner: {workers: 3\n", None, 0),  # invalid YAML: validation reports it
        ("c.json", '{"spawner": ', None, 0),
        ("c.yaml", "spawner: {workers: 100000}\n", None, 2 * (os.cpu_count() or 1)),
    ],
)
def test_the_standbys_to_start_are_read_before_validation(
    tmp_path: Path, name: str, text: str, override: int | None, expected: int
) -> None:
    (tmp_path / name).write_text(text)
    assert planned_local_workers(tmp_path / name, override) == expected
    assert planned_local_workers(tmp_path / "missing.yaml") == 0


def test_a_local_run_starts_soon_after_the_last_worker_asks() -> None:
    few, many = config(1), config(2)
    assert local_start_margin_s(few) == pytest.approx(0.05 + 2 * 20e-6)
    assert local_start_margin_s(many) == pytest.approx(0.05 + 2 * 20e-6)  # 4 clients on 2
    assert local_start_margin_s(few) < ServiceSettings().start_margin_s
