"""Frozen views of what the service follows, for everything that only reads it.

``GET …/progress``, ``GET /health`` and ``clientswarm run``'s progress line read these, never
the manager's live objects: a snapshot is taken at one moment, and nothing it holds changes
afterwards (:meth:`~clientswarm.service.reads.ClusterReads.snapshot`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from clientswarm.service.lifecycle import ClusterStatus, WorkerState
from clientswarm.service.results import live_warnings


@dataclass(frozen=True, slots=True)
class WorkerSnapshot:
    """One worker at the moment of the snapshot, as its last heartbeat told."""

    index: int
    state: WorkerState
    in_flight: int
    loop_lag_p99_s: float


@dataclass(frozen=True, slots=True)
class ClusterSnapshot:
    """A cluster the service follows, at ``taken_at_s`` (Unix epoch seconds)."""

    id: str
    name: str
    status: ClusterStatus
    start_ns: int | None
    """The shared start time once it is fixed."""
    stopping: bool
    """Whether a stop of the whole cluster was asked for."""
    workers: tuple[WorkerSnapshot, ...]
    succeeded: int
    """Measured requests that succeeded since the start, every group."""
    failed: int
    """Measured requests that failed since the start, every group."""
    schedule_lag_p99_s: Mapping[str, float | None]
    """Each group's schedule lag p99 over the last 10 s (None without samples)."""
    taken_at_s: float

    @property
    def in_flight(self) -> int:
        """Requests in flight on every worker."""
        return sum(w.in_flight for w in self.workers)

    @property
    def elapsed_s(self) -> float:
        """Seconds since the shared start (0 before it)."""
        if self.start_ns is None:
            return 0.0
        return max(0.0, self.taken_at_s - self.start_ns / 1e9)

    def worker_counts(self) -> dict[str, int]:
        """How many workers are in each state."""
        counts: dict[str, int] = {}
        for worker in self.workers:
            counts[worker.state.value] = counts.get(worker.state.value, 0) + 1
        return counts

    def warnings(self) -> list[str]:
        """Why its numbers are not trustworthy right now (empty: they are)."""
        return live_warnings(
            [w.loop_lag_p99_s for w in self.workers], dict(self.schedule_lag_p99_s)
        )


@dataclass(frozen=True, slots=True)
class ServiceHealth:
    """What ``GET /health`` says: the clusters followed and whether the store works."""

    active_clusters: int
    store: dict[str, Any]
    """The store's health without the database's own message (``StoreHealth.view``)."""

    @property
    def ok(self) -> bool:
        """Whether the store works."""
        return bool(self.store["ok"])


__all__ = ["ClusterSnapshot", "ServiceHealth", "WorkerSnapshot"]
