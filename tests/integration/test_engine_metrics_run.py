"""Engine metrics during a run, end to end: real runs against the simulator scrape a small
Prometheus-format target written here (two replicas of one target, with known values), by the
service or by worker 0, and summarise what it exposed in ``summary.json``'s ``server`` block
and the time series; the simulator's own vLLM metrics agree with the clients' counts; a
metrics page that does not answer is an event, not a failure."""

from __future__ import annotations

import http.server
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from service_process import ServiceProcess, simulator

CLI = str(Path(sys.executable).parent / "clientswarm")

PAGE = """\
# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{{engine="0",model_name="tiny"}} {running}
# HELP vllm:num_requests_waiting Number of requests waiting to be processed.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{{engine="0",model_name="tiny"}} {waiting}
# HELP vllm:kv_cache_usage_perc KV-cache usage. 1 means 100 percent usage.
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{{engine="0",model_name="tiny"}} {kv}
# HELP vllm:num_preemptions_total Cumulative number of preemption from the engine.
# TYPE vllm:num_preemptions_total counter
vllm:num_preemptions_total{{engine="0",model_name="tiny"}} 7.0
"""


class _Page(http.server.BaseHTTPRequestHandler):
    body = b""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args: Any) -> None:
        pass


def _serve(running: float, waiting: float, kv: float) -> tuple[http.server.HTTPServer, str]:
    handler = type(
        "Page", (_Page,), {"body": PAGE.format(running=running, waiting=waiting, kv=kv).encode()}
    )
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/metrics"


@pytest.fixture
def replicas() -> Iterator[list[str]]:
    servers = [_serve(3, 2, 0.25), _serve(1, 0, 0.5)]
    yield [url for _, url in servers]
    for server, _ in servers:
        server.shutdown()
        server.server_close()


def _run(tmp_path: Path, metrics: str, extra: str = "") -> dict[str, Any]:
    config = tmp_path / "engine.yaml"
    config.write_text(
        "name: engine\n"
        f"target: {{url: 'http://127.0.0.1:1', model: mock-model, metrics: {metrics}}}\n"
        f"{extra}"
        "groups:\n"
        "  - name: chat\n"
        "    clients: 2\n"
        "    interaction: {kind: chat, max_tokens: 8}\n"
        "    stop: {duration_s: 2.5}\n"
    )
    out = tmp_path / "out"
    done = subprocess.run(
        [CLI, "run", str(config), "--mock", "-o", str(out)],
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    summary: dict[str, Any] = json.loads((out / "summary.json").read_text())
    summary["_timeseries"] = json.loads((out / "timeseries.json").read_text())
    return summary


@pytest.mark.parametrize("scraper", ["service", "worker"])
def test_the_replicas_pages_are_summarised_as_exposed(
    tmp_path: Path, replicas: list[str], scraper: str
) -> None:
    summary = _run(
        tmp_path,
        f"{{urls: [{replicas[0]}, {replicas[1]}], interval_s: 0.5, scraper: {scraper}}}",
        "spawner: {kind: local, workers: 2}\n",
    )
    server = summary["server"]["default"]
    assert server["engine"] == "vllm"
    assert server["urls"] == replicas
    assert server["scrapes"] >= 4  # 2.5 s at 0.5 s
    # The replicas of one target add up (3 + 1 running, 2 + 0 waiting); their cache usage
    # shares are averaged (0.25 and 0.5).
    assert server["running"] == {"p50": 4.0, "max": 4.0, "mean": 4.0}
    assert server["waiting"]["max"] == 2.0
    assert server["kv_cache_usage"]["max"] == pytest.approx(0.375)
    assert server["preemptions"] == 0.0  # a counter that did not move
    assert server["groups"]["chat"]["run"]["running"]["max"] == 4.0
    series = summary["_timeseries"]["server"]["default"]
    assert len(series["t_s"]) == len(series["running"]) >= 4
    assert set(series["running"]) == {4.0}


def test_the_simulators_own_metrics_agree_with_the_clients(tmp_path: Path) -> None:
    summary = _run(tmp_path, "true")  # the default: the target's own /metrics
    server, clients = summary["server"]["default"], summary["targets"]["default"]
    assert server["engine"] == "vllm"
    # A baseline scrape before the start and a last one after the end: the counters hold
    # exactly the run's tokens.
    assert server["prompt_tokens"] == clients["input_tokens"]
    assert server["generation_tokens"] == clients["output_tokens"]
    assert server["ttft_s"]["count"] == clients["requests"]
    gap = server["vs_client"]["ttft_s"]
    assert gap["client_mean"] == pytest.approx(clients["ttft_s"]["mean"])
    assert 0 <= gap["gap_mean_s"] < 0.05  # the same machine: well under 50 ms apart


def test_a_metrics_page_that_does_not_answer_is_an_event(tmp_path: Path) -> None:
    with simulator() as url, ServiceProcess(tmp_path / "svc") as service:
        body = {
            "name": "silent-metrics",
            "target": {
                "url": url,
                "model": "mock-model",
                "metrics": {"urls": ["http://127.0.0.1:9/metrics"], "interval_s": 0.5},
            },
            "groups": [
                {
                    "name": "chat",
                    "clients": 1,
                    "interaction": {"kind": "chat", "max_tokens": 4},
                    "stop": {"duration_s": 1.5},
                }
            ],
        }
        status, created = service.api("POST", "/clusters", body)
        assert status == 201, created
        assert service.wait_status(created["id"])["status"] == "completed"
        status, events = service.api("GET", f"/clusters/{created['id']}/events")
        found = [e for e in events if e["kind"] == "engine_metrics"]
        assert found, events
        assert found[0]["message"].startswith(
            "target default: engine metrics scrape failed: http://127.0.0.1:9/metrics: "
        )
        status, results = service.api("GET", f"/clusters/{created['id']}/results")
        assert "server" not in results  # nothing was scraped
