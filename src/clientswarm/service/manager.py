"""The control plane: clusters from creation to their final status.

``pending`` (stored) → ``starting`` (workers submitted to the spawner) → ``running`` (the
workers have their shared start time) → ``completed`` | ``failed`` (with the reason) |
``cancelled`` (stopped). A watchdog follows every active cluster: a worker whose process ended
before it finished, or that missed its heartbeats, is marked ``lost`` (``failed`` before it
registered) and the cluster carries on with the others. On start the service recovers every
unfinished cluster from the store and follows its workers again.
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
from clientswarm.service.admission import Admitted, admit_and_build
from clientswarm.service.creation import new_cluster_rows
from clientswarm.service.prometheus import LiveRegistry
from clientswarm.service.ratelimit import BatchLimiter
from clientswarm.service.recovery import launched, recovered_state, replay_live, replay_stops
from clientswarm.service.results import cluster_summary, finish_clients, worker_warnings
from clientswarm.service.settings import ServiceSettings
from clientswarm.service.state import (
    CLUSTER_FINAL,
    ClusterState,
    WorkerLive,
    worker_may_become,
)
from clientswarm.service.storewatch import StoreWatch
from clientswarm.spawners.registry import default_spawners
from clientswarm.store import ClientRecord, ClusterRecord, Store, StoreUnavailable

log = logging.getLogger("clientswarm.service")


class NotFound(ClientswarmError):
    """No such cluster, client or group."""


class Conflict(ClientswarmError):
    """The request does not fit the cluster's current status."""


class Gone(ClientswarmError):
    """The cluster no longer wants this worker."""


class Busy(ClientswarmError):
    """The service is at one of its operator's limits; retry later."""


def _now() -> float:
    return time.time()


