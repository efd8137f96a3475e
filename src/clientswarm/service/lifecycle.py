"""The statuses of a cluster and the states of its workers, and the moves allowed between them.

Declared once, here; the API and the store show the values. A cluster::

    pending ──▶ starting ──▶ running ──▶ completed
       │           │            │
       └───────────┴────────────┴──────▶ failed | cancelled

``pending`` (stored) → ``starting`` (the spawner took the workers) → ``running`` (the shared start
time is fixed; a worker may ask for it before the spawner has answered, so ``pending`` may move
to ``running`` at once) → ``completed`` (a worker completed), ``failed`` (with the reason) or
``cancelled`` (stopped). Only a cluster that ran can complete; any unfinished one can fail or be
cancelled. A final status never changes.

A worker: ``pending`` → ``registered`` → ``running`` (it has its assignment) → ``completed`` |
``failed`` | ``cancelled``, or ``lost`` while running (its process ended, or it fell silent).
``lost`` is final but not settled: a lost worker that is heard from again is ``running`` again,
and one that reports its end takes that outcome. One that has not received its assignment ends
``failed`` (its process ended, or it did not register in time) or ``cancelled`` (stopped
before the start), never ``lost``; nothing moves back to ``pending`` or ``registered``.

Every move is persisted once: no status moves to itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum

from clientswarm.store.records import UNFINISHED_STATUSES


class ClusterStatus(StrEnum):
    """Where a cluster is in its life (the ``status`` of the API and the store)."""

    PENDING = "pending"
    STARTING = "starting"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def final(self) -> bool:
        """True once the cluster has ended: its results are final."""
        return not CLUSTER_MOVES[self]


class WorkerState(StrEnum):
    """Where one worker is in its life (the ``state`` of the API and the store)."""

    PENDING = "pending"
    REGISTERED = "registered"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    LOST = "lost"

    @property
    def final(self) -> bool:
        """True once the worker can do nothing more for its cluster (``lost`` included)."""
        return self in _WORKER_FINAL

    @property
    def settled(self) -> bool:
        """True once nothing changes the worker any more (``lost`` may still come back)."""
        return not WORKER_MOVES[self]

    @property
    def alive(self) -> bool:
        """True while it has registered and not ended."""
        return self in (WorkerState.REGISTERED, WorkerState.RUNNING)

    @property
    def broken(self) -> bool:
        """True when it ended without finishing its work (failed or lost)."""
        return self in (WorkerState.FAILED, WorkerState.LOST)


_C = ClusterStatus
_ENDS = frozenset({_C.FAILED, _C.CANCELLED})
CLUSTER_MOVES: Mapping[ClusterStatus, frozenset[ClusterStatus]] = {
    _C.PENDING: frozenset({_C.STARTING, _C.RUNNING}) | _ENDS,
    _C.STARTING: frozenset({_C.RUNNING}) | _ENDS,
    _C.RUNNING: frozenset({_C.COMPLETED}) | _ENDS,
    _C.COMPLETED: frozenset(),
    _C.FAILED: frozenset(),
    _C.CANCELLED: frozenset(),
}
"""Every status a cluster in each status may move to (see the module docstring)."""

_W = WorkerState
_OUTCOMES = frozenset({_W.COMPLETED, _W.FAILED, _W.CANCELLED})
WORKER_MOVES: Mapping[WorkerState, frozenset[WorkerState]] = {
    _W.PENDING: frozenset({_W.REGISTERED, _W.RUNNING}) | _OUTCOMES,
    _W.REGISTERED: frozenset({_W.RUNNING}) | _OUTCOMES,
    _W.RUNNING: frozenset({_W.LOST}) | _OUTCOMES,
    _W.LOST: frozenset({_W.RUNNING}) | _OUTCOMES,
    _W.COMPLETED: frozenset(),
    _W.FAILED: frozenset(),
    _W.CANCELLED: frozenset(),
}
"""Every state a worker in each state may move to (see the module docstring)."""

_WORKER_FINAL = _OUTCOMES | {_W.LOST}


def cluster_may_become(current: ClusterStatus, new: ClusterStatus) -> bool:
    """Whether a cluster in status ``current`` may move to ``new``."""
    return new in CLUSTER_MOVES[current]


def worker_may_become(current: WorkerState, new: WorkerState) -> bool:
    """Whether a worker in state ``current`` may move to ``new``."""
    return new in WORKER_MOVES[current]


if set(UNFINISHED_STATUSES) != {s.value for s in ClusterStatus if not s.final}:
    # The store recovers the clusters of these statuses on a restart: they must be the
    # unfinished ones, or a restart would leave some clusters unfollowed.
    raise ImportError(
        f"the store's UNFINISHED_STATUSES {UNFINISHED_STATUSES} are not the unfinished "
        f"cluster statuses {[s.value for s in ClusterStatus if not s.final]}"
    )


__all__ = [
    "CLUSTER_MOVES",
    "WORKER_MOVES",
    "ClusterStatus",
    "WorkerState",
    "cluster_may_become",
    "worker_may_become",
]
