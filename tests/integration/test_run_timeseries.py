"""The time series of a real run: the service's ``…/timeseries`` route and ``run``'s
timeseries.json, against the simulator at a known open-loop rate."""

from __future__ import annotations

import json
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from service_process import CLI, ServiceProcess

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

RATE = 20


def hello_group(duration_s: float) -> str:
    return (
        f"  - {{name: hello, clients: 2, interaction: {{kind: hello}},"
        f" load: {{kind: open, rate: {RATE}, arrival: constant}},"
        f" stop: {{duration_s: {duration_s}}}}}\n"
    )


def check_rate(doc: dict[str, Any], summary: dict[str, Any], full_buckets: int) -> None:
    """Every full bucket completed about RATE requests; all of them add up to the summary."""
    assert doc["bucket_s"] == 1.0
    assert doc["start"].endswith("Z")
    g = doc["groups"]["hello"]
    rates = g["requests_per_s"]
    assert len(rates) >= full_buckets
    for k in range(full_buckets):
        assert abs(rates[k] - RATE) <= 2, rates
    assert sum(rates) == summary["groups"]["hello"]["requests"]
    assert all(lag is not None for lag in g["schedule_lag_s_p50"][:full_buckets])
    assert all(0 < x <= 2 for x in g["active_clients"][:full_buckets])
    assert g["errors"] == {}
    assert len(g["in_flight"]) == len(g["t_s"]) == len(rates)


@pytest.fixture
def target() -> Iterator[str]:
    proc = subprocess.Popen(
        [CLI, "mock-server", "--port", "0", "--ttft-ms", "5", "--itl-ms", "2", "--seed", "5"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.startswith("mock-server listening on "), line
    yield line.split()[-1]
    proc.terminate()
    proc.wait(10)


def test_the_api_serves_per_second_buckets_at_the_set_rate(tmp_path: Path, target: str) -> None:
    config = (
        f"name: ts\nseed: 1\ntarget: {{url: '{target}', model: mock-model}}\n"
        "spawner: {kind: local, workers: 1}\ngroups:\n" + hello_group(2)
    )
    with ServiceProcess(tmp_path / "svc", token="ts-token") as service:
        assert service.api("GET", "/clusters/nope/timeseries")[0] == 404
        status, created = service.api("POST", "/clusters", config, content_type="application/yaml")
        assert status == 201, created
        view = service.wait_status(created["id"])
        assert view["status"] == "completed", view
        status, doc = service.api("GET", f"/clusters/{created['id']}/timeseries")
        assert status == 200, doc
        _, summary = service.api("GET", f"/clusters/{created['id']}/results")
        check_rate(doc, summary, full_buckets=2)
        assert service.api("GET", f"/clusters/{created['id']}/timeseries")[1] == doc
        unauthorised = service.request("GET", f"/clusters/{created['id']}/timeseries", token="")
        assert unauthorised[0] == 401
        with urllib.request.urlopen(service.url + "/openapi.json", timeout=30) as response:
            openapi = json.loads(response.read())
        route = openapi["paths"]["/api/v1/clusters/{cluster_id}/timeseries"]["get"]
        schema = route["responses"]["200"]["content"]["application/json"]["schema"]
        assert schema["$ref"] == "#/components/schemas/TimeSeriesDocument"
        assert "ttft_s_p99" in openapi["components"]["schemas"]["GroupSeries"]["properties"]


def test_run_writes_timeseries_json_next_to_the_summary(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(
        "name: ts\nseed: 1\ntarget: {url: 'http://127.0.0.1:1', model: mock-model}\n"
        "spawner: {kind: local, workers: 1}\ngroups:\n" + hello_group(3)
    )
    out = tmp_path / "out"
    done = subprocess.run(
        [CLI, "run", str(config), "--mock", "-o", str(out), "--samples-format", "jsonl"],
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads((out / "summary.json").read_text())
    check_rate(json.loads((out / "timeseries.json").read_text()), summary, full_buckets=3)
