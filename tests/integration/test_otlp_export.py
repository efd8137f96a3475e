"""Telemetry export over OTLP/HTTP, end to end: a real ``clientswarm run --mock`` exports to
an OTLP receiver written in the tests (:mod:`otlp_receiver`, decoding with
``opentelemetry-proto``); what it received agrees with the run's own summary and samples; an
endpoint that does not answer is an event, and the run completes all the same; samples whose
export failed go with the next export."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from clientswarm.config.loader import validate_config_data
from clientswarm.metrics.columns import SampleColumns
from clientswarm.metrics.live import LiveStats
from clientswarm.metrics.sample import Sample
from clientswarm.service.telemetry import ClusterExport
from otlp_receiver import OtlpReceiver, attributes, metric_points
from service_process import ServiceProcess, simulator

pytestmark = pytest.mark.slow

CLI = str(Path(sys.executable).parent / "clientswarm")

CONFIG = """\
name: otel
warmup_s: 0.5
target: {{url: "http://127.0.0.1:1", model: mock-model}}
spawner: {{kind: local, workers: 2}}
telemetry:
  otlp:
    endpoint: {endpoint}
    headers: {{X-Scope-OrgID: bench}}
    headers_from_env: {{Authorization: OTLP_TEST_AUTH}}
    interval_s: 0.5
    resource: {{deployment.environment: test}}
groups:
  - name: chat
    clients: 3
    interaction: {{kind: chat, max_tokens: 8}}
    stop: {{duration_s: 2}}
  - name: embed
    interaction: {{kind: embedding}}
    load: {{kind: open, rate: 10, arrival: constant}}
    stop: {{duration_s: 2}}
