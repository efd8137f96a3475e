"""What the service keeps in memory about one cluster while it is not finished.

A :class:`ClusterState` is the state machine of one cluster: its status and its workers' states
change only through :meth:`ClusterState.move` and :meth:`ClusterState.move_worker`, each of which
refuses a move the lifecycle does not allow (:mod:`clientswarm.service.lifecycle`) and writes
the change to the store with its event in one transaction, then to memory, then tells the
monitor and whoever waits (:class:`~clientswarm.service.journal.Journal`). What only reads it
takes a frozen :meth:`ClusterState.snapshot`.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
from dataclasses import InitVar, dataclass, field
from types import MappingProxyType
from typing import Any

import orjson

from clientswarm.config.models import ClusterConfig
from clientswarm.metrics.live import LiveStats
from clientswarm.metrics.stats import ClusterStatistics
from clientswarm.protocol.spawning import SpawnerHandle
from clientswarm.service.adaptive import AdaptiveRun
from clientswarm.service.journal import Event, Journal
from clientswarm.service.lifecycle import (
    ClusterStatus,
    WorkerState,
    cluster_may_become,
    worker_may_become,
)
from clientswarm.service.prometheus import LiveRegistry
from clientswarm.service.snapshot import ClusterSnapshot, WorkerSnapshot


def hash_token(token: str) -> str:
    """The stored form of a cluster token (the token itself is never stored)."""
    return hashlib.sha256(token.encode()).hexdigest()


BASE_DIR_KEY = "base_dir"
"""The service's own key in a stored spawner state; every other key is the handle's."""


def token_matches(token: str, token_hash: str) -> bool:
    """Constant-time check of a presented token against a stored hash."""
    return hmac.compare_digest(hash_token(token), token_hash)


def live_of(
    registry: LiveRegistry, cluster_id: str, config: ClusterConfig, status: str
) -> LiveStats:
    """The live statistics of a cluster the service follows (created with its groups, their
    targets and its status when new)."""
    return registry.get_or_create(
        cluster_id,
        config.name,
        groups=[g.name for g in config.groups],
        group_targets={g.name: config.target_name_of(g) for g in config.groups},
        status=status,
    )


@dataclass
class WorkerLive:
    """The service's live view of one worker."""

    initial: InitVar[WorkerState] = WorkerState.PENDING
    last_seen: float = field(default_factory=time.monotonic)
    in_flight: int = 0
    loop_lag_p99_s: float = 0.0
    """Its event loop's recent lag (p99), from its last heartbeat."""
    stop_all: bool = False
    stop_clients: set[int] = field(default_factory=set)
    in_flight_groups: dict[str, int] = field(default_factory=dict)
    """Requests in flight of each adaptive group, from its last heartbeat."""
    heard_ns: int = 0
    """When its last heartbeat arrived (epoch ns; 0: none yet)."""
    moving: asyncio.Lock = field(default_factory=asyncio.Lock, repr=False, compare=False)
    """Held while a state transition is written, so transitions are persisted in the order
    they were made."""
    _state: WorkerState = field(init=False)

    def __post_init__(self, initial: WorkerState) -> None:
        self._state = initial

    @property
    def state(self) -> WorkerState:
        """Where it is in its life (changed by :meth:`ClusterState.move_worker` only)."""
        return self._state

    @property
    def final(self) -> bool:
        """True once the worker can do nothing more."""
        return self._state.final


