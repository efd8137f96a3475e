"""A cluster's metrics and samples as OTLP protobuf messages (pure: no I/O).

Built with the ``opentelemetry-proto`` messages (the ``otel`` extra) and sent as OTLP/HTTP
``application/x-protobuf`` bodies by :mod:`clientswarm.service.telemetry`. Names follow the
OpenTelemetry GenAI semantic conventions where one fits what a load generator measures — it is
the client, so the *client* instruments — and ``clientswarm.*`` for the rest:

- histograms (seconds): ``gen_ai.client.operation.duration`` (E2E of successful requests),
  ``gen_ai.client.operation.time_to_first_chunk`` (TTFT),
  ``gen_ai.client.operation.time_per_output_chunk`` (ITL, every gap), ``clientswarm.tpot``,
  ``clientswarm.schedule_lag``;
- sums (monotonic): ``clientswarm.requests`` ({request}, by ``clientswarm.outcome`` ok or
  error), ``clientswarm.errors`` (by ``error.type``, the error kind),
  ``clientswarm.excluded_requests`` (by ``clientswarm.reason`` warmup or cancelled),
  ``clientswarm.tokens`` ({token}, by ``gen_ai.token.type`` input or output);
- gauges: ``clientswarm.request_rate`` ({request}/s) and ``clientswarm.output_token_rate``
  ({token}/s) over the last 10 s, ``clientswarm.active_clients`` ({client}).

Every data point is one group's, with the group's attributes (:func:`group_attributes`:
``clientswarm.group``, ``clientswarm.target``, ``gen_ai.operation.name``,
``gen_ai.request.model``, ``server.address``, ``server.port``). Sums and histograms are
cumulative from the cluster's shared start, so an export that is lost loses nothing the next
one does not carry. Histograms have explicit buckets, the bounds of the service's Prometheus
histograms (:data:`~clientswarm.service.prometheus.HISTOGRAMS`): a dashboard reads the same
buckets from either. They are filled from the live log-linear histograms (a count at a bucket
bound may be off by the values within 0.8 % of it); counts, sums, minima and maxima are exact.
Like ``/metrics``, they count measured requests (not warm-up, not cut off by a stop) of the
groups' interactions (steps of user-defined ones are in the spans).

Samples are spans, one per sample (warm-up ones and steps included), as the GenAI conventions
model an inference call: kind ``CLIENT``, named ``{gen_ai.operation.name} {model}``, from the
send to the end of the answer, with ``gen_ai.usage.input_tokens``/``output_tokens``,
``error.type`` and status ``ERROR`` for a failed one, ``http.response.status_code``, and the
sample's own fields as ``clientswarm.*`` attributes; its first token is a span event
(``first_token``). A span's ids are derived from the sample (cluster, worker, client, send
time, name), so a batch sent twice gives the same spans.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.metrics.v1.metrics_pb2 import (
    AggregationTemporality,
    Gauge,
    Histogram,
    HistogramDataPoint,
    Metric,
    NumberDataPoint,
    ResourceMetrics,
    ScopeMetrics,
    Sum,
)
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from clientswarm import __version__
from clientswarm.config.models import ClusterConfig
from clientswarm.metrics.columns import SampleColumns
from clientswarm.metrics.derive import derive
from clientswarm.metrics.histogram import Histogram as LiveHistogram
from clientswarm.metrics.live import Tally
from clientswarm.service.prometheus import HISTOGRAMS

Attribute = str | int | float | bool

SCOPE = InstrumentationScope(name="clientswarm", version=__version__)
CUMULATIVE = AggregationTemporality.AGGREGATION_TEMPORALITY_CUMULATIVE

OPERATIONS = {
    "chat": "chat",
    "conversation": "chat",
    "responses": "chat",
    "messages": "chat",
    "completion": "text_completion",
    "embedding": "embeddings",
}
"""``gen_ai.operation.name`` of the built-in interactions the conventions name; any other
interaction's kind is its operation name."""