"""


async def _run(tmp_path: Path, endpoint: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    config = tmp_path / "otel.yaml"
    config.write_text(CONFIG.format(endpoint=endpoint))
    out = tmp_path / "out"
    proc = await asyncio.create_subprocess_exec(
        *(CLI, "run", str(config), "--mock", "-o", str(out), "--samples-format", "jsonl"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "OTLP_TEST_AUTH": "Bearer s3cret"},
    )
    try:
        output, _ = await asyncio.wait_for(proc.communicate(), 90)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, output.decode()[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    return summary, samples


def _by_group(points: list[Any], **where: str) -> dict[str, Any]:
    """The data points of one metric by group (those whose attributes match ``where``)."""
    found = {}
    for point in points:
        attrs = attributes(point.attributes)
        if all(attrs.get(key) == value for key, value in where.items()):
            found[attrs["clientswarm.group"]] = point
    return found


async def test_a_run_exports_its_metrics_and_one_span_per_sample(tmp_path: Path) -> None:
    async with OtlpReceiver() as otlp:
        summary, samples = await _run(tmp_path, otlp.url)

    # Every interval (0.5 s over the 2.5 s run) and a last time at the end.
    assert len(otlp.metrics) >= 4
    assert all(h["X-Scope-OrgID"] == "bench" for h in otlp.headers)
    assert all(h["Authorization"] == "Bearer s3cret" for h in otlp.headers)
    (resource,) = [r.resource for r in otlp.metrics[-1].resource_metrics]
    shown = attributes(resource.attributes)
    assert shown["service.name"] == "clientswarm"
    assert shown["clientswarm.cluster.name"] == "otel"
    assert shown["clientswarm.cluster.id"] == summary["cluster"]["id"]
    assert shown["deployment.environment"] == "test"

    # The last export holds the run's final counts, as the summary has them.
    points = metric_points(otlp.metrics[-1])
    ok = _by_group(points["clientswarm.requests"], **{"clientswarm.outcome": "ok"})
    failed = _by_group(points["clientswarm.requests"], **{"clientswarm.outcome": "error"})
    output = _by_group(points["clientswarm.tokens"], **{"gen_ai.token.type": "output"})
    ttft = _by_group(points["gen_ai.client.operation.time_to_first_chunk"])
    e2e = _by_group(points["gen_ai.client.operation.duration"])
    for name, group in summary["groups"].items():
        assert ok[name].as_int + failed[name].as_int == group["requests"] > 0, name
        assert ok[name].as_int == group["succeeded"], name
        assert output[name].as_int == group["output_tokens"], name
        assert ttft[name].count == group["ttft_s"]["count"], name
        assert e2e[name].count == group["e2e_s"]["count"] == group["succeeded"], name
        assert e2e[name].sum == pytest.approx(group["e2e_s"]["mean"] * group["succeeded"])
        assert sum(e2e[name].bucket_counts) == e2e[name].count
        assert len(e2e[name].bucket_counts) == len(e2e[name].explicit_bounds) + 1
        assert e2e[name].start_time_unix_nano < e2e[name].time_unix_nano
    assert ttft["chat"].count > 0
    chat = attributes(ttft["chat"].attributes)
    assert chat["gen_ai.operation.name"] == "chat"
    assert chat["gen_ai.request.model"] == "mock-model"
    assert chat["server.address"] == "127.0.0.1"

    # One span per sample (warm-up ones too), from the send to the end of the answer.
    spans = list(otlp.spans())
    assert len(spans) == len(samples) > 0
    assert len({(s.trace_id, s.span_id) for s in spans}) == len(spans)
    by_sample = {
        (attrs["clientswarm.worker"], attrs["clientswarm.client"], span.start_time_unix_nano): (
            span,
            attrs,
        )
        for span in spans
        for attrs in [attributes(span.attributes)]
    }
    for sample in samples:
        span, attrs = by_sample[(sample["worker"], sample["client"], sample["sent_ns"])]
        assert span.end_time_unix_nano == sample["end_ns"]
        assert attrs["clientswarm.group"] == sample["group"]
        assert attrs["clientswarm.status"] == sample["status"]
        assert attrs["clientswarm.warmup"] == sample["warmup"]
        assert span.kind == span.SPAN_KIND_CLIENT
        if sample["group"] == "chat":
            assert span.name == "chat mock-model"
            assert attrs["gen_ai.usage.output_tokens"] == sample["output_tokens"]
            ttft_s = (sample["first_token_ns"] - sample["sent_ns"]) / 1e9
            assert attrs["clientswarm.ttft_s"] == pytest.approx(ttft_s)
            assert [e.time_unix_nano for e in span.events] == [sample["first_token_ns"]]
        else:
            assert span.name == "embeddings mock-model"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port  # closed again: nothing listens there


def test_an_endpoint_that_does_not_answer_is_an_event_and_the_run_completes(
    tmp_path: Path,
) -> None:
    endpoint = f"http://127.0.0.1:{_free_port()}"
    with simulator() as url, ServiceProcess(tmp_path / "svc") as service:
        body = {
            "name": "otel-down",
            "target": {"url": url, "model": "mock-model"},
            "telemetry": {"otlp": {"endpoint": endpoint, "interval_s": 0.5, "timeout_s": 1}},
            "groups": [
                {
                    "name": "chat",
                    "interaction": {"kind": "chat", "max_tokens": 4},
                    "stop": {"duration_s": 1.5},
                }
            ],
        }
        status, created = service.api("POST", "/clusters", body)
        assert status == 201, created
        assert service.wait_status(created["id"])["status"] == "completed"
        status, events = service.api("GET", f"/clusters/{created['id']}/events")
        told = [e["message"] for e in events if e["kind"] == "telemetry"]
        assert told, events
        assert told[0].startswith(f"export of metrics to {endpoint}/v1/metrics failed: ")
        assert "samples dropped from the OTLP export" in told[-1]
        status, results = service.api("GET", f"/clusters/{created['id']}/results")
        assert results["total"]["requests"] > 0


async def test_samples_whose_export_failed_go_with_the_next_export() -> None:
    async with OtlpReceiver(status=503) as otlp:
        config = validate_config_data(
            {
                "name": "otel",
                "target": {"url": "http://127.0.0.1:8000", "model": "m"},
                "telemetry": {"otlp": {"endpoint": otlp.url}},
                "groups": [
                    {"name": "chat", "interaction": {"kind": "chat"}, "stop": {"requests": 3}}
                ],
            }
        )
        assert config.telemetry is not None and config.telemetry.otlp is not None
        told: list[str] = []

        async def on_problem(line: str) -> None:
            told.append(line)

        now_ns = time.time_ns()
        live = LiveStats("c1", "otel", groups=["chat"])
        export = ClusterExport("c1", config, config.telemetry.otlp, live, now_ns, on_problem)
        cols = SampleColumns.from_samples(
            [Sample("chat", i, 0, "chat", now_ns, now_ns + i, now_ns + 10**6) for i in range(3)]
        )
        live.add(cols, now_ns / 1e9)
        export.add(cols)
        async with aiohttp.ClientSession() as session:
            await export.export(session, final=False)
            assert told == [
                f"export of metrics to {otlp.url}/v1/metrics failed: HTTP 503 unavailable; "
                f"export of samples to {otlp.url}/v1/traces failed: HTTP 503 unavailable"
            ]
            assert len(export.queue) == 3  # kept for the next export
            otlp.status = 200
            await export.export(session, final=False)
        assert told[-1] == "OTLP export works again"
        assert len(export.queue) == 0 and export.queue.dropped == 0
        assert sorted(s.start_time_unix_nano - now_ns for s in otlp.spans()) == [0, 1, 2]
        (requests,) = [
            p for p in metric_points(otlp.metrics[-1])["clientswarm.requests"] if p.as_int
        ]
        assert requests.as_int == 3
