"""The inference engine's own view of a run, from its Prometheus ``/metrics``: the ``server`` block.

The target is scraped about every second while a run lasts; this module is the pure part: it
reduces one scrape to a :class:`ScrapeValues` (:func:`parse_exposition`), adds up the replicas of
one target scraped at the same moment (:func:`merge_replicas`), and summarises timed scrapes over
a window (:func:`summarise`). Nothing here does I/O.

Definitions:

- Engines: :data:`ENGINES` names, for each recognised engine (vLLM, SGLang, TGI), the series
  it exposes under one canonical name (``running``, ``ttft_s``, ...), each with the names it has
  had over the engine's versions, the current first; the first one present in a scrape is read.
  :func:`detect_engine` picks the engine of which the most known names are present.
- Label sets: every value is summed over the series' label sets (several ``model_name``,
  ``finished_reason`` or engine labels), histograms bucket by bucket. ``_created`` samples
  (OpenMetrics) are never read, nor are NaN values (a NaN sample counts as absent).
- A counter is read from its ``<name>_total`` sample, or from ``<name>`` where the engine
  exposes it without the suffix (TGI). A series that is a histogram's ``_sum`` is a counter too
  (TGI's prompt and generated tokens are the sums of per-request histograms).
- Window: ``[start_s, end_s]``, in seconds from the cluster's start (:class:`TimedScrape`).
  ``scrapes`` counts the scrapes inside it.
- Gauges (``running``, ``waiting``, ``kv_cache_usage``): ``p50`` (the median), ``max`` and
  ``mean`` of the values of the scrapes inside the window; every scrape weighs the same.
- Deltas (counters, histograms and ``extra``'s ``delta``): from a baseline scrape, the last one
  at or before ``start_s`` (or, if none, the first one inside the window), to the last one at or
  before ``end_s``, over every scrape between them. A value lower than the one before is a
  counter reset, counted as Prometheus' ``increase()`` does (the new value is the increase since
  the reset), but without its extrapolation to the window's edges: what happened between the
  baseline and the window's start is counted, what happens between the last scrape and its end
  is not. A series with fewer than two such scrapes has no delta (``None``). A series that
  first shows in a later scrape was zero in the earlier ones (labelled series appear at their
  first increment: vLLM's ``request_success`` of a finish reason, a histogram's first
  observation).
- Histograms: the delta of each cumulative bucket; a histogram resets as a whole (any bucket
  lower than before, or other bucket bounds: the engine restarted). ``count`` is the delta of
  the ``+Inf`` bucket, ``mean`` the delta of ``_sum`` over it, and ``p50``/``p90``/``p99``
  are estimated from the delta buckets as Prometheus' ``histogram_quantile`` does: linear
  interpolation inside the bucket the rank falls in (the first bucket starting at 0), the
  highest finite bound when it falls in the ``+Inf`` bucket. An estimate is only as fine as the
  engine's buckets; the client-side numbers beside it are exact. ``None`` without observations.
- ``prefix_cache_hit_rate``: delta of hits over delta of queries (tokens, for vLLM and SGLang);
  ``None`` without queries.
- Replicas: :func:`merge_replicas` sums gauges, counters, histogram buckets and extras over the
  replicas of a target, except the fractions of :data:`MEAN_GAUGES` (KV-cache usage), which
  are averaged: a sum of fractions is not a fraction. Buckets with different bounds are added
  as step functions (a label set's count at a bound it lacks is its count at its highest
  bound below), which is exact when the bounds agree, as they do between replicas of an engine.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any, TypeVar

from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families

T = TypeVar("T")

#: Cumulative histogram buckets: ``(upper_bound, count)``, sorted, ``+Inf`` last.
Buckets = list[tuple[float, float]]

#: Quantiles reported for each histogram, by key.
QUANTILES = {"p50": 0.5, "p90": 0.9, "p99": 0.99}
#: Gauges that are fractions of one engine's capacity: averaged over replicas, not summed.
MEAN_GAUGES = frozenset({"kv_cache_usage"})


@dataclass(frozen=True)
class EngineSeries:
    """The series of one engine: canonical name -> its names over versions, the current first."""

    gauges: Mapping[str, tuple[str, ...]]
    counters: Mapping[str, tuple[str, ...]]
    histograms: Mapping[str, tuple[str, ...]]

    def names(self) -> set[str]:
        """Every metric name this engine is known by."""
        kinds = (self.gauges, self.counters, self.histograms)
        return {name for kind in kinds for names in kind.values() for name in names}


# vLLM, V1 engine (0.10+): docs/design/metrics.md ("v1 Metrics") and vllm/v1/metrics/loggers.py
# of vllm-project/vllm. Older names: gpu_cache_usage_perc and gpu_prefix_cache_{queries,hits}
# (V1 before 0.10, and V0), time_per_output_token_seconds (the inter-token histogram's name
# before 0.11; its per-request successor, request_time_per_output_token_seconds, is not ITL).
# Counters are declared without ``_total`` (prometheus_client adds it to the sample).
VLLM = EngineSeries(
    gauges={
        "running": ("vllm:num_requests_running",),
        "waiting": ("vllm:num_requests_waiting",),
        "kv_cache_usage": ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"),
    },
    counters={
        "prompt_tokens": ("vllm:prompt_tokens",),
        "generation_tokens": ("vllm:generation_tokens",),
        "preemptions": ("vllm:num_preemptions",),
        "prefix_cache_queries": ("vllm:prefix_cache_queries", "vllm:gpu_prefix_cache_queries"),
        "prefix_cache_hits": ("vllm:prefix_cache_hits", "vllm:gpu_prefix_cache_hits"),
        "requests": ("vllm:request_success",),  # every finished_reason, summed
    },
    histograms={
        "ttft_s": ("vllm:time_to_first_token_seconds",),
        "itl_s": ("vllm:inter_token_latency_seconds", "vllm:time_per_output_token_seconds"),
        "e2e_s": ("vllm:e2e_request_latency_seconds",),
        "queue_s": ("vllm:request_queue_time_seconds",),
        "prefill_s": ("vllm:request_prefill_time_seconds",),
        "decode_s": ("vllm:request_decode_time_seconds",),
    },
)

# SGLang: python/sglang/srt/metrics/collector.py (SchedulerMetricsCollector and
# TokenizerMetricsCollector) and docs/references/production_metrics.md of sgl-project/sglang.
# Counters are declared as ``sglang:..._total``; prometheus_client names the family without it.
# token_usage is the fraction of KV-cache tokens in use. Prefix cache: cached_tokens counts the
# prompt tokens served from the radix cache, prompt_tokens every prompt token (both on a
# request's finish), so hits/queries is the token hit rate, as vLLM's is. num_requests counts
# finished requests; num_retracted_requests (newer versions) is SGLang's preemption.
# inter_token_latency_seconds replaced time_per_output_token_seconds; queue_time_seconds is
# the scheduler's. No per-request prefill or decode histogram.
SGLANG = EngineSeries(
    gauges={
        "running": ("sglang:num_running_reqs",),
        "waiting": ("sglang:num_queue_reqs",),
        "kv_cache_usage": ("sglang:token_usage",),
    },
    counters={
        "prompt_tokens": ("sglang:prompt_tokens",),
        "generation_tokens": ("sglang:generation_tokens",),
        "preemptions": ("sglang:num_retracted_requests",),
        "prefix_cache_queries": ("sglang:prompt_tokens",),
        "prefix_cache_hits": ("sglang:cached_tokens",),
        "requests": ("sglang:num_requests",),
    },
    histograms={
        "ttft_s": ("sglang:time_to_first_token_seconds",),
        "itl_s": ("sglang:inter_token_latency_seconds", "sglang:time_per_output_token_seconds"),
        "e2e_s": ("sglang:e2e_request_latency_seconds",),
        "queue_s": ("sglang:queue_time_seconds",),
    },
)

# TGI (text-generation-inference): docs/source/reference/metrics.md of
# huggingface/text-generation-inference; the Rust router exports them with
# metrics-exporter-prometheus, counters without ``_total``. tgi_batch_current_size is the number
# of requests in the running batch. Prompt and generated tokens are the ``_sum`` of the
# per-request histograms tgi_request_input_length and tgi_request_generated_tokens. TGI has no
# TTFT, KV-cache, prefix-cache or preemption series; its ITL histogram holds one value per
# request (the request's mean time per token), not one per gap.
TGI = EngineSeries(
    gauges={
        "running": ("tgi_batch_current_size",),
        "waiting": ("tgi_queue_size",),
    },
    counters={
        "prompt_tokens": ("tgi_request_input_length_sum",),
        "generation_tokens": ("tgi_request_generated_tokens_sum",),
        "requests": ("tgi_request_success",),
    },
    histograms={
        "itl_s": ("tgi_request_mean_time_per_token_duration",),
        "e2e_s": ("tgi_request_duration",),
        "queue_s": ("tgi_request_queue_duration",),
    },
)

#: Recognised engines, by the name ``summary.json`` gives them.
ENGINES: dict[str, EngineSeries] = {"vllm": VLLM, "sglang": SGLANG, "tgi": TGI}
#: Canonical gauges of any engine, in report order, with the statistics reported of each.
GAUGES = {
    "running": ("p50", "max", "mean"),
    "waiting": ("p50", "max", "mean"),
    "kv_cache_usage": ("max", "mean"),
}
#: Canonical counters and histograms of any engine, in report order.
COUNTERS = (
    "preemptions", "prompt_tokens", "generation_tokens", "requests",
    "prefix_cache_queries", "prefix_cache_hits",
)  # fmt: skip
HISTOGRAMS = ("ttft_s", "itl_s", "e2e_s", "queue_s", "prefill_s", "decode_s")
_SUFFIXES = ("", "_total", "_bucket", "_count", "_sum")


def detect_engine(families: Iterable[str | Metric]) -> str | None:
    """The engine of which the most known names are present, or None if none is.

    ``families`` are metric families or names (of families or of samples: a counter's
    ``_total`` or a histogram's ``_bucket`` sample names its series too).
    """
    present = {family if isinstance(family, str) else family.name for family in families}
    scores = {
        engine: sum(any(name + s in present for s in _SUFFIXES) for name in series.names())
        for engine, series in ENGINES.items()
    }
    best = max(scores, key=lambda engine: scores[engine])
    return best if scores[best] > 0 else None


@dataclass(frozen=True)
class ScrapeValues:
    """One scrape of one endpoint, reduced to the canonical series (summed over label sets)."""

    engine: str | None
    #: Canonical name -> value.
    gauges: dict[str, float]
    #: Canonical name -> cumulative value.
    counters: dict[str, float]
    #: Canonical name -> cumulative buckets ``[(upper_bound, count)]``, sorted, ``+Inf`` last.
    histograms: dict[str, Buckets]
    #: Any series listed by name (metric family or sample name) -> value.
    extra: dict[str, float]
    #: Canonical histogram name -> its cumulative ``_sum``.
    histogram_sums: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class TimedScrape:
    """A scrape and when it was taken, in seconds from the cluster's start."""

    t_s: float
    values: ScrapeValues


class _Samples:
    """The samples of one scrape, summed over label sets: plain values and histogram buckets."""

    def __init__(self, families: Sequence[Metric]) -> None:
        self.families = [family.name for family in families]
        self.values: dict[str, float] = {}
        # histogram name -> label set (without le) -> {upper bound: cumulative count}
        buckets: dict[str, dict[tuple[tuple[str, str], ...], dict[float, float]]] = {}
        for family in families:
            for sample in family.samples:
                if math.isnan(sample.value) or sample.name.endswith("_created"):
                    continue
                if sample.name.endswith("_bucket") and "le" in sample.labels:
                    key = tuple(sorted((k, v) for k, v in sample.labels.items() if k != "le"))
                    series = buckets.setdefault(sample.name[: -len("_bucket")], {})
                    series.setdefault(key, {})[float(sample.labels["le"])] = sample.value
                else:
                    self.values[sample.name] = self.values.get(sample.name, 0.0) + sample.value
        self.buckets = {
            name: _add_buckets([sorted(one.items()) for one in sets.values()])
            for name, sets in buckets.items()
        }

    def value(self, name: str) -> float | None:
        """The sample called ``name`` (or ``name_total``), summed over label sets."""
        for sample in (name, name + "_total"):
            if sample in self.values:
                return self.values[sample]
        return None


def _read(text: str) -> _Samples:
    """The samples of ``text``; parsed as OpenMetrics when it ends with ``# EOF``."""
    strict = text.rstrip().endswith("# EOF")
    parse = openmetrics_families if strict else text_string_to_metric_families
    try:
        return _Samples(list(parse(text)))
    except ValueError as exc:  # the parsers raise ValueError for every malformed line
        detail = " ".join(str(exc).split())
        detail = detail if len(detail) <= 120 else detail[:117] + "..."
        kind = "OpenMetrics" if strict else "Prometheus"
        raise ValueError(f"not a {kind} text exposition ({detail})") from exc


def _first(samples: _Samples, names: tuple[str, ...]) -> float | None:
    for name in names:
        value = samples.value(name)
        if value is not None:
            return value
    return None


def parse_exposition(text: str, extra_series: Sequence[str] = ()) -> ScrapeValues:
    """Reduce one ``/metrics`` answer to its engine's canonical series and ``extra_series``.

    Unknown families, comments, ``_created`` samples and NaN values are skipped. An extra series
    is a sample name, or a family name: its sample of the same name, else ``_total``, else
    ``_count``. Raises ValueError (one line) for a text that is not the Prometheus format.
    """
    samples = _read(text)
    engine = detect_engine([*samples.families, *samples.values, *samples.buckets])
    gauges: dict[str, float] = {}
    counters: dict[str, float] = {}
    histograms: dict[str, Buckets] = {}
    sums: dict[str, float] = {}
    if engine is not None:
        series = ENGINES[engine]
        for canonical, names in series.gauges.items():
            if (value := _first(samples, names)) is not None:
                gauges[canonical] = value
        for canonical, names in series.counters.items():
            if (value := _first(samples, names)) is not None:
                counters[canonical] = value
        for canonical, names in series.histograms.items():
            name = next((n for n in names if n in samples.buckets), None)
            if name is not None:
                histograms[canonical] = samples.buckets[name]
                sums[canonical] = samples.values.get(name + "_sum", 0.0)
    extra: dict[str, float] = {}
    for name in extra_series:
        value = samples.value(name)
        if value is None:
            value = samples.values.get(name + "_count")
        if value is not None:
            extra[name] = value
    return ScrapeValues(engine, gauges, counters, histograms, extra, sums)


# --- summarising a window -------------------------------------------------------------------


def _count_at(buckets: Buckets, bound: float) -> float:
    """A cumulative histogram's count at ``bound``: its count at its highest bound up to it."""
    count = 0.0
    for upper, cumulative in buckets:
        if upper > bound:
            break
        count = cumulative
    return count


def _add_buckets(histograms: Sequence[Buckets]) -> Buckets:
    """The bucket-by-bucket sum of cumulative histograms (step functions where bounds differ)."""
    bounds = sorted({upper for buckets in histograms for upper, _ in buckets})
    if all(len(h) == len(bounds) for h in histograms):
        return [(upper, sum(h[i][1] for h in histograms)) for i, upper in enumerate(bounds)]
    return [(upper, sum(_count_at(h, upper) for h in histograms)) for upper in bounds]


def bucket_quantile(q: float, buckets: Buckets) -> float | None:
    """The ``q`` quantile of cumulative ``buckets``, as Prometheus' ``histogram_quantile``.

    None without observations or without a ``+Inf`` bucket.
    """
    if len(buckets) < 2 or not math.isinf(buckets[-1][0]):
        return None
    counts: list[float] = []
    # A count below the one before it (float error, a bucket read mid-update) is raised to it,
    # as Prometheus does: cumulative counts never fall.
    for _, count in buckets:
        counts.append(max(count, counts[-1]) if counts else count)
    total = counts[-1]
    if total <= 0:
        return None
    rank = q * total
    b = next((i for i in range(len(buckets) - 1) if counts[i] >= rank), len(buckets) - 1)
    if b == len(buckets) - 1:
        return buckets[-2][0]
    upper = buckets[b][0]
    if b == 0 and upper <= 0:
        return upper
    lower, below = (buckets[b - 1][0], counts[b - 1]) if b > 0 else (0.0, 0.0)
    return lower + (upper - lower) * (rank - below) / (counts[b] - below)


def _span(times: Sequence[float], start_s: float, end_s: float) -> slice | None:
    """The scrapes (indices of sorted ``times``) a delta over the window runs across."""
    before = [i for i, t in enumerate(times) if t <= start_s]
    inside = [i for i, t in enumerate(times) if start_s < t <= end_s]
    if not inside:
        return None
    first = before[-1] if before else inside[0]
    last = inside[-1]
    return slice(first, last + 1) if last > first else None


def _increase(values: Sequence[float]) -> float:
    """A counter's increase over consecutive values, a lower value being a reset."""
    return sum(b - a if b >= a else b for a, b in pairwise(values))


def _from_zero(
    scrapes: Sequence[TimedScrape],
    read: Callable[[ScrapeValues, str], T | None],
    name: str,
    zero: T,
) -> list[tuple[float, T]]:
    """``(t_s, value)`` of the scrapes with a value of series ``name``, ``zero`` before the first.

    A labelled series appears at its first increment (a request's first finish reason, say), so
    an engine that has not shown it yet has counted nothing: its baseline is zero, not missing.
    Later scrapes without it (the engine stopped exposing it) are left out.
    """
    values = [(scrape.t_s, read(scrape.values, name)) for scrape in scrapes]
    first = next((i for i, (_, value) in enumerate(values) if value is not None), None)
    if first is None:
        return []
    before = [(t, zero) for t, _ in values[:first]]
    return before + [(t, value) for t, value in values[first:] if value is not None]


def _counter_of(values: ScrapeValues, name: str) -> float | None:
    return values.counters.get(name)


def _extra_of(values: ScrapeValues, name: str) -> float | None:
    return values.extra.get(name)


#: A histogram before its first observation: no buckets (a new set of bounds: counted from 0).
_NO_OBSERVATIONS: tuple[Buckets, float] = ([], 0.0)


def _histogram_of(values: ScrapeValues, name: str) -> tuple[Buckets, float] | None:
    buckets = values.histograms.get(name)
    return None if buckets is None else (buckets, values.histogram_sums.get(name, 0.0))


def _counter_delta(
    points: Sequence[tuple[float, float]], start_s: float, end_s: float
) -> float | None:
    span = _span([t for t, _ in points], start_s, end_s)
    return None if span is None else _increase([v for _, v in points[span]])


def _histogram_delta(
    points: Sequence[tuple[float, tuple[Buckets, float]]], start_s: float, end_s: float
) -> tuple[Buckets, float] | None:
    """Delta buckets and delta sum over the window, each reset restarting from zero."""
    span = _span([t for t, _ in points], start_s, end_s)
    if span is None:
        return None
    chosen = [histogram for _, histogram in points[span]]
    delta: Buckets = [(upper, 0.0) for upper, _ in chosen[-1][0]]
    delta_sum = 0.0
    for (old, old_sum), (new, new_sum) in pairwise(chosen):
        same_bounds = [u for u, _ in old] == [u for u, _ in new]
        if same_bounds and all(n >= o for (_, o), (_, n) in zip(old, new, strict=True)):
            step = [(u, n - o) for (u, o), (_, n) in zip(old, new, strict=True)]
            delta_sum += new_sum - old_sum
        else:  # a reset: everything counted since it is new
            step = new
            delta_sum += new_sum
        delta = _add_buckets([delta, step])
    return delta, delta_sum


def _histogram_stats(delta: tuple[Buckets, float] | None) -> dict[str, float | None] | None:
    if delta is None:
        return None
    buckets, total_s = delta
    count = buckets[-1][1] if buckets and math.isinf(buckets[-1][0]) else 0.0
    if count <= 0:
        return None
    stats: dict[str, float | None] = {"count": count, "mean": total_s / count}
    for key, q in QUANTILES.items():
        stats[key] = bucket_quantile(q, buckets)
    return stats


def _gauge_stats(values: Sequence[float], keys: Sequence[str]) -> dict[str, float] | None:
    if not values:
        return None
    every = {"p50": statistics.median(values), "max": max(values), "mean": statistics.fmean(values)}
    return {key: every[key] for key in keys}


def summarise(scrapes: Sequence[TimedScrape], start_s: float, end_s: float) -> dict[str, Any]:
    """The ``server`` statistics of one endpoint (or merged replicas) over ``[start_s, end_s]``.

    See the module's docstring for the definitions; a missing series is ``None``.
    """
    ordered = sorted(scrapes, key=lambda scrape: scrape.t_s)
    inside = [s.values for s in ordered if start_s <= s.t_s <= end_s]
    engines = Counter(s.values.engine for s in ordered if s.values.engine is not None)
    result: dict[str, Any] = {
        "engine": engines.most_common(1)[0][0] if engines else None,
        "scrapes": len(inside),
    }
    for name, keys in GAUGES.items():
        result[name] = _gauge_stats([v.gauges[name] for v in inside if name in v.gauges], keys)
    deltas: dict[str, float | None] = {}
    for name in COUNTERS:
        points = _from_zero(ordered, _counter_of, name, 0.0)
        deltas[name] = _counter_delta(points, start_s, end_s)
    for name in ("preemptions", "prompt_tokens", "generation_tokens", "requests"):
        result[name] = deltas[name]
    queries, hits = deltas["prefix_cache_queries"], deltas["prefix_cache_hits"]
    result["prefix_cache_hit_rate"] = hits / queries if queries and hits is not None else None
    for name in HISTOGRAMS:
        hist_points = _from_zero(ordered, _histogram_of, name, _NO_OBSERVATIONS)
        result[name] = _histogram_stats(_histogram_delta(hist_points, start_s, end_s))
    result["extra"] = _extra_stats(ordered, inside, start_s, end_s)
    return result


def _extra_stats(
    ordered: Sequence[TimedScrape], inside: Sequence[ScrapeValues], start_s: float, end_s: float
) -> dict[str, dict[str, float | None]]:
    names = dict.fromkeys(name for s in ordered for name in s.values.extra)
    stats: dict[str, dict[str, float | None]] = {}
    for name in names:
        values = [v.extra[name] for v in inside if name in v.extra]
        points = _from_zero(ordered, _extra_of, name, 0.0)
        stats[name] = {
            "last": values[-1] if values else None,
            "max": max(values) if values else None,
            "delta": _counter_delta(points, start_s, end_s),
        }
    return stats


# --- replicas -------------------------------------------------------------------------------


def _summed(
    parts: Iterable[Mapping[str, float]], mean: frozenset[str] = frozenset()
) -> dict[str, float]:
    values: dict[str, list[float]] = defaultdict(list)
    for part in parts:
        for name, value in part.items():
            values[name].append(value)
    return {
        name: statistics.fmean(vs) if name in mean else math.fsum(vs) for name, vs in values.items()
    }


def merge_replicas(per_url: Sequence[ScrapeValues]) -> ScrapeValues:
    """Several replicas of one target scraped at the same moment, as one engine.

    Gauges (but the fractions of :data:`MEAN_GAUGES`, averaged), counters, histogram buckets
    and extras are summed over the replicas that have them; the engine is the replicas' one
    (None if they disagree).
    """
    engines = {v.engine for v in per_url if v.engine is not None}
    histograms: dict[str, list[Buckets]] = defaultdict(list)
    for values in per_url:
        for name, buckets in values.histograms.items():
            histograms[name].append(buckets)
    return ScrapeValues(
        engine=engines.pop() if len(engines) == 1 else None,
        gauges=_summed((v.gauges for v in per_url), MEAN_GAUGES),
        counters=_summed(v.counters for v in per_url),
        histograms={name: _add_buckets(parts) for name, parts in histograms.items()},
        extra=_summed(v.extra for v in per_url),
        histogram_sums=_summed(v.histogram_sums for v in per_url),
    )