class ClusterManager:
    """Creates clusters, follows their workers, and finalises their results."""

    def __init__(
        self,
        store: Store,
        settings: ServiceSettings,
        live: LiveRegistry | None = None,
        spawners: dict[str, Spawner[Any]] | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self.live = live or LiveRegistry()
        self.spawners: dict[str, Spawner[Any]] = spawners or default_spawners()
        self.active: dict[str, ClusterState] = {}
        self.sinks: dict[str, SampleSink] = {}
        """Who else takes a cluster's committed batches, by cluster id (``clientswarm run``'s
        samples file); dropped when the cluster is finalised."""
        self.batch_limiter = BatchLimiter(settings.policy.limits.max_batches_per_s)
        self._watchdog: asyncio.Task[None] | None = None
        self._finalising: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.changed = asyncio.Condition()

    # -- lifecycle of the manager ---------------------------------------------------------
    async def start(self) -> None:
        """Recover unfinished clusters and start following them."""
        for record in await asyncio.to_thread(self.store.unfinished_clusters):
            await self._recover(record)
        self._watchdog = asyncio.create_task(self._watch())

    async def close(self) -> None:
        """Stop following (workers keep running; a restarted service picks them up)."""
        if self._watchdog is not None:
            self._watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watchdog

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
        live = self.live.get_or_create(
            cluster_id, config.name, groups=[g.name for g in config.groups], status="pending"
        )
        state = ClusterState(cluster_id, config, record.token_hash, live, base_dir=str(base))
        self.active[cluster_id] = state
        self._count_workers(state)
        await self._event(cluster_id, "created", f"cluster {config.name!r} created")
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
            config, self.settings.policy, base_dir=base_dir, python=self.settings.python
        )

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
        spawner = self.spawners.get(state.config.spawner.kind)
        launch = ClusterLaunch(
            cluster_id=state.id,
            service_url=self.settings.advertise_url,
            token=token,
            log_dir=str(self.settings.log_dir(state.id)),
            python=self.settings.python,
            options=options,
            env=self.settings.policy.worker_environment(state.config),
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
            await self._set_status(state, "failed", reason=str(exc))
            await self._finalise(state)
            return
        await self._submitted(state, launch, handle)

    async def _submitted(
        self, state: ClusterState, launch: ClusterLaunch, handle: SpawnerHandle
    ) -> None:
        """The spawner started the workers of ``launch``: keep its handle (in the store too,
        for a restart) and say so."""
        state.handle = handle
        await self._event(
            state.id, "submitted", f"{launch.workers} worker(s) submitted", handle.to_json()
        )
        await asyncio.to_thread(
            self.store.update_cluster, state.id, spawner_state_json=state.spawner_state_json()
        )
        if state.status == "pending":
            await self._set_status(state, "starting")

    async def stop_cluster(self, cluster_id: str, reason: str = "stopped by the user") -> None:
        """Stop every worker of a cluster; what they measured is kept."""
        state = self.active.get(cluster_id)
        if state is None:
            await self._require(cluster_id)
            raise Conflict(f"cluster {cluster_id} has already finished")
        if state.stop_requested_at is None:
            state.stop_requested_at = time.monotonic()
            state.stop_reason = reason
            state.settled.set()
            for worker in state.workers:
                worker.stop_all = True
            await self._event(cluster_id, "stopping", reason)

    async def stop_clients(self, cluster_id: str, client_ids: list[int], why: str) -> None:
        """Stop some clients; the rest of the cluster carries on."""
        state = self.active.get(cluster_id)
        if state is None:
            await self._require(cluster_id)
            raise Conflict(f"cluster {cluster_id} has already finished")
        for client_id in client_ids:
            state.workers[state.worker_of_client(client_id)].stop_clients.add(client_id)
        await asyncio.to_thread(self.store.set_client_state, cluster_id, client_ids, "stopped")
        await asyncio.to_thread(self._count_active_clients, state)
        await self._event(cluster_id, "clients_stopped", why, {"clients": client_ids})

    async def delete(self, cluster_id: str) -> None:
        """Delete a finished cluster and everything of it."""
        record = await self._require(cluster_id)
        if record.status not in CLUSTER_FINAL:
            raise Conflict(
                f"cluster {cluster_id} is {record.status}; stop it first "
                f"(POST /api/v1/clusters/{cluster_id}/stop), then delete it"
            )
        await asyncio.to_thread(self.store.delete_cluster, cluster_id)
        self.live.remove(cluster_id)

    async def results(self, cluster_id: str) -> dict[str, Any]:
        """The summary.json of a cluster: final once finished, partial while it runs."""
        record = await self._require(cluster_id)
        if record.summary_json:
            summary: dict[str, Any] = orjson.loads(record.summary_json)
            return summary
        partial = await asyncio.to_thread(cluster_summary, self.store, record, [])
        return partial.document()

    async def _require(self, cluster_id: str) -> ClusterRecord:
        record = await asyncio.to_thread(self.store.get_cluster, cluster_id)
        if record is None:
            raise NotFound(f"no cluster with id {cluster_id!r}")
        return record

    # -- internal API -----------------------------------------------------------------------
    def cluster_for_worker(self, cluster_id: str, index: int) -> ClusterState:
        """The active cluster a worker belongs to (Gone when finished or unknown)."""
        state = self.active.get(cluster_id)
        if state is None:
            raise Gone(f"cluster {cluster_id} is not running")
        if not 0 <= index < len(state.workers):
            raise NotFound(f"cluster {cluster_id} has no worker {index}")
        return state

    async def register(
        self, state: ClusterState, index: int, req: RegisterRequest
    ) -> RegisterReply:
        """A worker announced itself."""
        worker = state.workers[index]
        if state.start_ns is not None and worker.state in ("pending", "failed"):
            raise Gone(f"worker {index} registered after the cluster started")
        worker.last_seen = time.monotonic()
        registered = {"pid": req.pid, "host": req.host, "registered_at": _now()}
        await self._move_worker(
            state, index, "registered", fields={**registered, "last_heartbeat_at": _now()}
        )
        return RegisterReply(
            # Several beats per lost_after_s, so that one late beat is not a lost worker.
            heartbeat_interval_s=min(
                self.settings.heartbeat_interval_s, self.settings.lost_after_s / 4
            ),
            lost_after_s=self.settings.lost_after_s,
        )

    async def assignment(self, state: ClusterState, index: int) -> Assignment | NotYet:
        """The worker's assignment once every worker is ready (or the start timeout passed)."""
        worker = state.workers[index]
        if state.stop_requested_at is not None or worker.final:
            raise Gone(f"cluster {state.id} no longer needs worker {index}")
        if state.start_ns is None:
            waiting = [i for i, w in enumerate(state.workers) if w.state == "pending"]
            timed_out = time.monotonic() - state.created_mono > self.settings.start_timeout_s
            if waiting and not timed_out:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(state.settled.wait(), self.settings.assignment_hold_s)
                if state.stop_requested_at is not None or worker.final:
                    raise Gone(f"cluster {state.id} no longer needs worker {index}")
                if state.start_ns is None:
                    return NotYet(retry_after_s=0.1, reason=f"waiting for workers {waiting}")
            else:
                await self._start(state, late=waiting)
        worker.last_seen = time.monotonic()
        await self._move_worker(state, index, "running")
        assert state.start_ns is not None
        workers = len(state.workers)
        return Assignment(
            cluster_id=state.id,
            worker=index,
            workers=workers,
            start_ns=state.start_ns,
            config=state.config,
            clients=[
                c.client_id for c in clients_of_worker(state.config, index, len(state.workers))
            ],
            base_dir=state.base_dir,
            path_roots=self.settings.policy.file_scope().confined_to,
        )

    async def _start(self, state: ClusterState, late: list[int]) -> None:
        """Fix the start time (now plus the margin); fail the ``late`` workers."""
        state.start_ns = time.time_ns() + int(self.settings.start_margin_s * 1e9)
        state.settled.set()
        for index in late:
            await self._worker_ended(
                state, index, "failed", f"did not register within {self.settings.start_timeout_s} s"
            )
        await asyncio.to_thread(
            self.store.update_cluster, state.id, start_ns=state.start_ns, started_at=_now()
        )
        await asyncio.to_thread(self._clients_running, state)
        await self._set_status(state, "running")

    def _clients_running(self, state: ClusterState) -> None:
        pending = [c.id for c in self.store.list_clients(state.id, state="pending")]
        self.store.set_client_state(state.id, pending, "running")
        self._count_active_clients(state)

    def _count_active_clients(self, state: ClusterState) -> None:
        running = self.store.list_clients(state.id, state="running")
        for group in state.config.groups:
            state.live.set_active_clients(group.name, sum(c.group == group.name for c in running))

    async def add_batch(
        self, state: ClusterState, index: int, seq: int, batch: SampleColumns
    ) -> BatchAck:
        """Commit a batch (once), then feed the live statistics; ack only after the commit."""
        fresh = await asyncio.to_thread(self._commit_batch, state, index, seq, batch)
        state.workers[index].last_seen = time.monotonic()
        return BatchAck(seq=seq, duplicate=not fresh)

    def _commit_batch(
        self, state: ClusterState, index: int, seq: int, batch: SampleColumns
    ) -> bool:
        """Store the columns as they came, then feed what they add (derived once) to the live
        and the exact statistics: CPU work kept off the event loop. True when new."""
        fresh = self.store.add_batch(state.id, index, seq, batch)
        if fresh:
            parts = measured_parts(batch, slo=state.config.slo)
            state.live.add_parts(parts, _now())
            state.statistics.add_parts(parts, len(batch))
            sink = self.sinks.get(state.id)
            if sink is not None:
                sink.add(batch)
        return fresh

    async def heartbeat(self, state: ClusterState, index: int, beat: Heartbeat) -> Control:
        """Note the worker is alive; reply with what it should stop."""
        worker = state.workers[index]
        worker.last_seen, worker.in_flight = time.monotonic(), beat.in_flight
        worker.loop_lag_p99_s = beat.loop_lag_p99_s
        if worker.state == "lost":  # it was silent (e.g. paused) and is back: follow it again
            await self._move_worker(
                state, index, "running", fields={"error": None, "finished_at": None}
            )
        await asyncio.to_thread(
            self.store.update_worker,
            state.id,
            index,
            last_heartbeat_at=_now(),
            in_flight=beat.in_flight,
            loop_lag_p99_s=beat.loop_lag_p99_s,
        )
        # The whole list every time: a lost reply must not lose a stop (workers ignore repeats).
        return Control(stop_all=worker.stop_all, stop_clients=sorted(worker.stop_clients))

    async def finish(self, state: ClusterState, index: int, report: WorkerReport) -> None:
        """The worker is done."""
        await self._worker_ended(
            state, index, report.outcome, report.error, report=report.model_dump()
        )

    # -- following ------------------------------------------------------------------------
    async def _worker_ended(
        self,
        state: ClusterState,
        index: int,
        outcome: str,
        error: str | None,
        report: dict[str, Any] | None = None,
        unheard_since: float | None = None,
    ) -> None:
        """The worker ended with ``outcome`` (see :meth:`_move_worker` for ``unheard_since``)."""
        fields: dict[str, Any] = {"error": error, "finished_at": _now()}
        if report is not None:
            fields["report_json"] = orjson.dumps(report).decode()
            fields["loop_lag_p99_s"] = report.get("loop_lag_p99_s")
        await self._move_worker(
            state, index, outcome, fields=fields, why=error, unheard_since=unheard_since
        )

    async def _move_worker(
        self,
        state: ClusterState,
        index: int,
        to: str,
        *,
        fields: dict[str, Any] | None = None,
        why: str | None = None,
        unheard_since: float | None = None,
    ) -> bool:
        """The one place a worker changes state: memory, then store, then event, under the
        worker's lock, so that concurrent transitions are persisted in the order they were
        made, each once (:func:`worker_may_become`). With ``unheard_since`` (its ``last_seen``
        when it was found silent), only if it has not been heard from since once the lock is
        held: a heartbeat that came in meanwhile wins. False when the move was refused."""
        worker = state.workers[index]
        async with worker.moving:
            if not worker_may_become(worker.state, to):
                return False
            if unheard_since is not None and worker.last_seen != unheard_since:
                return False
            previous, worker.state = worker.state, to
            await asyncio.to_thread(
                self.store.update_worker, state.id, index, state=to, **(fields or {})
            )
            if previous == "lost" and to == "running":
                await self._event(state.id, "worker_back", f"worker {index} is heard from again")
            elif to not in ("registered", "running", "completed"):
                await self._event(state.id, f"worker_{to}", f"worker {index}: {why or to}")
        self._count_workers(state)
        async with self.changed:
            self.changed.notify_all()
        return True

    def _count_workers(self, state: ClusterState) -> None:
        """Workers by state for the monitor (``clientswarm_workers``), after every change."""
        self.live.get_or_create(state.id, state.config.name).set_workers(state.counts_by_state())

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
                    await self._check(state)
                except StoreUnavailable:  # said once by store_watch; the next tick tries again
                    pass
                except Exception:  # one bad cluster must not stop the others being followed
                    log.exception("following cluster %s failed", state.id)

    async def _check(self, state: ClusterState) -> None:
        spawner = self.spawners.get(state.config.spawner.kind)
        handle = state.followed()
        if spawner is not None and handle is not None:
            for ended in await spawner.poll(state.id, handle):
                worker = state.workers[ended.index]
                if ended.index in state.exits_noted:
                    continue
                state.exits_noted.add(ended.index)
                if worker.final:
                    outside = ended.cancelled or state.stop_requested_at is None
                    if worker.state == "cancelled" and outside:
                        # It finished cleanly on the scheduler's SIGTERM (scancel, a Job's
                        # deadline) rather than the service's: say who stopped it.
                        await asyncio.to_thread(
                            self.store.update_worker, state.id, ended.index, error=ended.reason
                        )
                    continue
                if ended.cancelled:
                    outcome = "cancelled"
                elif worker.state in ("pending", "registered"):
                    outcome = "failed"
                else:
                    outcome = "lost"
                lines = ended.log_tail.strip().splitlines()[-3:]
                tail = f"; last output: {' | '.join(lines)}" if lines else ""
                await self._worker_ended(
                    state, ended.index, outcome, f"worker {ended.reason}{tail}"
                )
        now = time.monotonic()
        stall_s = state.excuse_stall(now, self.settings.watch_interval_s)
        if stall_s:  # paused (SIGSTOP, a VM freeze) or starved: the workers could not be heard
            log.warning(
                "cluster %s: the service did not run for %.1f s; workers' silence in that "
                "time is not held against them",
                state.id,
                stall_s,
            )
        for index, worker in enumerate(state.workers):
            silent = now - worker.last_seen > self.settings.lost_after_s
            if worker.state == "running" and silent:
                await self._worker_ended(
                    state,
                    index,
                    "lost",
                    f"no heartbeat for {self.settings.lost_after_s:g} s",
                    unheard_since=worker.last_seen,
                )
        state.watched_at = time.monotonic()
        if state.stop_requested_at is not None and not state.spawner_stopped:
            if spawner is not None and handle is not None:
                # SIGTERM (scancel on Slurm) is a graceful stop for a worker: it records its
                # in-flight requests as cancelled and ships everything before it exits.
                state.spawner_stopped = True
                self._spawn(self._stop_workers(spawner, state, handle))
            if state.start_ns is None:  # stopped before it started: nobody will finish
                for index, worker in enumerate(state.workers):
                    if not worker.final:
                        await self._worker_ended(state, index, "cancelled", None)
        if all(w.final for w in state.workers) and not self._awaiting_explanation(state, spawner):
            await self._finalise(state)

    def _awaiting_explanation(self, state: ClusterState, spawner: Spawner[Any] | None) -> bool:
        """Whether a worker stopped by the scheduler, not the service, is still unexplained
        by the spawner (and the wait for it has not run out)."""
        if spawner is None or state.stop_requested_at is not None:
            return False
        unexplained = [
            index
            for index, worker in enumerate(state.workers)
            if worker.state == "cancelled" and index not in state.exits_noted
        ]
        if not unexplained or state.followed() is None:
            return False
        now = time.monotonic()
        if state.explain_until is None:
            state.explain_until = now + self.settings.explain_wait_s
        return now < state.explain_until

    async def _stop_workers(
        self, spawner: Spawner[Any], state: ClusterState, handle: SpawnerHandle
    ) -> None:
        try:
            await spawner.stop(state.id, handle, grace_s=self.settings.stop_grace_s)
        except SpawnerError as exc:
            log.warning("cluster %s: %s", state.id, exc)
            await self._event(state.id, "spawner", str(exc))

    async def _release(self, state: ClusterState) -> None:
        spawner = self.spawners.get(state.config.spawner.kind)
        handle = state.followed()
        if spawner is None or state.spawner_stopped or handle is None:
            return
        try:
            await spawner.release(state.id, handle)
        except SpawnerError as exc:
            log.warning("cluster %s: %s", state.id, exc)
            await self._event(state.id, "spawner", str(exc))

    async def _finalise(self, state: ClusterState) -> None:
        if state.id in self._finalising:
            return
        self._finalising.add(state.id)
        try:
            await self._release(state)
            outcomes = [w.state for w in state.workers]
            if state.status == "failed":
                status, reason = "failed", None
            elif state.stop_requested_at is not None:
                status, reason = "cancelled", state.stop_reason
            elif "completed" in outcomes:
                status, reason = "completed", None
            else:
                status, reason = "failed", "no worker completed: " + ", ".join(outcomes)
            record = await self._require(state.id)
            ended = dataclasses.replace(
                record, status=status, reason=reason or record.reason, finished_at=_now()
            )
            try:
                warnings = await asyncio.to_thread(worker_warnings, self.store, state.id)
                summary = await asyncio.to_thread(
                    cluster_summary, self.store, ended, warnings, fed=state.statistics
                )
            except StoreUnavailable:
                raise  # the database failed: the next watchdog tick tries again
            except Exception as exc:
                # A bug, or stored data the statistics cannot take: trying again on every tick
                # would fail alike, forever. Fail the cluster once, saying why.
                log.exception("cluster %s: computing its results failed", state.id)
                status = "failed"
                reason = (
                    f"computing the results failed ({type(exc).__name__}: {exc}); the raw "
                    f"samples are kept: GET /api/v1/clusters/{state.id}/samples"
                )
                ended = dataclasses.replace(ended, status=status, reason=reason)
                summary = await asyncio.to_thread(
                    cluster_summary, self.store, ended, [reason], samples=False
                )
            # The one summary: GET …/results and run's summary.json serve this document.
            fields: dict[str, Any] = {
                "status": status,
                "finished_at": ended.finished_at,
                "summary_json": summary.model_dump_json(),
            }
            if reason is not None:
                fields["reason"] = reason
            await asyncio.to_thread(self.store.update_cluster, state.id, **fields)
            state.statistics.close()
            self.sinks.pop(state.id, None)
            await asyncio.to_thread(finish_clients, self.store, state.id)
            state.status = status
            state.live.set_status(status)
            for group in state.config.groups:
                state.live.set_active_clients(group.name, 0)
            await self._event(state.id, status, reason or f"cluster {status}")
            self.active.pop(state.id, None)
            self.batch_limiter.forget(state.id)
        finally:
            self._finalising.discard(state.id)
        async with self.changed:
            self.changed.notify_all()

    async def _set_status(
        self, state: ClusterState, status: str, reason: str | None = None
    ) -> None:
        state.status = status
        state.live.set_status(status)
        fields: dict[str, Any] = {"status": status}
        if reason is not None:
            fields["reason"] = reason
        await asyncio.to_thread(self.store.update_cluster, state.id, **fields)
        await self._event(state.id, status, reason or f"cluster {status}")
        async with self.changed:
            self.changed.notify_all()

    async def _event(
        self, cluster_id: str, kind: str, message: str, data: dict[str, Any] | None = None
    ) -> None:
        await asyncio.to_thread(self.store.add_event, cluster_id, kind, message, data)

    async def _recover(self, record: ClusterRecord) -> None:
        state, stored_handle = recovered_state(record, self.live)
        workers = await asyncio.to_thread(self.store.list_workers, record.id)
        state.workers = [WorkerLive(state=w.state) for w in workers]
        reason = "the service restarted while launching"
        spawner = self.spawners.get(state.config.spawner.kind)
        if stored_handle and spawner is not None:
            try:
                state.handle = spawner.restore(stored_handle)
            except SpawnerError as exc:
                reason = f"the service restarted and {exc}"
        if not launched(state):
            self.active[record.id] = state
            await self._set_status(state, "failed", reason=reason)
            await self._finalise(state)
            return
        try:
            await asyncio.to_thread(replay_live, self.store, state)
            await asyncio.to_thread(replay_stops, self.store, state)
        except StoreUnavailable:
            raise  # the store itself fails: the service cannot start on it
        except Exception as exc:
            # Stored data the statistics cannot take (a batch written before batches were
            # checked): fail this cluster once, saying why, and follow the others.
            log.exception("cluster %s: recovering it after the restart failed", record.id)
            self.active[record.id] = state
            reason = (
                f"recovering it after the service restarted failed ({type(exc).__name__}: "
                f"{exc}); the raw samples are kept: GET /api/v1/clusters/{record.id}/samples"
            )
            await self._set_status(state, "failed", reason=reason)
            await self._finalise(state)
            return
        self.active[record.id] = state
        self._count_workers(state)
        await self._event(record.id, "recovered", "the service restarted and follows it again")


__all__ = ["Busy", "ClusterManager", "Conflict", "Gone", "NotFound"]
