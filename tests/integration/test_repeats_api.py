"""Repeat series on the service (``/api/v1/repeats``): the service and the simulator as real
processes, each run a real cluster with a real worker process."""

from __future__ import annotations

import itertools
import json
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from clientswarm.metrics.repeats import aggregate
from service_process import CLI, ServiceProcess, simulator

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

ENDED = ("completed", "failed", "cancelled")


@pytest.fixture(scope="module")
def target() -> Iterator[str]:
    with simulator("--ttft-ms", "5", "--itl-ms", "1", "--seed", "3") as url:
        yield url


@pytest.fixture
def service(tmp_path: Path) -> Iterator[ServiceProcess]:
    with ServiceProcess(tmp_path / "svc") as svc:
        yield svc


def config(url: str, requests: int = 4, seed: int = 11) -> dict[str, Any]:
    """A small cluster: one worker, one client, a few chat requests."""
    return {
        "name": "series",
        "seed": seed,
        "warmup_s": 0,
        "target": {"url": url, "model": "mock-model", "timeout_s": 10},
        "spawner": {"kind": "local", "workers": 1},
        "groups": [
            {
                "name": "chat",
                "clients": 1,
                "interaction": {"kind": "chat", "max_tokens": 4},
                "load": {"kind": "closed", "think_time_s": 0.05},
                "stop": {"requests": requests},
            }
        ],
    }