HISTOGRAM_METRICS: dict[str, tuple[str, str]] = {
    "e2e_s": ("gen_ai.client.operation.duration", "End-to-end latency of successful requests."),
    "ttft_s": (
        "gen_ai.client.operation.time_to_first_chunk",
        "Time to first token: from sending the request to its first content token.",
    ),
    "itl_s": (
        "gen_ai.client.operation.time_per_output_chunk",
        "Inter-token latency: gap between streamed tokens (multi-token chunks split evenly).",
    ),
    "tpot_s": ("clientswarm.tpot", "Time per output token after the first."),
    "schedule_lag_s": (
        "clientswarm.schedule_lag",
        "How late requests were sent after their scheduled time (load generator health).",
    ),
}
"""Live histogram → (OTLP metric name, description); bounds from the Prometheus ones."""


def _value(value: Attribute) -> AnyValue:
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    return AnyValue(string_value=value)


def key_values(attributes: Mapping[str, Attribute]) -> list[KeyValue]:
    """OTLP attributes of a mapping."""
    return [KeyValue(key=key, value=_value(value)) for key, value in attributes.items()]


def group_attributes(config: ClusterConfig) -> dict[str, dict[str, Attribute]]:
    """Each group's attributes (see the module docstring), by group name."""
    out: dict[str, dict[str, Attribute]] = {}
    for group in config.groups:
        target = config.target_of(group)
        kind = str(group.interaction.kind)
        attrs: dict[str, Attribute] = {
            "clientswarm.group": group.name,
            "clientswarm.target": config.target_name_of(group),
            "gen_ai.operation.name": OPERATIONS.get(kind, kind),
        }
        model = getattr(group.interaction, "model", None) or target.model
        if model:
            attrs["gen_ai.request.model"] = str(model)
        url = urlsplit(target.url)
        if url.hostname:
            attrs["server.address"] = url.hostname
            attrs["server.port"] = url.port or (443 if url.scheme == "https" else 80)
        out[group.name] = attrs
    return out


def resource_attributes(
    cluster_id: str, config: ClusterConfig, extra: Mapping[str, str]
) -> dict[str, Attribute]:
    """The resource of everything a cluster exports: clientswarm and the cluster, then the
    configuration's own attributes (which may replace ``service.name``)."""
    return {
        "service.name": "clientswarm",
        "service.version": __version__,
        "clientswarm.cluster.id": cluster_id,
        "clientswarm.cluster.name": config.name,
        **extra,
    }


@dataclass(frozen=True)
class Rates:
    """One group's throughput over the recent window."""

    request_rate: float
    output_token_rate: float


def metrics_request(
    resource: Mapping[str, Attribute],
    groups: Mapping[str, Mapping[str, Attribute]],
    tallies: Mapping[str, Tally],
    rates: Mapping[str, Rates],
    active_clients: Mapping[str, int],
    *,
    start_ns: int,
    now_ns: int,
) -> ExportMetricsServiceRequest:
    """The metrics of the module table, one data point per group (and attribute value)."""
    sums: dict[str, list[NumberDataPoint]] = {}
    gauges: dict[str, list[NumberDataPoint]] = {}
    histograms: dict[str, list[HistogramDataPoint]] = {}

    def point(attrs: Mapping[str, Attribute], value: int | float) -> NumberDataPoint:
        number = {"as_int": value} if isinstance(value, int) else {"as_double": value}
        return NumberDataPoint(
            attributes=key_values(attrs),
            start_time_unix_nano=start_ns,
            time_unix_nano=now_ns,
            **number,
        )

    for group, t in tallies.items():
        attrs = groups.get(group, {"clientswarm.group": group})
        add = sums.setdefault
        add("clientswarm.requests", []).extend(
            point({**attrs, "clientswarm.outcome": outcome}, n)
            for outcome, n in (("ok", t.succeeded), ("error", t.failed))
        )
        add("clientswarm.errors", []).extend(
            point({**attrs, "error.type": kind}, n) for kind, n in sorted(t.errors.items())
        )
        add("clientswarm.excluded_requests", []).extend(
            point({**attrs, "clientswarm.reason": reason}, n)
            for reason, n in (("warmup", t.warmup), ("cancelled", t.cancelled))
        )
        add("clientswarm.tokens", []).extend(
            point({**attrs, "gen_ai.token.type": kind}, n)
            for kind, n in (("input", t.input_tokens), ("output", t.output_tokens))
        )
        for metric, (name, _) in HISTOGRAM_METRICS.items():
            histograms.setdefault(name, []).append(
                _histogram_point(
                    attrs, t.hist[metric], HISTOGRAMS[metric][2], start_ns=start_ns, now_ns=now_ns
                )
            )
        rate = rates.get(group, Rates(0.0, 0.0))
        gauges.setdefault("clientswarm.request_rate", []).append(point(attrs, rate.request_rate))
        gauges.setdefault("clientswarm.output_token_rate", []).append(
            point(attrs, rate.output_token_rate)
        )
        gauges.setdefault("clientswarm.active_clients", []).append(
            point(attrs, int(active_clients.get(group, 0)))
        )
    metrics = [
        *(_sum(name, points) for name, points in sums.items()),
        *(_histogram(name, points) for name, points in histograms.items()),
        *(_gauge(name, points) for name, points in gauges.items()),
    ]
    scope = ScopeMetrics(scope=SCOPE, metrics=metrics)
    resource_metrics = ResourceMetrics(
        resource=Resource(attributes=key_values(resource)), scope_metrics=[scope]
    )
    return ExportMetricsServiceRequest(resource_metrics=[resource_metrics])


