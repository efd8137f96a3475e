"""What the service says about workers in a cluster's results."""

from __future__ import annotations

from pathlib import Path

from clientswarm.service.results import LOOP_LAG_BOUND_S, worker_warnings
from clientswarm.store import ClusterRecord, Store


def test_dead_lost_and_overloaded_workers_are_named(tmp_path: Path) -> None:
    store = Store.from_url_or_path(str(tmp_path / "s.sqlite"))
    store.create_all()
    store.create_cluster(
        ClusterRecord(
            id="c",
            name="n",
            status="running",
            config_json="{}",
            token_hash="h",
            spawner_kind="local",
        )
    )
    store.create_workers("c", 4)
    store.update_worker("c", 0, state="completed", loop_lag_p99_s=LOOP_LAG_BOUND_S / 2)
    store.update_worker("c", 1, state="lost", error="worker exited with code -9")
    store.update_worker("c", 2, state="completed", loop_lag_p99_s=0.021)
    store.update_worker("c", 3, state="failed", error="did not register within 120.0 s")
    assert worker_warnings(store, "c") == [
        "worker 1 lost: worker exited with code -9",
        "worker 2: event-loop lag p99 21 ms > 10 ms; its timings include client-side delay: "
        "use more workers or fewer clients per worker",
        "worker 3 failed: did not register within 120.0 s",
    ]
    store.close()


def test_live_warnings_name_lagging_workers_and_late_schedules() -> None:
    from clientswarm.service.results import live_warnings

    groups: dict[str, float | None] = {"chat": 0.2, "hello": 0.001, "idle": None}
    assert live_warnings([0.002, 0.03], groups) == [
        "worker 1: event-loop lag p99 30 ms > 10 ms: add workers or give it fewer clients",
        "group chat: schedule lag p99 200 ms > 50 ms in the last 10 s: the workers cannot keep "
        "up; add workers",
    ]
    assert live_warnings([0.001], {"hello": 0.001}) == []


def test_the_progress_line_says_when_the_numbers_are_not_trustworthy() -> None:
    from clientswarm.reports.progress import ProgressLine, progress_text

    line = ProgressLine("running", 3.0, 10.0, 5, 0, 2, 1, 1, 0, warning="worker 0: lag")
    assert "not trustworthy now: worker 0: lag" in progress_text(line).plain
    assert (
        "trustworthy"
        not in progress_text(ProgressLine("running", 3.0, 10.0, 5, 0, 2, 1, 1, 0)).plain
    )
