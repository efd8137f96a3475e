"""Warnings about the workers themselves: deaths and overloaded event loops."""

from __future__ import annotations

from clientswarm.run.cli import LOOP_LAG_BOUND_S, worker_warnings
from clientswarm.run.orchestrator import RunOutcome, WorkerState


def test_dead_and_overloaded_workers_are_named() -> None:
    workers = [
        WorkerState(0, state="completed", loop_lag_p99_s=LOOP_LAG_BOUND_S / 2),
        WorkerState(1, state="failed", error="worker exited with code -9 before finishing"),
        WorkerState(2, state="completed", loop_lag_p99_s=0.021),
    ]
    lines = worker_warnings(RunOutcome("c", "completed", workers, 0))
    assert lines == [
        "worker 1 failed: worker exited with code -9 before finishing",
        "worker 2: event-loop lag p99 21 ms > 10 ms; its timings include client-side delay: "
        "use more workers or fewer clients per worker",
    ]
