"""The worker as a client of the internal API: registration, assignment, batches, control, finish.

The worker runs for real (in-process, or as ``python -m clientswarm.worker``) against the real
simulator; the service side is :class:`InternalApiStub`, a small aiohttp server that implements
the internal API of :mod:`clientswarm.protocol.internal` and can misbehave on purpose (503s,
lost acknowledgements, restarts, revoked tokens). End-to-end tests with the real service live
beside the service.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web

from clientswarm.config.loader import validate_config_data
from clientswarm.config.models import ClusterConfig
from clientswarm.metrics.sample import ERROR_CANCELLED, Sample
from clientswarm.metrics.wire import PACKED_MEDIA_TYPE, decode_batch
from clientswarm.mock import MockSettings, start_mock_server
from clientswarm.protocol.assignment import Assignment, WorkerReport
from clientswarm.protocol.internal import (
    INTERNAL_PREFIX,
    TOKEN_ENV,
    BatchAck,
    Control,
    Heartbeat,
    NotYet,
    RegisterReply,
    RegisterRequest,
)
from clientswarm.worker.service_client import (
    RetryPolicy,
    ServiceAuthError,
    ServiceRejectedError,
    ServiceUnreachableError,
    ServiceWorkerOptions,
    WorkerEndpoint,
    run_service_worker,
)

CLUSTER = "c-test"
TOKEN = "s3cret-token"
FAST = ServiceWorkerOptions(retry=RetryPolicy(initial_s=0.01, max_s=0.05), register_timeout_s=10)


@dataclass
class InternalApiStub:
    """Stands in for the service's internal router (``/internal/v1``), only in this test.

    It follows :mod:`clientswarm.protocol.internal`: bearer token (401 without, 403 wrong),
    202 :class:`NotYet` until every worker registered (plus ``extra_not_yet`` more), 410 on
    the assignment once ``stop_requested``, batches committed once per ``(worker, seq)`` and
    acknowledged again when resent, heartbeats answered with ``control``. Once ``gone`` (the
    cluster is no longer running) every call but ``finish`` is answered 410, as the service
    does. Knobs make it fail on purpose.
    """

    config: ClusterConfig
    workers: int = 1
    token: str = TOKEN
    extra_not_yet: int = 0
    stop_requested: bool = False
    gone: bool = False
    revoked: bool = False
    fail_samples: int = 0  # answer 503 before committing, this many times
    lose_acks: int = 0  # commit a new batch, then answer 503 as if the answer was lost
    hold_samples: asyncio.Event | None = None  # when set, a batch waits for it to be set
    heartbeat_interval_s: float = 0.1
    control: Control = field(default_factory=Control)
    start_ns: int = 0
    registered: dict[int, RegisterRequest] = field(default_factory=dict)
    polls: int = 0
    committed: dict[tuple[int, int], list[Sample]] = field(default_factory=dict)
    posted_seqs: list[int] = field(default_factory=list)
    heartbeats: list[tuple[int, Heartbeat]] = field(default_factory=list)
    control_sent_ns: int | None = None
    finished: dict[int, WorkerReport] = field(default_factory=dict)
    events: list[str] = field(default_factory=list)
    batch_posted: asyncio.Event = field(default_factory=asyncio.Event)
    assigned: asyncio.Event = field(default_factory=asyncio.Event)
    control_sent: asyncio.Event = field(default_factory=asyncio.Event)

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._auth])
        base = INTERNAL_PREFIX + "/clusters/{cluster_id}/workers/{index}/"
        app.router.add_post(base + "register", self._register)
        app.router.add_get(base + "assignment", self._assignment)
        app.router.add_post(base + "samples", self._samples)
        app.router.add_post(base + "heartbeat", self._heartbeat)
        app.router.add_post(base + "finish", self._finish)
        return app

    @web.middleware
    async def _auth(self, request: web.Request, handler: Any) -> web.StreamResponse:
        header = request.headers.get("Authorization", "")
        if not header.startswith("Bearer ") or not header[7:]:
            return web.json_response({"detail": "missing bearer token"}, status=401)
        if header[7:] != self.token or self.revoked:
            return web.json_response({"detail": "wrong token for this cluster"}, status=403)
        if request.match_info.get("cluster_id") != CLUSTER:
            return web.json_response({"detail": "no such cluster"}, status=404)
        if self.gone and not request.path.endswith("/finish"):
            return web.json_response({"detail": "the cluster is not running"}, status=410)
        response: web.StreamResponse = await handler(request)
        return response

    @staticmethod
    def _index(request: web.Request) -> int:
        return int(request.match_info["index"])

    async def _register(self, request: web.Request) -> web.Response:
        body = RegisterRequest.model_validate_json(await request.read())
        self.registered[self._index(request)] = body
        reply = RegisterReply(heartbeat_interval_s=self.heartbeat_interval_s, lost_after_s=5)
        return web.json_response(text=reply.model_dump_json())

    async def _assignment(self, request: web.Request) -> web.Response:
        self.polls += 1
        if self.stop_requested:
            return web.json_response({"detail": "the cluster was stopped"}, status=410)
        if len(self.registered) < self.workers or self.extra_not_yet > 0:
            self.extra_not_yet -= len(self.registered) >= self.workers
            not_yet = NotYet(retry_after_s=0.05, reason="workers are still starting")
            return web.json_response(text=not_yet.model_dump_json(), status=202)
        if not self.start_ns:
            self.start_ns = time.time_ns() + 200_000_000
            self.assigned.set()
        assignment = Assignment(
            cluster_id=CLUSTER,
            worker=self._index(request),
            workers=self.workers,
            start_ns=self.start_ns,
            config=self.config,
            batch_interval_s=0.1,
            batch_max=25,
        )
        return web.json_response(text=assignment.model_dump_json())

    async def _samples(self, request: web.Request) -> web.Response:
        assert request.content_type == PACKED_MEDIA_TYPE
        seq, samples = decode_batch(await request.read(), request.content_type)
        self.posted_seqs.append(seq)
        self.batch_posted.set()
        if self.hold_samples is not None:
            await self.hold_samples.wait()
        if self.fail_samples > 0:
            self.fail_samples -= 1
            return web.json_response({"detail": "store unavailable"}, status=503)
        key = (self._index(request), seq)
        duplicate = key in self.committed
        if not duplicate:
            self.committed[key] = samples
            self.events.append(f"samples {seq}")
        if self.lose_acks > 0 and not duplicate:
            self.lose_acks -= 1
            return web.json_response({"detail": "answer lost"}, status=503)
        ack = BatchAck(seq=seq, duplicate=duplicate)
        return web.json_response(text=ack.model_dump_json())

    async def _heartbeat(self, request: web.Request) -> web.Response:
        beat = Heartbeat.model_validate_json(await request.read())
        self.heartbeats.append((self._index(request), beat))
        if self.control != Control() and self.control_sent_ns is None:
            self.control_sent_ns = time.time_ns()
            self.control_sent.set()
        return web.json_response(text=self.control.model_dump_json())

    async def _finish(self, request: web.Request) -> web.Response:
        report = WorkerReport.model_validate_json(await request.read())
        self.finished[self._index(request)] = report
        self.events.append("finish")
        return web.json_response({})

    def samples(self) -> list[Sample]:
        return [s for key in sorted(self.committed) for s in self.committed[key]]


class StubServer:
    """Runs an :class:`InternalApiStub` on a loopback port; can stop and restart on that port."""

    def __init__(self, stub: InternalApiStub, port: int = 0) -> None:
        self.stub = stub
        self.port = port
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._runner = web.AppRunner(self.stub.app(), access_log=None, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True)
        await site.start()
        self.port = int(self._runner.addresses[0][1])

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
async def target_url() -> AsyncIterator[str]:
    async with await start_mock_server(MockSettings(ttft_ms=100, itl_ms=10, seed=2)) as server:
        yield server.url


def cluster(url: str, group: dict[str, Any]) -> ClusterConfig:
    return validate_config_data(
        {
            "name": "svc",
            "seed": 3,
            "target": {"url": url, "model": "mock-model", "timeout_s": 10},
            "groups": [group],
        }
    )


def hello(rate: float, duration_s: float, clients: int = 2) -> dict[str, Any]:
    return {
        "name": "hello",
        "clients": clients,
        "interaction": {"kind": "hello"},
        "load": {"kind": "open", "rate": rate, "arrival": "constant"},
        "stop": {"duration_s": duration_s},
    }


def chat_closed(duration_s: float, clients: int = 4) -> dict[str, Any]:
    return {
        "name": "chat",
        "clients": clients,
        "interaction": {"kind": "chat", "max_tokens": 8, "prompts": ["Hi."]},
        "stop": {"duration_s": duration_s},
    }


async def started(stub: InternalApiStub, port: int = 0) -> StubServer:
    server = StubServer(stub, port)
    await server.start()
    return server


def endpoint(server: StubServer, index: int = 0, token: str = TOKEN) -> WorkerEndpoint:
    return WorkerEndpoint(server.url, CLUSTER, index, token)


def assert_delivered_once(stub: InternalApiStub, worker: int, report: WorkerReport) -> None:
    """Every sample the worker took is committed once, in batches numbered 1..n."""
    seqs = sorted(seq for w, seq in stub.committed if w == worker)
    assert seqs == list(range(1, len(seqs) + 1))
    samples = [s for (w, _), batch in sorted(stub.committed.items()) if w == worker for s in batch]
    assert len(samples) == report.samples
    keys = {(s.client, s.scheduled_ns, s.sent_ns) for s in samples}
    assert len(keys) == len(samples)  # nothing twice


async def test_two_workers_register_wait_for_the_start_run_and_finish(target_url: str) -> None:
    stub = InternalApiStub(cluster(target_url, hello(rate=20, duration_s=1.0)), workers=2)
    server = await started(stub)
    try:
        first = asyncio.create_task(run_service_worker(endpoint(server, 0), options=FAST))
        await asyncio.sleep(0.3)  # worker 0 polls and gets 202 until worker 1 registers
        second = asyncio.create_task(run_service_worker(endpoint(server, 1), options=FAST))
        reports = await asyncio.wait_for(asyncio.gather(first, second), 20)
    finally:
        await server.stop()

    assert set(stub.registered) == {0, 1}
    assert stub.registered[0].pid == os.getpid() and stub.registered[0].version
    assert stub.polls >= 4  # 202 at least once, then 200 for each worker
    for index, report in enumerate(reports):
        assert report.outcome == "completed"
        assert stub.finished[index] == report
        assert_delivered_once(stub, index, report)
    assert sum(r.samples for r in reports) == 20  # constant 20/s for 1 s, split over 2 workers
    assert {s.worker for s in stub.samples()} == {0, 1}
    assert stub.events[-1] == "finish" and stub.events.count("finish") == 2
    assert any(beat.active_clients == 1 for _, beat in stub.heartbeats)


async def test_batches_are_resent_with_the_same_seq_until_acknowledged(target_url: str) -> None:
    stub = InternalApiStub(
        cluster(target_url, hello(rate=40, duration_s=1.0)),
        extra_not_yet=2,
        fail_samples=3,
        lose_acks=2,
    )
    server = await started(stub)
    try:
        report = await asyncio.wait_for(run_service_worker(endpoint(server), options=FAST), 20)
    finally:
        await server.stop()

    assert report.outcome == "completed" and report.samples == 40
    assert_delivered_once(stub, 0, report)
    # Batch 1 was refused three times, then committed with its answer lost: five posts.
    assert stub.posted_seqs[:6] == [1, 1, 1, 1, 1, 2]
    assert stub.posted_seqs.count(2) == 2  # committed, answer lost, acknowledged as duplicate
    assert stub.events[-1] == "finish"


async def test_a_service_restart_mid_run_loses_nothing(target_url: str) -> None:
    stub = InternalApiStub(cluster(target_url, hello(rate=40, duration_s=2.0)))
    server = await started(stub)
    worker = asyncio.create_task(run_service_worker(endpoint(server), options=FAST))
    await stub.batch_posted.wait()
    await asyncio.sleep(0.4)
    await server.stop()  # heartbeats and batches fail for a while
    await asyncio.sleep(1.0)
    await server.start()  # same port, same state (the real service recovers from its store)
    try:
        report = await asyncio.wait_for(worker, 20)
    finally:
        await server.stop()

    assert report.outcome == "completed" and report.samples == 80
    assert_delivered_once(stub, 0, report)
    assert stub.finished[0] == report


async def test_heartbeat_control_stops_clients_then_all(target_url: str) -> None:
    stub = InternalApiStub(cluster(target_url, chat_closed(duration_s=10)))
    server = await started(stub)
    try:
        worker = asyncio.create_task(run_service_worker(endpoint(server), options=FAST))
        await stub.assigned.wait()
        await asyncio.sleep((stub.start_ns - time.time_ns()) / 1e9 + 0.5)
        stub.control = Control(stop_clients=[0, 2])
        await stub.control_sent.wait()
        assert stub.control_sent_ns is not None
        stop_clients_ns = stub.control_sent_ns
        await asyncio.sleep(0.6)
        stub.control = Control(stop_clients=[0, 2], stop_all=True)
        report = await asyncio.wait_for(worker, 5)  # long before the 10 s of the run
    finally:
        await server.stop()

    assert report.outcome == "cancelled" and stub.finished[0].outcome == "cancelled"
    assert_delivered_once(stub, 0, report)
    samples = stub.samples()
    slack_ns = 50_000_000  # the reply's trip back to the worker
    for stopped in (0, 2):
        mine = [s for s in samples if s.client == stopped]
        assert all(s.sent_ns <= stop_clients_ns + slack_ns for s in mine)
        assert [s.error_kind for s in mine].count(ERROR_CANCELLED) == 1
    cut = []
    for running in (1, 3):
        mine = [s for s in samples if s.client == running]
        assert any(s.sent_ns > stop_clients_ns + slack_ns for s in mine)
        kinds = [s.error_kind for s in mine]
        assert ERROR_CANCELLED not in kinds[:-1]  # only a request in flight is cut
        cut.append(kinds[-1] == ERROR_CANCELLED)
    # stop_all cuts the requests in flight; a client caught between two requests (its answer
    # just in, the next not yet sent) has none to cut, which both rarely are at once
    assert any(cut)
    active = [beat.active_clients for _, beat in stub.heartbeats]
    assert 4 in active and 2 in active


@pytest.mark.parametrize(("token", "status"), [("", 401), ("wrong", 403)])
async def test_a_refused_token_fails_the_worker_with_a_clear_message(
    target_url: str, token: str, status: int
) -> None:
    stub = InternalApiStub(cluster(target_url, hello(rate=10, duration_s=1)))
    server = await started(stub)
    try:
        with pytest.raises(ServiceAuthError) as caught:
            await asyncio.wait_for(
                run_service_worker(endpoint(server, token=token), options=FAST), 5
            )
    finally:
        await server.stop()
    message = str(caught.value)
    assert f"HTTP {status}" in message and TOKEN_ENV in message and "/register" in message
    assert not stub.registered


async def test_a_token_revoked_mid_run_stops_the_worker_at_once(target_url: str) -> None:
    stub = InternalApiStub(cluster(target_url, hello(rate=20, duration_s=10)))
    server = await started(stub)
    try:
        worker = asyncio.create_task(run_service_worker(endpoint(server), options=FAST))
        await stub.batch_posted.wait()
        stub.revoked = True
        began = time.monotonic()
        with pytest.raises(ServiceAuthError, match="HTTP 403"):
            await asyncio.wait_for(worker, 5)
        assert time.monotonic() - began < 2  # not the 10 s of the run
    finally:
        await server.stop()


async def test_a_cluster_stopped_before_the_start_ends_the_worker_cleanly(
    target_url: str,
) -> None:
    stub = InternalApiStub(cluster(target_url, hello(rate=10, duration_s=1)), stop_requested=True)
    server = await started(stub)
    try:
        report = await asyncio.wait_for(run_service_worker(endpoint(server), options=FAST), 5)
        assert report.outcome == "cancelled" and set(stub.registered) == {0}
        assert not stub.committed and not stub.finished  # 410: the service knows already
        stub.gone = True  # a late worker of a cluster that is over: not even registered
        report = await asyncio.wait_for(run_service_worker(endpoint(server), options=FAST), 5)
        assert report.outcome == "cancelled"
        assert report.error == "the cluster no longer needs this worker"
    finally:
        await server.stop()


async def test_a_cluster_gone_mid_run_stops_the_worker_and_refused_samples_fail_it(
    target_url: str,
) -> None:
    stub = InternalApiStub(cluster(target_url, chat_closed(duration_s=10)))
    server = await started(stub)
    try:
        worker = asyncio.create_task(run_service_worker(endpoint(server), options=FAST))
        await stub.batch_posted.wait()
        stub.gone = True  # the next heartbeat gets 410: the worker stops its clients
        began = time.monotonic()
        # Its clients were in flight: their cancelled samples are refused, and it says so.
        with pytest.raises(ServiceRejectedError, match=r"samples: HTTP 410"):
            await asyncio.wait_for(worker, 5)
        assert time.monotonic() - began < 2
    finally:
        await server.stop()


async def test_registration_waits_for_a_service_that_starts_late(target_url: str) -> None:
    stub = InternalApiStub(cluster(target_url, hello(rate=10, duration_s=0.5)))
    server = StubServer(stub, free_port())
    worker = asyncio.create_task(run_service_worker(endpoint(server), options=FAST))
    await asyncio.sleep(0.5)  # connection refused meanwhile
    await server.start()
    try:
        report = await asyncio.wait_for(worker, 10)
    finally:
        await server.stop()
    assert report.outcome == "completed" and stub.finished[0] == report


async def test_registration_gives_up_on_a_service_that_never_answers() -> None:
    options = ServiceWorkerOptions(
        retry=RetryPolicy(initial_s=0.01, max_s=0.05), register_timeout_s=0.3
    )
    dead = WorkerEndpoint(f"http://127.0.0.1:{free_port()}", CLUSTER, 0, TOKEN)
    with pytest.raises(ServiceUnreachableError, match="/register"):
        await asyncio.wait_for(run_service_worker(dead, options=options), 5)


async def test_worker_process_stops_on_sigterm_and_delivers_the_batch_in_flight(
    target_url: str,
) -> None:
    hold = asyncio.Event()
    stub = InternalApiStub(cluster(target_url, hello(rate=20, duration_s=30)), hold_samples=hold)
    server = await started(stub)
    command = [sys.executable, "-m", "clientswarm.worker", "--service", server.url]
    process = await asyncio.create_subprocess_exec(
        *command, "--cluster", CLUSTER, "--index", "0",
        env={**os.environ, TOKEN_ENV: TOKEN},
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        await asyncio.wait_for(stub.batch_posted.wait(), 15)  # batch 1 is now in flight, held
        await asyncio.sleep(0.5)  # more samples pile up behind it
        process.send_signal(signal.SIGTERM)
        await asyncio.sleep(0.3)
        hold.set()
        _, stderr = await asyncio.wait_for(process.communicate(), 15)
    finally:
        if process.returncode is None:
            process.kill()
        await server.stop()

    assert process.returncode == 0, stderr.decode()[-2000:]
    report = stub.finished[0]
    assert report.outcome == "cancelled"
    assert_delivered_once(stub, 0, report)
    # Batch 1 was cut by the stop and resent by the final flush; the rest followed it.
    assert stub.posted_seqs[:2] == [1, 1] and len(stub.committed) >= 2
    assert report.samples > len(stub.committed[(0, 1)])
    assert stub.events[-1] == "finish"


async def test_worker_command_without_a_token_exits_2() -> None:
    env = {k: v for k, v in os.environ.items() if k != TOKEN_ENV}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "clientswarm.worker",
        "--service", "http://127.0.0.1:9", "--cluster", CLUSTER, "--index", "0",
        env=env, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, stderr = await asyncio.wait_for(process.communicate(), 15)
    assert process.returncode == 2
    assert stderr.decode().strip() == (
        f"error: {TOKEN_ENV} is not set: the worker needs its cluster's token in that "
        "environment variable (the spawner sets it)"
    )
