"""What the service keeps in memory about one cluster while it is not finished."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
from dataclasses import dataclass, field

import orjson

from clientswarm.config.models import ClusterConfig
from clientswarm.metrics.live import LiveStats
from clientswarm.metrics.stats import ClusterStatistics
from clientswarm.protocol.spawning import SpawnerHandle

CLUSTER_ACTIVE = ("pending", "starting", "running")
CLUSTER_FINAL = ("completed", "failed", "cancelled")
WORKER_FINAL = ("completed", "failed", "cancelled", "lost")
WORKER_SETTLED = ("completed", "failed", "cancelled")
"""Worker states nothing changes any more; ``lost`` is final but not settled: a lost worker that
is heard from again is followed again, and one that reports its end takes that outcome."""


def worker_may_become(current: str, new: str) -> bool:
    """Whether a worker in state ``current`` may move to ``new`` (never to the state it is
    in: each transition is persisted once)."""
    if current == new or current in WORKER_SETTLED:
        return False
    return current != "lost" or new in ("running", *WORKER_SETTLED)


def hash_token(token: str) -> str:
    """The stored form of a cluster token (the token itself is never stored)."""
    return hashlib.sha256(token.encode()).hexdigest()


BASE_DIR_KEY = "base_dir"
"""The service's own key in a stored spawner state; every other key is the handle's."""


def token_matches(token: str, token_hash: str) -> bool:
    """Constant-time check of a presented token against a stored hash."""
    return hmac.compare_digest(hash_token(token), token_hash)


@dataclass
class WorkerLive:
    """The service's live view of one worker."""

    state: str = "pending"
    last_seen: float = field(default_factory=time.monotonic)
    in_flight: int = 0
    loop_lag_p99_s: float = 0.0
    """Its event loop's recent lag (p99), from its last heartbeat."""
    stop_all: bool = False
    stop_clients: set[int] = field(default_factory=set)
    moving: asyncio.Lock = field(default_factory=asyncio.Lock, repr=False, compare=False)
    """Held while a state transition is written (memory, store, event), so transitions are
    persisted in the order they were made."""

    @property
    def final(self) -> bool:
        """True once the worker can do nothing more."""
        return self.state in WORKER_FINAL


@dataclass
class ClusterState:
    """A cluster the service is following: config, token, workers, live statistics."""

    id: str
    config: ClusterConfig
    token_hash: str
    live: LiveStats
    status: str = "pending"
    start_ns: int | None = None
    created_mono: float = field(default_factory=time.monotonic)
    base_dir: str = "."
    """The folder its configuration's relative paths start from."""
    handle: SpawnerHandle | None = None
    """What its spawner's ``submit`` returned; ``None`` until it did."""
    workers: list[WorkerLive] = field(default_factory=list)
    stop_requested_at: float | None = None
    stop_reason: str | None = None
    spawner_stopped: bool = False
    exits_noted: set[int] = field(default_factory=set)
    explain_until: float | None = None
    """Until when the end of the cluster waits for the spawner to say who stopped a worker."""
    watched_at: float | None = None
    """When the watchdog last judged its workers' silence (monotonic): a gap much longer than
    its interval since is time the service itself did not run (paused, starved)."""
    settled: asyncio.Event = field(default_factory=asyncio.Event)
    """Set once the start time is fixed or a stop is requested: wakes the workers' held
    ``GET assignment`` calls, so every worker learns the start time at once."""

    statistics: ClusterStatistics = field(init=False, repr=False, compare=False)
    """The exact statistics of every batch committed while the service follows it (the final
    summary's, :meth:`ClusterManager._commit_batch`)."""

    def __post_init__(self) -> None:
        if not self.workers:
            self.workers = [WorkerLive() for _ in range(self.config.spawner.workers)]
        self.statistics = ClusterStatistics(
            slo=self.config.slo, group_order=[g.name for g in self.config.groups]
        )

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

    def counts_by_state(self) -> dict[str, int]:
        """How many workers are in each state."""
        counts: dict[str, int] = {}
        for worker in self.workers:
            counts[worker.state] = counts.get(worker.state, 0) + 1
        return counts