_SUMS = {
    "clientswarm.requests": ("{request}", "Measured requests that completed, by outcome."),
    "clientswarm.errors": ("{request}", "Failed measured requests by error kind."),
    "clientswarm.excluded_requests": (
        "{request}",
        "Requests left out of the statistics: during warm-up, or cut off by a stop.",
    ),
    "clientswarm.tokens": ("{token}", "Input and output tokens of successful measured requests."),
}
_GAUGES = {
    "clientswarm.request_rate": ("{request}/s", "Measured requests per second, last 10 s."),
    "clientswarm.output_token_rate": ("{token}/s", "Output tokens per second, last 10 s."),
    "clientswarm.active_clients": ("{client}", "Clients currently running."),
}


def _sum(name: str, points: Sequence[NumberDataPoint]) -> Metric:
    unit, description = _SUMS[name]
    total = Sum(data_points=points, aggregation_temporality=CUMULATIVE, is_monotonic=True)
    return Metric(name=name, unit=unit, description=description, sum=total)


def _gauge(name: str, points: Sequence[NumberDataPoint]) -> Metric:
    unit, description = _GAUGES[name]
    return Metric(name=name, unit=unit, description=description, gauge=Gauge(data_points=points))


def _histogram(name: str, points: Sequence[HistogramDataPoint]) -> Metric:
    description = next(d for n, d in HISTOGRAM_METRICS.values() if n == name)
    histogram = Histogram(data_points=points, aggregation_temporality=CUMULATIVE)
    return Metric(name=name, unit="s", description=description, histogram=histogram)


def _histogram_point(
    attrs: Mapping[str, Attribute],
    h: LiveHistogram,
    bounds: Sequence[float],
    *,
    start_ns: int,
    now_ns: int,
) -> HistogramDataPoint:
    """One live histogram as explicit buckets: ``bucket_counts[i]`` counts the values in
    ``(bounds[i-1], bounds[i]]``, the last one those above every bound."""
    cumulative = [*h.cumulative_buckets(bounds), h.count]
    counts = [b - a for a, b in zip([0, *cumulative[:-1]], cumulative, strict=True)]
    extremes: dict[str, Any] = {"min": h.min, "max": h.max} if h.count else {}
    return HistogramDataPoint(
        attributes=key_values(attrs),
        start_time_unix_nano=start_ns,
        time_unix_nano=now_ns,
        count=h.count,
        sum=h.sum,
        bucket_counts=counts,
        explicit_bounds=list(bounds),
        **extremes,
    )


