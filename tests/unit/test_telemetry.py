"""OTLP export, piece by piece: its configuration, what the operator's policy lets it reach,
the bounded queue, and the protobuf messages (decoded again with ``opentelemetry-proto``)."""

from __future__ import annotations

import sys
from typing import Any

import pytest

from clientswarm.config.loader import validate_config_data
from clientswarm.config.redact import REDACTED, redact_config
from clientswarm.errors import ConfigError
from clientswarm.metrics.columns import SampleColumns
from clientswarm.metrics.engine import merge_replicas, parse_exposition
from clientswarm.metrics.live import Tally
from clientswarm.metrics.sample import Sample
from clientswarm.service.admission import admit
from clientswarm.service.otlp import (
    Rates,
    group_attributes,
    metrics_request,
    resource_attributes,
    spans_request,
)
from clientswarm.service.policy import OperatorPolicy
from clientswarm.service.prometheus import LATENCY_BUCKETS_S
from clientswarm.service.targets import TargetRules
from clientswarm.service.telemetry import SampleQueue, export_headers
from otlp_receiver import attributes, metric_points


def config(**otlp: Any) -> dict[str, Any]:
    return {
        "name": "otel",
        "target": {"url": "http://127.0.0.1:8000", "model": "m"},
        "telemetry": {"otlp": {"endpoint": "http://127.0.0.1:4318", **otlp}},
        "groups": [
            {"name": "chat", "interaction": {"kind": "chat"}, "stop": {"requests": 1}},
            {"name": "emb", "interaction": {"kind": "embedding"}, "stop": {"requests": 1}},
        ],
    }


def test_the_configuration_says_what_is_wrong() -> None:
    otlp = validate_config_data(config()).telemetry.otlp  # type: ignore[union-attr]
    assert otlp is not None
    assert otlp.export == ["metrics", "samples"]
    assert otlp.url("metrics") == "http://127.0.0.1:4318/v1/metrics"
    assert otlp.url("samples") == "http://127.0.0.1:4318/v1/traces"
    for bad, text in (
        ({"endpoint": "grpc://collector:4317"}, "must be an http:// or https:// URL"),
        ({"headers_from_env": {"Authorization": "Bearer abc"}}, "name of an environment"),
        ({"headers": {"bad header": "x"}}, "is not an HTTP header name"),
        ({"export": ["logs"]}, "telemetry.otlp.export"),
    ):
        with pytest.raises(ConfigError, match=text):
            validate_config_data(config(**bad))


def test_a_shared_service_keeps_the_endpoint_and_its_variables_within_its_policy() -> None:
    policy = OperatorPolicy(targets=TargetRules.parse([]), target_env=("OTLP_*",))
    allowed = config(headers_from_env={"Authorization": "OTLP_AUTH"})
    admit(validate_config_data(allowed), policy)
    posted = config(
        endpoint="http://collector.example:4318",
        headers_from_env={"Authorization": "AWS_SECRET_ACCESS_KEY"},
    )
    with pytest.raises(ConfigError) as caught:
        admit(validate_config_data(posted), policy)
    assert caught.value.problems == [
        "telemetry.otlp.endpoint: 'http://collector.example:4318' is not a host this service "
        "may reach (allowed: 127.0.0.0/8, ::1/128, localhost); use one of those, or ask the "
        "operator (clientswarm serve --allow-target HOST[:PORT]|CIDR)",
        "telemetry.otlp.headers_from_env.Authorization: 'AWS_SECRET_ACCESS_KEY' is not a "
        "variable this service lets configurations read (allowed: OTLP_*); ask the operator "
        "(clientswarm serve --allow-env NAME)",
    ]


def test_without_the_extra_admission_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry.proto", None)  # as if not installed
    with pytest.raises(ConfigError) as caught:
        admit(validate_config_data(config()), OperatorPolicy.unrestricted())
    assert caught.value.problems == [
        "telemetry.otlp: needs the opentelemetry-proto package, which is not installed here: "
        "pip install 'clientswarm[otel]'"
    ]


def test_header_values_are_redacted_and_unset_variables_said() -> None:
    data = validate_config_data(
        config(headers={"X-Token": "t0ps3cret"}, headers_from_env={"Authorization": "OTLP_A"})
    ).model_dump()
    shown = redact_config(data)["telemetry"]["otlp"]
    assert shown["headers"] == {"X-Token": REDACTED}
    otlp = validate_config_data(config(headers_from_env={"A": "OTLP_A", "B": "OTLP_B"}))
    assert otlp.telemetry is not None and otlp.telemetry.otlp is not None
    headers, unset = export_headers(otlp.telemetry.otlp, {"OTLP_A": "x"})
    assert headers == {"Content-Type": "application/x-protobuf", "A": "x"}
    assert unset == ["header B: environment variable OTLP_B is not set; sent without"]


def _samples(n: int) -> SampleColumns:
    return SampleColumns.from_samples(
        [Sample("g", 0, 0, "chat", i, i + 1, i + 2) for i in range(n)]
    )


def test_the_queue_is_bounded_and_gives_back_what_failed_in_order() -> None:
    queue = SampleQueue(limit=10)
    for n in (4, 4, 4):  # the third does not fit
        queue.add(_samples(n))
    assert (len(queue), queue.dropped) == (8, 4)
    first = queue.take(5)  # whole batches: one, since two would be more
    assert [len(b) for b in first] == [4]
    queue.put_back(first)
    assert [len(b) for b in queue.take(100)] == [4, 4]
    queue.add(_samples(3))
    assert queue.drop_all() == 3
    assert (len(queue), queue.dropped) == (0, 7)


