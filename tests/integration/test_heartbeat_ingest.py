"""The service's answers to a fleet: heartbeats from memory, sample commits on their own threads
behind a bounded backlog, a start written once however many workers ask at once.

The manager is driven directly, playing the workers' part (its spawner starts nothing), on a
real SQLite store; the worker's side of Retry-After talks to a real server on loopback.
"""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from clientswarm.config.loader import validate_config_data
from clientswarm.metrics.columns import SampleColumns
from clientswarm.metrics.sample import Sample
from clientswarm.protocol.assignment import Assignment, WorkerReport
from clientswarm.protocol.internal import Heartbeat, RegisterRequest
from clientswarm.service.ingest import Ingest, IngestBusy
from clientswarm.service.lifecycle import WorkerState
from clientswarm.service.manager import ClusterManager
from clientswarm.service.settings import ServiceSettings
from clientswarm.store import Arrival, ClusterRecord, Store, StoreError
from clientswarm.worker.internal_api import (
    InternalApiClient,
    RetryPolicy,
    ServiceWorkerOptions,
    WorkerEndpoint,
)
from stand_in_spawner import StandInSpawner

HELLO = RegisterRequest(pid=1, host="h", version="0")


def config(workers: int) -> Any:
    return validate_config_data(
        {
            "name": "fleet",
            "target": {"url": "http://127.0.0.1:9", "model": "m"},
            "preflight": False,
            "warmup_s": 0,
            "groups": [
                {
                    "name": "g",
                    "clients": workers,
                    "interaction": {"kind": "chat", "max_tokens": 4},
                    "stop": {"requests": workers},
                }
            ],
            "spawner": {"kind": "local", "workers": workers},
        }
    )


async def running(tmp_path: Path, workers: int, **settings: Any) -> tuple[ClusterManager, Any]:
    store = Store.from_url_or_path(str(tmp_path / "store.sqlite"))
    store.create_all()
    manager = ClusterManager(
        store, ServiceSettings(data_dir=tmp_path, **settings), spawners={"local": StandInSpawner()}
    )
    await manager.start()
    state = manager.active[(await manager.create(config(workers), base_dir=tmp_path)).id]
    for index in range(workers):
        await manager.register(state, index, HELLO)
    replies = await asyncio.gather(*(manager.assignment(state, i) for i in range(workers)))
    assert all(isinstance(r, Assignment) for r in replies)
    return manager, state


def hold_write_lock(store: Store, seconds: float) -> threading.Thread:
    """A thread that holds the store's write transaction for ``seconds`` (as a long batch
    commit does)."""
    held = threading.Event()

    def hold() -> None:
        with store._db.begin("test_hold"):
            held.set()
            time.sleep(seconds)

    thread = threading.Thread(target=hold)
    thread.start()
    held.wait()
    return thread


async def test_a_heartbeat_is_answered_while_the_store_is_busy_writing(tmp_path: Path) -> None:
    manager, state = await running(tmp_path, 2, heartbeat_write_interval_s=0.2)
    try:
        holder = hold_write_lock(manager.store, 2.0)
        started = time.monotonic()
        control = await asyncio.wait_for(
            manager.heartbeat(state, 0, Heartbeat(in_flight=7, loop_lag_p99_s=0.003)), 1.0
        )
        assert time.monotonic() - started < 0.5 and not control.stop_all
        assert state.workers[0].in_flight == 7  # followed from memory at once
        await asyncio.to_thread(holder.join)

        def stored() -> Any:
            return manager.store.get_worker(state.id, 0)

        deadline = time.monotonic() + 5
        while (await asyncio.to_thread(stored)).in_flight != 7:  # written within a second
            assert time.monotonic() < deadline, "the heartbeat's columns were never written"
            await asyncio.sleep(0.05)
        assert (await asyncio.to_thread(stored)).loop_lag_p99_s == 0.003
    finally:
        await manager.close()


async def test_the_last_heartbeats_are_written_when_their_cluster_ends(tmp_path: Path) -> None:
    # Written only when the cluster ends (the interval is an hour); a final report's loop lag
    # (the whole run's) wins over the last beat's.
    manager, state = await running(tmp_path, 2, heartbeat_write_interval_s=3600)
    try:
        await manager.heartbeat(state, 0, Heartbeat(in_flight=3, loop_lag_p99_s=0.25))
        await manager.heartbeat(state, 1, Heartbeat(in_flight=5, loop_lag_p99_s=0.25))
        await manager.finish(state, 0, WorkerReport(outcome="completed", loop_lag_p99_s=0.5))
        await manager.heartbeat(state, 0, Heartbeat(in_flight=9, loop_lag_p99_s=0.01))  # late
        await manager.finish(state, 1, WorkerReport(outcome="completed", loop_lag_p99_s=0.001))
        deadline = time.monotonic() + 10
        while state.id in manager.active:
            assert time.monotonic() < deadline, "the cluster did not end"
            await asyncio.sleep(0.05)
        workers = manager.store.list_workers(state.id)
        assert [w.loop_lag_p99_s for w in workers] == [0.5, 0.001]
        assert [w.in_flight for w in workers] == [3, 5]
        summary = await manager.results(state.id)
        assert any("loop" in w and "lag" in w for w in summary["warnings"]), summary["warnings"]
    finally:
        await manager.close()