@dataclass
class ClusterState:
    """A cluster the service is following: config, token, workers, live statistics, and the
    one way its status and its workers' states change (see the module docstring)."""

    id: str
    config: ClusterConfig
    token_hash: str
    live: LiveStats
    journal: Journal = field(repr=False, compare=False)
    """Where its transitions are written."""
    initial_status: InitVar[ClusterStatus] = ClusterStatus.PENDING
    start_ns: int | None = None
    created_mono: float = field(default_factory=time.monotonic)
    base_dir: str = "."
    """The folder its configuration's relative paths start from."""
    handle: SpawnerHandle | None = None
    """What its spawner's ``submit`` returned; ``None`` until it did."""
    workers: list[WorkerLive] = field(default_factory=list)
    stop_requested_at: float | None = None
    stop_reason: str | None = None
    failure: str | None = None
    """Why it must fail now, whatever its workers do (its spawner refused it, it could not be
    recovered): the watchdog ends it with this reason."""
    aborted: str | None = None
    """Why its own rules stopped it (the abort rule, a threshold with ``abort``,
    :mod:`clientswarm.service.abort`): once its workers have stopped it ends ``failed`` with
    this reason."""
    spawner_stopped: bool = False
    exits_noted: set[int] = field(default_factory=set)
    explain_until: float | None = None
    """Until when the end of the cluster waits for the spawner to say who stopped a worker."""
    watched_at: float | None = None
    """When the watchdog last judged its workers' silence (monotonic): a gap much longer than
    its interval since is time the service itself did not run (paused, starved)."""
    settled: asyncio.Event = field(default_factory=asyncio.Event)
    """Set once it runs or a stop is requested: wakes the workers' held ``GET assignment``
    calls, so every worker learns the start time at once."""
    starting: asyncio.Lock = field(default_factory=asyncio.Lock)
    """Held while the start is written: the workers that ask for their assignment at once
    write it once between them."""
    started: bool = False
    """Whether the start was written (status, late workers, clients running)."""

    adaptive: AdaptiveRun | None = field(init=False, repr=False, compare=False)
    """Its adaptive groups' decisions (None: it has none), :mod:`clientswarm.service.adaptive`."""
    statistics: ClusterStatistics = field(init=False, repr=False, compare=False)
    """The exact statistics of every batch committed while the service follows it (the final
    summary's, :meth:`ClusterManager._feed_batch`)."""
    _status: ClusterStatus = field(init=False)
    _moving: asyncio.Lock = field(init=False, repr=False, compare=False)

    def __post_init__(self, initial_status: ClusterStatus) -> None:
        self._status = initial_status
        self._moving = asyncio.Lock()
        if not self.workers:
            self.workers = [WorkerLive() for _ in range(self.config.spawner.workers)]
        self.adaptive = AdaptiveRun.of(self.config)
        self.statistics = ClusterStatistics(
            slo=self.config.slo, group_order=[g.name for g in self.config.groups]
        )

    @property
    def status(self) -> ClusterStatus:
        """Where it is in its life (changed by :meth:`move` only)."""
        return self._status

    # -- the state machine --------------------------------------------------------------------
    async def move(
        self,
        to: ClusterStatus,
        *,
        reason: str | None = None,
        fields: dict[str, Any] | None = None,
    ) -> bool:
        """The one place its status changes: to ``to``, with ``reason`` (stored, and the
        event's message) and further columns ``fields``, all in one transaction with the
        event, then in memory and on the monitor. False, and nothing written, when the
        lifecycle does not allow the move (:func:`~.lifecycle.cluster_may_become`)."""
        async with self._moving:  # moves are checked against the status the last one left
            if not cluster_may_become(self._status, to):
                return False
            row: dict[str, Any] = {"status": to.value, **(fields or {})}
            if reason is not None:
                row["reason"] = reason
            event: Event = (to.value, reason or f"cluster {to.value}", None)
            await self.journal.move(self.id, row, event=event)
            self._status = to
            self.live.set_status(to.value)
        await self.journal.notify()
        return True

    async def move_worker(
        self,
        index: int,
        to: WorkerState,
        *,
        fields: dict[str, Any] | None = None,
        why: str | None = None,
        unheard_since: float | None = None,
        only_from: WorkerState | None = None,
    ) -> bool:
        """The one place a worker's state changes: store (its columns ``fields`` and, for a
        worker lost, back, failed or cancelled, an event saying ``why``) in one transaction,
        then memory, then the monitor, under the worker's lock, so that concurrent moves are
        persisted in the order they were made, each once. Once the lock is held, the move is
        made only if it is in state ``only_from`` (when given) and, with ``unheard_since`` (its
        ``last_seen`` when it was found silent), only if nothing has come from it since: a
        heartbeat that came in meanwhile wins. False, and nothing written, when the move was
        refused (:func:`~.lifecycle.worker_may_become`)."""
        worker = self.workers[index]
        async with worker.moving:
            if not worker_may_become(worker.state, to):
                return False
            if only_from is not None and worker.state is not only_from:
                return False
            if unheard_since is not None and worker.last_seen != unheard_since:
                return False
            event = _worker_event(index, worker.state, to, why)
            row = {"state": to.value, **(fields or {})}
            await self.journal.move(self.id, row, worker=index, event=event)
            worker._state = to
        self.live.set_workers(self.worker_counts())
        await self.journal.notify()
        return True

    # -- reading --------------------------------------------------------------------------------
    def snapshot(self, now_s: float) -> ClusterSnapshot:
        """A frozen view of it at ``now_s`` (Unix epoch seconds): status, start, workers and
        the live tallies."""
        since = self.live.since_start().values()
        recent = self.live.window(now_s)
        lags = {g: t.hist["schedule_lag_s"].quantiles([0.99])[0] for g, t in recent.items()}
        return ClusterSnapshot(
            id=self.id,
            name=self.config.name,
            status=self._status,
            start_ns=self.start_ns,
            stopping=self.stop_requested_at is not None,
            workers=tuple(
                WorkerSnapshot(i, w.state, w.in_flight, w.loop_lag_p99_s)
                for i, w in enumerate(self.workers)
            ),
            succeeded=sum(t.succeeded for t in since),
            failed=sum(t.failed for t in since),
            schedule_lag_p99_s=MappingProxyType(lags),
            taken_at_s=now_s,
        )

    def worker_counts(self) -> dict[str, int]:
        """How many workers are in each state (the monitor's ``clientswarm_workers``)."""
        counts: dict[str, int] = {}
        for worker in self.workers:
            counts[worker.state.value] = counts.get(worker.state.value, 0) + 1
        return counts

    def outcome(self) -> tuple[ClusterStatus, str | None]:
        """The status it ends with once every worker is final, and why: ``failed`` when it
        must (:attr:`failure`) or was aborted (:attr:`aborted`), ``cancelled`` when stopped,
        ``completed`` when a worker completed, else ``failed``."""
        if self.failure is not None:
            return ClusterStatus.FAILED, self.failure
        if self.aborted is not None:
            return ClusterStatus.FAILED, self.aborted
        if self.stop_requested_at is not None:
            return ClusterStatus.CANCELLED, self.stop_reason
        states = [w.state for w in self.workers]
        if WorkerState.COMPLETED in states:
            return ClusterStatus.COMPLETED, None
        return ClusterStatus.FAILED, "no worker completed: " + ", ".join(s.value for s in states)

    def followed(self) -> SpawnerHandle | None:
        """The spawner's handle when it started anything to follow (and stop), else None."""
        return self.handle if self.handle is not None and self.handle.following else None

    def spawner_state_json(self) -> str:
        """What the store keeps of it for a restart: the base folder and, once submitted, the
        JSON form of the spawner's handle (what the cluster view shows as ``spawner_state``)."""
        handle = {} if self.handle is None else self.handle.to_json()
        return orjson.dumps({**handle, BASE_DIR_KEY: self.base_dir}).decode()

    def worker_of_client(self, client_id: int) -> int:
        """Index of the worker hosting ``client_id``."""
        return client_id % len(self.workers)

    def excuse_stall(self, now: float, interval_s: float) -> float:
        """When the watchdog, looking again at ``now``, last judged silence (``watched_at``)
        more than two ``interval_s`` ago, the service was stalled: the heartbeats sent
        meanwhile still wait unread, so the stall (the gap beyond one interval) is not counted
        as silence of any worker. Returns the stall in seconds (0 if none)."""
        if self.watched_at is None:
            return 0.0
        stall_s = now - self.watched_at - interval_s
        if stall_s <= interval_s:
            return 0.0
        for worker in self.workers:
            worker.last_seen = min(now, worker.last_seen + stall_s)
        return stall_s


def _worker_event(index: int, was: WorkerState, to: WorkerState, why: str | None) -> Event | None:
    """The event of a worker's move, if it is worth one: back from lost, or an end other than
    completing (registering, running and completing are the ordinary course)."""
    if was is WorkerState.LOST and to is WorkerState.RUNNING:
        return ("worker_back", f"worker {index} is heard from again", None)
    if to in (WorkerState.REGISTERED, WorkerState.RUNNING, WorkerState.COMPLETED):
        return None
    return (f"worker_{to.value}", f"worker {index}: {why or to.value}", None)
