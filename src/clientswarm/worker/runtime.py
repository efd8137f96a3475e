"""The worker's engine: hosts many clients on one asyncio loop and drives them on schedule.

Send times are absolute (``start + offset``), never accumulated sleeps. Closed-loop clients
send, wait for the answer, think and repeat inside their windows; an open-loop group has one
dispatcher per worker that fires this worker's slice of the group's arrival process, each
arrival as its own task, capped by the worker's share of ``max_concurrency``.

Single clients can be stopped while the others carry on (:meth:`WorkerRuntime.stop_clients`):
a closed-loop client's task is cancelled; an open-loop client's remaining arrivals are skipped
and its requests in flight cancelled. Either way an interrupted request is recorded as a
``cancelled`` sample, as when the whole worker stops.

A client whose request failed to connect backs off before it sends again (closed and open loop
alike; :mod:`clientswarm.load.backoff` has the rules): its next send waits, its scheduled
time does not move, so the wait shows as schedule lag.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import os
from collections.abc import Callable, Iterable

import aiohttp
import numpy as np

from clientswarm.clock import Clock
from clientswarm.config.load import (
    CapacityLoadConfig,
    ClosedLoadConfig,
    OpenLoadConfig,
    SweepLoadConfig,
    TraceLoadConfig,
)
from clientswarm.config.models import GroupConfig, TargetConfig
from clientswarm.errors import WorkerError
from clientswarm.interactions.arrival import ARRIVAL_PROMPT
from clientswarm.interactions.base import ClientContext, Interaction
from clientswarm.interactions.http1 import Http1Client
from clientswarm.interactions.prompts import Prompt
from clientswarm.interactions.registry import ClusterInteractions
from clientswarm.interactions.replicas import REPLICA, Balancer
from clientswarm.interactions.tokenizer import load_token_counter
from clientswarm.interactions.trace_prompts import TracePrompts
from clientswarm.load import (
    ClosedPlan,
    ConnectBackoff,
    WorkerClient,
    backoff_rng,
    client_ids,
    client_rng,
    clients_of_worker,
    plan_for_group,
    stage_at,
    think_sampler,
    worker_concurrency,
    worker_schedule,
)
from clientswarm.load.adaptive import GroupStages, StageOrder, is_adaptive, stage_schedule
from clientswarm.load.closed_loop import default_ramp_up_s
from clientswarm.load.schedule import ArrivalSchedule
from clientswarm.load.stage_plan import stage_warmup_of
from clientswarm.load.trace import trace_group_schedule
from clientswarm.metrics.sample import ERROR_CLIENT, Sample
from clientswarm.protocol.assignment import Assignment, WorkerOutcome, WorkerReport
from clientswarm.worker.cancel import Canceller, CutOrWhole, relabel
from clientswarm.worker.looplag import LoopLagMonitor
from clientswarm.worker.prefill import PrefillGate
from clientswarm.worker.recorder import SampleRecorder, SampleSink
from clientswarm.worker.stages import StageFeed, group_spans
from clientswarm.worker.timing import sleep_until

log = logging.getLogger(__name__)

RECENT_LAGS = 1200
"""Loop-lag readings in a live p99: about a minute at the monitor's 50 ms interval. Sorting
every reading of a long run (up to 100 000) would itself stall the loop for ~30 ms."""


def target_headers(target: TargetConfig) -> dict[str, str]:
    """Headers of every request to ``target``: its extra headers, those read from variables,
    and the API key from its variable."""
    headers = dict(target.headers)
    for header, name in target.headers_from_env.items():
        value = os.environ.get(name)
        if value is not None:
            headers[header] = value
    if target.api_key_env:
        key = os.environ.get(target.api_key_env)
        if key:
            headers["Authorization"] = f"Bearer {key}"
    return headers


class WorkerRuntime:
    """Runs one worker's assignment: its clients, their schedules, the shipping of samples."""

    def __init__(self, assignment: Assignment, sink: SampleSink, clock: Clock | None = None):
        self.assignment = assignment
        self.config = assignment.config
        self.clock = clock or Clock()
        self._sink = sink
        spans = group_spans(self.config)
        self._feeds: dict[str, StageFeed] = {
            g.name: StageFeed(self.config.warmup_s, g.load.stage_warmup_s)
            for g in self.config.groups
            if is_adaptive(g)
        }
        self.set_stages(assignment.stages)
        feeds = self._feeds

        def stage_of(group: str, offset_s: float) -> int:
            feed = feeds.get(group)
            return feed.stage_at(offset_s) if feed is not None else stage_at(spans[group], offset_s)

        planned_warmup = stage_warmup_of(self.config)
        in_stage_warmup = planned_warmup
        if any(g.load.stage_warmup_s for g in self.config.groups if is_adaptive(g)):

            def in_stage_warmup(group: str, offset_s: float) -> bool:
                feed = feeds.get(group)
                if feed is not None:
                    return feed.in_stage_warmup(offset_s)
                return planned_warmup is not None and planned_warmup(group, offset_s)

        self.recorder = SampleRecorder(
            sink,
            start_ns=assignment.start_ns,
            warmup_s=self.config.warmup_s,
            stage_of=stage_of,
            interval_s=assignment.batch_interval_s,
            batch_max=assignment.batch_max,
            stage_warmup_of=in_stage_warmup,
        )
        self.in_flight = 0
        self._in_flight_groups: dict[str, int] = dict.fromkeys(self._feeds, 0)
        self.loop_lag = LoopLagMonitor()
        self._main: asyncio.Task[None] | None = None
        self._stopped = False
        self._interactions = ClusterInteractions(self.config, files=assignment.file_scope())
        self._traces = self._replays()
        hosted = clients_of_worker(self.config, assignment.worker, assignment.workers)
        self._hosted_ids = frozenset(c.client_id for c in hosted)
        if assignment.clients and set(assignment.clients) != self._hosted_ids:
            raise WorkerError(
                f"the service placed clients {sorted(assignment.clients)[:8]}… on worker "
                f"{assignment.worker}, but this worker derives {sorted(self._hosted_ids)[:8]}…: "
                "run the same clientswarm version on the service and the workers"
            )
        self._group_clients: dict[int, frozenset[int]] = {
            g: frozenset(c.client_id for c in hosted if c.group_index == g)
            for g in range(len(self.config.groups))
        }
        self._active: set[int] = set(self._hosted_ids)  # neither stopped nor finished
        self._stopped_clients: set[int] = set()
        self._client_tasks: dict[int, asyncio.Task[None]] = {}  # closed loop
        self._client_requests: dict[int, set[asyncio.Task[None]]] = {}  # open loop, in flight
        self._dispatchers: dict[int, asyncio.Task[None]] = {}  # open loop, by group index
        self._backoffs: dict[int, ConnectBackoff] = {}  # after connection failures, by client
        self._cancellers: dict[int, Canceller] = {}  # clients of groups with ``cancel``
        self._prefill_gates: dict[str, PrefillGate] = self._gates()
        self._balancers: dict[str, Balancer] = {  # targets with replicas, by their first URL
            t.url: Balancer(t.replica_urls, t.balance)
            for t in self.config.target_map().values()
            if t.urls is not None and len(t.urls) > 1
        }

    def _gates(self) -> dict[str, PrefillGate]:
        """This worker's share of each group's ``prefill_concurrency``, by group name."""
        a = self.assignment
        gates = {}
        for index, group in enumerate(self.config.groups):
            if group.prefill_concurrency is None:
                continue
            ids = client_ids(self.config, index)
            share = worker_concurrency(group.prefill_concurrency, ids, a.worker, a.workers)
            if share:
                gates[group.name] = PrefillGate(share)
        return gates

    def _replays(self) -> dict[int, tuple[ArrivalSchedule, TracePrompts]]:
        """This worker's slice of each trace group and the prompts of its requests, read
        before the run starts (a trace is parsed once; its first arrival is due at 0 s)."""
        a = self.assignment
        files = a.file_scope()
        replays: dict[int, tuple[ArrivalSchedule, TracePrompts]] = {}
        for index, group in enumerate(self.config.groups):
            load = group.load
            if not isinstance(load, TraceLoadConfig):
                continue
            schedule, window = trace_group_schedule(self.config, index, files)
            tokenizer = getattr(group.interaction, "tokenizer", None)
            prompts = TracePrompts(
                window,
                seed=self.config.seed,
                block_tokens=load.block_tokens,
                counter=load_token_counter(tokenizer, files),
            )
            replays[index] = (schedule.for_worker(a.worker, a.workers), prompts)
        return replays

    def set_stages(self, stages: dict[str, GroupStages]) -> None:
        """Take the adaptive groups' stages the service decided (repeats change nothing)."""
        for name, decided in stages.items():
            feed = self._feeds.get(name)
            if feed is not None:
                feed.update(decided)

    @property
    def awaiting_stage(self) -> bool:
        """Whether an adaptive group waits for its next stage (heartbeat more often then)."""
        return any(feed.waiting for feed in self._feeds.values())

    def in_flight_groups(self) -> dict[str, int]:
        """Requests in flight of each adaptive group."""
        return dict(self._in_flight_groups)

    @property
    def active_clients(self) -> int:
        """Hosted clients that are neither stopped nor finished (for heartbeats)."""
        return 0 if self._stopped else len(self._active)

    def recent_loop_lag_p99_s(self) -> float:
        """99th percentile of the event loop's lag over the last :data:`RECENT_LAGS` readings."""
        recent = self.loop_lag.lags_s[-RECENT_LAGS:]  # a copy: sorting it leaves the monitor's
        if not recent:
            return 0.0
        recent.sort()
        return recent[min(len(recent) - 1, int(0.99 * len(recent)))]

    @property
    def stopped_clients(self) -> frozenset[int]:
        """Clients stopped by :meth:`stop_clients` so far."""
        return frozenset(self._stopped_clients)

    def stop(self) -> None:
        """Stop every client now; in-flight requests are recorded as cancelled."""
        self._stopped = True
        if self._main is not None:
            self._main.cancel()

    def stop_clients(self, ids: Iterable[int]) -> int:
        """Stop these clients now while the others carry on; return how many were newly stopped.

        Ids this worker does not host, or already stopped, are ignored, so a service may repeat
        the same list in every heartbeat reply. Works before :meth:`run` too.
        """
        newly = 0
        for client_id in ids:
            if client_id not in self._hosted_ids or client_id in self._stopped_clients:
                continue
            newly += 1
            self._stopped_clients.add(client_id)
            self._active.discard(client_id)
            task = self._client_tasks.get(client_id)
            if task is not None:
                task.cancel()
            for request in list(self._client_requests.get(client_id, ())):
                request.cancel()
        if newly:
            log.info("worker %d: stopped %d client(s)", self.assignment.worker, newly)
            for group_index, dispatcher in self._dispatchers.items():
                if self._group_clients[group_index] <= self._stopped_clients:
                    dispatcher.cancel()  # nothing left to send in this group: end it now
        return newly

    async def run(self) -> WorkerReport:
        """Run to the end of every group (or until :meth:`stop`) and report."""
        monitor = self.loop_lag
        background = [
            asyncio.create_task(self.recorder.run()),
            asyncio.create_task(monitor.run()),
        ]
        outcome: WorkerOutcome = "completed"
        error: str | None = None
        connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=300)
        http1 = Http1Client(self.clock.now_ns)
        async with aiohttp.ClientSession(connector=connector) as session:
            self._main = asyncio.create_task(self._run_clients(session, http1))
            if self._stopped:  # stopped before the clients even started
                self._main.cancel()
            try:
                await self._main
            except asyncio.CancelledError:
                if not self._stopped:
                    raise
                outcome = "cancelled"
            except Exception as exc:  # a bug must not lose the samples already taken
                log.exception("worker %d failed", self.assignment.worker)
                outcome, error = "failed", f"{type(exc).__name__}: {exc}"
            finally:
                http1.close()
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)
        await self.recorder.flush()
        extra = {"stopped_clients": len(self._stopped_clients)} if self._stopped_clients else {}
        return WorkerReport(
            outcome=outcome,
            error=error,
            samples=self.recorder.recorded,
            loop_lag_p99_s=monitor.p99_s(),
            loop_lag_max_s=monitor.max_s(),
            extra=extra,
        )

    async def _run_clients(self, session: aiohttp.ClientSession, http1: Http1Client) -> None:
        a = self.assignment
        hosted = clients_of_worker(self.config, a.worker, a.workers)
        headers = {name: target_headers(t) for name, t in self.config.target_map().items()}
        async with asyncio.TaskGroup() as tasks:
            for group_index, group in enumerate(self.config.groups):
                mine = [c for c in hosted if c.group_index == group_index]
                if not mine:
                    continue
                target = self.config.target_name_of(group)
                contexts = {
                    c.client_id: self._context(
                        session, http1, headers[target], group, c, target_name=target
                    )
                    for c in mine
                }
                interactions = {
                    c.client_id: self._interactions.of(group_index, c.local_index) for c in mine
                }
                if isinstance(group.load, SweepLoadConfig | CapacityLoadConfig):
                    if not self._group_clients[group_index] <= self._stopped_clients:
                        self._dispatchers[group_index] = tasks.create_task(
                            self._adaptive_group(group_index, mine, interactions, contexts)
                        )
                    continue
                if isinstance(group.load, OpenLoadConfig | TraceLoadConfig):
                    if not self._group_clients[group_index] <= self._stopped_clients:
                        self._dispatchers[group_index] = tasks.create_task(
                            self._open_group(group_index, interactions, contexts)
                        )
                    continue
                plan = plan_for_group(self.config, group_index)
                for client in mine:
                    if client.client_id in self._stopped_clients:
                        continue
                    task = tasks.create_task(
                        self._closed_client(
                            group.load,
                            plan,
                            client,
                            interactions[client.client_id],
                            contexts[client.client_id],
                        )
                    )
                    self._client_tasks[client.client_id] = task
                    task.add_done_callback(functools.partial(self._finished, client.client_id))

    def _finished(self, client_id: int, _task: asyncio.Task[None]) -> None:
        self._active.discard(client_id)

    def _context(
        self,
        session: aiohttp.ClientSession,
        http1: Http1Client,
        headers: dict[str, str],
        group: GroupConfig,
        client: WorkerClient,
        *,
        target_name: str,
    ) -> ClientContext:
        backoff = self._backoffs[client.client_id] = ConnectBackoff(
            backoff_rng(self.config.seed, client.client_id)
        )
        record, observe = self.recorder.record, backoff.observe
        if group.cancel is not None:
            self._cancellers[client.client_id] = Canceller(
                group.cancel, self.config.seed, client.client_id
            )

        def emit(sample: Sample) -> None:
            # Here, once per sample of every interaction (built-in or user-defined): each
            # carries its group's target without the interactions knowing about targets.
            sample.target = target_name
            replica = REPLICA.get()
            if replica is not None:
                sample.replica = replica[0]
            if sample.error_kind is not None:
                relabel(sample)  # a request its group cut on purpose: client_cancel
            record(sample)
            observe(sample)  # the client learns from each outcome whether it must back off

        return ClientContext(
            session=session,
            http1=http1,
            target=self.config.target_of(group),
            headers=headers,
            group=group.name,
            client=client.client_id,
            worker=self.assignment.worker,
            rng=client_rng(self.config.seed, client.client_id),
            clock=self.clock,
            emit=emit,
        )

    async def _perform(self, interaction: Interaction, ctx: ClientContext, at_ns: int) -> None:
        backoff = self._backoffs[ctx.client]
        while backoff.until_ns > self.clock.now_ns():  # held, not in flight: nothing is sent
            await self._sleep_until(backoff.until_ns)
        self.in_flight += 1
        groups = self._in_flight_groups
        counted = ctx.group in groups
        if counted:
            groups[ctx.group] += 1
        canceller = self._cancellers.get(ctx.client)
        gate = self._prefill_gates.get(ctx.group)
        balancer = self._balancers.get(ctx.target.url)
        replica_index, replica = 0, None
        if balancer is not None:
            replica_index = balancer.pick()
            replica = REPLICA.set((replica_index, balancer.urls[replica_index]))
        try:
            if gate is not None:
                await gate.perform(CutOrWhole(canceller, interaction), ctx, at_ns)
            elif canceller is not None and canceller.chosen():
                await canceller.perform_cut(interaction, ctx, at_ns)
            else:
                await interaction.perform(ctx, at_ns)
        except Exception as exc:  # interactions record failures; this is the safety net
            now = self.clock.now_ns()
            ctx.emit(
                Sample(
                    group=ctx.group,
                    client=ctx.client,
                    worker=ctx.worker,
                    name=interaction.kind,
                    scheduled_ns=at_ns,
                    sent_ns=at_ns,
                    end_ns=now,
                    status="error",
                    error_kind=ERROR_CLIENT,
                    error_message=f"{type(exc).__name__}: {exc}"[:500],
                )
            )
        finally:
            self.in_flight -= 1
            if counted:
                groups[ctx.group] -= 1
            if balancer is not None and replica is not None:
                balancer.done(replica_index)
                REPLICA.reset(replica)

    async def _sleep_until(self, at_ns: int) -> None:
        await sleep_until(self.clock, at_ns)  # never early: schedule lag is >= 0

    async def _closed_client(
        self,
        load: ClosedLoadConfig,
        plan: ClosedPlan,
        client: WorkerClient,
        interaction: Interaction,
        ctx: ClientContext,
    ) -> None:
        start_ns = self.assignment.start_ns
        warmup_end_ns = start_ns + int(self.config.warmup_s * 1e9)
        think: Callable[[], float] = think_sampler(load.think_time_s, ctx.rng)
        backoff = self._backoffs[client.client_id]
        quota = plan.request_quota(client.local_index)
        measured = 0
        for window in plan.client_windows(client.local_index):
            next_ns = start_ns + int(window.start_s * 1e9)
            end_ns = math.inf if math.isinf(window.end_s) else start_ns + int(window.end_s * 1e9)
            # A backoff that ends after the window closes ends the window for this client.
            while (quota is None or measured < quota) and max(next_ns, backoff.until_ns) < end_ns:
                await self._sleep_until(next_ns)
                await self._perform(interaction, ctx, next_ns)
                if next_ns >= warmup_end_ns:
                    measured += 1
                next_ns = self.clock.now_ns() + int(think() * 1e9)

    async def _open_group(
        self,
        group_index: int,
        interactions: dict[int, Interaction],
        contexts: dict[int, ClientContext],
    ) -> None:
        a = self.assignment
        group = self.config.groups[group_index]
        assert isinstance(group.load, OpenLoadConfig | TraceLoadConfig)
        slots = self._slots(group_index, group.load.max_concurrency)
        prompt_of: Callable[[int], Prompt] | None = None
        if group_index in self._traces:
            schedule, prompts = self._traces[group_index]
            prompt_of = prompts.prompt
        else:
            schedule = worker_schedule(self.config, group_index, a.worker, a.workers)
        # Arrivals still to come per client: a client with none left and nothing in flight is
        # finished (no longer active).
        ids, counts = np.unique(schedule.client, return_counts=True)
        remaining = dict(zip(ids.tolist(), counts.tolist(), strict=True))
        for client_id in self._group_clients[group_index] - remaining.keys():
            self._active.discard(client_id)

        def sent(client_id: int) -> None:
            remaining[client_id] -= 1

        def done(client_id: int) -> None:
            if not self._client_requests[client_id] and not remaining[client_id]:
                self._active.discard(client_id)

        try:
            async with asyncio.TaskGroup() as requests:
                await self._dispatch(
                    schedule,
                    interactions,
                    contexts,
                    slots,
                    requests,
                    sent=sent,
                    done=done,
                    prompt_of=prompt_of,
                )
        finally:
            self._active.difference_update(self._group_clients[group_index])

    def _slots(self, group_index: int, max_concurrency: int | None) -> asyncio.Semaphore | None:
        """This worker's share of a group's ``max_concurrency`` (None: no cap)."""
        a = self.assignment
        cap = worker_concurrency(
            max_concurrency, client_ids(self.config, group_index), a.worker, a.workers
        )
        return asyncio.Semaphore(cap) if cap else None

    async def _dispatch(
        self,
        schedule: ArrivalSchedule,
        interactions: dict[int, Interaction],
        contexts: dict[int, ClientContext],
        slots: asyncio.Semaphore | None,
        requests: asyncio.TaskGroup,
        *,
        sent: Callable[[int], None] | None = None,
        done: Callable[[int], None] | None = None,
        prompt_of: Callable[[int], Prompt] | None = None,
    ) -> None:
        """Send each arrival of ``schedule`` (this worker's) at its time, as its own task in
        ``requests``; ``sent``/``done`` are told the client of each arrival sent/ended;
        ``prompt_of`` gives an arrival's own prompt from its index (a trace replay), built
        before waiting for its time."""
        a = self.assignment

        async def one(ctx: ClientContext, at_ns: int, prompt: Prompt | None) -> None:
            if prompt is not None:
                ARRIVAL_PROMPT.set(prompt)  # this task's own context: no other arrival sees it
            try:
                await self._perform(interactions[ctx.client], ctx, at_ns)
            finally:
                if slots is not None:
                    slots.release()

        def ended(task: asyncio.Task[None], client_id: int) -> None:
            self._client_requests[client_id].discard(task)
            if done is not None:
                done(client_id)

        for offset_s, index, client_id, _stage, _warmup in schedule.rows():
            if client_id in self._stopped_clients:
                continue  # a stopped client's arrivals are skipped, not sent late
            prompt = prompt_of(index) if prompt_of is not None else None
            at_ns = a.start_ns + round(offset_s * 1e9)
            await self._sleep_until(at_ns)
            if slots is not None:
                await slots.acquire()
            if client_id in self._stopped_clients:  # stopped while we waited
                if slots is not None:
                    slots.release()
                continue
            if sent is not None:
                sent(client_id)
            task = requests.create_task(one(contexts[client_id], at_ns, prompt))
            self._client_requests.setdefault(client_id, set()).add(task)
            task.add_done_callback(functools.partial(ended, client_id=client_id))

    async def _adaptive_group(
        self,
        group_index: int,
        mine: list[WorkerClient],
        interactions: dict[int, Interaction],
        contexts: dict[int, ClientContext],
    ) -> None:
        """Run an adaptive group's stages as the service decides them
        (:mod:`clientswarm.load.adaptive`): each closed-loop stage's active clients loop in
        its window, each open-loop stage's arrivals (this worker's slice) are sent on time."""
        a = self.assignment
        group = self.config.groups[group_index]
        load = group.load
        assert isinstance(load, SweepLoadConfig | CapacityLoadConfig)
        feed = self._feeds[group.name]
        slots = self._slots(group_index, load.max_concurrency)
        try:
            async with asyncio.TaskGroup() as tasks:
                stage = 0
                while (order := await feed.get(stage)) is not None:
                    if order.loop == "open":
                        schedule = stage_schedule(self.config, group_index, order)
                        await self._dispatch(
                            schedule.for_worker(a.worker, a.workers),
                            interactions,
                            contexts,
                            slots,
                            tasks,
                        )
                    else:
                        self._closed_stage(order, mine, interactions, contexts, tasks)
                    await self._sleep_until(a.start_ns + round(order.end_offset_s * 1e9))
                    stage += 1
        finally:
            self._active.difference_update(self._group_clients[group_index])

    def _closed_stage(
        self,
        order: StageOrder,
        mine: list[WorkerClient],
        interactions: dict[int, Interaction],
        contexts: dict[int, ClientContext],
        tasks: asyncio.TaskGroup,
    ) -> None:
        """Start the clients active in closed-loop stage ``order``: local clients below its
        set point, their starts spread like a default ramp-up so they are not in lockstep."""
        active = int(order.set_point)
        start_ns = self.assignment.start_ns
        begin_s = order.start_offset_s
        ramp_s = default_ramp_up_s(order.end_offset_s - begin_s)
        for client in mine:
            if client.local_index >= active or client.client_id in self._stopped_clients:
                continue
            first_ns = start_ns + round((begin_s + ramp_s * client.local_index / active) * 1e9)
            task = tasks.create_task(
                self._closed_window(
                    client.client_id,
                    first_ns,
                    start_ns + round(order.end_offset_s * 1e9),
                    interactions[client.client_id],
                    contexts[client.client_id],
                    self._client_tasks.get(client.client_id),
                )
            )
            self._client_tasks[client.client_id] = task

    async def _closed_window(
        self,
        client_id: int,
        first_ns: int,
        end_ns: int,
        interaction: Interaction,
        ctx: ClientContext,
        previous: asyncio.Task[None] | None,
    ) -> None:
        """One client of a closed-loop stage: send, wait for the answer, send again, from
        ``first_ns`` until ``end_ns`` (the one in flight then finishes); after its previous
        stage's interaction, so a client never has two in flight."""
        if previous is not None and not previous.done():
            await asyncio.wait([previous])
        backoff = self._backoffs[client_id]
        next_ns = first_ns
        while max(next_ns, backoff.until_ns) < end_ns:
            await self._sleep_until(next_ns)
            await self._perform(interaction, ctx, next_ns)
            next_ns = max(self.clock.now_ns(), next_ns)
