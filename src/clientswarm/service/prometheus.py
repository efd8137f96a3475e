"""The Prometheus side of the monitor API: ``/metrics`` exposition and HTTP service discovery.

A :class:`LiveRegistry` holds the :class:`~clientswarm.metrics.live.LiveStats` of every cluster
the service follows; :func:`render_metrics` exposes them in the Prometheus text format through a
custom collector, built fresh at each scrape from the since-start counters and histograms.

Series (``cluster`` is the cluster id, ``cluster_name`` its configured name, ``group`` the
client group, and ``target``, on every series that has ``group``, the name of the group's
target; totals are ``sum()`` s, so no total series is exported beside the groups, and a
target's are ``sum by (target)``):

=========================================  ========  =======================================
metric                                     type      labels besides cluster, cluster_name
=========================================  ========  =======================================
``clientswarm_requests_total``             counter   group, outcome (``ok``, ``error``)
``clientswarm_errors_total``               counter   group, kind (e.g. ``timeout``, ``http_429``)
``clientswarm_excluded_requests_total``    counter   group, reason (``warmup``, ``cancelled``)
``clientswarm_output_tokens_total``        counter   group
``clientswarm_input_tokens_total``         counter   group
``clientswarm_ttft_seconds``               histogram group
``clientswarm_itl_seconds``                histogram group
``clientswarm_tpot_seconds``               histogram group
``clientswarm_e2e_seconds``                histogram group
``clientswarm_schedule_lag_seconds``       histogram group
``clientswarm_active_clients``             gauge     group
``clientswarm_workers``                    gauge     state
``clientswarm_clusters``                   gauge     status (only label)
=========================================  ========  =======================================

Steps of user-defined interactions (a ``ctx.measure`` span, a helper's LLM call) are not
requests of their group: the series above count interactions only. Each step has series of its
own, labelled by ``target``, ``group`` and ``step`` (its name), with the same meaning:
``clientswarm_step_requests_total``, ``clientswarm_step_errors_total``,
``clientswarm_step_excluded_requests_total``, ``clientswarm_step_output_tokens_total``,
``clientswarm_step_input_tokens_total`` and the histograms ``clientswarm_step_ttft_seconds``,
``clientswarm_step_itl_seconds``, ``clientswarm_step_tpot_seconds``,
``clientswarm_step_e2e_seconds`` (no schedule lag: that is the interaction's).

Histogram buckets are fixed (:data:`LATENCY_BUCKETS_S`, :data:`LAG_BUCKETS_S`), filled from the
live log-linear histograms, whose resolution (0.8 %) bounds how far a count at a bucket bound can
be off. The requests, tokens and latencies count measured samples only (not warm-up, not
cancelled), like the final statistics.
"""

from __future__ import annotations

import re
import threading
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from clientswarm.metrics.histogram import Histogram
from clientswarm.metrics.live import LiveStats, Tally

#: Upper bounds (seconds) of the latency histograms: LLM ITL (ms) up to long generations (10 min).
LATENCY_BUCKETS_S: tuple[float, ...] = (
    *(0.001, 0.002, 0.005, 0.01, 0.015, 0.02, 0.025, 0.03, 0.04, 0.05, 0.075),
    *(0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 7.5),
    *(10.0, 15.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0),
)
#: Upper bounds (seconds) of the schedule-lag histogram: healthy lag is well below 10 ms.
LAG_BUCKETS_S: tuple[float, ...] = (
    *(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05),
    *(0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)

#: Live metric → (Prometheus name, help text, bucket bounds).
HISTOGRAMS: dict[str, tuple[str, str, tuple[float, ...]]] = {
    "ttft_s": (
        "clientswarm_ttft_seconds",
        "Time to first token: from sending the request to its first content token.",
        LATENCY_BUCKETS_S,
    ),
    "itl_s": (
        "clientswarm_itl_seconds",
        "Inter-token latency: gap between streamed tokens (multi-token chunks split evenly).",
        LATENCY_BUCKETS_S,
    ),
    "tpot_s": (
        "clientswarm_tpot_seconds",
        "Time per output token after the first: (E2E - TTFT) / (output tokens - 1).",
        LATENCY_BUCKETS_S,
    ),
    "e2e_s": (
        "clientswarm_e2e_seconds",
        "End-to-end latency of successful requests: from send to the end of the answer.",
        LATENCY_BUCKETS_S,
    ),
    "schedule_lag_s": (
        "clientswarm_schedule_lag_seconds",
        "How late requests were sent after their scheduled time (load generator health).",
        LAG_BUCKETS_S,
    ),
}

#: The histograms of steps: a step's schedule lag is its interaction's business.
STEP_HISTOGRAMS: tuple[str, ...] = ("ttft_s", "itl_s", "tpot_s", "e2e_s")

_CLUSTER = ("cluster", "cluster_name")
_GROUP = (*_CLUSTER, "target", "group")
_STEP = (*_GROUP, "step")
_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


class LiveRegistry:
    """The live statistics of every cluster the service follows, by cluster id."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._clusters: dict[str, LiveStats] = {}

    def get_or_create(
        self,
        cluster_id: str,
        cluster_name: str | None = None,
        *,
        groups: Sequence[str] = (),
        group_targets: Mapping[str, str] | None = None,
        status: str | None = None,
    ) -> LiveStats:
        """The cluster's live statistics, created (with these groups, their targets by group
        name, and status) if new."""
        with self._lock:
            live = self._clusters.get(cluster_id)
            if live is None:
                live = LiveStats(
                    cluster_id,
                    cluster_name,
                    groups=groups,
                    group_targets=group_targets,
                    status=status,
                )
                self._clusters[cluster_id] = live
            return live

    def get(self, cluster_id: str) -> LiveStats | None:
        """The cluster's live statistics, or None when it is not followed."""
        with self._lock:
            return self._clusters.get(cluster_id)

    def remove(self, cluster_id: str) -> None:
        """Forget a cluster (e.g. deleted); its series leave the exposition. No-op if absent."""
        with self._lock:
            self._clusters.pop(cluster_id, None)

    def clusters(self) -> list[LiveStats]:
        """Every cluster's live statistics, in order of creation."""
        with self._lock:
            return list(self._clusters.values())

    def __len__(self) -> int:
        with self._lock:
            return len(self._clusters)

    def __contains__(self, cluster_id: object) -> bool:
        with self._lock:
            return cluster_id in self._clusters


