"""Simulated workers of the fleet benchmark: many in one process, each a real worker's client.

Each simulated worker is the worker's own protocol code (:mod:`clientswarm.worker.service_client`:
register, the assignment poll, heartbeats at the interval the service asks for, ``/finish``,
all through :class:`~clientswarm.worker.internal_api.InternalApiClient` with its retries, one
``aiohttp`` session per worker as a real worker has) and the worker's own batching
(:class:`~clientswarm.worker.recorder.SampleRecorder` shipping through
:class:`~clientswarm.worker.service_client.ServiceSink` in the packed wire form). Only the
clients are replaced: :class:`SimulatedClients` makes up streamed-chat samples (65 tokens, 64
inter-token gaps, 1 % HTTP 500) at a set rate on an absolute schedule, and records them as
clients do. A cluster of ``sample_path: files`` (its assignment names a ``sample_dir``) ships
through :class:`TemplateFileSink` instead, as a real worker switches to
:class:`~clientswarm.worker.file_sink.FileTickSink`: each tick written to its Arrow IPC file
(fsynced, renamed), rolled up every 60 ticks, tallied, encoded, posted to ``POST ticks``, the
files closed before ``/finish``. Run by ``bench/fleet.py`` as ``python bench/fleet_workers.py
...`` (the cluster's token in ``CLIENTSWARM_WORKER_TOKEN``); it writes what it saw as JSON to
``--out``.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import copy
import json
import logging
import math
import operator
import os
import random
import signal
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

from clientswarm import aio
from clientswarm.errors import WorkerError
from clientswarm.metrics.fields import COLUMNS
from clientswarm.metrics.itl import pack_itl
from clientswarm.metrics.sample import Sample
from clientswarm.metrics.ticks import TICK_MEDIA_TYPE, TickTallies, encode, tick_tallies
from clientswarm.metrics.wire import PACKED_MEDIA_TYPE, ColumnarBatch
from clientswarm.protocol.assignment import Assignment, WorkerReport
from clientswarm.worker.file_sink import FileTickSink
from clientswarm.worker.internal_api import (
    InternalApiClient,
    ServiceWorkerOptions,
    WorkerEndpoint,
)
from clientswarm.worker.looplag import LoopLagMonitor
from clientswarm.worker.recorder import SampleRecorder
from clientswarm.worker.service_client import ServiceSink, _ServiceWorker, service_connector

GENERATE_EVERY_S = 0.25
"""How often a simulated worker records the samples that came due (clients record them as
their requests end; four times a second is finer than the 0.5 s batch tick)."""
TIMELINE_EVERY_S = 0.5
CANCEL_WAIT_S = 10.0
ITL_VALUES = 64
ITL_POOL = 64
ERROR_EVERY = 100
TEMPLATES = math.lcm(ITL_POOL, ERROR_EVERY)  # every (error or not, answer) pairing once
KEEP_MESSAGES = 20

_row_of = operator.attrgetter(*COLUMNS)
_TIME_COLUMNS = [
    (COLUMNS.index(name), name)
    for name in ("scheduled_ns", "sent_ns", "end_ns", "first_token_ns", "last_token_ns")
]
_CLIENT, _WORKER = COLUMNS.index("client"), COLUMNS.index("worker")
_STAGE, _WARMUP = COLUMNS.index("stage"), COLUMNS.index("warmup")


class Observations:
    """What one process saw: every call's round trip, every attempt's status, the backlog."""

    def __init__(self) -> None:
        self.calls: dict[str, list[tuple[float, float]]] = collections.defaultdict(list)
        self.failures: dict[str, list[tuple[float, str]]] = collections.defaultdict(list)
        self.attempts: dict[str, collections.Counter[str]] = collections.defaultdict(
            collections.Counter
        )
        self.first_problem: tuple[float, str, str] | None = None
        self.acks: list[tuple[float, int]] = []
        self.timeline: list[tuple[float, int, int]] = []
        self.outcomes: collections.Counter[str] = collections.Counter()
        self.messages: list[str] = []
        self.start_ns: int | None = None
        self.batch_interval_s: float | None = None
        self.assigned: list[float] = []

    def answered(self, action: str, rtt_s: float) -> None:
        self.calls[action].append((time.time(), rtt_s))

    def failed(self, action: str, exc: BaseException) -> None:
        now = time.time()
        self.failures[action].append((now, f"{type(exc).__name__}: {exc}"[:300]))
        self.problem(now, action, f"{type(exc).__name__}: {exc}"[:300])

    def problem(self, t: float, action: str, what: str) -> None:
        if self.first_problem is None:
            self.first_problem = (t, action, what)

    def trace_config(self) -> aiohttp.TraceConfig:
        """Counts every HTTP attempt's status (or exception) by action."""
        trace = aiohttp.TraceConfig()

        async def on_end(session: Any, ctx: Any, params: aiohttp.TraceRequestEndParams) -> None:
            action = params.url.path.rsplit("/", 1)[-1]
            status = params.response.status
            self.attempts[action][str(status)] += 1
            if status >= 400:
                self.problem(time.time(), action, f"HTTP {status}")

        async def on_error(
            session: Any, ctx: Any, params: aiohttp.TraceRequestExceptionParams
        ) -> None:
            action = params.url.path.rsplit("/", 1)[-1]
            if isinstance(params.exception, asyncio.CancelledError):
                # The worker's own doing (a heartbeat at its end, a batch in flight when the
                # recorder's loop stops before the last flush sends it again), as in a real one.
                self.attempts[action]["cancelled"] += 1
                return
            what = type(params.exception).__name__
            self.attempts[action][what] += 1
            self.problem(time.time(), action, f"{what}: {params.exception}"[:300])

        trace.on_request_end.append(on_end)
        trace.on_request_exception.append(on_error)
        return trace