def span_ids(cluster_id: str, worker: int, client: int, sent_ns: int, name: str) -> bytes:
    """24 bytes: a span's trace id (16) and span id (8), from what identifies its sample."""
    key = f"{cluster_id}/{worker}/{client}/{sent_ns}/{name}".encode()
    return hashlib.blake2b(key, digest_size=24).digest()


def _fill(repeated: Any, attributes: Mapping[str, Attribute]) -> None:
    """Add ``attributes`` to a repeated ``KeyValue`` field in place (several times faster than
    building each message from keyword arguments, which matters at one span per request)."""
    for key, value in attributes.items():
        kv = repeated.add()
        kv.key = key
        if isinstance(value, bool):
            kv.value.bool_value = value
        elif isinstance(value, int):
            kv.value.int_value = value
        elif isinstance(value, float):
            kv.value.double_value = value
        else:
            kv.value.string_value = value


def spans_request(
    cluster_id: str,
    resource: Mapping[str, Attribute],
    groups: Mapping[str, Mapping[str, Attribute]],
    cols: SampleColumns,
) -> ExportTraceServiceRequest:
    """One span per sample of ``cols`` (see the module docstring)."""
    d = derive(cols)
    c = cols.columns
    sent, end, lag = d.sent_ns.tolist(), d.end_ns.tolist(), d.schedule_lag_s.tolist()
    ttft, tpot = d.ttft_s.tolist(), d.tpot_s.tolist()
    request = ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    _fill(resource_spans.resource.attributes, resource)
    scope = resource_spans.scope_spans.add()
    scope.scope.CopyFrom(SCOPE)
    for i in range(len(cols)):
        group, name = c["group"][i], c["name"][i]
        base = groups.get(group, {"clientswarm.group": group})
        step = bool(c["step"][i])
        worker, client = int(c["worker"][i]), int(c["client"][i])
        attrs: dict[str, Attribute] = {
            **base,
            "clientswarm.target": c["target"][i],
            "clientswarm.client": client,
            "clientswarm.worker": worker,
            "clientswarm.name": name,
            "clientswarm.status": c["status"][i],
            "clientswarm.stage": int(c["stage"][i]),
            "clientswarm.warmup": bool(c["warmup"][i]),
            "clientswarm.schedule_lag_s": lag[i],
        }
        if step:
            attrs["clientswarm.step"] = True
        optional: tuple[tuple[str, Any], ...] = (
            ("gen_ai.usage.input_tokens", c["input_tokens"][i]),
            ("gen_ai.usage.output_tokens", c["output_tokens"][i]),
            ("clientswarm.token_source", c["token_source"][i]),
            ("error.type", c["error_kind"][i]),
            ("http.response.status_code", c["http_status"][i]),
            ("clientswarm.ttft_s", None if math.isnan(ttft[i]) else ttft[i]),
            ("clientswarm.tpot_s", None if math.isnan(tpot[i]) else tpot[i]),
        )
        attrs.update((key, value) for key, value in optional if value is not None)
        operation = str(base.get("gen_ai.operation.name", group))
        model = base.get("gen_ai.request.model")
        ids = span_ids(cluster_id, worker, client, sent[i], name)
        span = scope.spans.add()
        span.trace_id, span.span_id = ids[:16], ids[16:]
        span.name = name if step else (f"{operation} {model}" if model else operation)
        span.kind = Span.SPAN_KIND_CLIENT
        span.start_time_unix_nano, span.end_time_unix_nano = sent[i], end[i]
        _fill(span.attributes, attrs)
        first_ns = c["first_token_ns"][i]
        if first_ns is not None:
            event = span.events.add()
            event.time_unix_nano, event.name = int(first_ns), "first_token"
        if c["status"][i] != "ok":
            span.status.code = Status.STATUS_CODE_ERROR
            span.status.message = (c["error_message"][i] or "")[:1024]
    return request


__all__ = [
    "HISTOGRAM_METRICS",
    "OPERATIONS",
    "Rates",
    "group_attributes",
    "key_values",
    "metrics_request",
    "resource_attributes",
    "span_ids",
    "spans_request",
]
