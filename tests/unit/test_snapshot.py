"""What the readers make of a cluster's frozen snapshot: ``run``'s progress line and the
``/progress`` event."""

from __future__ import annotations

from types import MappingProxyType

from clientswarm.run.progress import ProgressLine, progress_line
from clientswarm.service.lifecycle import ClusterStatus, WorkerState
from clientswarm.service.snapshot import ClusterSnapshot, WorkerSnapshot
from clientswarm.service.views import progress_view
from clientswarm.store import ClusterRecord

START_S = 1_700_000_000.0


def snapshot(
    *states: WorkerState, lag_s: float = 0.001, late_s: float | None = None
) -> ClusterSnapshot:
    return ClusterSnapshot(
        id="c1",
        name="demo",
        status=ClusterStatus.RUNNING,
        start_ns=int(START_S * 1e9),
        stopping=False,
        workers=tuple(WorkerSnapshot(i, s, 2, lag_s) for i, s in enumerate(states)),
        succeeded=40,
        failed=2,
        schedule_lag_p99_s=MappingProxyType({"chat": late_s}),
        taken_at_s=START_S + 12.5,
    )


def test_the_progress_line_reads_the_snapshot() -> None:
    states = (WorkerState.REGISTERED, WorkerState.RUNNING, WorkerState.LOST, WorkerState.FAILED)
    line = progress_line(snapshot(*states, lag_s=0.05), planned_s=30.0)
    assert line == ProgressLine(
        status="running",
        elapsed_s=12.5,
        planned_s=30.0,
        succeeded=40,
        failed=2,
        in_flight=8,
        workers_running=2,
        workers_total=4,
        workers_failed=2,
        warning=line.warning,
    )
    assert line.warning is not None and line.warning.startswith("worker 0: event-loop lag")


def test_the_progress_line_of_a_cluster_no_longer_followed_says_finishing() -> None:
    assert progress_line(None, None) == ProgressLine("finishing", 0.0, None, 0, 0, 0, 0, 0, 0)


def test_a_progress_event_keeps_its_shape() -> None:
    record = ClusterRecord(
        id="c1",
        name="demo",
        status="running",
        reason=None,
        config_json="{}",
        token_hash="",
        spawner_kind="local",
        spawner_state_json=None,
        created_at=START_S - 1,
        started_at=START_S,
        finished_at=None,
        start_ns=int(START_S * 1e9),
        summary_json=None,
    )
    live = {"window_10s": {"groups": {}}}
    view = progress_view(record, snapshot(WorkerState.RUNNING, late_s=0.5), live, START_S + 2)
    assert view == {
        "id": "c1",
        "status": "running",
        "reason": None,
        "elapsed_s": 2.0,
        "workers": {"running": 1},
        "in_flight": 2,
        "live": live,
        "warnings": view["warnings"],
        "trustworthy": False,
    }
    assert [w.split(":")[0] for w in view["warnings"]] == ["group chat"]
    finished = progress_view(record, None, None, START_S + 2)
    assert set(finished) == {"id", "status", "reason", "elapsed_s"}
