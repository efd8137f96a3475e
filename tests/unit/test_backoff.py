"""Backing off after connection failures: the pure rules, then a worker against a closed port."""

from __future__ import annotations

import asyncio
import itertools
import random
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

from clientswarm.config.loader import validate_config_data
from clientswarm.load import BACKOFF_MAX_S, ConnectBackoff
from clientswarm.metrics.sample import ERROR_CONNECTION, ERROR_TIMEOUT, Sample
from clientswarm.protocol.assignment import Assignment, WorkerReport
from clientswarm.worker.runtime import WorkerRuntime

MS = 1_000_000


def sample(end_ns: int = 0, **fields: Any) -> Sample:
    return Sample("g", 0, 0, "chat", scheduled_ns=0, sent_ns=0, end_ns=end_ns, **fields)


def refused(end_ns: int) -> Sample:
    return sample(end_ns, status="error", error_kind=ERROR_CONNECTION)


def test_waits_double_from_50_ms_to_5_s_with_jitter_in_the_upper_half() -> None:
    backoff = ConnectBackoff(random.Random(1))
    now = 10**12
    waits_s = []
    for _ in range(12):
        backoff.failed(now)
        waits_s.append((backoff.until_ns - now) / 1e9)
        now = backoff.until_ns  # the next failure comes once this backoff is over
    bounds_s = [min(BACKOFF_MAX_S, 0.05 * 2**i) for i in range(12)]
    assert bounds_s[:3] == [0.05, 0.1, 0.2] and bounds_s[-1] == BACKOFF_MAX_S
    assert all(b / 2 <= w <= b for w, b in zip(waits_s, bounds_s, strict=True))
    assert len(set(waits_s)) == len(waits_s)  # jittered, not one fixed ladder
    backoff.answered()
    backoff.failed(now)
    assert (backoff.until_ns - now) / 1e9 <= 0.05  # the first answer restarts the doubling


def test_failures_during_a_backoff_do_not_extend_it() -> None:
    # Open loop: arrivals held by one backoff go out together and fail together.
    backoff = ConnectBackoff(random.Random(2))
    backoff.failed(0)
    until = backoff.until_ns
    for late in (1, until // 2, until - 1):
        backoff.failed(late)
    assert (backoff.until_ns, backoff.failures) == (until, 1)


def test_only_a_failure_to_connect_backs_off_and_any_answer_ends_it() -> None:
    backoff = ConnectBackoff(random.Random(3))
    backoff.observe(refused(0))
    assert backoff.failures == 1
    # Cut off after the answer began (a status came): the target answered.
    backoff.observe(sample(100 * MS, status="error", error_kind=ERROR_CONNECTION, http_status=200))
    assert (backoff.failures, backoff.until_ns) == (0, 0)
    backoff.observe(refused(200 * MS))
    for unrelated in (
        sample(300 * MS, status="error", error_kind=ERROR_TIMEOUT),  # waited timeout_s already
        sample(300 * MS, status="error", error_kind=ERROR_CONNECTION, step=True),  # a step
    ):
        backoff.observe(unrelated)
        assert backoff.failures == 1
    backoff.observe(sample(400 * MS, status="error", error_kind="http_503", http_status=503))
    assert (backoff.failures, backoff.until_ns) == (0, 0)  # an HTTP error is an answer


class MemorySink:
    """Keeps every batch in memory (a SampleSink)."""

    def __init__(self) -> None:
        self.samples: list[Sample] = []

    async def send_batch(self, seq: int, samples: list[Sample]) -> None:
        self.samples.extend(samples)

    async def send_status(self, status: dict[str, float | int]) -> None:
        pass

    async def finish(self, report: WorkerReport) -> None:
        pass


@pytest.fixture
def closed_port() -> Iterator[socket.socket]:
    """A loopback port that refuses connections (bound, not listening), held by the test."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    yield sock
    sock.close()


def runtime_for(port: int, group: dict[str, Any]) -> tuple[WorkerRuntime, MemorySink]:
    config = validate_config_data(
        {
            "name": "backoff",
            "seed": 5,
            "target": {"url": f"http://127.0.0.1:{port}", "model": "m", "timeout_s": 5},
            "groups": [group],
        }
    )
    start_ns = time.time_ns() + 200 * MS
    assignment = Assignment(
        cluster_id="c1", worker=0, workers=1, start_ns=start_ns, config=config,
        batch_interval_s=0.1,
    )  # fmt: skip
    sink = MemorySink()
    return WorkerRuntime(assignment, sink), sink


async def test_closed_loop_against_a_closed_port_backs_off_instead_of_spinning(
    closed_port: socket.socket,
) -> None:
    group = {
        "name": "chat",
        "clients": 2,
        "interaction": {"kind": "chat", "max_tokens": 4, "prompts": ["Hi."]},
        "load": {"kind": "closed", "think_time_s": 0},
        "stop": {"duration_s": 1.0},
    }
    runtime, sink = runtime_for(closed_port.getsockname()[1], group)
    report = await asyncio.wait_for(runtime.run(), 10)

    assert report.outcome == "completed"
    assert all(s.error_kind == ERROR_CONNECTION for s in sink.samples)
    # Waits of 25-50, 50-100, 100-200, 200-400, 400-800 ms fit 5 to 9 sends in 1 s a client
    # (without the backoff: thousands).
    for client in (0, 1):
        mine = sorted((s for s in sink.samples if s.client == client), key=lambda s: s.sent_ns)
        assert 4 <= len(mine) <= 10, len(mine)
        # Scheduled at "answer + think time (0)", sent after the backoff: the lag shows it.
        for before, after in itertools.pairwise(mine):
            assert after.scheduled_ns - before.end_ns < 20 * MS
            assert after.sent_ns - after.scheduled_ns >= 20 * MS


async def test_open_loop_holds_arrivals_while_backing_off_and_sends_every_one(
    closed_port: socket.socket,
) -> None:
    group = {
        "name": "hello",
        "clients": 2,
        "interaction": {"kind": "hello"},
        "load": {"kind": "open", "rate": 100, "arrival": "constant"},
        "stop": {"duration_s": 0.8},
    }
    runtime, sink = runtime_for(closed_port.getsockname()[1], group)
    report = await asyncio.wait_for(runtime.run(), 15)

    assert report.outcome == "completed"
    start_ns = runtime.assignment.start_ns
    assert sorted(s.scheduled_ns - start_ns for s in sink.samples) == [
        round(i / 100 * 1e9) for i in range(80)
    ]  # nothing skipped, every scheduled time kept
    assert all(s.error_kind == ERROR_CONNECTION for s in sink.samples)
    lags_ms = sorted((s.sent_ns - s.scheduled_ns) / MS for s in sink.samples)
    assert lags_ms[len(lags_ms) // 2] > 20  # most were held by a backoff ...
    sends = sorted({round(s.sent_ns / (5 * MS)) for s in sink.samples})
    assert len(sends) < 30  # ... and went out together when it ended: few connection attempts
