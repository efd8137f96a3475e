"""What the mock target counts: vLLM-style Prometheus metrics and the ``/mock/stats`` JSON.

Both views are fed by the same calls, so a test can compare what a client observed with what the
server injected. Each app owns its registry: several mock servers can live in one process.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from clientswarm.mock.faults import FaultKind
from clientswarm.mock.histograms import EngineHistograms
from clientswarm.mock.scheduler import Scheduler

PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

ENGINE_INDEX = "0"
"""The ``engine`` label: a vLLM server with one engine core labels its series ``engine="0"``."""

FINISHED_REASONS = ("stop", "length", "abort")
"""vLLM's ``finished_reason`` values (``FinishReason``); each is exposed from the start, at 0."""

_ENGINE_FINISH = {"tool_calls": "stop"}  # a tool call is an API-level reason; the engine stopped


class MockMetrics:
    """Counters of one mock server, exposed as Prometheus text and as a JSON snapshot.

    Counters are plain integers and the histograms lock-free, read at scrape time, so the
    per-token hot path takes no lock. The engine's gauges and counters (running, waiting, KV-cache
    usage, prefix cache, preemptions) are the scheduler's, read at scrape time too.
    """

    def __init__(self, model: str, scheduler: Scheduler, histograms: EngineHistograms) -> None:
        self.model = model
        self.scheduler = scheduler
        self.histograms = histograms
        self.created_s = time.time()
        self.requests_by_route: Counter[str] = Counter()
        self.faults_by_kind: dict[str, int] = {kind.value: 0 for kind in FaultKind}
        self.success_by_reason: Counter[str] = Counter({reason: 0 for reason in FINISHED_REASONS})
        self.completed = 0
        self.aborted = 0
        self.in_flight = 0
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(_EngineCollector(self))

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
        self.histograms.ttft.observe(latency_s)

    def success(self, latency_s: float, finish_reason: str) -> None:
        """Count a request answered in full and observe its end-to-end latency."""
        self.completed += 1
        self.success_by_reason[_ENGINE_FINISH.get(finish_reason, finish_reason)] += 1
        self.histograms.e2e.observe(latency_s)

    def abort(self) -> None:
        """Count a request whose client went away before the answer was complete."""
        self.aborted += 1

    def exposition(self) -> bytes:
        """The Prometheus text exposition of this server's registry."""
        return generate_latest(self.registry)

    def snapshot(self) -> dict[str, Any]:
        """The ``/mock/stats`` document.

        ``max_*`` are the highest values since start: ``max_kv_cache_usage`` is exact (taken
        just before each drop in usage), ``max_running``/``max_waiting`` are counted at every
        change.
        """
        scheduler = self.scheduler
        kv_usage = scheduler.kv_usage()
        return {
            "requests": dict(self.requests_by_route),
            "faults": dict(self.faults_by_kind),
            "faults_total": sum(self.faults_by_kind.values()),
            "completed": self.completed,
            "aborted": self.aborted,
            "in_flight": self.in_flight,
            "running": scheduler.running,
            "waiting": scheduler.waiting,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "kv_cache_usage": kv_usage,
            "kv_cache_tokens": scheduler.capacity_tokens,
            "max_kv_cache_usage": scheduler.max_held_tokens / scheduler.capacity_tokens,
            "max_running": scheduler.max_running,
            "max_waiting": scheduler.max_waiting,
            "preemptions": scheduler.preemptions,
            "prefix_cache_queries": scheduler.prefix.queries,
            "prefix_cache_hits": scheduler.prefix.hits,
        }


class _EngineCollector(Collector):
    """vLLM's series, read from :class:`MockMetrics` and the scheduler at scrape time.

    Names, types and labels are those of vLLM's V1 ``PrometheusStatLogger``
    (``vllm/v1/metrics/loggers.py``, 0.11): every series has ``model_name`` and ``engine``;
    counters are named without ``_total`` (the exposition adds it, and a ``_created`` sample).
    """

    def __init__(self, metrics: MockMetrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterable[Metric]:
        m = self._metrics
        scheduler = m.scheduler
        labels = ["model_name", "engine"]
        values = [m.model, ENGINE_INDEX]

        def gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
            family = GaugeMetricFamily(name, documentation, labels=labels)
            family.add_metric(values, value)
            return family

        def counter(name: str, documentation: str, value: float) -> CounterMetricFamily:
            family = CounterMetricFamily(name, documentation, labels=labels)
            family.add_metric(values, value, created=m.created_s)
            return family

        success = CounterMetricFamily(
            "vllm:request_success",
            "Count of successfully processed requests.",
            labels=[*labels, "finished_reason"],
        )
        for reason in sorted(m.success_by_reason):
            success.add_metric([*values, reason], m.success_by_reason[reason], created=m.created_s)
        faults = CounterMetricFamily(
            "mock_faults_injected", "Faults injected, by kind.", labels=["kind"]
        )
        for kind, count in m.faults_by_kind.items():
            faults.add_metric([kind], count)
        return [
            gauge(
                "vllm:num_requests_running",
                "Number of requests in model execution batches.",
                scheduler.running,
            ),
            gauge(
                "vllm:num_requests_waiting",
                "Number of requests waiting to be processed.",
                scheduler.waiting,
            ),
            gauge(
                "vllm:kv_cache_usage_perc",
                "KV-cache usage. 1 means 100 percent usage.",
                scheduler.kv_usage(),
            ),
            counter(
                "vllm:prefix_cache_queries",
                "Prefix cache queries, in terms of number of queried tokens.",
                scheduler.prefix.queries,
            ),
            counter(
                "vllm:prefix_cache_hits",
                "Prefix cache hits, in terms of number of cached tokens.",
                scheduler.prefix.hits,
            ),
            counter(
                "vllm:num_preemptions",
                "Cumulative number of preemption from the engine.",
                scheduler.preemptions,
            ),
            counter("vllm:prompt_tokens", "Number of prefill tokens processed.", m.prompt_tokens),
            counter(
                "vllm:generation_tokens",
                "Number of generation tokens processed.",
                m.completion_tokens,
            ),
            success,
            *(histogram.family(labels, values) for histogram in m.histograms.all()),
            faults,
        ]
