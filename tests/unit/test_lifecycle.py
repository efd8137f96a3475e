"""The lifecycle of a cluster and of its workers: the values the API shows and the moves allowed."""

from __future__ import annotations

import itertools

import pytest

from clientswarm.service.lifecycle import (
    CLUSTER_MOVES,
    WORKER_MOVES,
    ClusterStatus,
    WorkerState,
    cluster_may_become,
    worker_may_become,
)
from clientswarm.store.records import UNFINISHED_STATUSES

C, W = ClusterStatus, WorkerState


def test_the_values_are_those_the_api_and_the_store_show() -> None:
    assert [s.value for s in C] == [
        "pending",
        "starting",
        "running",
        "completed",
        "failed",
        "cancelled",
    ]
    assert [s.value for s in W] == [
        "pending",
        "registered",
        "running",
        "completed",
        "failed",
        "cancelled",
        "lost",
    ]
    assert C("running") is C.RUNNING and f"{C.RUNNING}" == "running"


def test_every_state_has_its_moves_declared() -> None:
    assert set(CLUSTER_MOVES) == set(C) and set(WORKER_MOVES) == set(W)


def test_final_cluster_statuses_are_the_ones_the_store_does_not_recover() -> None:
    assert {s for s in C if s.final} == {C.COMPLETED, C.FAILED, C.CANCELLED}
    assert {s.value for s in C if not s.final} == set(UNFINISHED_STATUSES)


@pytest.mark.parametrize("current", list(C))
def test_a_cluster_never_moves_to_its_own_status_nor_out_of_a_final_one(
    current: ClusterStatus,
) -> None:
    assert not cluster_may_become(current, current)
    if current.final:
        assert not any(cluster_may_become(current, new) for new in C)


def test_a_cluster_goes_forward_only_and_completes_only_once_it_ran() -> None:
    order = [C.PENDING, C.STARTING, C.RUNNING]
    for earlier, later in itertools.combinations(order, 2):
        assert cluster_may_become(earlier, later)
        assert not cluster_may_become(later, earlier)
    assert [s for s in C if cluster_may_become(s, C.COMPLETED)] == [C.RUNNING]
    for unfinished in order:  # a spawner refused it, it was stopped, it could not recover
        assert cluster_may_become(unfinished, C.FAILED)
        assert cluster_may_become(unfinished, C.CANCELLED)


@pytest.mark.parametrize("current", list(W))
def test_a_worker_never_moves_to_its_own_state_nor_out_of_a_settled_one(
    current: WorkerState,
) -> None:
    assert not worker_may_become(current, current)
    if current.settled:
        assert not any(worker_may_become(current, new) for new in W)


def test_a_lost_worker_is_final_but_may_come_back_or_report_its_end() -> None:
    assert W.LOST.final and not W.LOST.settled
    assert worker_may_become(W.LOST, W.RUNNING)
    assert all(worker_may_become(W.LOST, end) for end in (W.COMPLETED, W.FAILED, W.CANCELLED))
    assert not worker_may_become(W.LOST, W.REGISTERED)


def test_only_a_worker_with_its_assignment_is_lost_and_nothing_goes_back_to_the_start() -> None:
    assert [s for s in W if worker_may_become(s, W.LOST)] == [W.RUNNING]
    assert not any(worker_may_become(s, W.PENDING) for s in W)
    assert [s for s in W if worker_may_become(s, W.REGISTERED)] == [W.PENDING]
    # Before its assignment it ends failed (its process ended, it was late) or cancelled.
    for early in (W.PENDING, W.REGISTERED):
        assert worker_may_become(early, W.FAILED) and worker_may_become(early, W.CANCELLED)


def test_the_progress_line_counts_live_and_broken_workers() -> None:
    assert {s for s in W if s.alive} == {W.REGISTERED, W.RUNNING}
    assert {s for s in W if s.broken} == {W.FAILED, W.LOST}