class LiveCollector(Collector):
    """A ``prometheus_client`` collector over a :class:`LiveRegistry` (see the module table)."""

    def __init__(self, registry: LiveRegistry) -> None:
        self.registry = registry

    def describe(self) -> list[Metric]:
        """Nothing up front: the series depend on the clusters at scrape time."""
        return []

    def collect(self) -> Iterator[Metric]:
        """One family per metric, with a series per cluster and group (and step), labelled by
        the group's target too."""
        groups = _TallyFamilies("clientswarm_", _GROUP, "requests", tuple(HISTOGRAMS))
        steps = _TallyFamilies("clientswarm_step_", _STEP, "steps", STEP_HISTOGRAMS)
        active = GaugeMetricFamily(
            "clientswarm_active_clients", "Clients currently running.", labels=_GROUP
        )
        workers = GaugeMetricFamily(
            "clientswarm_workers", "Workers by state.", labels=(*_CLUSTER, "state")
        )
        statuses: Counter[str] = Counter()
        for live in self.registry.clusters():
            cluster = [live.cluster_id, live.cluster_name or ""]
            statuses[live.status or "unknown"] += 1
            # A group not yet known to have a target (no sample, none given) has none: an
            # empty label, which Prometheus reads as no label.
            targets = live.group_targets
            for group, t in live.since_start().items():
                groups.add([*cluster, targets.get(group, ""), group], t)
            for group, named in live.steps_since_start().items():
                for step, t in named.items():
                    steps.add([*cluster, targets.get(group, ""), group, step], t)
            for group, n in sorted(live.active_clients.items()):
                active.add_metric([*cluster, targets.get(group, ""), group], n)
            for state, n in sorted(live.workers.items()):
                workers.add_metric([*cluster, state], n)
        clusters = GaugeMetricFamily(
            "clientswarm_clusters", "Clusters the service follows, by status.", labels=["status"]
        )
        for status, n in sorted(statuses.items()):
            clusters.add_metric([status], n)
        yield from groups.families()
        yield from (active, workers, clusters)
        yield from steps.families()