async def test_the_start_is_written_once_when_every_worker_asks_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[str, str]] = []
    original = Store.move_clients

    def counted(self: Store, cluster_id: str, from_state: str, to_state: str) -> int:
        calls.append((from_state, to_state))
        return original(self, cluster_id, from_state, to_state)

    monkeypatch.setattr(Store, "move_clients", counted)
    manager, state = await running(tmp_path, 40)
    try:
        assert calls == [("pending", "running")]  # not once per worker (409 s at 1,000)
        assert state.status == "running"
        assert all(w.state == "running" for w in state.workers)
        assert {c.state for c in manager.store.list_clients(state.id)} == {"running"}
        assert state.live.active_clients == {"g": 40}
    finally:
        await manager.close()


async def test_the_backlog_of_batches_is_bounded(tmp_path: Path) -> None:
    store = Store.from_url_or_path(str(tmp_path / "store.sqlite"))
    ingest = Ingest(store, backlog_bytes=100)
    try:
        with ingest.admit(1000):  # an empty backlog takes any batch
            with pytest.raises(IngestBusy) as busy, ingest.admit(1):
                pass
            assert "not taken, send it again" in str(busy.value)
            assert 1.0 <= busy.value.retry_after_s <= 30.0
        with ingest.admit(60), ingest.admit(40):
            assert ingest.backlog_bytes == 100
        assert ingest.backlog_bytes == 0
    finally:
        ingest.close()


async def test_a_worker_waits_as_long_as_the_service_asks(unused_tcp_port: int) -> None:
    seen: list[float] = []

    async def busy_then_ok(request: web.Request) -> web.Response:
        seen.append(time.monotonic())
        if len(seen) == 1:
            return web.Response(status=503, text="busy", headers={"Retry-After": "1"})
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/{tail:.*}", busy_then_ok)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", unused_tcp_port).start()
    try:
        endpoint = WorkerEndpoint(f"http://127.0.0.1:{unused_tcp_port}", "c", 0, "t")
        options = ServiceWorkerOptions(retry=RetryPolicy(initial_s=0.05, max_s=0.1))
        async with aiohttp.ClientSession() as session:
            api = InternalApiClient(session, endpoint, options)
            status, _ = await api.call("POST", "samples", b"{}")
        assert status == 200 and len(seen) == 2
        assert 1.0 <= seen[1] - seen[0] < 2.0  # its own backoff alone would be 0.05 s
    finally:
        await runner.cleanup()


async def test_a_heartbeat_does_not_wait_for_its_workers_move_being_written(
    tmp_path: Path,
) -> None:
    # A move being written may wait its turn at the store for seconds (a thousand workers'
    # moves at the start): a beat that comes meanwhile is answered at once, and whether the
    # move lost the worker is looked at once it is written — here it did: the worker is back.
    manager, state = await running(tmp_path, 2)
    try:
        holder = hold_write_lock(manager.store, 2.0)
        silent_since = state.workers[0].last_seen
        lose = asyncio.create_task(
            state.move_worker(0, WorkerState.LOST, why="test", unheard_since=silent_since)
        )
        await asyncio.sleep(0.1)
        assert state.workers[0].moving.locked()  # the move waits for the store
        started = time.monotonic()
        await asyncio.wait_for(manager.heartbeat(state, 0, Heartbeat()), 1.0)
        assert time.monotonic() - started < 0.5
        await asyncio.to_thread(holder.join)
        assert await lose
        deadline = time.monotonic() + 5
        while state.workers[0].state != "running":
            assert time.monotonic() < deadline, state.workers[0].state
            await asyncio.sleep(0.02)
        kinds = [e.kind for e in manager.store.list_events(state.id)]
        assert kinds[-2:] == ["worker_lost", "worker_back"], kinds
    finally:
        await manager.close()


def test_the_heartbeat_interval_keeps_the_fleet_within_its_rate() -> None:
    settings = ServiceSettings(heartbeats_per_s=500, lost_after_s=10)
    assert settings.heartbeat_interval_for(100) == 1.0  # few workers: once a second
    assert settings.heartbeat_interval_for(1000) == 2.0  # 500 beats a second
    assert settings.heartbeat_interval_for(10_000) == 2.5  # a quarter of lost_after_s at most


async def test_a_worker_registering_into_a_large_fleet_is_told_to_beat_less_often(
    tmp_path: Path,
) -> None:
    store = Store.from_url_or_path(str(tmp_path / "store.sqlite"))
    store.create_all()
    settings = ServiceSettings(data_dir=tmp_path, heartbeats_per_s=10, lost_after_s=20)
    manager = ClusterManager(store, settings, spawners={"local": StandInSpawner()})
    await manager.start()
    try:
        state = manager.active[(await manager.create(config(30), base_dir=tmp_path)).id]
        reply = await manager.register(state, 0, HELLO)
        assert reply.heartbeat_interval_s == 3.0 and reply.lost_after_s == 20
    finally:
        await manager.close()


