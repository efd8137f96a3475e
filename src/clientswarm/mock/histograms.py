"""The engine-side latency histograms of the mock target, with vLLM's names and bucket edges.

Each one is observed from the event loop's thread only, so it takes no lock: observing an
inter-token gap per token stays cheap. They are read at scrape time by
:mod:`clientswarm.mock.metrics`. Bucket edges are those of vLLM's V1 ``PrometheusStatLogger``
(``vllm/v1/metrics/loggers.py``).
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Iterable

from prometheus_client.core import HistogramMetricFamily

TTFT_BUCKETS_S = (
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0,
    2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0,
)  # fmt: skip
ITL_BUCKETS_S = (
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0,
    2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0,
)  # fmt: skip
REQUEST_LATENCY_BUCKETS_S = (
    0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0,
    50.0, 60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0,
)  # fmt: skip
E2E_BUCKETS_S = REQUEST_LATENCY_BUCKETS_S


def _le(bound: float) -> str:
    """A bucket bound as prometheus_client writes it: ``0.005``, ``1.0``, ``+Inf``."""
    return "+Inf" if bound == math.inf else repr(float(bound))


class LatencyHistogram:
    """Cumulative-bucket histogram of seconds; lock-free (event-loop thread only)."""

    __slots__ = ("_counts", "bounds_s", "count", "documentation", "name", "sum_s")

    def __init__(self, name: str, documentation: str, bounds_s: tuple[float, ...]) -> None:
        self.name = name
        self.documentation = documentation
        self.bounds_s = bounds_s
        self._counts = [0] * (len(bounds_s) + 1)  # per bucket, not cumulative; last is +Inf
        self.count = 0
        self.sum_s = 0.0

    def observe(self, value_s: float) -> None:
        """Count one observation (``le`` buckets: a value equal to a bound falls in it)."""
        self._counts[bisect_left(self.bounds_s, value_s)] += 1
        self.count += 1
        self.sum_s += value_s

    def observe_many(self, values_s: Iterable[float]) -> None:
        """Count several observations."""
        for value in values_s:
            self.observe(value)

    def family(self, label_names: list[str], label_values: list[str]) -> HistogramMetricFamily:
        """The Prometheus family of this histogram with one label set."""
        family = HistogramMetricFamily(self.name, self.documentation, labels=label_names)
        buckets: list[tuple[str, float]] = []
        total = 0
        for bound, count in zip((*self.bounds_s, math.inf), self._counts, strict=True):
            total += count
            buckets.append((_le(bound), total))
        family.add_metric(label_values, buckets, self.sum_s)
        return family


class EngineHistograms:
    """The request-timing histograms a vLLM engine exposes, fed by the mock's real timings.

    - ``ttft``: arrival to first token (queue and prefill included).
    - ``itl``: each gap between two successive tokens of a sequence (a preemption's wait is in
      the gap that spans it).
    - ``e2e``: arrival to the answer's end.
    - ``queue``: enqueued to first admitted (a preempted sequence's later waits are not in it).
    - ``prefill``: first admitted to first token. ``decode``: first token to last token.
      ``inference``: first admitted to last token.
    """

    __slots__ = ("decode", "e2e", "inference", "itl", "prefill", "queue", "ttft")

    def __init__(self) -> None:
        self.ttft = LatencyHistogram(
            "vllm:time_to_first_token_seconds",
            "Histogram of time to first token in seconds.",
            TTFT_BUCKETS_S,
        )
        self.itl = LatencyHistogram(
            "vllm:inter_token_latency_seconds",
            "Histogram of inter-token latency in seconds.",
            ITL_BUCKETS_S,
        )
        self.e2e = LatencyHistogram(
            "vllm:e2e_request_latency_seconds",
            "Histogram of e2e request latency in seconds.",
            E2E_BUCKETS_S,
        )
        self.queue = LatencyHistogram(
            "vllm:request_queue_time_seconds",
            "Histogram of time spent in WAITING phase for request.",
            REQUEST_LATENCY_BUCKETS_S,
        )
        self.prefill = LatencyHistogram(
            "vllm:request_prefill_time_seconds",
            "Histogram of time spent in PREFILL phase for request.",
            REQUEST_LATENCY_BUCKETS_S,
        )
        self.decode = LatencyHistogram(
            "vllm:request_decode_time_seconds",
            "Histogram of time spent in DECODE phase for request.",
            REQUEST_LATENCY_BUCKETS_S,
        )
        self.inference = LatencyHistogram(
            "vllm:request_inference_time_seconds",
            "Histogram of time spent in RUNNING phase for request.",
            REQUEST_LATENCY_BUCKETS_S,
        )

    def all(self) -> tuple[LatencyHistogram, ...]:
        """Every histogram, in exposition order."""
        return (
            self.ttft,
            self.itl,
            self.e2e,
            self.queue,
            self.prefill,
            self.decode,
            self.inference,
        )