class _TallyFamilies:
    """The counter and histogram families of a set of tallies (groups, or steps).

    ``prefix`` starts every family name (``clientswarm_``, ``clientswarm_step_``), ``labels``
    name a series (the cluster's, then the group's, then the step's), ``noun`` says what is
    counted in the help texts, ``histograms`` are the :data:`HISTOGRAMS` keys to export.
    """

    def __init__(
        self, prefix: str, labels: tuple[str, ...], noun: str, histograms: Sequence[str]
    ) -> None:
        self.requests = CounterMetricFamily(
            f"{prefix}requests",
            f"Measured {noun} that completed, by outcome (warm-up and cancelled excluded).",
            labels=(*labels, "outcome"),
        )
        self.errors = CounterMetricFamily(
            f"{prefix}errors",
            f"Failed measured {noun} by error kind (timeout, connection, http_<status>, ...).",
            labels=(*labels, "kind"),
        )
        self.excluded = CounterMetricFamily(
            f"{prefix}excluded_requests",
            f"{noun.capitalize()} left out of the statistics: during warm-up, or cut off by a "
            "stop.",
            labels=(*labels, "reason"),
        )
        self.output_tokens = CounterMetricFamily(
            f"{prefix}output_tokens",
            f"Output tokens of successful measured {noun}.",
            labels=labels,
            unit="tokens",
        )
        self.input_tokens = CounterMetricFamily(
            f"{prefix}input_tokens",
            f"Input (prompt) tokens of successful measured {noun}.",
            labels=labels,
            unit="tokens",
        )
        self.histograms = {
            metric: HistogramMetricFamily(
                prefix + HISTOGRAMS[metric][0].removeprefix("clientswarm_"),
                HISTOGRAMS[metric][1],
                labels=labels,
                unit="seconds",
            )
            for metric in histograms
        }

    def add(self, labels: list[str], t: Tally) -> None:
        """Add the series of one tally (one group, or one step of a group)."""
        self.requests.add_metric([*labels, "ok"], t.succeeded)
        self.requests.add_metric([*labels, "error"], t.failed)
        for kind, n in sorted(t.errors.items()):
            self.errors.add_metric([*labels, kind], n)
        self.excluded.add_metric([*labels, "warmup"], t.warmup)
        self.excluded.add_metric([*labels, "cancelled"], t.cancelled)
        self.output_tokens.add_metric(labels, t.output_tokens)
        self.input_tokens.add_metric(labels, t.input_tokens)
        _add_histograms(self.histograms, labels, t)

    def families(self) -> Iterator[Metric]:
        """Every family, counters first."""
        yield from (
            self.requests,
            self.errors,
            self.excluded,
            self.output_tokens,
            self.input_tokens,
        )
        yield from self.histograms.values()


def _add_histograms(
    families: Mapping[str, HistogramMetricFamily], labels: list[str], t: Tally
) -> None:
    """Add one group's (or step's) histograms as cumulative ``le`` buckets."""
    for metric, family in families.items():
        h: Histogram = t.hist[metric]
        bounds = HISTOGRAMS[metric][2]
        counts = h.cumulative_buckets(bounds)
        buckets = [(_le(b), float(n)) for b, n in zip(bounds, counts, strict=True)]
        buckets.append(("+Inf", float(h.count)))
        family.add_metric(labels, buckets, sum_value=h.sum)


def _le(bound: float) -> str:
    """A bucket bound as Prometheus clients write it (``0.5``, ``1.0``, ``600.0``)."""
    return repr(float(bound))


def render_metrics(registry: LiveRegistry) -> bytes:
    """The Prometheus text exposition of every cluster in ``registry`` (:data:`CONTENT_TYPE`)."""
    prom = CollectorRegistry(auto_describe=False)
    prom.register(LiveCollector(registry))
    return generate_latest(prom)


#: The Content-Type of :func:`render_metrics` output.
CONTENT_TYPE = CONTENT_TYPE_LATEST


def http_sd_targets(
    base_url: str, *, extra_labels: Mapping[str, str] | None = None
) -> list[dict[str, Any]]:
    """The Prometheus HTTP service-discovery answer for the service at ``base_url``.

    One target group: ``[{"targets": ["host:port"], "labels": {"__metrics_path__": "/metrics",
    "__scheme__": "http", ...extra_labels}}]``, served with ``Content-Type: application/json``.
    A path in ``base_url`` (a reverse-proxy prefix) is kept in ``__metrics_path__``.
    """
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(
            f"base_url {base_url!r} is not an absolute http(s) URL; expected e.g. "
            "'http://10.0.0.5:8080', the address Prometheus can reach the service at"
        )
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    port = parts.port or (443 if parts.scheme == "https" else 80)
    labels = {
        "__metrics_path__": parts.path.rstrip("/") + "/metrics",
        "__scheme__": parts.scheme,
    }
    for name, value in (extra_labels or {}).items():
        if not _LABEL_NAME.match(name) or name.startswith("__"):
            raise ValueError(
                f"extra label name {name!r} is not a valid Prometheus label name "
                "(letters, digits and underscores, not starting with a digit or '__')"
            )
        labels[name] = str(value)
    return [{"targets": [f"{host}:{port}"], "labels": labels}]


__all__ = [
    "CONTENT_TYPE",
    "HISTOGRAMS",
    "LAG_BUCKETS_S",
    "LATENCY_BUCKETS_S",
    "STEP_HISTOGRAMS",
    "LiveCollector",
    "LiveRegistry",
    "http_sd_targets",
    "render_metrics",
]
