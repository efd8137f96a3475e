"""The worker as a client of the service's internal API (:mod:`clientswarm.protocol.internal`).

:func:`run_service_worker` registers, polls for the assignment, runs the clients with a
:class:`ServiceSink` while heartbeating, flushes the last samples and posts ``/finish``::

    register ─▶ GET assignment (202: wait retry_after_s · 410: cancelled) ─▶ run ─▶ flush ─▶ finish
                └──────────── heartbeat every heartbeat_interval_s: Control ─────────┘

Each call goes through :class:`~clientswarm.worker.internal_api.InternalApiClient`, which
retries what is transient and says which errors are fatal.

HTTP 410 (the cluster is no longer running, or no longer needs this worker): on ``register``
and ``assignment`` the worker ends cleanly as ``cancelled``; on a heartbeat it stops like
``stop_all``; on ``finish`` it is done; on a batch it fails (the service refuses the samples).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

import aiohttp

from clientswarm import __version__
from clientswarm.errors import WorkerError
from clientswarm.load.adaptive import WAITING_HEARTBEAT_S
from clientswarm.metrics.sample import Sample
from clientswarm.metrics.wire import PACKED_MEDIA_TYPE, ColumnarBatch
from clientswarm.preflight import run_preflight
from clientswarm.protocol.assignment import Assignment, WorkerReport
from clientswarm.protocol.internal import (
    WORKER_KEEP_ALIVE_S,
    Control,
    EngineMetricsReport,
    EngineProblem,
    EngineScrape,
    Heartbeat,
    NotYet,
    PreflightPlan,
    RegisterReply,
    RegisterRequest,
)
from clientswarm.worker.file_sink import FileTickSink
from clientswarm.worker.internal_api import (
    InternalApiClient,
    RetryPolicy,
    ServiceAuthError,
    ServiceRejectedError,
    ServiceUnreachableError,
    ServiceWorkerOptions,
    WorkerEndpoint,
    parse_reply,
    tail,
)
from clientswarm.worker.posting import PostingSink
from clientswarm.worker.runtime import WorkerRuntime

log = logging.getLogger("clientswarm.worker")

T = TypeVar("T")

ENCODE_SLICE = 256
"""Samples taken into a batch between two yields to the event loop (well under 1 ms here)."""


async def encode_batch(seq: int, samples: list[Sample]) -> bytes:
    """The body of a sample batch in the packed wire form (:mod:`clientswarm.metrics.wire`),
    its samples taken a slice at a time with the event loop free in between: a busy worker's
    batch (thousands of streamed samples, each with its inter-token latencies) would
    otherwise hold the loop, and every request in flight would read its tokens that much
    late."""
    batch = ColumnarBatch()
    for start in range(0, len(samples), ENCODE_SLICE):
        if start:
            await asyncio.sleep(0)
        batch.add(samples[start : start + ENCODE_SLICE])
    return batch.encode(seq)


class ServiceSink(PostingSink):
    """A :class:`~clientswarm.worker.recorder.SampleSink` that posts batches to the service.

    :meth:`send_batch` returns only once the service acknowledged the batch (HTTP 200 with a
    :class:`BatchAck` of the same ``seq``); transient failures are retried with the same
    ``seq`` for as long as the run lasts, so the service's dedupe by ``(worker, seq)`` makes
    resending safe. Live status travels in heartbeats, so :meth:`send_status` does nothing.
    """

    async def send_batch(self, seq: int, samples: list[Sample]) -> None:
        """Post one batch and wait for its acknowledgement."""
        body = await encode_batch(seq, samples)
        await self.post_acknowledged("samples", "batch", seq, body, PACKED_MEDIA_TYPE, len(samples))


def service_connector() -> aiohttp.TCPConnector:
    """The connection pool of a worker's calls to the service: a few keep-alive connections,
    each closed by the worker after :data:`WORKER_KEEP_ALIVE_S` idle (before the service
    would close it under a call)."""
    return aiohttp.TCPConnector(limit=8, keepalive_timeout=WORKER_KEEP_ALIVE_S)


async def run_service_worker(
    endpoint: WorkerEndpoint,
    *,
    stop: asyncio.Event | None = None,
    options: ServiceWorkerOptions | None = None,
) -> WorkerReport:
    """Run one worker of a cluster against the service and return its report.

    Setting ``stop`` stops the worker gracefully (in-flight requests are recorded as cancelled,
    every sample is delivered, ``/finish`` is posted); the service's ``stop_all`` sets it too.
    Raises a :class:`~clientswarm.errors.WorkerError` when the worker cannot go on.
    """
    options = options or ServiceWorkerOptions()
    async with aiohttp.ClientSession(connector=service_connector()) as session:
        api = InternalApiClient(session, endpoint, options)
        worker = _ServiceWorker(api, endpoint, options, stop or asyncio.Event())
        return await worker.run()


class _ServiceWorker:
    """One run of :func:`run_service_worker`: the steps and the heartbeat beside them."""

    def __init__(
        self,
        api: InternalApiClient,
        endpoint: WorkerEndpoint,
        options: ServiceWorkerOptions,
        stop: asyncio.Event,
    ) -> None:
        self._api = api
        self._endpoint = endpoint
        self._options = options
        self._stop = stop
        self._sink: ServiceSink | FileTickSink = ServiceSink(api)
        self._runtime: WorkerRuntime | None = None
        self._early_stops: set[int] = set()  # stop_clients received before the runtime exists
        self._gone = False  # the service answered 410: the cluster was stopped

    async def run(self) -> WorkerReport:
        reply = await self._until_stopped(self._register())
        if reply is None:
            why = "the cluster no longer needs this worker" if self._gone else "stopped early"
            return WorkerReport(outcome="cancelled", error=why)
        heartbeat = asyncio.create_task(self._heartbeats(reply.heartbeat_interval_s))
        try:
            if reply.preflight is not None:  # worker 0, off the service's machine
                await self._until_stopped(self._preflight(reply.preflight))
            return await self._run_registered()
        finally:
            heartbeat.cancel()
            await asyncio.gather(heartbeat, return_exceptions=True)

    async def _run_registered(self) -> WorkerReport:
        assignment = await self._until_stopped(self._poll_assignment())
        if assignment is None:
            report = WorkerReport(outcome="cancelled", error="stopped before the start")
            if not self._gone:  # after a 410 the service knows already
                await self._sink.finish(report)
            return report
        return await self._run_assignment(assignment)

    async def _run_assignment(self, assignment: Assignment) -> WorkerReport:
        """Run the clients of ``assignment`` to the end, then post ``/finish``."""
        try:
            if assignment.sample_dir is not None:  # the high-rate path: samples to files
                self._sink = FileTickSink(
                    self._api,
                    assignment.sample_dir,
                    assignment.cluster_id,
                    assignment.worker,
                    assignment.config.slo,
                )
            runtime = WorkerRuntime(assignment, self._sink)
        except Exception as exc:  # e.g. a dataset missing on this host: tell the service
            error = f"could not prepare the assignment: {type(exc).__name__}: {exc}"
            await self._finish_failed(error)
            raise WorkerError(error) from exc
        runtime.stop_clients(self._early_stops)
        self._runtime = runtime
        watcher = asyncio.create_task(self._stop_runtime_when_asked(runtime))
        scraping = self._scrape_engine_metrics(assignment)
        try:
            report = await runtime.run()  # ends with the final flush: before /finish
        finally:
            watcher.cancel()
            for _, task in scraping:
                task.cancel()
            await asyncio.gather(*(task for _, task in scraping), return_exceptions=True)
        for scraper, _ in scraping:  # one last scrape: the counters hold every request
            with contextlib.suppress(Exception):
                await scraper.last()
        if self._api.failure is not None:
            raise self._api.failure
        if report.outcome == "failed":
            log.error("worker %d failed: %s", self._endpoint.index, report.error)
        await self._sink.finish(report)
        log.info(
            "worker %d finished (%s): %d samples in %d batches acknowledged",
            self._endpoint.index,
            report.outcome,
            self._sink.acknowledged_samples,
            self._sink.acknowledged_batches,
        )
        return report

    def _scrape_engine_metrics(
        self, assignment: Assignment
    ) -> list[tuple[Any, asyncio.Task[None]]]:
        """Worker 0, when its assignment asks: scrape the targets' engine metrics until the
        run ends and post each scrape to the service (:mod:`clientswarm.enginescrape`)."""
        if not assignment.engine_metrics:
            return []
        # Off the start-up path of every other worker: the Prometheus parser loads here.
        from clientswarm.enginescrape import scrapers, values_to_json

        async def post(report: EngineMetricsReport) -> None:
            try:
                await self._api.call(
                    "POST",
                    "engine-metrics",
                    report.model_dump_json().encode(),
                    accept=(200, 410),
                    retry=False,
                )
            except WorkerError as exc:  # the scrape is lost, the run goes on
                log.warning("could not send the engine metrics: %s", exc)

        async def on_scrape(target: str, t_s: float, values: Any) -> None:
            scrape = EngineScrape(target=target, t_s=t_s, values=values_to_json(values))
            await post(EngineMetricsReport(scrapes=[scrape]))

        async def on_problem(target: str, line: str) -> None:
            await post(EngineMetricsReport(problems=[EngineProblem(target=target, message=line)]))

        return [
            (scraper, asyncio.create_task(scraper.run()))
            for scraper in scrapers(assignment.config, assignment.start_ns, on_scrape, on_problem)
        ]

    async def _register(self) -> RegisterReply | None:
        """Announce this worker; ``None`` when the cluster no longer needs it (410)."""
        request = RegisterRequest(host=socket.gethostname(), pid=os.getpid(), version=__version__)
        try:
            status, data = await self._api.call(
                "POST",
                "register",
                request.model_dump_json().encode(),
                accept=(200, 201, 410),
                limit_s=self._options.register_timeout_s,
            )
            if status == 410:
                log.info("the cluster is stopped or started without this worker: %s", tail(data))
                self._gone = True
                return None
            reply = parse_reply(RegisterReply, data, "POST register")
        except WorkerError as exc:
            raise self._api.fail(exc) from None
        log.info(
            "worker %d registered with %s (cluster %s)",
            self._endpoint.index,
            self._endpoint.service_url,
            self._endpoint.cluster_id,
        )
        return reply

    async def _preflight(self, plan: PreflightPlan) -> None:
        """Check the targets of ``plan`` from here, as the clients will reach them (this
        worker's environment holds their keys), and report to the service: the start waits
        for it (:mod:`clientswarm.protocol.preflight`)."""
        where = f"worker {self._endpoint.index} on {socket.gethostname()}"
        report = await run_preflight(plan, os.environ, where=where)
        for check in report.checks:
            level = {"passed": logging.INFO, "warning": logging.WARNING}.get(check.level)
            log.log(level or logging.ERROR, "preflight: %s", check.message)
        try:
            await self._api.call(
                "POST", "preflight", report.model_dump_json().encode(), accept=(200, 410)
            )
        except WorkerError as exc:
            raise self._api.fail(exc) from None

    async def _poll_assignment(self) -> Assignment | None:
        """The assignment once the start time is set; ``None`` when the cluster was stopped."""
        while True:
            try:
                status, data = await self._api.call("GET", "assignment", accept=(200, 202, 410))
            except WorkerError as exc:
                raise self._api.fail(exc) from None
            if status == 410:
                log.info("the cluster was stopped before this worker started")
                self._gone = True
                return None
            if status == 202:
                not_yet = parse_reply(NotYet, data, "GET assignment")
                log.info("assignment not ready (%s); asking again", not_yet.reason)
                await asyncio.sleep(not_yet.retry_after_s)
                continue
            return self._checked(parse_reply(Assignment, data, "GET assignment"))

    def _checked(self, assignment: Assignment) -> Assignment:
        e = self._endpoint
        problem = None
        if assignment.cluster_id != e.cluster_id or assignment.worker != e.index:
            problem = (
                f"it is for cluster {assignment.cluster_id} worker {assignment.worker}, "
                f"not cluster {e.cluster_id} worker {e.index}"
            )
        elif assignment.start_ns <= 0:
            problem = "it has no start time"
        if problem:
            raise self._api.fail(
                ServiceRejectedError(f"the service's assignment is wrong: {problem}")
            )
        return assignment

    async def _until_stopped(self, coro: Coroutine[Any, Any, T]) -> T | None:
        """Run ``coro`` unless the worker is stopped first (``None``) or fails (raises)."""
        task = asyncio.create_task(coro)
        stopped = asyncio.create_task(self._stop.wait())
        failed = asyncio.create_task(self._api.failed.wait())
        try:
            await asyncio.wait({task, stopped, failed}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in (stopped, failed):
                waiter.cancel()
            if not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        if task.cancelled():
            if self._api.failure is not None:
                raise self._api.failure
            return None
        return task.result()

    async def _stop_runtime_when_asked(self, runtime: WorkerRuntime) -> None:
        await self._first_of(self._stop, self._api.failed)
        runtime.stop()

    @staticmethod
    async def _first_of(*events: asyncio.Event) -> None:
        """Wait until one of ``events`` is set."""
        waiters = [asyncio.create_task(e.wait()) for e in events]
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()

    async def _finish_failed(self, error: str) -> None:
        """Tell the service this worker failed, once, without insisting."""
        report = WorkerReport(outcome="failed", error=error)
        with contextlib.suppress(WorkerError):
            await self._api.call(
                "POST",
                "finish",
                report.model_dump_json().encode(),
                accept=(200, 204, 410),
                retry=False,
            )

    async def _heartbeats(self, interval_s: float) -> None:
        """Heartbeat until cancelled; apply each Control; only an auth error is fatal."""
        timeout_s = min(self._options.request_timeout_s, max(2.0, 2 * interval_s))
        failures = 0
        while True:
            started = time.monotonic()
            body = self._state().model_dump_json().encode()
            try:
                status, data = await self._api.call(
                    "POST", "heartbeat", body, accept=(200, 410), retry=False, timeout_s=timeout_s
                )
                control = (
                    Control(stop_all=True)  # 410: the cluster is no longer running
                    if status == 410
                    else parse_reply(Control, data, "POST heartbeat")
                )
            except ServiceAuthError:
                return  # recorded in api.failure: the worker stops
            except WorkerError as exc:
                failures += 1
                if failures == 1 or failures % 10 == 0:
                    log.warning("heartbeat %d failed in a row (%s); retrying", failures, exc)
            else:
                if failures:
                    log.info("heartbeat answered again after %d failure(s)", failures)
                    failures = 0
                if status == 410 and not self._stop.is_set():
                    log.warning("the service says the cluster is no longer running: %s", tail(data))
                self._apply(control)
            await self._until_next_beat(started, interval_s)

    async def _until_next_beat(self, started: float, interval_s: float) -> None:
        """Sleep until the next heartbeat is due: ``interval_s`` after the last one, or
        :data:`~clientswarm.load.adaptive.WAITING_HEARTBEAT_S` after it while an adaptive
        group waits for its next stage (so it learns the decision soon)."""
        while True:
            elapsed = time.monotonic() - started
            runtime = self._runtime
            due = interval_s
            if runtime is not None and runtime.awaiting_stage:
                due = min(interval_s, WAITING_HEARTBEAT_S)
            if elapsed >= due:
                return
            await asyncio.sleep(min(due - elapsed, WAITING_HEARTBEAT_S))

    def _state(self) -> Heartbeat:
        runtime = self._runtime
        if runtime is None:
            return Heartbeat()
        return Heartbeat(
            in_flight=runtime.in_flight,
            recorded=runtime.recorder.recorded,
            active_clients=runtime.active_clients,
            loop_lag_p99_s=runtime.recent_loop_lag_p99_s(),  # the report has the exact one
            in_flight_groups=runtime.in_flight_groups(),
        )

    def _apply(self, control: Control) -> None:
        if control.stages and self._runtime is not None:
            self._runtime.set_stages(control.stages)
        if control.stop_clients:
            if self._runtime is not None:
                self._runtime.stop_clients(control.stop_clients)
            else:
                self._early_stops.update(control.stop_clients)
        if control.stop_all and not self._stop.is_set():
            log.info("the service asked this worker to stop")
            self._stop.set()


__all__ = [
    "RetryPolicy",
    "ServiceAuthError",
    "ServiceRejectedError",
    "ServiceSink",
    "ServiceUnreachableError",
    "ServiceWorkerOptions",
    "WorkerEndpoint",
    "encode_batch",
    "run_service_worker",
    "service_connector",
]