class TimedApiClient(InternalApiClient):
    """The worker's API client, timing each call (retries included) into :class:`Observations`."""

    def __init__(self, *args: Any, seen: Observations, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._seen = seen

    async def call(self, method: str, action: str, body: bytes | None = None, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            result = await super().call(method, action, body, **kwargs)
        except WorkerError as exc:
            self._seen.failed(action, exc)
            raise
        self._seen.answered(action, time.perf_counter() - started)
        return result


class Done:
    """One made-up interaction as the recorder holds it: its number in the worker's stream
    (which decides what it looks like, :class:`SampleTemplates`) and when it ended. What
    :class:`~clientswarm.worker.recorder.SampleRecorder` reads and sets of a sample, and no more:
    building a whole :class:`Sample` and packing its gaps costs more than the service's share."""

    __slots__ = ("end_ns", "group", "number", "scheduled_ns", "stage", "warmup")

    def __init__(self, number: int, end_ns: int, scheduled_ns: int) -> None:
        self.number, self.end_ns, self.scheduled_ns = number, end_ns, scheduled_ns
        self.group = "chat"
        self.warmup, self.stage = False, 0


class SampleTemplates:
    """What sample number ``n`` of a worker is, relative to its end: every 100th an HTTP 500
    after 2 ms, the others streamed chats of 65 tokens (128 in), TTFT 50-69 ms, then one of 64
    answers' gaps (5-20 ms each). Kept as wire rows, their time columns shifted per sample."""

    def __init__(self, rng: random.Random) -> None:
        gaps = [[rng.uniform(0.005, 0.02) for _ in range(ITL_VALUES)] for _ in range(ITL_POOL)]
        self.relative = [self._relative(n, gaps) for n in range(TEMPLATES)]
        self.rows = [_row_of(s) for s in self.relative]
        self.times = [
            [(i, getattr(s, name)) for i, name in _TIME_COLUMNS if getattr(s, name) is not None]
            for s in self.relative
        ]
        self.counts = [len(s.itl_s) for s in self.relative]
        self.packed = [pack_itl(s.itl_s) for s in self.relative]
        self._tallies: dict[int, TickTallies] = {}

    @staticmethod
    def _relative(n: int, gaps: list[list[float]]) -> Sample:
        """Sample ``n`` (mod :data:`TEMPLATES`) of client 0, worker 0, ending at 0 ns."""
        if n % ERROR_EVERY == ERROR_EVERY - 1:
            return Sample(
                group="chat", client=0, worker=0, name="chat", scheduled_ns=-2_000_000,
                sent_ns=-2_000_000, end_ns=0, status="error", input_tokens=128,
                error_kind="http_500", error_message="HTTP 500: Internal Server Error",
                http_status=500,
            )  # fmt: skip
        itl = gaps[n % ITL_POOL]
        first = -int(sum(itl) * 1e9)
        sent = first - 50_000_000 - (n * 7919 % 20) * 1_000_000
        return Sample(
            group="chat", client=0, worker=0, name="chat", scheduled_ns=sent, sent_ns=sent,
            end_ns=0, status="ok", first_token_ns=first, last_token_ns=0, input_tokens=128,
            output_tokens=ITL_VALUES + 1, token_source="usage", itl_s=list(itl), http_status=200,
        )  # fmt: skip

    def tallies_of(self, size: int) -> TickTallies:
        """The tallies of a tick of ``size`` made-up samples (computed once per size: a
        deferred-files run posts what a real tick's tallies weigh, without their CPU)."""
        found = self._tallies.get(size)
        if found is None:
            done = [Done(i, 1_800_000_000_000_000_000 + i * 1000, 0) for i in range(size)]
            found = self._tallies[size] = tick_tallies(self.batch(done, 0, [0]).columns())
        return found

    def first_ns(self, number: int) -> int:
        """How long sample ``number`` took, from its scheduled send to its end."""
        return -self.relative[number % TEMPLATES].scheduled_ns

    def batch(self, done: list[Done], worker: int, clients: list[int]) -> ColumnarBatch:
        """The batch of ``done`` exactly as :meth:`ColumnarBatch.add` makes it from the
        samples of :meth:`samples` (the fleet smoke test checks it byte for byte)."""
        batch = ColumnarBatch()
        rows, counts, packed = batch._rows, batch._counts, batch._packed
        for d in done:
            t = d.number % TEMPLATES
            row = list(self.rows[t])
            row[_CLIENT], row[_WORKER] = clients[d.number % len(clients)], worker
            row[_STAGE], row[_WARMUP] = d.stage, d.warmup
            end = d.end_ns
            for i, offset in self.times[t]:
                row[i] = end + offset
            rows.append(tuple(row))
            counts.append(self.counts[t])
            packed.append(self.packed[t])
        return batch

    def samples(self, done: list[Done], worker: int, clients: list[int]) -> list[Sample]:
        """The :class:`Sample` objects that ``done`` stands for."""
        out = []
        for d in done:
            s = copy.copy(self.relative[d.number % TEMPLATES])
            s.client, s.worker = clients[d.number % len(clients)], worker
            s.stage, s.warmup = d.stage, d.warmup
            for _, name in _TIME_COLUMNS:
                value = getattr(s, name)
                if value is not None:
                    setattr(s, name, d.end_ns + value)
            out.append(s)
        return out


class TemplateSink(ServiceSink):
    """The worker's sink (:class:`ServiceSink`: post, check the ack, count), its batches made
    by :meth:`SampleTemplates.batch` instead of from :class:`Sample` objects; notes when each
    batch was acknowledged and how many samples it held."""

    def __init__(self, api: InternalApiClient, seen: Observations, templates: SampleTemplates):
        super().__init__(api)
        self.seen = seen
        self._templates = templates
        self._worker = 0
        self._clients: list[int] = [0]

    def assigned(self, assignment: Assignment) -> None:
        """Take the worker's index and clients from its assignment."""
        self._worker, self._clients = assignment.worker, list(assignment.clients)

    async def send_batch(self, seq: int, samples: list[Any]) -> None:
        body = self._templates.batch(samples, self._worker, self._clients).encode(seq)
        await self.post_acknowledged("samples", "batch", seq, body, PACKED_MEDIA_TYPE, len(samples))
        self.seen.acks.append((time.time(), len(samples)))


class TemplateFileSink(FileTickSink):
    """The high-rate path's sink (:class:`FileTickSink`: the tick written durably, rolled up,
    tallied and encoded in a thread, then posted to ``POST ticks`` until acknowledged; the
    files closed before ``/finish``), its columns made by :meth:`SampleTemplates.batch`
    instead of gathered from :class:`Sample` objects; notes each acknowledgement as
    :class:`TemplateSink` does."""

    def __init__(
        self,
        api: InternalApiClient,
        seen: Observations,
        templates: SampleTemplates,
        assignment: Assignment,
        *,
        defer_files: bool = False,
    ) -> None:
        assert assignment.sample_dir is not None
        super().__init__(
            api, assignment.sample_dir, assignment.cluster_id, assignment.worker,
            assignment.config.slo,
        )  # fmt: skip
        self.seen = seen
        self._templates = templates
        self._worker, self._clients = assignment.worker, list(assignment.clients)
        self._defer = defer_files
        self._deferred: list[tuple[int, list[Any]]] = []

    async def send_batch(self, seq: int, samples: list[Any]) -> None:
        if self._defer:  # the service's side alone: tallies now, the file after the run
            self._deferred.append((seq, samples))
            body = encode(seq, self._templates.tallies_of(len(samples)))
            await self.post_acknowledged("ticks", "tick", seq, body, TICK_MEDIA_TYPE, len(samples))
        else:
            cols = self._templates.batch(samples, self._worker, self._clients).columns()
            await self.send_columns(seq, cols)
        self.seen.acks.append((time.time(), len(samples)))

    async def finish(self, report: WorkerReport) -> None:
        """Write the deferred ticks' files (after the measured window), then finish as a
        real worker does (roll-up, ``/finish``)."""
        deferred, self._deferred = self._deferred, []
        if deferred:
            await asyncio.to_thread(self._write_deferred, deferred)
        await super().finish(report)

    def _write_deferred(self, deferred: list[tuple[int, list[Any]]]) -> None:
        for seq, samples in deferred:
            cols = self._templates.batch(samples, self._worker, self._clients).columns()
            self._writer.write_tick(seq, cols)


class SimulatedClients:
    """Stands where :class:`~clientswarm.worker.runtime.WorkerRuntime` stands: records made-up
    interactions at ``rate_per_s`` from the shared start until ``duration_s`` later, shipped by
    the worker's own :class:`SampleRecorder`, then flushes."""

    def __init__(
        self,
        assignment: Assignment,
        sink: ServiceSink,
        *,
        rate_per_s: float,
        duration_s: float,
        templates: SampleTemplates,
        lag: LoopLagMonitor,
        rng: random.Random,
    ) -> None:
        self.assignment = assignment
        self.recorder = SampleRecorder(
            sink,
            start_ns=assignment.start_ns,
            warmup_s=assignment.config.warmup_s,
            stage_of=lambda group, offset_s: 0,
            interval_s=assignment.batch_interval_s,
            batch_max=assignment.batch_max,
        )
        self.rate_per_s = rate_per_s
        self.duration_s = duration_s
        self.templates = templates
        self.lag = lag
        self.rng = rng
        self.generated = 0
        self.in_flight = 0
        self.active_clients = len(assignment.clients)
        self.awaiting_stage = False
        self._stopped = asyncio.Event()

    # What the heartbeat and the service's control read or call (see _ServiceWorker).
    def recent_loop_lag_p99_s(self) -> float:
        return self.lag.p99_s()

    def in_flight_groups(self) -> dict[str, int]:
        return {}

    def set_stages(self, stages: Any) -> None:
        pass

    def stop_clients(self, ids: Any) -> None:
        pass

    def stop(self) -> None:
        self._stopped.set()

    async def run(self) -> WorkerReport:
        shipping = asyncio.create_task(self.recorder.run())
        try:
            await self._generate()
        finally:
            shipping.cancel()
            await asyncio.gather(shipping, return_exceptions=True)
        await self.recorder.flush()
        outcome = "cancelled" if self._stopped.is_set() else "completed"
        return WorkerReport(outcome=outcome, samples=self.recorder.recorded)

    async def _generate(self) -> None:
        """Interaction ``n`` is sent at ``start + (n + phase) / rate`` (``n`` below ``rate x
        duration``) and recorded once it has ended (its duration: :class:`SampleTemplates`),
        checked every :data:`GENERATE_EVERY_S`, in order: a short one waits for the one
        before it, as its client's next request would."""
        start_ns = self.assignment.start_ns
        total = int(self.rate_per_s * self.duration_s)
        interval_ns = 1e9 / self.rate_per_s
        phase = self.rng.random()  # the fleet's workers do not send in step
        tick_ns = int(GENERATE_EVERY_S * 1e9)
        due_ns = start_ns + int(self.rng.random() * tick_ns)
        record, e2e_ns = self.recorder.record, self.templates.first_ns
        while not self._stopped.is_set() and self.generated < total:
            wait_s = (due_ns - time.time_ns()) / 1e9
            if wait_s > 0:
                try:
                    await asyncio.wait_for(self._stopped.wait(), wait_s)
                    return
                except TimeoutError:
                    pass
            now_ns = time.time_ns()
            n = self.generated
            while n < total:
                sent = start_ns + int((n + phase) * interval_ns)
                end = sent + e2e_ns(n)
                if end > now_ns:
                    break
                record(Done(n, end, sent))
                n += 1
            self.generated = n
            due_ns += tick_ns


class SimulatedWorker(_ServiceWorker):
    """The worker's own protocol steps (:class:`_ServiceWorker`: register, assignment poll,
    heartbeats, ``/finish``) with :class:`SimulatedClients` in place of its clients."""

    def __init__(self, api: InternalApiClient, endpoint: WorkerEndpoint, stop: asyncio.Event,
                 sink: TemplateSink, make_clients: Any) -> None:  # fmt: skip
        super().__init__(api, endpoint, ServiceWorkerOptions(), stop)
        self._sink = sink
        self._seen = sink.seen
        self._templates = sink._templates
        self._make_clients = make_clients
        self.clients: SimulatedClients | None = None
        self.defer_files = False

    @property
    def sink(self) -> TemplateSink | TemplateFileSink:
        return self._sink  # type: ignore[return-value]

    async def _run_assignment(self, assignment: Assignment) -> WorkerReport:
        self._seen.assigned.append(time.time())
        self._seen.start_ns = assignment.start_ns
        self._seen.batch_interval_s = assignment.batch_interval_s  # longer for a large fleet
        if assignment.sample_dir is not None:  # the high-rate path, as a real worker takes it
            self._sink = TemplateFileSink(
                self._api, self._seen, self._templates, assignment, defer_files=self.defer_files
            )
        else:
            self._sink.assigned(assignment)  # type: ignore[union-attr]
        clients = self._make_clients(assignment, self._sink)
        self.clients = clients
        self._runtime = clients  # type: ignore[assignment]  # what heartbeats read
        watcher = asyncio.create_task(self._stop_runtime_when_asked(clients))  # type: ignore[arg-type]
        try:
            report = await clients.run()
        finally:
            watcher.cancel()
        if self._api.failure is not None:
            raise self._api.failure
        await self._sink.finish(report)
        return report


async def play(args: argparse.Namespace, token: str) -> dict[str, Any]:
    """Run workers ``args.first`` … ``args.first + args.count - 1`` to the end."""
    seen = Observations()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    rng = random.Random(args.first)
    templates = SampleTemplates(rng)
    lag = LoopLagMonitor()
    lag_task = asyncio.create_task(lag.run())
    workers: list[SimulatedWorker] = []

    def make_clients(assignment: Assignment, sink: Any) -> SimulatedClients:
        return SimulatedClients(
            assignment, sink, rate_per_s=args.rate_per_worker, duration_s=args.duration_s,
            templates=templates, lag=lag, rng=random.Random(rng.random()),
        )  # fmt: skip

    async def one(index: int, session: aiohttp.ClientSession) -> None:
        await asyncio.sleep(rng.uniform(0, args.start_spread_s))
        endpoint = WorkerEndpoint(args.service, args.cluster, index, token)
        api = TimedApiClient(session, endpoint, ServiceWorkerOptions(), seen=seen)
        sink = TemplateSink(api, seen, templates)
        worker = SimulatedWorker(api, endpoint, stop, sink, make_clients)
        worker.defer_files = args.defer_tick_files
        workers.append(worker)
        try:
            report = await worker.run()
            seen.outcomes[report.outcome] += 1
        except Exception as exc:  # a worker that fails is an observation
            seen.outcomes["failed"] += 1
            if len(seen.messages) < KEEP_MESSAGES:
                seen.messages.append(f"worker {index}: {type(exc).__name__}: {exc}"[:500])

    async def timeline() -> None:
        while True:
            generated = sum(w.clients.generated for w in workers if w.clients is not None)
            acked = sum(w.sink.acknowledged_samples for w in workers)
            seen.timeline.append((time.time(), generated, acked))
            await asyncio.sleep(TIMELINE_EVERY_S)

    sampler = asyncio.create_task(timeline())
    sessions = [
        aiohttp.ClientSession(connector=service_connector(), trace_configs=[seen.trace_config()])
        for _ in range(args.count)
    ]
    tasks = [asyncio.create_task(one(args.first + i, s)) for i, s in enumerate(sessions)]
    try:
        _, pending = await asyncio.wait(tasks, timeout=args.give_up_s)
        for task in pending:  # the service never let them finish: say so, keep what was seen
            task.cancel()
        if pending:
            seen.outcomes["unfinished"] += len(pending)
            await asyncio.wait(pending, timeout=CANCEL_WAIT_S)
    finally:
        sampler.cancel()
        lag_task.cancel()
        closing = [asyncio.create_task(s.close()) for s in sessions]
        await asyncio.wait(closing, timeout=CANCEL_WAIT_S)
    generated = sum(w.clients.generated for w in workers if w.clients is not None)
    acked = sum(w.sink.acknowledged_samples for w in workers)
    seen.timeline.append((time.time(), generated, acked))
    return {
        "first": args.first,
        "count": args.count,
        "rate_per_worker": args.rate_per_worker,
        "generated": generated,
        "acknowledged": acked,
        "duplicate_acks": sum(w.sink.duplicate_acks for w in workers),
        "outcomes": dict(seen.outcomes),
        "messages": seen.messages,
        "calls": {k: v for k, v in seen.calls.items()},
        "failures": {k: v[:KEEP_MESSAGES] for k, v in seen.failures.items()},
        "failure_counts": {k: len(v) for k, v in seen.failures.items()},
        "failure_times": {k: [t for t, _ in v] for k, v in seen.failures.items()},
        "attempts": {k: dict(v) for k, v in seen.attempts.items()},
        "first_problem": seen.first_problem,
        "start_ns": seen.start_ns,
        "batch_interval_s": seen.batch_interval_s,
        "assigned": seen.assigned,
        "acks": seen.acks,
        "timeline": seen.timeline,
        "loop_lag_p99_s": lag.p99_s(),
        "loop_lag_max_s": lag.max_s(),
        "cpu_s": time.process_time(),
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--service", required=True)
    parser.add_argument("--cluster", required=True)
    parser.add_argument("--first", type=int, required=True, help="first worker index")
    parser.add_argument("--count", type=int, required=True, help="workers in this process")
    parser.add_argument("--rate-per-worker", type=float, required=True, help="samples/s")
    parser.add_argument("--duration-s", type=float, required=True)
    parser.add_argument("--start-spread-s", type=float, default=1.0)
    parser.add_argument(
        "--give-up-s", type=float, default=600.0, help="cancel the workers still running then"
    )
    parser.add_argument(
        "--defer-tick-files",
        action="store_true",
        help="files path: post each tick's tallies (computed once per tick size) and write "
        "the ticks' files after the run, before /finish: the service's side alone",
    )
    parser.add_argument("--out", type=Path, required=True)
    return parser.parse_args(argv)


def main() -> None:
    args = parse_args()
    logging.basicConfig(level=logging.ERROR, format="%(asctime)s %(levelname)s %(message)s")
    token = os.environ.pop("CLIENTSWARM_WORKER_TOKEN", "")
    if not token:
        sys.exit("CLIENTSWARM_WORKER_TOKEN is not set")

    async def play_and_write() -> None:
        args.out.write_text(json.dumps(await play(args, token)))
        sys.stdout.flush()
        # Out at once: the loop's end would wait for whatever a cancelled worker left behind.
        os._exit(0)

    aio.run(play_and_write())


if __name__ == "__main__":
    main()
