"""How every cluster starts, ``clientswarm run``'s included: the workers register, the service
holds their ``GET assignment`` until the last one has, and gives them all one start time.

``run`` starts its workers before its service has loaded, on the socket it bound: the
real-process tests check that the workers' first calls wait there and are served once the
service is up, and that workers no service took are stopped. The held-assignment tests drive
the manager directly, playing the workers' part (their spawner starts nothing).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from clientswarm import aio
from clientswarm.config.loader import validate_config_data
from clientswarm.protocol.assignment import Assignment
from clientswarm.protocol.internal import NotYet, RegisterRequest
from clientswarm.protocol.spawning import ClusterLaunch, Submitted
from clientswarm.run.local import run_cluster
from clientswarm.run.start import RunStart, local_start_margin_s, start_run
from clientswarm.service.manager import ClusterManager, Gone
from clientswarm.service.settings import ServiceSettings
from clientswarm.service.state import token_matches
from clientswarm.store import Store
from processes import processes_naming, processes_started, queued_connections
from service_process import CLI, simulator
from stand_in_spawner import NothingStarted, StandInSpawner

HELLO = RegisterRequest(pid=1, host="h", version="0")


def config_data(workers: int, url: str = "http://127.0.0.1:9") -> dict[str, Any]:
    return {
        "name": "start",
        "target": {"url": url, "model": "m"},
        "preflight": False,  # these test the start itself (test_preflight.py tests the check)
        "warmup_s": 0,
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


def config(workers: int, url: str = "http://127.0.0.1:9") -> Any:
    return validate_config_data(config_data(workers, url))


@pytest.fixture(scope="module")
def target() -> Iterator[str]:
    with simulator("--ttft-ms", "1", "--itl-ms", "1") as url:
        yield url


def eventually(check: Callable[[], bool], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def port_of(start: RunStart) -> int:
    port: int = start.sock.getsockname()[1]
    return port


# -- clientswarm run: workers first, then the service ----------------------------------------


def test_workers_started_before_their_service_are_served_once_it_is_up(
    tmp_path: Path, target: str
) -> None:
    cluster = config(2, target)
    with start_run(cluster, output_dir=tmp_path) as start:
        cluster_id = start.submitted.launch.cluster_id
        started = sorted(processes_started(cluster_id, 2))
        assert len(started) == 2  # the workers run, and no service exists yet
        # Each has loaded its code and sent its registration, which waits on the socket.
        eventually(lambda: queued_connections(port_of(start)) == 2)
        store = Store.from_url_or_path(str(tmp_path / "store.sqlite"))
        store.create_all()
        console = Console(file=io.StringIO())
        ran = aio.run(
            run_cluster(cluster, base_dir=tmp_path, console=console, store=store, start=start)
        )
    assert ran == cluster_id
    assert not processes_naming(cluster_id)  # every worker exited
    finished = store.get_cluster(cluster_id)
    assert finished is not None and finished.status == "completed"
    workers = store.list_workers(cluster_id)
    assert [w.state for w in workers] == ["completed", "completed"]
    assert sorted(w.pid or 0 for w in workers) == started  # the very processes started first
    logs = sorted((tmp_path / "logs" / cluster_id).glob("worker-*.log"))
    for log in logs:  # the ordinary protocol: one registration, then the run
        text = log.read_text()
        assert text.count("registered with") == 1 and "finished (completed)" in text, text


def test_workers_no_service_takes_are_stopped(tmp_path: Path) -> None:
    with start_run(config(2), output_dir=tmp_path) as start:
        cluster_id = start.submitted.launch.cluster_id
        eventually(lambda: queued_connections(port_of(start)) == 2)
        assert len(processes_naming(cluster_id)) == 2
    # The run ended before its service was up: its workers are stopped, its socket closed.
    assert not processes_naming(cluster_id)
    assert start.sock.fileno() == -1


def test_a_ctrl_c_while_the_workers_start_waits_until_they_can_be_stopped(
    tmp_path: Path,
) -> None:
    handler = signal.getsignal(signal.SIGINT)
    start = start_run(config(2), output_dir=tmp_path)
    cluster_id = start.submitted.launch.cluster_id
    os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C before anything holds the workers
    assert len(processes_started(cluster_id, 2)) == 2  # held back: nothing raised yet
    with pytest.raises(KeyboardInterrupt), start:
        pass
    assert not processes_naming(cluster_id)
    assert signal.getsignal(signal.SIGINT) is handler  # the handler before is back


def test_a_ctrl_c_while_the_service_loads_is_noted_for_the_run_to_act_on(
    tmp_path: Path,
) -> None:
    # Raised wherever the main thread is while the service loads, a KeyboardInterrupt can be
    # swallowed (in a finaliser or a callback) and the run goes on: it is noted instead, and
    # the run stops its cluster once it follows it (run/local.py, ``follow``).
    data = config_data(2) | {"abort": False}
    data["groups"][0] |= {  # a run only a Ctrl-C ends
        "stop": {"duration_s": 300},
        "load": {"kind": "closed", "think_time_s": 0.05},
    }
    cluster = validate_config_data(data)
    handler = signal.getsignal(signal.SIGINT)
    with start_run(cluster, output_dir=tmp_path) as start:
        assert not start.interrupted()
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.01)  # the handler has run: nothing was raised
        assert start.interrupted()
        store = Store.from_url_or_path(str(tmp_path / "store.sqlite"))
        store.create_all()
        console = Console(file=io.StringIO())
        began = time.monotonic()
        cluster_id = aio.run(
            run_cluster(cluster, base_dir=tmp_path, console=console, store=store, start=start)
        )
    assert time.monotonic() - began < 60  # stopped once followed, not after 300 s
    finished = store.get_cluster(cluster_id)
    assert finished is not None and finished.status == "cancelled"
    assert not processes_naming(cluster_id)
    assert signal.getsignal(signal.SIGINT) is handler


def test_a_second_ctrl_c_while_the_service_loads_aborts_at_once(tmp_path: Path) -> None:
    handler = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt), start_run(config(2), output_dir=tmp_path) as start:
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.01)
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(5)  # never ends: the second Ctrl-C raises here
    assert not processes_naming(start.submitted.launch.cluster_id)
    assert signal.getsignal(signal.SIGINT) is handler


def test_ctrl_c_while_run_starts_leaves_no_worker(tmp_path: Path) -> None:
    file = tmp_path / "c.yaml"
    # A run that only a Ctrl-C ends: however late the signal lands (a busy machine), it lands
    # before the run would have completed by itself (its requests fail at once, and would not
    # abort it).
    data = config_data(2) | {"abort": False}
    data["groups"][0] |= {
        "stop": {"duration_s": 300},
        "load": {"kind": "closed", "think_time_s": 0.05},
    }
    file.write_text(validate_config_data(data).model_dump_json())
    run = subprocess.Popen(
        [CLI, "run", str(file), "-o", str(tmp_path / "out")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        logs = tmp_path / "out" / "logs"
        eventually(lambda: logs.is_dir() and any(logs.iterdir()))
        (cluster,) = logs.iterdir()
        eventually(lambda: len(processes_naming(cluster.name)) == 2)
        os.kill(run.pid, signal.SIGINT)  # while the service loads, or once it runs
        with contextlib.suppress(subprocess.TimeoutExpired):
            run.wait(60)
    finally:
        hung = run.poll() is None
        if hung:
            os.killpg(run.pid, signal.SIGKILL)
            run.wait()
    said = run.stderr.read().decode(errors="replace") if run.stderr else ""
    left = processes_naming(cluster.name)
    for pid in left:  # never leave them to the tests after this one
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    assert not hung, f"run ignored its Ctrl-C for 60 s; what it wrote:\n{said[-3000:]}"
    assert run.returncode != 0
    assert not left


# -- the ordinary start, at the manager --------------------------------------------------------


async def manager_of(tmp_path: Path, spawner: StandInSpawner, **settings: Any) -> ClusterManager:
    store = Store.from_url_or_path(str(tmp_path / "store.sqlite"))
    store.create_all()
    manager = ClusterManager(
        store, ServiceSettings(data_dir=tmp_path, **settings), spawners={"local": spawner}
    )
    await manager.start()
    return manager


async def test_a_held_assignment_returns_when_the_last_worker_arrives(tmp_path: Path) -> None:
    manager = await manager_of(tmp_path, StandInSpawner())
    try:
        state = manager.active[(await manager.create(config(2), base_dir=tmp_path)).id]
        assert state.live.workers == {"pending": 2}  # the monitor sees workers from the start
        await manager.register(state, 0, HELLO)
        assert state.live.workers == {"registered": 1, "pending": 1}
        first = asyncio.create_task(manager.assignment(state, 0))
        await asyncio.sleep(0.2)
        assert not first.done()  # held, not answered "not yet"
        await manager.register(state, 1, HELLO)
        second = await manager.assignment(state, 1)
        held = await asyncio.wait_for(first, 1.0)
        assert isinstance(held, Assignment) and isinstance(second, Assignment)
        assert held.start_ns == second.start_ns == state.start_ns
        assert state.live.workers == {"running": 2}
    finally:
        await manager.close()


async def test_a_held_assignment_answers_not_yet_then_gone_on_stop(tmp_path: Path) -> None:
    manager = await manager_of(tmp_path, StandInSpawner(), assignment_hold_s=0.1)
    try:
        state = manager.active[(await manager.create(config(2), base_dir=tmp_path)).id]
        await manager.register(state, 0, HELLO)
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


async def test_a_cluster_takes_the_workers_started_for_it(tmp_path: Path) -> None:
    spawner = StandInSpawner()
    manager = await manager_of(tmp_path, spawner)
    cluster = config(2)
    launch = ClusterLaunch(
        cluster_id="early1",
        service_url="http://127.0.0.1:9",
        token="its-token",
        log_dir=str(tmp_path),
        python=sys.executable,
        options=cluster.spawner,
    )
    handle = NothingStarted()
    try:
        record = await manager.create(
            cluster, base_dir=tmp_path, submitted=Submitted(launch, handle)
        )
        state = manager.active[record.id]
        assert record.id == "early1" and token_matches("its-token", record.token_hash)
        assert state.handle is handle and not spawner.launches  # nothing submitted again
        assert state.status == "starting" and state.start_ns is None
        kinds = [e.kind for e in manager.store.list_events(record.id)]
        assert kinds == ["created", "submitted", "starting"]
        # From here, the ordinary start: the start time is fixed once both have registered.
        await manager.register(state, 0, HELLO)
        assert state.start_ns is None  # worker 1 has yet to register
        await manager.register(state, 1, HELLO)
        given = await manager.assignment(state, 1)
        assert isinstance(given, Assignment) and given.start_ns == state.start_ns
    finally:
        await manager.close()


def test_a_local_run_starts_soon_after_the_last_worker_asks() -> None:
    few, many = config(1), config(2)
    assert local_start_margin_s(few) == pytest.approx(0.05 + 2 * 20e-6)
    assert local_start_margin_s(many) == pytest.approx(0.05 + 2 * 20e-6)  # 4 clients on 2
    assert local_start_margin_s(few) < ServiceSettings().start_margin_s
