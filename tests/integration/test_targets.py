"""Several named targets under one run: each group's clients load the target it names, with that
target's own headers and credentials."""

from __future__ import annotations

import json
import os
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from service_process import CLI, ServiceProcess, simulator


def requests_seen(url: str) -> int:
    with urllib.request.urlopen(url + "/mock/stats", timeout=10) as answer:
        routes = json.loads(answer.read())["requests"]
    # Its /mock pages and the run's scrapes of its /metrics are not load.
    return sum(n for route, n in routes.items() if not route.startswith(("/mock", "/metrics")))


def two_targets(a: str, b: str) -> dict[str, Any]:
    """Group to-a sends 7 requests to target a, to-b 3 to target b (listed first)."""
    hello = {"kind": "hello"}
    return {
        "name": "ab",
        "preflight": False,  # every request a target sees is a client's (counted exactly)
        "targets": {"b": {"url": b, "api_key_env": "B_KEY"}, "a": {"url": a}},
        "groups": [
            {"name": "to-a", "target": "a", "interaction": hello, "stop": {"requests": 7}},
            {"name": "to-b", "target": "b", "interaction": hello, "stop": {"requests": 3}},
        ],
    }


def test_each_group_loads_the_target_it_names(tmp_path: Path) -> None:
    with simulator() as a, simulator() as b:
        path = tmp_path / "ab.json"
        path.write_text(json.dumps(two_targets(a, b)))
        out = tmp_path / "out"
        done = subprocess.run(
            [CLI, "run", str(path), "--output", str(out), "--samples-format", "jsonl"],
            env={**os.environ, "B_KEY": "k"},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr[-2000:]
        seen = requests_seen(a), requests_seen(b)
    assert seen == (7, 3)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["groups"]["to-a"]["requests"] == 7
    assert summary["groups"]["to-b"]["requests"] == 3
    # the target travels with every sample, and each target's statistics count what it saw
    rows = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert (
        sorted((r["group"], r["target"]) for r in rows) == [("to-a", "a")] * 7 + [("to-b", "b")] * 3
    )
    targets = summary["targets"]
    assert list(targets) == ["b", "a"]  # the configuration's order
    assert (targets["a"]["requests"], targets["b"]["requests"]) == seen
    assert (summary["groups"]["to-a"]["target"], summary["groups"]["to-b"]["target"]) == ("a", "b")
    lines = done.stdout.splitlines()
    assert sum(line.lstrip().startswith(("target a ", "target b ")) for line in lines) == 4


def test_the_service_labels_series_and_live_stats_by_target(tmp_path: Path) -> None:
    with (
        simulator() as a,
        simulator() as b,
        ServiceProcess(tmp_path / "svc", extra=("--allow-env", "B_KEY"), env={"B_KEY": "k"}) as svc,
    ):
        status, created = svc.api("POST", "/clusters", two_targets(a, b))
        assert status == 201, created
        assert svc.wait_status(created["id"])["status"] == "completed"
        seen = {"a": requests_seen(a), "b": requests_seen(b)}
        status, results = svc.api("GET", f"/clusters/{created['id']}/results")
        assert status == 200
        status, live = svc.api("GET", f"/monitor/clusters/{created['id']}/stats")
        assert status == 200
        _, metrics, _ = svc.request("GET", "/metrics", prefix="")
    assert {t: st["requests"] for t, st in results["targets"].items()} == seen == {"b": 3, "a": 7}
    since = live["since_start"]
    assert {g: st["target"] for g, st in since["groups"].items()} == {"to-a": "a", "to-b": "b"}
    assert {t: st["requests"] for t, st in since["targets"].items()} == seen
    families = {f.name: f for f in text_string_to_metric_families(metrics.decode())}
    ok = {
        (s.labels["target"], s.labels["group"]): s.value
        for s in families["clientswarm_requests"].samples
        if s.labels["outcome"] == "ok"
    }
    assert ok == {("a", "to-a"): 7, ("b", "to-b"): 3}
