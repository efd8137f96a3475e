"""The control plane: clusters from creation to their final status.

Statuses and their moves are declared in :mod:`clientswarm.service.lifecycle`; a cluster's
:class:`~clientswarm.service.state.ClusterState` is its state machine (every change of a status
or a worker's state is one transaction with its event). ``pending`` (stored) → ``starting``
(workers submitted to the spawner) → ``running`` (the workers have their shared start time) →
``completed`` | ``failed`` (with the reason) | ``cancelled`` (stopped). A watchdog follows
every active cluster (:class:`~clientswarm.service.following.Follower`): a worker whose process
ended before it finished, or that missed its heartbeats, is marked ``lost`` (``failed`` before
it had its assignment) and the cluster carries on with the others. On start the service
recovers every unfinished cluster from the store and follows its workers again.

What only reads (the routers, ``clientswarm run``) calls the manager's read side
(:class:`~clientswarm.service.reads.ClusterReads`), never its live objects or the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import secrets
import time
import uuid
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import orjson

from clientswarm.config.models import ClusterConfig, SpawnerConfig
from clientswarm.errors import ClientswarmError, SpawnerError
from clientswarm.load import clients_of_worker
from clientswarm.metrics.columns import SampleColumns, SampleSink
from clientswarm.metrics.derive import measured_parts
from clientswarm.metrics.ticks import TickTallies
from clientswarm.protocol.internal import (
    Assignment,
    BatchAck,
    Control,
    Heartbeat,
    NotYet,
    RegisterReply,
    RegisterRequest,
    WorkerReport,
)
from clientswarm.protocol.spawning import ClusterLaunch, Spawner, SpawnerHandle, Submitted
from clientswarm.service.abort import RunGuard
from clientswarm.service.adaptive import EVENT_KIND as ADAPTIVE_EVENT
from clientswarm.service.adaptive import WorkerBeat
from clientswarm.service.admission import Admitted, admit_and_build
from clientswarm.service.creation import new_cluster_rows
from clientswarm.service.engine_metrics import EngineMetrics, scraper_side
from clientswarm.service.following import Follower, worker_ended
from clientswarm.service.heartbeats import HeartbeatLog
from clientswarm.service.ingest import Ingest
from clientswarm.service.journal import Journal
from clientswarm.service.lifecycle import ClusterStatus, WorkerState
from clientswarm.service.preflight import Preflights
from clientswarm.service.prometheus import LiveRegistry
from clientswarm.service.ratelimit import BatchLimiter
from clientswarm.service.reads import ClusterReads, NotFound
from clientswarm.service.recovery import launched, recovered_state, replay_live, replay_stops
from clientswarm.service.results import (
    cluster_summary,
    finish_clients,
    restore_adaptive,
    worker_warnings,
)
from clientswarm.service.samplesource import delete_sample_files, freeze_sample_files, in_files
from clientswarm.service.settings import ServiceSettings
from clientswarm.service.state import ClusterState, live_of
from clientswarm.service.storewatch import StoreWatch
from clientswarm.service.telemetry import Telemetry
from clientswarm.spawners.registry import default_spawners
from clientswarm.store import Arrival, ClientRecord, ClusterRecord, Store, StoreUnavailable

log = logging.getLogger("clientswarm.service")


class Conflict(ClientswarmError):
    """The request does not fit the cluster's current status."""


class Gone(ClientswarmError):
    """The cluster no longer wants this worker."""


class Busy(ClientswarmError):
    """The service is at one of its operator's limits; retry later."""


def _now() -> float:
    return time.time()


def _merged(ticks: list[TickTallies]) -> TickTallies:
    """One tick of several (their tallies added)."""
    if len(ticks) == 1:
        return ticks[0]
    merged = TickTallies()
    for tick in ticks:
        merged.merge(tick)
    return merged


def _runs(state: ClusterState) -> bool:
    # A function, not an inline test: the status changes across the awaits between two tests.
    return state.status is ClusterStatus.RUNNING


