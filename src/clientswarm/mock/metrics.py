"""What the mock target counts: vLLM-style Prometheus metrics and the ``/mock/stats`` JSON.

Both views are fed by the same calls, so a test can compare what a client observed with what the
server injected. Each app owns its registry: several mock servers can live in one process.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from clientswarm.mock.engine import AdmissionQueue
from clientswarm.mock.faults import FaultKind

# vLLM's own bucket edges, so dashboards built for vLLM read the mock the same way.
TTFT_BUCKETS_S = (
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0,
    2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0,
)  # fmt: skip
E2E_BUCKETS_S = (
    0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0,
    50.0, 60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0,
)  # fmt: skip

PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class MockMetrics:
    """Counters of one mock server, exposed as Prometheus text and as a JSON snapshot.

    Counters are plain integers read at scrape time, so the per-token hot path takes no lock.
    """

    def __init__(self, model: str, queue: AdmissionQueue) -> None:
        self.model = model
        self.queue = queue
        self.requests_by_route: Counter[str] = Counter()
        self.faults_by_kind: dict[str, int] = {kind.value: 0 for kind in FaultKind}
        self.success_by_reason: Counter[str] = Counter()
        self.completed = 0
        self.aborted = 0
        self.in_flight = 0
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(_CounterCollector(self))
        self._ttft = Histogram(
            "vllm:time_to_first_token_seconds",
            "Arrival to first token, queue time included.",
            ["model_name"],
            buckets=TTFT_BUCKETS_S,
            registry=self.registry,
        ).labels(model)
        self._e2e = Histogram(
            "vllm:e2e_request_latency_seconds",
            "Arrival to last token.",
            ["model_name"],
            buckets=E2E_BUCKETS_S,
            registry=self.registry,
        ).labels(model)

    def request(self, route: str) -> None:
        """Count one request to ``route`` (the route's path pattern)."""
        self.requests_by_route[route] += 1

    def fault(self, kind: FaultKind) -> None:
        """Count one injected fault."""
        self.faults_by_kind[kind.value] += 1

    def prompt(self, tokens: int) -> None:
        """Count prefilled prompt tokens of an admitted request."""
        self.prompt_tokens += tokens

    def generated(self, tokens: int) -> None:
        """Count output tokens as they are sent."""
        self.completion_tokens += tokens

    def first_token(self, latency_s: float) -> None:
        """Observe arrival-to-first-token time."""
        self._ttft.observe(latency_s)

    def success(self, latency_s: float, finish_reason: str) -> None:
        """Count a request answered in full and observe its end-to-end latency."""
        self.completed += 1
        self.success_by_reason[finish_reason] += 1
        self._e2e.observe(latency_s)

    def abort(self) -> None:
        """Count a request whose client went away before the answer was complete."""
        self.aborted += 1

    def exposition(self) -> bytes:
        """The Prometheus text exposition of this server's registry."""
        return generate_latest(self.registry)

    def snapshot(self) -> dict[str, Any]:
        """The ``/mock/stats`` document."""
        return {
            "requests": dict(self.requests_by_route),
            "faults": dict(self.faults_by_kind),
            "faults_total": sum(self.faults_by_kind.values()),
            "completed": self.completed,
            "aborted": self.aborted,
            "in_flight": self.in_flight,
            "running": self.queue.running,
            "waiting": self.queue.waiting,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
        }


class _CounterCollector(Collector):
    """vLLM's gauges and counters, read from :class:`MockMetrics` at scrape time."""

    def __init__(self, metrics: MockMetrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterable[Metric]:
        m = self._metrics
        model = [m.model]
        running = GaugeMetricFamily(
            "vllm:num_requests_running", "Sequences running now.", labels=["model_name"]
        )
        running.add_metric(model, m.queue.running)
        waiting = GaugeMetricFamily(
            "vllm:num_requests_waiting", "Requests queued now.", labels=["model_name"]
        )
        waiting.add_metric(model, m.queue.waiting)
        prompt = CounterMetricFamily(
            "vllm:prompt_tokens", "Prefill tokens processed.", labels=["model_name"]
        )
        prompt.add_metric(model, m.prompt_tokens)
        generation = CounterMetricFamily(
            "vllm:generation_tokens", "Generation tokens sent.", labels=["model_name"]
        )
        generation.add_metric(model, m.completion_tokens)
        success = CounterMetricFamily(
            "vllm:request_success",
            "Requests answered in full.",
            labels=["model_name", "finished_reason"],
        )
        for reason in sorted(m.success_by_reason):
            success.add_metric([m.model, reason], m.success_by_reason[reason])
        faults = CounterMetricFamily(
            "mock_faults_injected", "Faults injected, by kind.", labels=["kind"]
        )
        for kind, count in m.faults_by_kind.items():
            faults.add_metric([kind], count)
        return [running, waiting, prompt, generation, success, faults]
