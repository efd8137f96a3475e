"""Start-up overlap: standby workers that ``clientswarm run`` starts before its service, their
early start (clients running before the service is up), and the held ``GET assignment`` that
gives every worker the start time as soon as the last registers.

The standby and early-start tests use real worker processes against the simulator. The
held-assignment and preset tests drive the manager directly, playing the workers' part: their
spawner starts nothing.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from clientswarm.config.loader import validate_config_data
from clientswarm.protocol.assignment import Assignment
from clientswarm.protocol.internal import NotYet, RegisterRequest
from clientswarm.protocol.spawning import ClusterLaunch, WorkerExit
from clientswarm.run.early import local_start_margin_s, start_early
from clientswarm.run.local import run_locally
from clientswarm.run.mock_target import LISTENING
from clientswarm.service.manager import ClusterManager, Gone
from clientswarm.service.settings import ServiceSettings
from clientswarm.service.state import ClusterPreset
from clientswarm.spawners.standby import StandbyWorkers, planned_local_workers
from clientswarm.store import Store


def config(workers: int, url: str = "http://127.0.0.1:9") -> Any:
    return validate_config_data(config_data(workers, url))


def config_data(workers: int, url: str = "http://127.0.0.1:9") -> dict[str, Any]:
    return {
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


@pytest.fixture
def simulator() -> Iterator[str]:
    """The simulator as its own process (an early start needs the target's URL up front)."""
    argv = ["--host", "127.0.0.1", "--port", "0", "--ttft-ms", "1", "--itl-ms", "1"]
    process = subprocess.Popen(
        [sys.executable, "-m", "clientswarm.mock.cli", *argv], stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        assert line.startswith(LISTENING), line
        threading.Thread(target=process.stdout.read, daemon=True).start()  # never let it fill
        yield line.removeprefix(LISTENING)
    finally:
        process.terminate()
        process.wait(10)


def early_lines(log: Path) -> tuple[int, int]:
    """Line numbers of the early start and of the registration in a worker's log."""
    lines = log.read_text().splitlines()
    started = next(i for i, line in enumerate(lines) if "before registering (early start)" in line)
    registered = next(i for i, line in enumerate(lines) if "registered with" in line)
    return started, registered


def test_run_starts_its_clients_before_its_service_is_up(tmp_path: Path, simulator: str) -> None:
    file = tmp_path / "c.json"
    file.write_text(json.dumps({**config_data(2, simulator), "warmup_s": 0}))
    launched = time.time_ns()
    done = subprocess.run(
        [str(Path(sys.executable).parent / "clientswarm"), "run", str(file), "-o", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["cluster"]["status"] == "completed"
    assert summary["groups"]["g"]["succeeded"] == 8
    logs = sorted((tmp_path / "logs").rglob("worker-*.log"))
    assert [log.name for log in logs] == ["worker-0.log", "worker-1.log"]
    for log in logs:  # each started its clients first, then registered and finished
        started, registered = early_lines(log)
        assert started < registered, log.read_text()
        assert "finished (completed)" in log.read_text()
    rows = [json.loads(line) for line in (tmp_path / "samples.jsonl").read_text().splitlines()]
    assert min(r["scheduled_ns"] for r in rows) > launched  # the start the standbys were given


def test_an_early_start_falls_back_when_a_standby_dies(tmp_path: Path, simulator: str) -> None:
    standby = StandbyWorkers.start(sys.executable, 2, tmp_path / "standby")
    standby._waiting[1].kill()  # worker 1's standby dies while loading
    standby._waiting[1].wait()
    cluster = config(2, simulator)
    try:
        early = start_early(
            cluster,
            base_dir=tmp_path,
            output_dir=tmp_path / "out",
            host="127.0.0.1",
            port=0,
            standby=standby,
        )
        assert early is not None
        assert early.handshake.start_ns() is None  # both were told to wait
        summary = run_locally(
            cluster,
            base_dir=tmp_path,
            output_dir=tmp_path / "out",
            console=Console(file=io.StringIO()),
            standby=standby,
            early=early,
        )
    finally:
        standby.close()
    assert summary["cluster"]["status"] == "completed"
    assert summary["groups"]["g"]["succeeded"] == 8
    logs = sorted((tmp_path / "out" / "logs").rglob("worker-*.log"))
    survivor, fresh = (log.read_text() for log in logs)
    assert "no early start" in survivor and "registered with" in survivor
    assert "took these orders" not in fresh and "registered with" in fresh  # started afresh


def test_early_workers_that_nobody_adopts_are_terminated(tmp_path: Path, simulator: str) -> None:
    standby = StandbyWorkers.start(sys.executable, 1, tmp_path / "standby")
    early = start_early(
        config(1, simulator),
        base_dir=tmp_path,
        output_dir=tmp_path / "out",
        host="127.0.0.1",
        port=0,
        standby=standby,
    )
    assert early is not None and early.handshake.start_ns() is not None  # its clients run
    process = standby._early[0]
    started = time.monotonic()
    standby.close()  # the run ends before its service is up: nobody will take that worker
    assert process.returncode is not None
    assert time.monotonic() - started < 10
    early.sock.close()


def test_no_early_start_without_a_standby_per_worker(tmp_path: Path) -> None:
    standby = StandbyWorkers.start(sys.executable, 1, tmp_path / "standby")
    try:
        plan = start_early(
            config(2),
            base_dir=tmp_path,
            output_dir=tmp_path / "out",
            host="127.0.0.1",
            port=0,
            standby=standby,
        )
        assert plan is None and len(standby) == 1  # nothing handed out
        assert (
            start_early(
                config(1),
                base_dir=tmp_path,
                output_dir=tmp_path,
                host="127.0.0.1",
                port=0,
                standby=None,
            )
            is None
        )
    finally:
        standby.close()


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


async def test_a_preset_start_lets_workers_register_after_it(tmp_path: Path) -> None:
    store = Store.from_url_or_path(str(tmp_path / "store.sqlite"))
    store.create_all()
    manager = ClusterManager(
        store,
        ServiceSettings(data_dir=tmp_path),
        spawners={"local": StartsNothing()},  # type: ignore[dict-item]
    )
    await manager.start()
    try:
        start_ns = time.time_ns() - 1_000_000_000  # the clients have run for a second
        record = await manager.create(
            config(2), base_dir=tmp_path, preset=ClusterPreset("early1", "token", start_ns)
        )
        state = manager.active[record.id]
        assert record.id == "early1" and state.status == "running"
        assert state.start_ns == start_ns and store.get_cluster("early1").start_ns == start_ns
        hello = RegisterRequest(pid=1, host="h", version="0")
        for index in (0, 1):  # pending workers of an early start are welcome after the start
            await manager.register(state, index, hello)
            given = await manager.assignment(state, index)
            assert isinstance(given, Assignment) and given.start_ns == start_ns
        plain = await manager.create(config(1), base_dir=tmp_path, preset=ClusterPreset("p", "t"))
        assert manager.active[plain.id].start_ns is None  # no start time: the usual start
    finally:
        await manager.close()
