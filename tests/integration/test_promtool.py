"""The Prometheus exposition and HTTP SD, checked by the real ``promtool`` and ``prometheus``.

A small aiohttp server on loopback stands in for the service's monitor routes: it serves the
HTTP SD answer and ``/metrics`` over a LiveRegistry fed with synthetic samples, both behind a
bearer token. A real Prometheus discovers it, scrapes it, and answers PromQL about it.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample as PromSample

from clientswarm.metrics.sample import Sample
from clientswarm.service.prometheus import (
    CONTENT_TYPE,
    LATENCY_BUCKETS_S,
    LiveRegistry,
    http_sd_targets,
    render_metrics,
)
from prometheus_server import prometheus_server, require

pytestmark = pytest.mark.timeout(60)

TOKEN = "s3cret-token"
SD_PATH = "/api/v1/monitor/targets"


def _samples(n_ok: int, n_err: int, group: str, t0_s: float) -> list[Sample]:
    """Successful streamed chats (TTFT 50 ms, 10 tokens) then failed requests, one per 10 ms."""
    out = []
    for i in range(n_ok + n_err):
        sent = int((t0_s + i * 0.01) * 1e9)
        if i < n_ok:
            out.append(
                Sample(
                    group=group, client=i % 4, worker=0, name="chat", scheduled_ns=sent,
                    sent_ns=sent, end_ns=sent + 500_000_000, first_token_ns=sent + 50_000_000,
                    last_token_ns=sent + 500_000_000, input_tokens=20, output_tokens=10,
                    itl_s=[0.05] * 9,
                )
            )  # fmt: skip
        else:
            out.append(
                Sample(
                    group=group, client=i % 4, worker=0, name="chat", scheduled_ns=sent,
                    sent_ns=sent, end_ns=sent + 1_000_000, status="error",
                    error_kind="http_429", http_status=429,
                )
            )  # fmt: skip
    return out


def _fed_registry() -> tuple[LiveRegistry, int]:
    """Two clusters, three groups, plus excluded samples; returns it and the measured count."""
    now = time.time()
    registry = LiveRegistry()
    a = registry.get_or_create("c-a", "chat-load", status="running")
    a.add(_samples(30, 4, "chat", now - 5), now)
    a.add(_samples(7, 0, "hello", now - 5), now)
    excluded = _samples(5, 0, "chat", now - 9)
    for s in excluded[:3]:
        s.warmup = True
    for s in excluded[3:]:
        s.status, s.error_kind = "error", "cancelled"
    a.add(excluded, now)
    a.set_workers({"running": 2, "lost": 1})
    a.set_active_clients("chat", 16)
    a.set_active_clients("hello", 1)
    b = registry.get_or_create("c-b", "other", status="completed")
    b.add(_samples(10, 2, "chat", now - 3), now)
    return registry, 30 + 4 + 7 + 10 + 2


def _families(registry: LiveRegistry) -> dict[str, list[PromSample]]:
    """The exposition parsed back: family name → its samples."""
    text = render_metrics(registry).decode()
    return {f.name: f.samples for f in text_string_to_metric_families(text)}


def _values(samples: list[PromSample], key: str, **labels: str) -> dict[str, float]:
    """Values of the samples that carry ``labels``, by their ``key`` label."""
    return {
        s.labels[key]: s.value
        for s in samples
        if all(s.labels.get(k) == v for k, v in labels.items())
    }


def test_exposition_parses_with_the_documented_names() -> None:
    registry, measured = _fed_registry()
    families = _families(registry)
    names = ("requests", "errors", "excluded_requests", "output_tokens", "input_tokens")
    names += ("ttft_seconds", "itl_seconds", "tpot_seconds", "e2e_seconds", "schedule_lag_seconds")
    names += ("active_clients", "workers", "clusters")
    assert {f"clientswarm_{n}" for n in names} <= set(families)

    requests = families["clientswarm_requests"]
    assert sum(s.value for s in requests) == measured
    assert all(s.labels["cluster_name"] for s in requests)
    assert _values(requests, "group", cluster="c-a", outcome="ok") == {"chat": 30, "hello": 7}
    assert _values(requests, "group", cluster="c-b", outcome="ok") == {"chat": 10}
    errors = families["clientswarm_errors"]
    assert sum(s.value for s in errors) == 6 and {s.labels["kind"] for s in errors} == {"http_429"}
    excluded = _values(families["clientswarm_excluded_requests"], "reason", cluster="c-a",
                       group="chat")  # fmt: skip
    assert excluded == {"warmup": 3, "cancelled": 2}

    ttft = [s for s in families["clientswarm_ttft_seconds"] if s.name.endswith("_bucket")]
    buckets = _values(ttft, "le", cluster="c-a", group="chat")
    assert len(buckets) == len(LATENCY_BUCKETS_S) + 1
    assert (buckets["0.04"], buckets["0.05"], buckets["+Inf"]) == (0, 30, 30)

    assert _values(families["clientswarm_clusters"], "status") == {"running": 1, "completed": 1}
    assert _values(families["clientswarm_workers"], "state") == {"running": 2, "lost": 1}
    assert _values(families["clientswarm_active_clients"], "group") == {"chat": 16, "hello": 1}


def test_removed_cluster_leaves_the_exposition() -> None:
    registry, _ = _fed_registry()
    registry.remove("c-b")
    registry.remove("never-there")
    assert 'cluster="c-b"' not in render_metrics(registry).decode()
    assert "c-b" not in registry and len(registry) == 1


def test_http_sd_targets_format() -> None:
    assert http_sd_targets("http://127.0.0.1:8080") == [
        {
            "targets": ["127.0.0.1:8080"],
            "labels": {"__metrics_path__": "/metrics", "__scheme__": "http"},
        }
    ]
    [group] = http_sd_targets("https://monitor.example/clientswarm/", extra_labels={"env": "ci"})
    assert group["targets"] == ["monitor.example:443"]
    assert group["labels"] == {
        "__metrics_path__": "/clientswarm/metrics",
        "__scheme__": "https",
        "env": "ci",
    }
    assert http_sd_targets("http://[::1]:9000")[0]["targets"] == ["[::1]:9000"]
    with pytest.raises(ValueError, match="absolute http"):
        http_sd_targets("127.0.0.1:8080")
    with pytest.raises(ValueError, match="label name"):
        http_sd_targets("http://h:1", extra_labels={"bad-name": "x"})


@pytest.mark.parametrize("empty", [False, True], ids=["fed", "empty"])
def test_promtool_check_metrics(empty: bool) -> None:
    promtool = require("promtool")
    registry = LiveRegistry() if empty else _fed_registry()[0]
    result = subprocess.run(
        [promtool, "check", "metrics"],
        input=render_metrics(registry),
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, (result.stdout + result.stderr).decode()


@dataclass
class _Monitor:
    """The stand-in monitor server and what it has seen."""

    base_url: str
    hits: dict[str, int] = field(default_factory=lambda: {"sd": 0, "metrics": 0, "denied": 0})


@pytest.fixture
async def monitor() -> AsyncIterator[tuple[_Monitor, int]]:
    registry, measured = _fed_registry()
    state = _Monitor("")

    def authorized(request: web.Request) -> None:
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            state.hits["denied"] += 1
            raise web.HTTPUnauthorized(text="missing or wrong bearer token")

    async def targets(request: web.Request) -> web.Response:
        authorized(request)
        state.hits["sd"] += 1
        return web.json_response(http_sd_targets(state.base_url, extra_labels={"service": "cs"}))

    async def metrics(request: web.Request) -> web.Response:
        authorized(request)
        state.hits["metrics"] += 1
        return web.Response(body=render_metrics(registry), headers={"Content-Type": CONTENT_TYPE})

    app = web.Application()
    app.router.add_get(SD_PATH, targets)
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    state.base_url = f"http://{host}:{port}"
    try:
        yield state, measured
    finally:
        await runner.cleanup()


async def test_prometheus_discovers_and_scrapes_via_http_sd(
    monitor: tuple[_Monitor, int], tmp_path: Path
) -> None:
    server, measured = monitor
    async with prometheus_server(server.base_url + SD_PATH, tmp_path, token=TOKEN) as prom:
        target = await prom.wait_for_target(timeout_s=25)
        assert target["labels"]["service"] == "cs"
        assert target["scrapeUrl"] == server.base_url + "/metrics"
        total = await prom.wait_for_value("sum(clientswarm_requests_total)", measured)
        assert total == measured
        assert await prom.query_value('sum(clientswarm_errors_total{kind="http_429"})') == 6
        by_cluster = await prom.query("sum by (cluster) (clientswarm_output_tokens_total)")
        tokens = {r["metric"]["cluster"]: float(r["value"][1]) for r in by_cluster}
        assert tokens == {"c-a": 370.0, "c-b": 100.0}
        p50 = await prom.query_value(
            "histogram_quantile(0.5, sum by (le) (clientswarm_e2e_seconds_bucket))"
        )
        assert p50 is not None and 0.3 < p50 <= 0.5  # every E2E is 0.5 s, in the (0.3, 0.5] bucket
    assert server.hits["sd"] >= 1 and server.hits["metrics"] >= 1
    assert server.hits["denied"] == 0
