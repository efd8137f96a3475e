"""Settings of the service: where it keeps things and how it follows its workers."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

from clientswarm.service.policy import OperatorPolicy

BATCH_INTERVAL_S = 0.5
"""How often a worker ships its samples, in a fleet small enough."""
MAX_BATCH_INTERVAL_S = 10.0
"""How long a worker of the largest fleets holds its samples at most (a full batch ships
at once)."""


@dataclass
class ServiceSettings:
    """How the service runs; ``advertise_url`` is how workers reach it (set once bound)."""

    data_dir: Path = field(default_factory=lambda: Path("clientswarm-data"))
    advertise_url: str = ""
    heartbeat_interval_s: float = 1.0
    lost_after_s: float = 10.0
    heartbeats_per_s: float = 500.0
    """The fleet's heartbeats a second, at most: a worker registering while more than this
    many run beats less often than every ``heartbeat_interval_s`` (each beat costs the
    service's one event loop about a millisecond; :meth:`heartbeat_interval_for`)."""
    batches_per_s: float = 200.0
    """The fleet's sample batches (or ticks) a second the service aims at: a worker of a
    large fleet ships every ``fleet / batches_per_s`` seconds instead of every 0.5 s (each
    commit is a transaction; :meth:`batch_interval_for`). A busy worker still ships as soon
    as a batch is full."""
    heartbeat_write_interval_s: float = 1.0
    """How often the workers' heartbeat columns are written to the store
    (:mod:`clientswarm.service.heartbeats`); heartbeats are answered from memory."""
    ingest_backlog_bytes: int = 256 * 1024 * 1024
    """Sample batches (their bodies' bytes) received and not yet committed, at most: beyond,
    a batch is answered 503 with Retry-After and the worker sends it again later
    (:mod:`clientswarm.service.ingest`)."""
    start_timeout_s: float = 120.0
    start_margin_s: float = 0.2
    """From the moment the last worker asked for its assignment to the shared start time:
    the held assignment calls of the others return at once, so this only covers building
    the clients (and the network to the nodes)."""
    assignment_hold_s: float = 5.0
    """How long ``GET assignment`` waits for the start before answering 202 "not yet"."""
    stop_grace_s: float = 15.0
    explain_wait_s: float = 6.0
    """How long the end of a cluster waits for the spawner to explain a worker that the
    scheduler stopped (scancel, a Job's deadline): a few of its query intervals."""
    watch_interval_s: float = 0.5
    preflight_on_workers: bool = False
    """Internal (tests): have worker 0 run the preflight of a ``local`` cluster too, as it
    does on Slurm and Kubernetes, instead of the service (see :mod:`.preflight`)."""
    python: str = sys.executable
    api_token: str | None = field(default=None, repr=False)
    cors_origins: list[str] = field(default_factory=list)
    max_body_bytes: int = 64 * 1024 * 1024
    policy: OperatorPolicy = field(default_factory=OperatorPolicy.unrestricted)
    """What a submitted configuration may reach (files, code, environment, targets, limits):
    the operator's flags on ``serve``; unrestricted for ``clientswarm run``."""

    def heartbeat_interval_for(self, fleet_workers: int) -> float:
        """The heartbeat interval to give a worker while ``fleet_workers`` workers (of every
        cluster followed) may beat: ``heartbeat_interval_s``, longer when the fleet would
        exceed ``heartbeats_per_s``, and never longer than a quarter of ``lost_after_s`` (so
        one late beat is not a lost worker)."""
        wanted = max(self.heartbeat_interval_s, fleet_workers / self.heartbeats_per_s)
        return min(wanted, self.lost_after_s / 4)

    def batch_interval_for(self, fleet_workers: int) -> float:
        """How often a worker ships its samples while ``fleet_workers`` workers run: every
        :data:`BATCH_INTERVAL_S`, longer when the fleet would send more than
        ``batches_per_s``, at most :data:`MAX_BATCH_INTERVAL_S`."""
        wanted = max(BATCH_INTERVAL_S, fleet_workers / self.batches_per_s)
        return min(wanted, MAX_BATCH_INTERVAL_S)

    @property
    def samples_dir(self) -> Path:
        """Where the workers of ``sample_path: files`` clusters write their samples (one
        folder per cluster inside): the data dir's ``samples``, as an absolute path, which
        workers on other hosts must reach at the same path (shared storage)."""
        return (self.data_dir / "samples").absolute()

    def log_dir(self, cluster_id: str) -> Path:
        """Where the workers of ``cluster_id`` write their logs."""
        return self.data_dir / "logs" / cluster_id