def test_metrics_are_cumulative_explicit_bucket_histograms_per_group() -> None:
    cfg = validate_config_data(config())
    tally = Tally(requests=5, succeeded=4, input_tokens=30, output_tokens=40, warmup=2)
    tally.errors["http_503"] = 1
    values = [0.0005, 0.003, 0.18, 700.0]
    tally.hist["e2e_s"].record_many(values)
    request = metrics_request(
        resource_attributes("c1", cfg, {"team": "a"}),
        group_attributes(cfg),
        {"chat": tally},
        {"chat": Rates(2.5, 10.0)},
        {"chat": 3},
        start_ns=1_000,
        now_ns=2_000,
    )
    decoded = type(request).FromString(request.SerializeToString())
    points = metric_points(decoded)
    (e2e,) = points["gen_ai.client.operation.duration"]
    assert list(e2e.explicit_bounds) == list(LATENCY_BUCKETS_S)
    assert (e2e.count, e2e.min, e2e.max) == (4, 0.0005, 700.0)
    assert e2e.sum == pytest.approx(sum(values))
    counts = list(e2e.bucket_counts)
    assert counts[0] == 1  # <= 1 ms
    assert counts[LATENCY_BUCKETS_S.index(0.005)] == 1  # (2 ms, 5 ms]
    assert counts[LATENCY_BUCKETS_S.index(0.2)] == 1  # (150 ms, 200 ms]
    assert counts[-1] == 1  # above 600 s
    assert sum(counts) == 4
    assert (e2e.start_time_unix_nano, e2e.time_unix_nano) == (1_000, 2_000)
    attrs = attributes(e2e.attributes)
    assert attrs == {
        "clientswarm.group": "chat",
        "clientswarm.target": "default",
        "gen_ai.operation.name": "chat",
        "gen_ai.request.model": "m",
        "server.address": "127.0.0.1",
        "server.port": 8000,
    }
    requests = {
        attributes(p.attributes)["clientswarm.outcome"]: p.as_int
        for p in points["clientswarm.requests"]
    }
    assert requests == {"ok": 4, "error": 1}
    (errors,) = points["clientswarm.errors"]
    assert (attributes(errors.attributes)["error.type"], errors.as_int) == ("http_503", 1)
    (rate,) = points["clientswarm.request_rate"]
    assert rate.as_double == 2.5
    (active,) = points["clientswarm.active_clients"]
    assert active.as_int == 3
    resource = attributes(decoded.resource_metrics[0].resource.attributes)
    assert resource["clientswarm.cluster.id"] == "c1" and resource["team"] == "a"


def test_a_failed_sample_is_an_error_span() -> None:
    cfg = validate_config_data(config())
    sample = Sample(
        "emb", 1, 2, "embedding", 10, 20, 90, status="error", error_kind="http_500",
        error_message="boom", http_status=500,
    )  # fmt: skip
    request = spans_request("c1", {}, group_attributes(cfg), SampleColumns.from_samples([sample]))
    (span,) = request.resource_spans[0].scope_spans[0].spans
    assert span.name == "embeddings m"
    assert (span.start_time_unix_nano, span.end_time_unix_nano) == (20, 90)
    assert span.status.code == span.status.STATUS_CODE_ERROR
    assert span.status.message == "boom"
    attrs = attributes(span.attributes)
    assert attrs["error.type"] == "http_500"
    assert attrs["http.response.status_code"] == 500
    assert attrs["clientswarm.schedule_lag_s"] == pytest.approx(1e-8)
    assert "clientswarm.ttft_s" not in attrs
    again = spans_request("c1", {}, {}, SampleColumns.from_samples([sample]))
    assert again.resource_spans[0].scope_spans[0].spans[0].span_id == span.span_id


DCGM_PAGE = """\
# HELP DCGM_FI_DEV_GPU_UTIL GPU utilization (in %).
# TYPE DCGM_FI_DEV_GPU_UTIL gauge
DCGM_FI_DEV_GPU_UTIL{gpu="0",UUID="GPU-a",device="nvidia0",modelName="NVIDIA H100"} 87
DCGM_FI_DEV_GPU_UTIL{gpu="1",UUID="GPU-b",device="nvidia1",modelName="NVIDIA H100"} 91
# HELP DCGM_FI_DEV_FB_USED Framebuffer memory used (in MiB).
# TYPE DCGM_FI_DEV_FB_USED gauge
DCGM_FI_DEV_FB_USED{gpu="0",UUID="GPU-a",device="nvidia0",modelName="NVIDIA H100"} 70000
DCGM_FI_DEV_FB_USED{gpu="1",UUID="GPU-b",device="nvidia1",modelName="NVIDIA H100"} 71000
# HELP DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION Total energy consumption since boot (in mJ).
# TYPE DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION counter
DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION{gpu="0",UUID="GPU-a"} 5000
DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION{gpu="1",UUID="GPU-b"} 6000
"""

VLLM_PAGE = """\
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{model_name="m"} 3
"""


def test_a_dcgm_exporter_page_beside_the_engine_gives_gpu_series_summed_over_gpus() -> None:
    # What docs/guides/opentelemetry.md says: the DCGM page is one more metrics URL of the
    # target, its series named in `series`, summed over the GPUs; the engine stays vLLM.
    series = ["DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_FB_USED", "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION"]
    merged = merge_replicas(
        [parse_exposition(VLLM_PAGE, series), parse_exposition(DCGM_PAGE, series)]
    )
    assert merged.engine == "vllm"
    assert merged.gauges["running"] == 3
    assert merged.extra == {
        "DCGM_FI_DEV_GPU_UTIL": 178,
        "DCGM_FI_DEV_FB_USED": 141000,
        "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION": 11000,
    }