class ClusterManager(ClusterReads):
    """Creates clusters, follows their workers, and finalises their results; what it knows
    is read through its read side (:class:`~clientswarm.service.reads.ClusterReads`)."""

    def __init__(
        self,
        store: Store,
        settings: ServiceSettings,
        live: LiveRegistry | None = None,
        spawners: dict[str, Spawner[Any]] | None = None,
    ) -> None:
        super().__init__(store, settings, live or LiveRegistry())
        self.spawners: dict[str, Spawner[Any]] = spawners or default_spawners()
        self.journal = Journal(store)
        self.changed = self.journal.changed
        """Notified after every change of a status or a worker's state."""
        self.sinks: dict[str, SampleSink] = {}
        """Who else takes a cluster's committed batches, by cluster id (``clientswarm run``'s
        samples file); dropped when the cluster is finalised."""
        self.batch_limiter = BatchLimiter(settings.policy.limits.max_batches_per_s)
        self.follower = Follower(settings, self.spawners, self._spawn)
        self.preflights = Preflights(settings, self.follower, self._spawn)
        self.engine = EngineMetrics(store, self.journal)
        """The targets' engine metrics (:mod:`clientswarm.service.engine_metrics`)."""
        self.telemetry = Telemetry(self.journal)
        """The OTLP export of each cluster that asks for it (:mod:`.telemetry`)."""
        self.engine_latest = self.engine.latest
        """The preflight of each cluster until it has ended (:mod:`.preflight`)."""
        self.beats = HeartbeatLog(store, settings.heartbeat_write_interval_s)
        """The workers' heartbeat columns, written a second at a time (:mod:`.heartbeats`)."""
        self.ingest = Ingest(store, settings.ingest_backlog_bytes)
        """Where sample batches are committed: its own threads and backlog (:mod:`.ingest`)."""
        self._watchdog: asyncio.Task[None] | None = None
        self._finalising: set[str] = set()
        self._reviving: set[tuple[str, int]] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.guards: dict[str, RunGuard] = {}
        """What may abort each cluster (:mod:`clientswarm.service.abort`), by cluster id;
        made at its first batch, dropped when it is finalised."""

    # -- lifecycle of the manager ---------------------------------------------------------
    async def start(self) -> None:
        """Recover unfinished clusters and start following them."""
        for record in await asyncio.to_thread(self.store.unfinished_clusters):
            await self._recover(record)
        self._watchdog = asyncio.create_task(self._watch())
        self.beats.start()

    async def close(self) -> None:
        """Stop following (workers keep running; a restarted service picks them up)."""
        if self._watchdog is not None:
            self._watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watchdog
        await self.beats.close()
        self.ingest.close()

    # -- frontend ---------------------------------------------------------------------------
    async def create(
        self,
        config: ClusterConfig,
        *,
        base_dir: Path | None = None,
        submitted: Submitted | None = None,
    ) -> ClusterRecord:
        """Store a new cluster and launch its workers in the background; returns at once
        (status ``pending``). With ``submitted``, its workers were started already, with that
        launch's cluster id and token: the cluster takes them, and its status is ``starting``.
        ConfigError (422) when the operator's policy refuses it, :class:`Busy` (429) at the
        active-cluster limit."""
        limit = self.settings.policy.limits.max_active_clusters
        if limit is not None and len(self.active) >= limit:
            raise Busy(
                f"this service runs at most {limit} clusters at once and {len(self.active)} "
                "are active; retry when one has finished (or ask the operator: clientswarm "
                "serve --max-active-clusters)"
            )
        admitted = await self.admit(config, base_dir=base_dir)
        config, base = admitted.config, admitted.files.base_dir
        cluster_id = submitted.launch.cluster_id if submitted else uuid.uuid4().hex[:12]
        token = submitted.launch.token if submitted else secrets.token_urlsafe(32)
        record, clients = new_cluster_rows(
            config, cluster_id=cluster_id, token=token, base_dir=base
        )
        await asyncio.to_thread(self._store_new, record, clients, config.spawner.workers)
        live = live_of(self.live, cluster_id, config, record.status)
        state = ClusterState(
            cluster_id, config, record.token_hash, live, self.journal, base_dir=str(base)
        )
        self.active[cluster_id] = state
        live.set_workers(state.worker_counts())
        await self.journal.event(cluster_id, "created", f"cluster {config.name!r} created")
        self.preflights.begin(state)  # while the workers start; their start waits for it
        if submitted is None:
            self._spawn(self._launch(state, token, admitted.spawner))
        else:
            await self._submitted(state, submitted.launch, submitted.handle)
        return record

    async def admit(self, config: ClusterConfig, *, base_dir: Path | None = None) -> Admitted:
        """``config`` checked against the operator's policy and built, without creating
        anything (:func:`~clientswarm.service.admission.admit_and_build`); ConfigError (422)
        listing every problem."""
        return await admit_and_build(
            config,
            self.settings.policy,
            base_dir=base_dir,
            python=self.settings.python,
            samples_dir=self.settings.samples_dir,
        )

    def add_sink(self, cluster_id: str, sink: SampleSink) -> None:
        """Give ``sink`` every batch of the cluster committed from now on."""
        self.sinks[cluster_id] = sink

    async def wait_finished(self, cluster_id: str) -> None:
        """Return once the cluster has finished (its results are final)."""
        async with self.changed:
            await self.changed.wait_for(lambda: cluster_id not in self.active)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run ``coro`` in the background, keeping a reference until it is done."""
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _store_new(self, record: ClusterRecord, clients: list[ClientRecord], workers: int) -> None:
        self.store.create_cluster(record)
        self.store.create_workers(record.id, workers)
        self.store.create_clients(record.id, clients)

    async def _launch(self, state: ClusterState, token: str, options: SpawnerConfig) -> None:
        spawner = self.follower.spawner_of(state)
        launch = ClusterLaunch(
            cluster_id=state.id,
            service_url=self.settings.advertise_url,
            token=token,
            log_dir=str(self.settings.log_dir(state.id)),
            python=self.settings.python,
            options=options,
            env=self.settings.policy.worker_environment(state.config),
            sample_dir=(
                str(self.settings.samples_dir) if state.config.sample_path == "files" else None
            ),
        )
        try:
            if spawner is None:
                raise SpawnerError(
                    f"this service cannot start workers of kind {state.config.spawner.kind!r} "
                    f"(it can: {', '.join(self.spawners)}); `clientswarm render` shows what "
                    "would be submitted"
                )
            handle = await spawner.submit(launch)
        except SpawnerError as exc:
            state.failure = str(exc)
            with contextlib.suppress(StoreUnavailable):  # the watchdog's next tick ends it
                await self._finalise(state)
            return
        await self._submitted(state, launch, handle)

    async def _submitted(
        self, state: ClusterState, launch: ClusterLaunch, handle: SpawnerHandle
    ) -> None:
        """The spawner started the workers of ``launch``: keep its handle (in the store too,
        for a restart) and say so."""
        state.handle = handle
        await self.journal.event(
            state.id, "submitted", f"{launch.workers} worker(s) submitted", handle.to_json()
        )
        await asyncio.to_thread(
            self.store.update_cluster, state.id, spawner_state_json=state.spawner_state_json()
        )
        await state.move(ClusterStatus.STARTING)  # refused when a worker started it already
        self.preflights.stop_workers(state)  # its preflight failed while they were submitted

    async def stop_cluster(self, cluster_id: str, reason: str = "stopped by the user") -> None:
        """Stop every worker of a cluster; what they measured is kept."""
        state = await self._unfinished(cluster_id)
        if state.stop_requested_at is None:
            state.stop_requested_at = time.monotonic()
            state.stop_reason = reason
            state.settled.set()
            for worker in state.workers:
                worker.stop_all = True
            await self.journal.event(cluster_id, "stopping", reason)

    async def stop_client(self, cluster_id: str, client_id: int) -> list[int]:
        """Stop one client; the others carry on. The ids stopped."""
        await self.client(cluster_id, client_id)
        return await self.stop_clients(cluster_id, [client_id], f"client {client_id} stopped")

    async def stop_group(self, cluster_id: str, group: str) -> list[int]:
        """Stop every client of one group; the other groups carry on. The ids stopped."""
        record = await self.cluster(cluster_id)
        names = [g.name for g in ClusterConfig.model_validate_json(record.config_json).groups]
        if group not in names:
            raise NotFound(
                f"cluster {cluster_id} has no group {group!r}; groups: {', '.join(names)}"
            )
        ids = [c.id for c in await self.clients(cluster_id, group=group)]
        return await self.stop_clients(cluster_id, ids, f"group {group!r} stopped")

    async def stop_clients(self, cluster_id: str, client_ids: list[int], why: str) -> list[int]:
        """Stop some clients; the rest of the cluster carries on. The ids stopped."""
        state = await self._unfinished(cluster_id)
        for client_id in client_ids:
            state.workers[state.worker_of_client(client_id)].stop_clients.add(client_id)
        await asyncio.to_thread(self.store.set_client_state, cluster_id, client_ids, "stopped")
        await asyncio.to_thread(self._count_active_clients, state)
        await self.journal.event(cluster_id, "clients_stopped", why, {"clients": client_ids})
        return client_ids

    async def _unfinished(self, cluster_id: str) -> ClusterState:
        """The cluster while it is followed; NotFound or Conflict (it has finished)."""
        state = self.active.get(cluster_id)
        if state is None:
            await self.cluster(cluster_id)
            raise Conflict(f"cluster {cluster_id} has already finished")
        return state

    async def delete(self, cluster_id: str) -> None:
        """Delete a finished cluster and everything of it."""
        record = await self.cluster(cluster_id)
        if not ClusterStatus(record.status).final:
            raise Conflict(
                f"cluster {cluster_id} is {record.status}; stop it first "
                f"(POST /api/v1/clusters/{cluster_id}/stop), then delete it"
            )
        await asyncio.to_thread(self.store.delete_cluster, cluster_id)
        await asyncio.to_thread(delete_sample_files, self.settings.samples_dir, cluster_id)
        self.beats.forget(cluster_id)
        self.live.remove(cluster_id)

    async def results(self, cluster_id: str) -> dict[str, Any]:
        """The summary.json of a cluster: final once finished, partial while it runs."""
        record = await self.cluster(cluster_id)
        if record.summary_json:
            summary: dict[str, Any] = orjson.loads(record.summary_json)
            return summary
        partial = await asyncio.to_thread(
            cluster_summary, self.store, record, [], samples_root=self.settings.samples_dir
        )
        return partial.document()

    # -- internal API -----------------------------------------------------------------------
    def cluster_for_worker(self, cluster_id: str, index: int) -> ClusterState:
        """The active cluster a worker belongs to (Gone when finished or unknown)."""
        state = self.active.get(cluster_id)
        if state is None:
            raise Gone(f"cluster {cluster_id} is not running")
        if not 0 <= index < len(state.workers):
            raise NotFound(f"cluster {cluster_id} has no worker {index}")
        return state

    def batch_wait_s(self, cluster_id: str, index: int) -> float:
        """Seconds worker ``index`` must wait before its next batch is taken (0: none), at
        the operator's ``max_batches_per_s``."""
        return self.batch_limiter.wait_s(cluster_id, index)

    @property
    def max_batches_per_s(self) -> float | None:
        """The operator's limit of sample batches a second per worker."""
        return self.batch_limiter.rate_per_s

    async def register(
        self, state: ClusterState, index: int, req: RegisterRequest
    ) -> RegisterReply:
        """A worker announced itself."""
        worker = state.workers[index]
        if state.start_ns is not None and worker.state in (WorkerState.PENDING, WorkerState.FAILED):
            raise Gone(f"worker {index} registered after the cluster started")
        worker.last_seen = time.monotonic()
        registered = {"pid": req.pid, "host": req.host, "registered_at": _now()}
        await state.move_worker(
            index, WorkerState.REGISTERED, fields={**registered, "last_heartbeat_at": _now()}
        )
        return RegisterReply(
            heartbeat_interval_s=self.settings.heartbeat_interval_for(self._fleet_workers()),
            lost_after_s=self.settings.lost_after_s,
            preflight=self.preflights.plan_for(state, index),
        )

    async def assignment(self, state: ClusterState, index: int) -> Assignment | NotYet:
        """The worker's assignment once the preflight passed (:mod:`.preflight`) and every
        worker is ready (or the start timeout passed)."""
        self._still_needed(state, index)
        if not _runs(state) and not await self.preflights.passed(state):
            self._still_needed(state, index)  # the preflight failed: Gone
            return NotYet(retry_after_s=0.1, reason="waiting for the preflight of the targets")
        if not _runs(state):
            waiting = [i for i, w in enumerate(state.workers) if w.state is WorkerState.PENDING]
            timed_out = time.monotonic() - state.created_mono > self.settings.start_timeout_s
            if waiting and not timed_out and state.start_ns is None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(state.settled.wait(), self.settings.assignment_hold_s)
                self._still_needed(state, index)
                if not _runs(state):  # still waiting for the others
                    return NotYet(retry_after_s=0.1, reason=f"waiting for workers {waiting}")
            else:
                await self._start(state, late=waiting)
                self._still_needed(state, index)
        state.workers[index].last_seen = time.monotonic()
        await state.move_worker(index, WorkerState.RUNNING)
        assert state.start_ns is not None
        workers = len(state.workers)
        return Assignment(
            cluster_id=state.id,
            worker=index,
            workers=workers,
            start_ns=state.start_ns,
            config=state.config,
            clients=[c.client_id for c in clients_of_worker(state.config, index, workers)],
            base_dir=state.base_dir,
            path_roots=self.settings.policy.file_scope().confined_to,
            stages=state.adaptive.orders() if state.adaptive is not None else {},
            engine_metrics=index == 0 and scraper_side(state.config) == "worker",
            batch_interval_s=self.settings.batch_interval_for(self._fleet_workers()),
            sample_dir=(
                str(self.settings.samples_dir) if state.config.sample_path == "files" else None
            ),
        )

    def _fleet_workers(self) -> int:
        """The workers of every cluster followed (the fleet that beats and ships)."""
        return sum(len(s.workers) for s in self.active.values())

    def _still_needed(self, state: ClusterState, index: int) -> None:
        """Gone when the cluster was stopped or has ended, or the worker has."""
        if state.stop_requested_at is not None or state.status.final or state.workers[index].final:
            raise Gone(f"cluster {state.id} no longer needs worker {index}")

    async def _start(self, state: ClusterState, late: list[int]) -> None:
        """Fix the start time (now plus the margin) and run: the status and the start in one
        transaction before any worker hears of it; fail the ``late`` workers. Once per
        cluster, however many workers ask at once (:attr:`ClusterState.starting`); called
        again after the store failed the first time, it runs what is left to do."""
        async with state.starting:
            if not state.started:
                await self._write_start(state, late)
                state.started = True

    async def _write_start(self, state: ClusterState, late: list[int]) -> None:
        if state.start_ns is None:
            state.start_ns = time.time_ns() + int(self.settings.start_margin_s * 1e9)
        fields = {"start_ns": state.start_ns, "started_at": _now()}
        await state.move(ClusterStatus.RUNNING, fields=fields)
        state.settled.set()
        self.engine.start(state.id, state.config, state.start_ns)
        self.telemetry.start(state.id, state.config, state.live, state.start_ns)
        timeout_s = self.settings.start_timeout_s
        for index in late:
            await worker_ended(
                state, index, WorkerState.FAILED, f"did not register within {timeout_s} s"
            )
        await asyncio.to_thread(self._clients_running, state)

    def _clients_running(self, state: ClusterState) -> None:
        self.store.move_clients(state.id, "pending", "running")
        self._count_active_clients(state)

    def _count_active_clients(self, state: ClusterState) -> None:
        running = self.store.count_clients(state.id, state="running")
        for group in state.config.groups:
            state.live.set_active_clients(group.name, running.get(group.name, 0))

    async def add_batch(
        self, state: ClusterState, index: int, seq: int, batch: SampleColumns, size_bytes: int = 0
    ) -> BatchAck:
        """Commit a batch (once), then feed the live statistics; ack only after the commit.
        ``size_bytes``: its body's, for the commit rate (:mod:`.ingest`)."""
        fresh = await self.ingest.commit(
            Arrival.batch(state.id, index, seq, batch),
            size_bytes,
            (state.id, "batches"),
            lambda batches: self._feed_batch(state, SampleColumns.concat(batches)),
            batch,
        )
        state.workers[index].last_seen = time.monotonic()
        guard = self.guards.get(state.id)
        reason = None if guard is None else guard.take()
        if reason is not None:
            await self.abort_cluster(state, reason)
        return BatchAck(seq=seq, duplicate=not fresh)

    async def add_tick(
        self, state: ClusterState, index: int, seq: int, tick: TickTallies, size_bytes: int = 0
    ) -> BatchAck:
        """Count a tick of the high-rate path (once) and feed its tallies to the live
        statistics; ack only after the count is committed (its samples are in the worker's
        files already)."""
        arrival = Arrival(state.id, index, seq, None, tick.samples, tick.clients)
        fresh = await self.ingest.commit(
            arrival,
            size_bytes,
            (state.id, "ticks"),
            lambda ticks: self._feed_tick(state, _merged(ticks)),
            tick,
        )
        state.workers[index].last_seen = time.monotonic()
        guard = self.guards.get(state.id)
        reason = None if guard is None else guard.take()
        if reason is not None:
            await self.abort_cluster(state, reason)
        return BatchAck(seq=seq, duplicate=not fresh)

    def _feed_tick(self, state: ClusterState, tick: TickTallies) -> None:
        """Feed a tick just counted to the live statistics and the abort rule."""
        state.live.add_tallies(tick.live_tallies(), _now())
        guard = self.guards.get(state.id)
        if guard is None:
            guard = self.guards.setdefault(state.id, RunGuard(state.config))
        guard.observe_tick(tick.outcomes, state.live)

    async def abort_cluster(self, state: ClusterState, reason: str) -> None:
        """Stop a cluster its own rules gave up on (:mod:`clientswarm.service.abort`): like a
        stop from the user, but it ends ``failed`` with ``reason``. Nothing when a stop was
        asked for already."""
        if state.stop_requested_at is not None or state.status.final:
            return
        state.aborted = reason
        log.warning("cluster %s: %s", state.id, reason)
        # The stop first: it holds (in memory) even if writing its events fails.
        with contextlib.suppress(Conflict):  # it ended meanwhile: nothing left to stop
            await self.stop_cluster(state.id, reason)
        await self.journal.event(state.id, "aborted", reason)

    def _feed_batch(self, state: ClusterState, batch: SampleColumns) -> None:
        """Feed what a batch just committed adds (derived once) to the live and the exact
        statistics and the rest: CPU work kept off the event loop (in the commit thread)."""
        parts = measured_parts(batch, slo=state.config.slo)
        state.live.add_parts(parts, _now())
        state.statistics.add_parts(parts, len(batch))
        sink = self.sinks.get(state.id)
        if sink is not None:
            sink.add(batch)
        self.telemetry.add(state.id, batch)
        guard = self.guards.get(state.id)
        if guard is None:
            guard = self.guards.setdefault(state.id, RunGuard(state.config))
        guard.observe(batch, state.live)
        if state.adaptive is not None:
            state.adaptive.observe(batch, parts)

    async def heartbeat(self, state: ClusterState, index: int, beat: Heartbeat) -> Control:
        """Note the worker is alive; reply with what it should stop."""
        worker = state.workers[index]
        worker.last_seen, worker.in_flight = time.monotonic(), beat.in_flight
        worker.loop_lag_p99_s = beat.loop_lag_p99_s
        worker.in_flight_groups, worker.heard_ns = beat.in_flight_groups, time.time_ns()
        if worker.state is WorkerState.LOST:  # it was silent (e.g. paused) and is back
            await self._back(state, index)
        elif worker.moving.locked():
            # A move is being written: it may be the one that finds it lost. Looked at once it
            # is written, in the background: the reply does not depend on it, and a move (a
            # thousand workers' moves to running at the start) may wait seconds at the store.
            self._revive(state, index)
        if not worker.final:  # a beat that crossed the final report must not undo it
            self.beats.note(  # written a second at a time: the reply never waits for the store
                state.id,
                index,
                last_heartbeat_at=_now(),
                in_flight=beat.in_flight,
                loop_lag_p99_s=beat.loop_lag_p99_s,
            )
        await self.decide_set_points(state)
        # The whole lists every time: a lost reply must not lose a stop or a stage (workers
        # ignore repeats).
        return Control(
            stop_all=worker.stop_all,
            stop_clients=sorted(worker.stop_clients),
            stages=state.adaptive.orders() if state.adaptive is not None else {},
        )

    @staticmethod
    async def _back(state: ClusterState, index: int) -> None:
        """Follow worker ``index`` again if it is lost: it was heard from."""
        await state.move_worker(
            index,
            WorkerState.RUNNING,
            fields={"error": None, "finished_at": None},
            only_from=WorkerState.LOST,
        )

    def _revive(self, state: ClusterState, index: int) -> None:
        """Move worker ``index`` back to running if it is (or is being written) lost, in the
        background, once at a time per worker."""
        key = (state.id, index)
        if key in self._reviving:
            return
        self._reviving.add(key)

        async def revive() -> None:
            try:
                await self._back(state, index)
            except StoreUnavailable:
                pass  # said by the store's health watch; the next heartbeat tries again
            finally:
                self._reviving.discard(key)

        self._spawn(revive())

    async def decide_set_points(self, state: ClusterState) -> None:
        """Decide the adaptive groups' next stages that are due (:mod:`.adaptive`), each
        recorded as an event."""
        adaptive = state.adaptive
        if adaptive is None or state.start_ns is None or state.stop_requested_at is not None:
            return
        beats = [
            WorkerBeat(w.in_flight_groups, w.heard_ns)
            for w in state.workers
            if w.state is WorkerState.RUNNING and w.heard_ns
        ]
        for group, message in adaptive.tick(state.start_ns, beats):
            log.info("cluster %s: %s", state.id, message)
            await self.journal.event(state.id, ADAPTIVE_EVENT, message, adaptive.event_data(group))

    async def finish(self, state: ClusterState, index: int, report: WorkerReport) -> None:
        """The worker is done."""
        self.beats.discard(state.id, index, "loop_lag_p99_s")  # the report's is the run's
        outcome = WorkerState(report.outcome)
        await worker_ended(state, index, outcome, report.error, report=report.model_dump())

    # -- following ------------------------------------------------------------------------
    async def _watch(self) -> None:
        store_watch = StoreWatch(self.store)
        while True:
            await asyncio.sleep(self.settings.watch_interval_s)
            try:
                await store_watch.tick(list(self.active))
            except Exception:  # telling about the store must not stop the following
                log.exception("following the store's health failed")
            for state in list(self.active.values()):
                try:
                    await self.decide_set_points(state)
                    if await self.follower.check(state):
                        await self._finalise(state)
                except StoreUnavailable:  # said once by store_watch; the next tick tries again
                    pass
                except Exception:  # one bad cluster must not stop the others being followed
                    log.exception("following cluster %s failed", state.id)

    async def _finalise(self, state: ClusterState) -> None:
        """End the cluster (:meth:`ClusterState.outcome`) with its exact summary, then stop
        following it. Resumable: a store that fails midway leaves the rest to the next tick."""
        if state.id in self._finalising:
            return
        self._finalising.add(state.id)
        try:
            await self.engine.stop(state.id)
            await self.telemetry.stop(state.id)
            await self.follower.release(state)
            await self.beats.flush(state.id)  # the summary's loop lags are the last beats'
            if not state.status.final:
                ended_at = _now()  # the summary's ended_at is the record's, to the digit
                status, reason, summary_json = await self._final_summary(state, ended_at)
                fields = {"finished_at": ended_at, "summary_json": summary_json}
                if not await state.move(status, reason=reason, fields=fields):
                    raise RuntimeError(f"cluster {state.id}: {state.status} cannot end {status}")
            state.statistics.close()
            self.sinks.pop(state.id, None)
            self.guards.pop(state.id, None)
            await asyncio.to_thread(finish_clients, self.store, state.id)
            for group in state.config.groups:
                state.live.set_active_clients(group.name, 0)
            self.active.pop(state.id, None)
            self.batch_limiter.forget(state.id)
            self.preflights.forget(state.id)
        finally:
            self._finalising.discard(state.id)
        await self.journal.notify()

    async def _final_summary(
        self, state: ClusterState, ended_at: float | None = None
    ) -> tuple[ClusterStatus, str | None, str]:
        """The status the cluster ends with, the reason, and its exact summary (JSON): the
        one summary that ``GET …/results`` and ``clientswarm run``'s summary.json serve.
        ``ended_at``: when it ended (epoch seconds; default now)."""
        status, reason = state.outcome()
        record = await self.cluster(state.id)
        ended = dataclasses.replace(
            record,
            status=status.value,
            reason=reason or record.reason,
            finished_at=_now() if ended_at is None else ended_at,
        )
        try:
            if in_files(state.config):  # what the summary reads is what stays
                await asyncio.to_thread(freeze_sample_files, self.settings.samples_dir, state.id)
            warnings = await asyncio.to_thread(worker_warnings, self.store, state.id)
            summary = await asyncio.to_thread(
                cluster_summary,
                self.store,
                ended,
                warnings,
                fed=state.statistics,
                samples_root=self.settings.samples_dir,
            )
        except StoreUnavailable:
            raise  # the database failed: the next watchdog tick tries again
        except Exception as exc:
            # A bug, or stored data the statistics cannot take: trying again on every tick
            # would fail alike, forever. Fail the cluster once, saying why.
            log.exception("cluster %s: computing its results failed", state.id)
            failed = (
                f"computing the results failed ({type(exc).__name__}: {exc}); the raw "
                f"samples are kept: GET /api/v1/clusters/{state.id}/samples"
            )
            status, reason = ClusterStatus.FAILED, state.failure or failed  # the first cause
            ended = dataclasses.replace(ended, status=status.value, reason=reason)
            summary = await asyncio.to_thread(
                cluster_summary,
                self.store,
                ended,
                [failed],
                samples=False,
                samples_root=self.settings.samples_dir,
            )
        return status, reason, summary.model_dump_json()

    async def _recover(self, record: ClusterRecord) -> None:
        workers = await asyncio.to_thread(self.store.list_workers, record.id)
        state, stored_handle = recovered_state(record, workers, self.live, self.journal)
        reason = "the service restarted while launching"
        spawner = self.follower.spawner_of(state)
        if stored_handle and spawner is not None:
            try:
                state.handle = spawner.restore(stored_handle)
            except SpawnerError as exc:
                reason = f"the service restarted and {exc}"
        if not launched(state):
            state.failure = reason
        else:
            try:
                await asyncio.to_thread(replay_live, self.store, state, self.settings.samples_dir)
                if state.adaptive is not None:
                    await asyncio.to_thread(restore_adaptive, self.store, state.id, state.adaptive)
                await asyncio.to_thread(replay_stops, self.store, state)
            except StoreUnavailable:
                raise  # the store itself fails: the service cannot start on it
            except Exception as exc:
                # Stored data the statistics cannot take (a batch written before batches were
                # checked): fail this cluster once, saying why, and follow the others.
                log.exception("cluster %s: recovering it after the restart failed", record.id)
                state.failure = (
                    f"recovering it after the service restarted failed ({type(exc).__name__}: "
                    f"{exc}); the raw samples are kept: GET /api/v1/clusters/{record.id}/samples"
                )
        self.active[record.id] = state
        if state.failure is not None:
            await self._finalise(state)
            return
        state.live.set_workers(state.worker_counts())
        if state.start_ns is not None and state.status is ClusterStatus.RUNNING:
            self.engine.start(record.id, state.config, state.start_ns)
            self.telemetry.start(record.id, state.config, state.live, state.start_ns)
        await self.journal.event(
            record.id, "recovered", "the service restarted and follows it again"
        )


__all__ = ["Busy", "ClusterManager", "Conflict", "Gone", "NotFound"]
