"""Stopping single clients of a running worker, against the real simulator on a loopback port."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from clientswarm.config.loader import validate_config_data
from clientswarm.errors import WorkerError
from clientswarm.metrics.sample import ERROR_CANCELLED, Sample
from clientswarm.mock import MockSettings, start_mock_server
from clientswarm.protocol.assignment import Assignment, WorkerReport
from clientswarm.worker.runtime import WorkerRuntime

START_DELAY_S = 0.3


class MemorySink:
    """Keeps every batch in memory (a SampleSink)."""

    def __init__(self) -> None:
        self.samples: list[Sample] = []
        self.seqs: list[int] = []

    async def send_batch(self, seq: int, samples: list[Sample]) -> None:
        self.seqs.append(seq)
        self.samples.extend(samples)

    async def send_status(self, status: dict[str, float | int]) -> None:
        pass

    async def finish(self, report: WorkerReport) -> None:
        pass


@pytest.fixture
async def target_url() -> AsyncIterator[str]:
    async with await start_mock_server(MockSettings(ttft_ms=150, itl_ms=10, seed=1)) as server:
        yield server.url


def runtime_for(url: str, group: dict[str, Any]) -> tuple[WorkerRuntime, MemorySink]:
    config = validate_config_data(
        {
            "name": "control",
            "seed": 5,
            "target": {"url": url, "model": "mock-model", "timeout_s": 10},
            "groups": [group],
        }
    )
    start_ns = time.time_ns() + int(START_DELAY_S * 1e9)
    assignment = Assignment(
        cluster_id="c1", worker=0, workers=1, start_ns=start_ns, config=config,
        batch_interval_s=0.1,
    )  # fmt: skip
    sink = MemorySink()
    return WorkerRuntime(assignment, sink), sink


def chat(load: dict[str, Any], duration_s: float, clients: int = 4) -> dict[str, Any]:
    return {
        "name": "chat",
        "clients": clients,
        "interaction": {"kind": "chat", "max_tokens": 8, "prompts": ["Hi."]},
        "load": load,
        "stop": {"duration_s": duration_s},
    }


async def stop_at(runtime: WorkerRuntime, offset_s: float, ids: list[int]) -> int:
    """Stop ``ids`` ``offset_s`` after the start; return the clock reading at the stop."""
    at_ns = runtime.assignment.start_ns + int(offset_s * 1e9)
    await asyncio.sleep((at_ns - runtime.clock.now_ns()) / 1e9)
    stop_ns = runtime.clock.now_ns()
    assert runtime.stop_clients(ids) == len(ids)
    return stop_ns


def by_client(samples: list[Sample]) -> dict[int, list[Sample]]:
    grouped: dict[int, list[Sample]] = {}
    for s in samples:
        grouped.setdefault(s.client, []).append(s)
    return grouped


def cancelled(samples: list[Sample]) -> list[Sample]:
    return [s for s in samples if s.error_kind == ERROR_CANCELLED]


async def test_closed_loop_stopped_clients_end_and_the_others_carry_on(target_url: str) -> None:
    runtime, sink = runtime_for(target_url, chat({"kind": "closed"}, duration_s=1.6))
    assert runtime.active_clients == 4
    run = asyncio.create_task(runtime.run())
    stop_ns = await stop_at(runtime, 0.7, [0, 1])
    assert runtime.active_clients == 2
    report = await run

    assert report.outcome == "completed" and report.samples == len(sink.samples)
    assert report.extra == {"stopped_clients": 2}
    assert runtime.active_clients == 0
    clients = by_client(sink.samples)
    for stopped in (0, 1):
        mine = clients[stopped]
        assert all(s.sent_ns <= stop_ns for s in mine)  # nothing sent after the stop
        # Without think time a closed-loop client is always in flight: exactly one cut.
        (cut,) = cancelled(mine)
        assert cut.end_ns >= stop_ns and cut is mine[-1]
        assert all(s.ok for s in mine[:-1])
    for running in (2, 3):
        mine = clients[running]
        assert sum(s.sent_ns > stop_ns for s in mine) >= 3  # ~0.9 s more at ~0.2 s a request
        assert not cancelled(mine) and all(s.ok for s in mine)


async def test_open_loop_stopped_clients_skip_arrivals_and_cancel_in_flight(
    target_url: str,
) -> None:
    load = {"kind": "open", "rate": 20, "arrival": "constant"}
    runtime, sink = runtime_for(target_url, chat(load, duration_s=1.5))
    run = asyncio.create_task(runtime.run())
    stop_ns = await stop_at(runtime, 0.8, [1, 3])
    assert runtime.active_clients == 2
    report = await run

    assert report.outcome == "completed"
    clients = by_client(sink.samples)
    for stopped in (1, 3):
        mine = clients[stopped]
        assert all(s.sent_ns <= stop_ns and s.scheduled_ns <= stop_ns for s in mine)
        # Each client has an arrival every 0.2 s and a request takes ~0.23 s: some were cut.
        assert cancelled(mine)
        assert all(s.end_ns >= stop_ns for s in cancelled(mine))
    for running in (0, 2):
        mine = clients[running]
        # Constant arrivals at 20/s over 1.5 s, client j % 4: 7 or 8 each, none skipped.
        assert len(mine) in (7, 8)
        assert all(s.ok for s in mine)
        assert any(s.scheduled_ns > stop_ns for s in mine)
    assert runtime.active_clients == 0


async def test_stopping_every_client_of_an_open_group_ends_it_early(target_url: str) -> None:
    load = {"kind": "open", "rate": 10, "arrival": "constant"}
    runtime, sink = runtime_for(target_url, chat(load, duration_s=30, clients=2))
    run = asyncio.create_task(runtime.run())
    await stop_at(runtime, 0.5, [0, 1])
    report = await asyncio.wait_for(run, 5)  # not the 30 s of the schedule
    assert report.outcome == "completed" and runtime.active_clients == 0
    assert len(sink.samples) <= 6


async def test_stop_clients_is_idempotent_and_ignores_clients_hosted_elsewhere(
    target_url: str,
) -> None:
    runtime, sink = runtime_for(target_url, chat({"kind": "closed"}, duration_s=0.6, clients=3))
    assert runtime.stop_clients([1, 7, 99]) == 1  # 7 and 99 are not this worker's
    assert runtime.stop_clients([1]) == 0
    assert runtime.active_clients == 2
    report = await runtime.run()  # stopped before the start: client 1 never sends
    assert report.outcome == "completed"
    assert {s.client for s in sink.samples} == {0, 2}
    assert sink.seqs == sorted(set(sink.seqs))


async def test_stop_all_still_works_beside_stopped_clients(target_url: str) -> None:
    runtime, sink = runtime_for(target_url, chat({"kind": "closed"}, duration_s=5))
    run = asyncio.create_task(runtime.run())
    await stop_at(runtime, 0.4, [0])
    await asyncio.sleep(0.3)
    runtime.stop()
    assert runtime.active_clients == 0
    report = await asyncio.wait_for(run, 5)
    assert report.outcome == "cancelled"
    clients = by_client(sink.samples)
    assert len(cancelled(clients[0])) == 1
    for other in (1, 2, 3):
        assert len(cancelled(clients[other])) == 1  # cut by stop()


def test_a_worker_refuses_clients_it_would_not_place_itself() -> None:
    config = validate_config_data(
        {
            "name": "placement",
            "target": {"url": "http://127.0.0.1:9"},
            "spawner": {"kind": "local", "workers": 2},
            "groups": [
                {
                    "name": "g",
                    "clients": 4,
                    "interaction": {"kind": "hello"},
                    "stop": {"requests": 4},
                }
            ],
        }
    )
    ok = Assignment(cluster_id="c", worker=1, workers=2, start_ns=1, config=config, clients=[1, 3])
    WorkerRuntime(ok, MemorySink())
    wrong = ok.model_copy(update={"clients": [0, 1]})
    with pytest.raises(WorkerError, match="run the same clientswarm version"):
        WorkerRuntime(wrong, MemorySink())