def wait_series(
    svc: ServiceProcess, series_id: str, statuses: tuple[str, ...] = ENDED, timeout_s: float = 60
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    view: dict[str, Any] = {}
    while time.monotonic() < deadline:
        status, view = svc.api("GET", f"/repeats/{series_id}")
        assert status == 200, view
        if view["status"] in statuses:
            return view
        time.sleep(0.2)
    raise AssertionError(f"series {series_id} still {view.get('status')} after {timeout_s} s")


def seeds_of_runs(svc: ServiceProcess, view: dict[str, Any]) -> list[int]:
    return [svc.api("GET", f"/clusters/{c}")[1]["config"]["seed"] for c in view["clusters"]]


def test_a_series_runs_its_clusters_one_after_another_and_aggregates_them(
    service: ServiceProcess, target: str
) -> None:
    status, created = service.api("POST", "/repeats?count=3&confidence=0.9", config(target))
    assert status == 201, created
    assert created["status"] == "running" and len(created["clusters"]) == 1
    view = wait_series(service, created["id"])
    assert view["status"] == "completed", view
    assert [r["status"] for r in view["runs"]] == ["completed"] * 3
    assert seeds_of_runs(service, view) == [11, 12, 13] == view["seeds"]
    clusters = [service.api("GET", f"/clusters/{c}")[1] for c in view["clusters"]]
    for before, after in itertools.pairwise(clusters):  # never two at once
        assert before["ended_at"] <= after["created_at"]
    summaries = [service.api("GET", f"/clusters/{c}/results")[1] for c in view["clusters"]]
    repeats = view["summary"]["repeats"]
    assert view["summary"]["name"] == "series"
    assert repeats["count"] == 3 and repeats["seeds"] == [11, 12, 13]
    assert repeats["runs"] == view["clusters"] and repeats["exit_codes"] == [0, 0, 0]
    assert repeats["confidence"] == 0.9 and repeats["same_seed"] is False
    expected = aggregate(summaries, 0.9)
    assert {"total": repeats["total"], "groups": repeats["groups"]} == expected
    assert repeats["total"]["requests"]["values"] == [4.0, 4.0, 4.0]
    status, listed = service.api("GET", "/repeats")
    assert status == 200 and [s["id"] for s in listed] == [created["id"]]
    # The client CLI follows a series and prints the aggregate as `run --repeat` does.
    spec = Path(service.data_dir) / "c.json"
    spec.write_text(json.dumps(config(target, requests=2)))
    done = subprocess.run(
        [
            CLI,
            "submit",
            str(spec),
            "--repeat",
            "2",
            "--same-seed",
            "--wait",
            "--service",
            service.url,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 runs, mean and 95% interval" in done.stdout
    series_id = done.stdout.split()[0]
    view = wait_series(service, series_id)
    assert seeds_of_runs(service, view) == [11, 11]


def test_compare_takes_series_ids(service: ServiceProcess, target: str) -> None:
    ids = []
    for requests in (3, 5):
        status, created = service.api("POST", "/repeats?count=2", config(target, requests))
        assert status == 201, created
        ids.append(created["id"])
    for series_id in ids:
        assert wait_series(service, series_id)["status"] == "completed"
    status, comparison = service.api("GET", f"/compare?clusters={ids[0]}&clusters={ids[1]}")
    assert status == 200, comparison
    assert any("2 repeated runs" in note for note in comparison["notes"])
    part = next(p for p in comparison["parts"] if p["group"] == "chat")
    p50 = next(row for row in part["latency"] if row["metric"] == "ttft_s.p50")
    means = [
        wait_series(service, i)["summary"]["repeats"]["groups"]["chat"]["ttft_s.p50"]["mean"]
        for i in ids
    ]
    assert p50["values"] == means  # the means across each series' runs
    assert p50["changes"][0]["ci"] is not None  # Welch's t interval on the runs' values
    status, body = service.api("GET", f"/compare?clusters={ids[0]}&clusters=nosuchid")
    assert status == 404, body
    done = subprocess.run(
        [CLI, "compare", *ids, "--service", service.url, "--json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    printed = next(p for p in json.loads(done.stdout)["parts"] if p["group"] == "chat")
    assert printed["latency"] == part["latency"]  # the CLI reads series as the API does


def test_a_stopped_series_makes_no_further_run(service: ServiceProcess, target: str) -> None:
    slow = config(target, requests=10_000)
    slow["groups"][0]["stop"] = {"duration_s": 30}
    status, created = service.api("POST", "/repeats?count=5", slow)
    assert status == 201, created
    service.wait_status(created["clusters"][0], ("running",))
    status, answer = service.api("POST", f"/repeats/{created['id']}/stop")
    assert status == 202, answer
    view = wait_series(service, created["id"], timeout_s=30)
    assert view["status"] == "cancelled" and view["reason"] == "stopped by the user"
    assert [r["status"] for r in view["runs"]] == ["cancelled"]
    assert view["summary"] is None  # the one run was the stopped one
    time.sleep(1.0)
    assert wait_series(service, created["id"])["clusters"] == view["clusters"]
    status, again = service.api("POST", f"/repeats/{created['id']}/stop")
    assert status == 409 and "already ended" in again["error"]["message"]


def test_bad_requests_and_unknown_ids(service: ServiceProcess, target: str) -> None:
    for query, field, value in (
        ("count=1", "count", "1"),
        ("count=101", "count", "101"),
        ("count=3&confidence=1.5", "confidence", "1.5"),
    ):
        status, body = service.api("POST", f"/repeats?{query}", config(target))
        assert status == 422, body
        line = body["error"]["problems"][0]
        assert line.startswith(f"query {field}:") and value in line, line
        assert "greater than or equal" in line or "less than or equal" in line, line
    status, body = service.api("POST", "/repeats", config(target))
    assert status == 422 and body["error"]["problems"][0].startswith("query count: Field required")
    bad = config(target)
    bad["groups"][0]["clients"] = 0
    status, body = service.api("POST", "/repeats?count=2", bad)
    assert status == 422 and "groups[0].clients: too small; got 0" in body["error"]["message"]
    status, body = service.api("GET", "/repeats/nosuchseries")
    assert status == 404 and "no repeat series with id 'nosuchseries'" in body["error"]["message"]
    assert service.api("POST", "/repeats/nosuchseries/stop")[0] == 404
    assert service.api("GET", "/repeats")[1] == []  # nothing was stored


def test_a_restarted_service_goes_on_with_the_series(tmp_path: Path, target: str) -> None:
    flags = ("--lost-after-s", "10")
    svc = ServiceProcess(tmp_path / "svc", extra=flags).start()
    slow = config(target, requests=10_000)
    slow["groups"][0]["stop"] = {"duration_s": 3}
    status, created = svc.api("POST", "/repeats?count=2", slow)
    assert status == 201, created
    svc.wait_status(created["clusters"][0], ("running",))
    assert svc.stop(signal.SIGKILL) == -9
    svc = ServiceProcess(tmp_path / "svc", port=svc.port, extra=flags).start()
    try:
        view = wait_series(svc, created["id"], timeout_s=60)
        assert view["status"] == "completed", view
        assert view["clusters"][0] == created["clusters"][0] and len(view["clusters"]) == 2
        assert [r["status"] for r in view["runs"]] == ["completed", "completed"]
        assert view["summary"]["repeats"]["count"] == 2
    finally:
        svc.stop()
