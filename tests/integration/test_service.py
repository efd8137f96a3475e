"""The service as a real process, its workers as real processes, the real simulator as target."""

from __future__ import annotations

import http.client
import io
import json
import os
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from service_process import CLI, ServiceProcess

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


@pytest.fixture(scope="module")
def target() -> Iterator[str]:
    """The simulator as a real process, shared by the tests of this module."""
    proc = subprocess.Popen(
        [CLI, "mock-server", "--port", "0", "--ttft-ms", "20", "--itl-ms", "5", "--seed", "5"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.startswith("mock-server listening on "), line
    yield line.split()[-1]
    proc.terminate()
    proc.wait(10)


@pytest.fixture
def service(tmp_path: Path) -> Iterator[ServiceProcess]:
    with ServiceProcess(tmp_path / "svc", extra=("--lost-after-s", "3")) as svc:
        yield svc


def config(url: str, *groups: dict[str, Any], workers: int = 2, **extra: Any) -> dict[str, Any]:
    return {
        "name": "svc-test",
        "seed": 3,
        "target": {"url": url, "model": "mock-model", "timeout_s": 10},
        "spawner": {"kind": "local", "workers": workers},
        "groups": list(groups),
        **extra,
    }


def hello(
    rate: float = 40, duration_s: float = 2, clients: int = 4, name: str = "hello"
) -> dict[str, Any]:
    return {
        "name": name,
        "clients": clients,
        "interaction": {"kind": "hello"},
        "load": {"kind": "open", "rate": rate, "arrival": "constant"},
        "stop": {"duration_s": duration_s},
    }


def chat(clients: int = 4, duration_s: float = 2, name: str = "chat") -> dict[str, Any]:
    return {
        "name": name,
        "clients": clients,
        "interaction": {"kind": "chat", "max_tokens": 8},
        "load": {"kind": "closed", "think_time_s": 0.05},
        "stop": {"duration_s": duration_s},
    }


def samples_of(svc: ServiceProcess, cluster_id: str) -> list[dict[str, Any]]:
    status, raw, _ = svc.request("GET", f"/clusters/{cluster_id}/samples?format=jsonl")
    assert status == 200
    return [json.loads(line) for line in raw.splitlines()]


def test_create_run_complete_and_results_match_the_samples(
    service: ServiceProcess, target: str
) -> None:
    yaml_text = (
        f"name: yaml-run\ntarget: {{url: '{target}', model: mock-model}}\n"
        "spawner: {kind: local, workers: 2}\nwarmup_s: 0.5\n"
        "groups:\n"
        "  - {name: chat, clients: 4, interaction: {kind: chat, max_tokens: 8},"
        " stop: {duration_s: 2}}\n"
        "  - {name: hello, clients: 2, interaction: {kind: hello},"
        " load: {kind: open, rate: 20, arrival: constant}, stop: {duration_s: 2}}\n"
    )
    status, created = service.api("POST", "/clusters", yaml_text, content_type="application/yaml")
    assert status == 201, created
    cluster_id = created["id"]
    view = service.wait_status(cluster_id)
    assert view["status"] == "completed", view
    assert [w["state"] for w in view["workers"]] == ["completed", "completed"]
    assert {g["name"]: g["client_states"] for g in view["groups"]} == {
        "chat": {"finished": 4},
        "hello": {"finished": 2},
    }
    status, results = service.api("GET", f"/clusters/{cluster_id}/results")
    assert status == 200
    rows = samples_of(service, cluster_id)
    measured = [r for r in rows if not r["warmup"]]
    assert results["total"]["requests"] == len(measured) > 40
    assert results["groups"]["hello"]["requests"] == 40
    assert results["groups"]["chat"]["succeeded"] == sum(
        1 for r in measured if r["group"] == "chat" and r["status"] == "ok"
    )
    cluster = results["cluster"]
    assert cluster["started_at"] < cluster["ended_at"]
    assert cluster == {
        "id": cluster_id,
        "name": "yaml-run",
        "status": "completed",
        "reason": None,
        "started_at": cluster["started_at"],
        "ended_at": cluster["ended_at"],
    }
    status, listed = service.api("GET", "/clusters?status=completed")
    assert [c["id"] for c in listed] == [cluster_id]
    status, clients = service.api("GET", f"/clusters/{cluster_id}/clients?group=chat")
    # Clients are counted as the summary counts: warm-up samples are left out of both.
    assert sum(c["succeeded"] for c in clients) == results["groups"]["chat"]["succeeded"]
    assert sum(c["failed"] for c in clients) == results["groups"]["chat"]["failed"]
    for fmt in ("csv", "parquet"):
        status, raw, headers = service.request(
            "GET", f"/clusters/{cluster_id}/samples?format={fmt}"
        )
        assert status == 200 and "attachment" in headers["content-disposition"]
        count = (
            pq.read_table(io.BytesIO(raw)).num_rows if fmt == "parquet" else raw.count(b"\n") - 1
        )
        assert count == len(rows)


def test_bad_config_is_a_422_that_names_the_field(service: ServiceProcess, target: str) -> None:
    bad = config(target, {**hello(), "clients": 0, "stopp": {}})
    status, body = service.api("POST", "/clusters", bad)
    assert status == 422
    problems = body["error"]["problems"]
    assert any(p.startswith("groups[0].clients: too small; got 0") for p in problems)
    assert any("unknown field 'stopp'" in p and "did you mean 'stop'" in p for p in problems)
    status, body = service.api("POST", "/validate", "name: [", content_type="application/yaml")
    assert status == 422 and "invalid YAML" in body["error"]["message"]
    (located,) = body["error"]["locations"]
    assert (located["line"], located["column"]) == (1, 8)  # where YAML found the list unclosed
    # Each problem with its line and column, for an editor (JSON is located as YAML is).
    text = json.dumps(bad, indent=2)
    status, body = service.api("POST", "/validate", text, content_type="application/json")
    assert status == 422
    lines = text.splitlines()
    by_message = {p["message"]: p for p in body["error"]["locations"]}
    assert set(by_message) == set(body["error"]["problems"])
    clients = next(p for m, p in by_message.items() if m.startswith("groups[0].clients"))
    assert '"clients": 0' in lines[clients["line"] - 1][clients["column"] - 1 :]
    stopp = next(p for m, p in by_message.items() if "stopp" in m)
    assert lines[stopp["line"] - 1][stopp["column"] - 1 :].startswith('"stopp"')
    status, body = service.api("GET", "/clusters/nope")
    assert status == 404 and body["error"]["message"] == "no cluster with id 'nope'"
    assert body == {"error": {"status": 404, "message": "no cluster with id 'nope'"}}
    status, body = service.api("GET", "/clusters?status=bogus")
    assert status == 422, body
    (problem,) = body["error"]["problems"]
    assert problem.startswith("query status: ") and "'completed'" in problem and "bogus" in problem


def test_stop_a_group_and_a_client_while_the_rest_continue(
    service: ServiceProcess, target: str
) -> None:
    cfg = config(target, chat(clients=4, duration_s=4), hello(rate=20, duration_s=4, clients=2))
    _, created = service.api("POST", "/clusters", cfg)
    cluster_id = created["id"]
    service.wait_status(cluster_id, ("running",))
    time.sleep(1.0)
    assert service.api("POST", f"/clusters/{cluster_id}/groups/hello/stop")[0] == 200
    assert service.api("POST", f"/clusters/{cluster_id}/clients/1/stop")[0] == 200
    stopped_at = time.time()
    view = service.wait_status(cluster_id)
    assert view["status"] == "completed"
    rows = samples_of(service, cluster_id)
    grace_ns = (stopped_at + 1.5) * 1e9  # a heartbeat carries the stop to the worker
    late_stopped = [
        r for r in rows if r["sent_ns"] > grace_ns and (r["group"] == "hello" or r["client"] == 1)
    ]
    assert late_stopped == []
    others = [
        r for r in rows if r["group"] == "chat" and r["client"] != 1 and r["sent_ns"] > grace_ns
    ]
    assert len(others) > 10  # the other chat clients kept going to the end
    _status, client = service.api("GET", f"/clusters/{cluster_id}/clients/1")
    assert client["state"] == "stopped"
    # A stopped client's request cut off in flight is no failure, there as in the summary.
    _status, results = service.api("GET", f"/clusters/{cluster_id}/results")
    for group in ("chat", "hello"):
        _status, clients = service.api("GET", f"/clusters/{cluster_id}/clients?group={group}")
        stats = results["groups"][group]
        assert sum(c["succeeded"] for c in clients) == stats["succeeded"], group
        assert sum(c["failed"] for c in clients) == stats["failed"] == 0, group
    mine = [r for r in rows if r["client"] == 1 and not r["warmup"]]
    measured = [r for r in mine if r["error_kind"] != "cancelled"]
    assert len(mine) - len(measured) <= 1  # at most its request in flight, cut off by the stop
    assert (client["succeeded"], client["failed"]) == (len(measured), 0)


def test_stop_a_cluster_and_delete_it_once_finished(service: ServiceProcess, target: str) -> None:
    status, created = service.api("POST", "/clusters", config(target, chat(duration_s=30)))
    cluster_id = created["id"]
    service.wait_status(cluster_id, ("running",))
    status, body = service.api("DELETE", f"/clusters/{cluster_id}")
    assert status == 409 and "stop it first" in body["error"]["message"]
    assert service.api("POST", f"/clusters/{cluster_id}/stop")[0] == 202
    view = service.wait_status(cluster_id, timeout_s=30)
    assert view["status"] == "cancelled" and view["reason"] == "stopped by the user"
    assert service.api("DELETE", f"/clusters/{cluster_id}")[0] == 204
    assert service.api("GET", f"/clusters/{cluster_id}")[0] == 404


def test_a_killed_worker_is_reported_lost_while_the_others_finish(
    service: ServiceProcess, target: str
) -> None:
    _status, created = service.api(
        "POST", "/clusters", config(target, hello(duration_s=4), workers=3)
    )
    cluster_id = created["id"]
    view = service.wait_status(cluster_id, ("running",))
    time.sleep(1.0)
    _, view = service.api("GET", f"/clusters/{cluster_id}")
    os.kill(view["workers"][1]["pid"], signal.SIGKILL)
    view = service.wait_status(cluster_id)
    states = [w["state"] for w in view["workers"]]
    assert view["status"] == "completed"
    assert states == ["completed", "lost", "completed"]
    assert "exited with code -9" in view["workers"][1]["error"]
    _, results = service.api("GET", f"/clusters/{cluster_id}/results")
    assert any("worker 1 lost" in w for w in results["warnings"])


def test_a_service_restart_mid_run_loses_no_acknowledged_sample(
    tmp_path: Path, target: str
) -> None:
    svc = ServiceProcess(tmp_path / "svc", extra=("--lost-after-s", "10")).start()
    _status, created = svc.api("POST", "/clusters", config(target, hello(rate=50, duration_s=5)))
    cluster_id = created["id"]
    svc.wait_status(cluster_id, ("running",))
    time.sleep(1.5)
    assert svc.stop(signal.SIGKILL) == -9  # the hardest restart: nothing is flushed
    time.sleep(1.0)
    svc = ServiceProcess(tmp_path / "svc", port=svc.port, extra=("--lost-after-s", "10")).start()
    try:
        view = svc.wait_status(cluster_id)
        assert view["status"] == "completed", view
        rows = samples_of(svc, cluster_id)
        reported = sum(w["samples"] for w in view["workers"])
        assert len(rows) == reported == 250  # every arrival of 5 s at 50/s, stored once
        assert len({(r["client"], r["scheduled_ns"]) for r in rows}) == 250
    finally:
        svc.stop()


def test_internal_api_rejects_missing_and_wrong_tokens(
    service: ServiceProcess, target: str
) -> None:
    ids = [
        service.api("POST", "/clusters", config(target, hello(duration_s=1)))[1]["id"]
        for _ in range(2)
    ]
    path = f"/clusters/{ids[0]}/workers/0/heartbeat"
    status, body = service.api("POST", path, {}, prefix="/internal/v1", token="")
    assert status == 401 and "bearer token" in body["error"]["message"]
    status, body = service.api("POST", path, {}, prefix="/internal/v1", token="not-the-token")
    assert status == 403
    for cluster_id in ids:
        service.wait_status(cluster_id)


def test_frontend_and_monitor_require_the_api_token(tmp_path: Path) -> None:
    with ServiceProcess(tmp_path / "svc", token="s3cret", extra=("--max-body-mb", "1")) as svc:
        for path, prefix in (("/clusters", "/api/v1"), ("/metrics", "")):
            assert svc.request("GET", path, token="", prefix=prefix)[0] == 401
            assert svc.request("GET", path, token="wrong", prefix=prefix)[0] == 403
            assert svc.request("GET", path, prefix=prefix)[0] == 200
        assert svc.request("GET", "/health", token="", prefix="")[0] == 200
        req = urllib.request.Request(svc.url + "/health", headers={"Origin": "http://any"})
        with urllib.request.urlopen(req, timeout=10) as response:
            assert response.headers["access-control-allow-origin"] is None  # CORS is off
        # Declare a body over the limit and send none of it: the refusal comes before the body.
        conn = http.client.HTTPConnection(svc.url.removeprefix("http://"), timeout=30)
        conn.putrequest("POST", "/api/v1/validate")
        conn.putheader("Authorization", "Bearer s3cret")
        conn.putheader("Content-Length", str(1024 * 1024 + 1))
        conn.endheaders()
        response = conn.getresponse()
        assert response.status == 413 and b"larger than the limit" in response.read()
        conn.close()
    assert "s3cret" not in (tmp_path / "svc" / "service.log").read_text()


def test_serving_beyond_loopback_without_a_token_is_refused(tmp_path: Path) -> None:
    done = subprocess.run(
        [CLI, "serve", "--host", "0.0.0.0", "--port", "0", "--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=30,
        env={k: v for k, v in os.environ.items() if k != "CLIENTSWARM_API_TOKEN"},
    )
    assert done.returncode == 2
    assert "refusing to serve on 0.0.0.0 without an API token" in done.stderr


def test_progress_events_catalogue_and_schema(service: ServiceProcess, target: str) -> None:
    status, created = service.api("POST", "/clusters", config(target, hello(duration_s=1)))
    status, raw, headers = service.request(
        "GET", f"/clusters/{created['id']}/progress?interval_s=0.2"
    )
    assert status == 200 and headers["content-type"].startswith("text/event-stream")
    events = [block for block in raw.decode().split("\n\n") if block.strip()]
    assert events[-1].startswith("event: end")
    last = json.loads(events[-1].split("data: ", 1)[1])
    assert last["status"] == "completed"
    assert any('"status":"running"' in e for e in events)
    running = [json.loads(e.split("data: ", 1)[1]) for e in events if '"status":"running"' in e]
    assert running and all(isinstance(view["trustworthy"], bool) for view in running)
    status, catalogue = service.api("GET", "/interactions")
    builtins = {
        *("hello", "http", "completion", "chat", "responses", "messages"),
        *("embedding", "conversation", "transcription"),
    }
    assert {i["kind"] for i in catalogue} == builtins
    chat_params = next(i for i in catalogue if i["kind"] == "chat")["parameters"]
    assert "max_tokens" in chat_params["properties"]
    status, schema = service.api("GET", "/schema")
    assert "groups" in schema["properties"]


def test_cli_client_commands(service: ServiceProcess, target: str, tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_text(json.dumps(config(target, hello(duration_s=1))))
    env = {**os.environ, "CLIENTSWARM_SERVICE": service.url}
    done = subprocess.run(
        [CLI, "submit", str(path), "--wait"], capture_output=True, text=True, env=env, timeout=60
    )
    assert done.returncode == 0, done.stderr
    cluster_id = done.stdout.splitlines()[0]
    assert "Throughput" in done.stdout
    done = subprocess.run([CLI, "status", cluster_id], capture_output=True, text=True, env=env)
    assert "completed" in done.stdout
    done = subprocess.run(
        [CLI, "results", cluster_id, "--json"], capture_output=True, text=True, env=env
    )
    assert json.loads(done.stdout)["total"]["requests"] == 40
    out = tmp_path / "s.csv"
    done = subprocess.run([CLI, "samples", cluster_id, "--format", "csv", "-o", str(out)], env=env)
    assert out.read_text().count("\n") == 41
    done = subprocess.run([CLI, "stop", cluster_id], capture_output=True, text=True, env=env)
    assert done.returncode == 1 and "has already finished" in done.stderr


def test_metrics_pass_promtool_and_prometheus_scrapes_them_via_http_sd(
    tmp_path: Path, target: str
) -> None:
    import asyncio

    from prometheus_server import prometheus_server, require

    promtool = require("promtool")
    with ServiceProcess(tmp_path / "svc", token="prom-token") as svc:
        _, created = svc.api("POST", "/clusters", config(target, hello(duration_s=2), chat()))
        cluster_id = created["id"]
        svc.wait_status(cluster_id)
        _, results = svc.api("GET", f"/clusters/{cluster_id}/results")
        status, exposition, headers = svc.request("GET", "/metrics", prefix="")
        assert status == 200 and headers["content-type"].startswith("text/plain")
        checked = subprocess.run(
            [promtool, "check", "metrics"], input=exposition, capture_output=True, timeout=30
        )
        assert checked.returncode == 0, checked.stdout + checked.stderr
        _, targets = svc.api("GET", "/monitor/targets")
        assert targets == [
            {
                "targets": [svc.url.removeprefix("http://")],
                "labels": {"__metrics_path__": "/metrics", "__scheme__": "http"},
            }
        ]

        async def scrape() -> float:
            sd_url = f"{svc.url}/api/v1/monitor/targets"
            async with prometheus_server(sd_url, tmp_path / "prom", token="prom-token") as prom:
                await prom.wait_for_target()
                query = f'sum(clientswarm_requests_total{{cluster="{cluster_id}"}})'
                return await prom.wait_for_value(query, results["total"]["requests"])

        (tmp_path / "prom").mkdir()
        assert asyncio.run(scrape()) == results["total"]["requests"] > 0


def test_the_service_runs_on_a_postgresql_store(
    tmp_path: Path, target: str, postgres_url: str
) -> None:
    svc = ServiceProcess(tmp_path / "svc", extra=("--store", postgres_url))
    with svc:
        _, created = svc.api(
            "POST", "/clusters", config(target, hello(duration_s=1), chat(duration_s=1))
        )
        view = svc.wait_status(created["id"])
        assert view["status"] == "completed"
        _, results = svc.api("GET", f"/clusters/{created['id']}/results")
        assert results["groups"]["hello"]["requests"] == 40
        assert len(samples_of(svc, created["id"])) == results["total"]["requests"]


def test_live_monitor_stats_and_cors(tmp_path: Path, target: str) -> None:
    origin = "http://frontend.example"
    with ServiceProcess(tmp_path / "svc", extra=("--cors-origin", origin)) as svc:
        _, created = svc.api("POST", "/clusters", config(target, hello(rate=20, duration_s=3)))
        cluster_id = created["id"]
        svc.wait_status(cluster_id, ("running",))
        time.sleep(1.5)
        status, live = svc.api("GET", f"/monitor/clusters/{cluster_id}/stats")
        assert status == 200
        assert live["status"] == "running" and live["window_s"] == 10
        recent = live["window_10s"]["total"]
        assert recent["requests"] > 0 and recent["request_rate"] == pytest.approx(20, rel=0.5)
        assert live["since_start"]["groups"]["hello"]["e2e_s"]["count"] > 0
        assert svc.api("GET", "/monitor/clusters/nope/stats")[0] == 404
        svc.wait_status(cluster_id)
        _, results = svc.api("GET", f"/clusters/{cluster_id}/results")
        _, live = svc.api("GET", f"/monitor/clusters/{cluster_id}/stats")
        assert live["since_start"]["total"]["requests"] == results["total"]["requests"] == 60
        req = urllib.request.Request(svc.url + "/api/v1/clusters", headers={"Origin": origin})
        with urllib.request.urlopen(req, timeout=10) as response:
            assert response.headers["access-control-allow-origin"] == origin
        req = urllib.request.Request(
            svc.url + "/api/v1/clusters", headers={"Origin": "http://evil"}
        )
        with urllib.request.urlopen(req, timeout=10) as response:
            assert response.headers["access-control-allow-origin"] is None