async def test_a_registration_storm_is_a_few_commits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    commits: list[int] = []
    original = Store.record_moves

    def counted(self: Store, moves: Any) -> list[bool]:
        commits.append(len(moves))
        return original(self, moves)

    monkeypatch.setattr(Store, "record_moves", counted)
    store = Store.from_url_or_path(str(tmp_path / "store.sqlite"))
    store.create_all()
    manager = ClusterManager(
        store, ServiceSettings(data_dir=tmp_path), spawners={"local": StandInSpawner()}
    )
    await manager.start()
    try:
        state = manager.active[(await manager.create(config(300), base_dir=tmp_path)).id]
        commits.clear()
        await asyncio.gather(*(manager.register(state, i, HELLO) for i in range(300)))
        assert sum(commits) >= 300 and len(commits) <= 10, commits  # not 300 transactions
        stored = manager.store.list_workers(state.id)
        assert {w.state for w in stored} == {"registered"} and all(w.pid == 1 for w in stored)
    finally:
        await manager.close()


def test_the_batch_interval_keeps_the_fleet_within_its_commits() -> None:
    settings = ServiceSettings(batches_per_s=200)
    assert settings.batch_interval_for(50) == 0.5  # few workers: twice a second
    assert settings.batch_interval_for(1000) == 5.0  # 200 batches a second
    assert settings.batch_interval_for(100_000) == 10.0  # held 10 s at most


async def test_a_worker_of_a_large_fleet_ships_less_often(tmp_path: Path) -> None:
    manager, state = await running(tmp_path, 40, batches_per_s=10)
    try:
        given = await manager.assignment(state, 0)
        assert isinstance(given, Assignment) and given.batch_interval_s == 4.0
    finally:
        await manager.close()


# -- group commits ---------------------------------------------------------------------------


def hello_batch(worker: int, seq: int, n: int = 3) -> SampleColumns:
    t0 = 1_700_000_000_000_000_000 + (worker * 1000 + seq) * 1_000_000_000
    return SampleColumns.from_samples(
        [
            Sample(
                group="g",
                client=worker,
                worker=worker,
                name="hello",
                scheduled_ns=t0 + i,
                sent_ns=t0 + i,
                end_ns=t0 + i + 1_000_000,
                http_status=200,
            )
            for i in range(n)
        ]
    )


async def test_batches_arriving_together_are_one_commit_each_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    groups: list[int] = []
    original = Store.add_arrivals

    def counted(self: Store, arrivals: Any) -> list[Any]:
        groups.append(len(arrivals))
        return original(self, arrivals)

    monkeypatch.setattr(Store, "add_arrivals", counted)
    manager, state = await running(tmp_path, 40)
    try:
        batches = [(w, 1, hello_batch(w, 1)) for w in range(40)]
        batches += [(w, 1, hello_batch(w, 1)) for w in range(0, 40, 4)]  # resent: counted once
        acks = await asyncio.gather(
            *(manager.add_batch(state, w, seq, cols) for w, seq, cols in batches)
        )
        assert len(groups) <= 3 and sum(groups) == 50, groups  # not 50 transactions
        assert sum(not a.duplicate for a in acks) == 40
        assert manager.store.count_samples(state.id) == 120
        assert state.statistics.samples == 120  # fed once each
        clients = manager.store.list_clients(state.id)
        assert sorted(c.succeeded for c in clients) == [3] * 40
    finally:
        await manager.close()


def test_a_value_the_store_refuses_costs_only_its_own_batch(tmp_path: Path) -> None:
    store = Store.from_url_or_path(str(tmp_path / "store.sqlite"))
    store.create_all()
    with store:
        store.create_cluster(
            ClusterRecord(
                id="c1",
                name="n",
                status="running",
                config_json="{}",
                token_hash="h",
                spawner_kind="local",
            )
        )
        store.create_workers("c1", 3)
        store.add_batch("c1", 2, 7, hello_batch(2, 7))
        outcomes = store.add_arrivals(
            [
                Arrival.batch("c1", 0, 1, hello_batch(0, 1)),
                Arrival.batch("nope", 1, 1, hello_batch(1, 1)),  # no such cluster
                Arrival.batch("c1", 2, 7, hello_batch(2, 7)),  # seen before
                Arrival("c1", 1, 2, None, 5, {1: [4, 1]}),  # a tick
            ]
        )
        assert outcomes[0] is True and outcomes[2] is False and outcomes[3] is True
        assert isinstance(outcomes[1], StoreError) and "no cluster 'nope'" in str(outcomes[1])
        assert store.count_samples("c1") == 6
        assert [w.samples for w in store.list_workers("c1")] == [3, 5, 3]
