"""An OTLP/HTTP receiver for the tests (no OpenTelemetry Collector can be installed here).

An aiohttp server on a free loopback port that takes ``POST /v1/metrics`` and ``POST
/v1/traces`` with protobuf bodies, decodes them with ``opentelemetry-proto`` and keeps every
request (decoded, with its headers), answering as a collector does. ``status`` makes it answer
every request with another HTTP status.

    async with OtlpReceiver() as otlp:
        ...  # export to otlp.url
        otlp.metrics[-1]  # the last ExportMetricsServiceRequest
"""

from __future__ import annotations

from collections.abc import Iterator
from types import TracebackType
from typing import Any, Self

from aiohttp import web
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span

PROTOBUF = "application/x-protobuf"


class OtlpReceiver:
    """Receives OTLP/HTTP protobuf exports on 127.0.0.1 (see the module docstring)."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.metrics: list[ExportMetricsServiceRequest] = []
        self.traces: list[ExportTraceServiceRequest] = []
        self.headers: list[dict[str, str]] = []
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def __aenter__(self) -> Self:
        app = web.Application(client_max_size=64 << 20)
        app.router.add_post("/v1/metrics", self._metrics)
        app.router.add_post("/v1/traces", self._traces)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _metrics(self, request: web.Request) -> web.Response:
        return await self._take(request, ExportMetricsServiceRequest, self.metrics)

    async def _traces(self, request: web.Request) -> web.Response:
        return await self._take(request, ExportTraceServiceRequest, self.traces)

    async def _take(self, request: web.Request, kind: Any, into: list[Any]) -> web.Response:
        if self.status != 200:
            return web.Response(status=self.status, text="unavailable")
        assert request.content_type == PROTOBUF, request.content_type
        into.append(kind.FromString(await request.read()))
        self.headers.append(dict(request.headers))
        answer = (
            ExportMetricsServiceResponse()
            if kind is ExportMetricsServiceRequest
            else ExportTraceServiceResponse()
        )
        return web.Response(body=answer.SerializeToString(), content_type=PROTOBUF)

    def spans(self) -> Iterator[Span]:
        """Every span received, in order."""
        for request in self.traces:
            for resource_spans in request.resource_spans:
                for scope_spans in resource_spans.scope_spans:
                    yield from scope_spans.spans


def value_of(value: AnyValue) -> Any:
    """The Python value of an OTLP attribute value."""
    return getattr(value, value.WhichOneof("value") or "string_value")


def attributes(kvs: Any) -> dict[str, Any]:
    """OTLP attributes as a dict."""
    return {kv.key: value_of(kv.value) for kv in kvs if isinstance(kv, KeyValue)}


def metric_points(request: ExportMetricsServiceRequest) -> dict[str, list[Any]]:
    """Every data point of a metrics export, by metric name."""
    out: dict[str, list[Any]] = {}
    for resource_metrics in request.resource_metrics:
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                data = getattr(metric, metric.WhichOneof("data") or "gauge")
                out.setdefault(metric.name, []).extend(data.data_points)
    return out


__all__ = ["OtlpReceiver", "attributes", "metric_points", "value_of"]
