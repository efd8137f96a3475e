"""Engines' Prometheus metrics: parsing real expositions, windows, deltas, quantiles, replicas."""

from __future__ import annotations

import asyncio
import math
import time
from typing import Any

import aiohttp
import orjson
import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics

from clientswarm.metrics.engine import (
    ENGINES,
    ScrapeValues,
    TimedScrape,
    bucket_quantile,
    detect_engine,
    merge_replicas,
    parse_exposition,
    summarise,
)
from clientswarm.mock import MockSettings, start_mock_server

INF = math.inf
MODELS = ("model-a", "model-b")


def vllm_v1_registry() -> CollectorRegistry:
    """vLLM V1's series as vLLM declares them (prometheus_client), over two model names."""
    registry = CollectorRegistry()
    labels = ["model_name"]
    running = Gauge("vllm:num_requests_running", "", labels, registry=registry)
    waiting = Gauge("vllm:num_requests_waiting", "", labels, registry=registry)
    kv = Gauge("vllm:kv_cache_usage_perc", "", labels, registry=registry)
    prompt = Counter("vllm:prompt_tokens", "", labels, registry=registry)
    generation = Counter("vllm:generation_tokens", "", labels, registry=registry)
    preemptions = Counter("vllm:num_preemptions", "", labels, registry=registry)
    queries = Counter("vllm:prefix_cache_queries", "", labels, registry=registry)
    hits = Counter("vllm:prefix_cache_hits", "", labels, registry=registry)
    success = Counter(
        "vllm:request_success", "", ["model_name", "finished_reason"], registry=registry
    )
    ttft = Histogram(
        "vllm:time_to_first_token_seconds", "", labels, buckets=(0.1, 0.5, 1.0), registry=registry
    )
    # a histogram whose family name ends in _total, as vLLM's does
    steps = Histogram("vllm:iteration_tokens_total", "", labels, buckets=(1, 8), registry=registry)
    for i, model in enumerate(MODELS, start=1):
        running.labels(model).set(2 * i)  # 2 + 4
        waiting.labels(model).set(i)  # 1 + 2
        kv.labels(model).set(0.25 * i)  # 0.25 + 0.5
        prompt.labels(model).inc(100 * i)  # 300
        generation.labels(model).inc(10 * i)  # 30
        preemptions.labels(model).inc(i)  # 3
        queries.labels(model).inc(64 * i)  # 192
        hits.labels(model).inc(16 * i)  # 48
        success.labels(model, "stop").inc(i)
        success.labels(model, "length").inc(1)  # 3 stop + 2 length
        for value in (0.05, 0.3 * i, 2.0):
            ttft.labels(model).observe(value)
        steps.labels(model).observe(4 * i)
    return registry


def test_parses_vllm_v1_as_vllm_writes_it_summed_over_label_sets() -> None:
    text = generate_latest(vllm_v1_registry()).decode()
    assert "vllm:prompt_tokens_total{" in text and "vllm:prompt_tokens_created{" in text
    values = parse_exposition(text)
    assert values.engine == "vllm"
    assert values.gauges == {"running": 6.0, "waiting": 3.0, "kv_cache_usage": 0.75}
    assert values.counters == {
        "prompt_tokens": 300.0,
        "generation_tokens": 30.0,
        "preemptions": 3.0,
        "prefix_cache_queries": 192.0,
        "prefix_cache_hits": 48.0,
        "requests": 5.0,
    }
    # model-a: 0.05, 0.3, 2.0; model-b: 0.05, 0.6, 2.0
    assert values.histograms == {"ttft_s": [(0.1, 2.0), (0.5, 3.0), (1.0, 4.0), (INF, 6.0)]}
    assert values.histogram_sums["ttft_s"] == pytest.approx(0.05 * 2 + 0.3 + 0.6 + 4.0)
    assert values.extra == {}


def test_extra_series_by_family_or_sample_name() -> None:
    registry = vllm_v1_registry()
    Counter("my_requests", "", registry=registry).inc(7)
    Gauge("my_depth", "", ["shard"], registry=registry).labels("x").set(2)
    text = generate_latest(registry).decode()
    names = [
        "my_requests",  # a counter's family: its _total sample
        "my_requests_total",
        "my_depth",
        "vllm:iteration_tokens_total",  # a histogram's family: its _count
        "vllm:time_to_first_token_seconds_sum",
        "vllm:request_success",  # summed over model and finished_reason
        "absent_series",
    ]
    extra = parse_exposition(text, names).extra
    assert extra == {
        "my_requests": 7.0,
        "my_requests_total": 7.0,
        "my_depth": 2.0,
        "vllm:iteration_tokens_total": 2.0,
        "vllm:time_to_first_token_seconds_sum": pytest.approx(5.0),
        "vllm:request_success": 5.0,
    }


def test_older_vllm_names_are_read_and_current_names_win() -> None:
    old = """\
# HELP vllm:gpu_cache_usage_perc GPU KV-cache usage. 1 means 100 percent usage.
# TYPE vllm:gpu_cache_usage_perc gauge
vllm:gpu_cache_usage_perc{model_name="m"} 0.4
# TYPE vllm:gpu_prefix_cache_queries_total counter
vllm:gpu_prefix_cache_queries_total{model_name="m"} 200.0
# TYPE vllm:gpu_prefix_cache_hits_total counter
vllm:gpu_prefix_cache_hits_total{model_name="m"} 50.0
# TYPE vllm:time_per_output_token_seconds histogram
vllm:time_per_output_token_seconds_bucket{le="0.01",model_name="m"} 3.0
vllm:time_per_output_token_seconds_bucket{le="0.1",model_name="m"} 9.0
vllm:time_per_output_token_seconds_bucket{le="+Inf",model_name="m"} 10.0
vllm:time_per_output_token_seconds_count{model_name="m"} 10.0
vllm:time_per_output_token_seconds_sum{model_name="m"} 0.5
"""
    values = parse_exposition(old)
    assert values.engine == "vllm"
    assert values.gauges == {"kv_cache_usage": 0.4}
    assert values.counters == {"prefix_cache_queries": 200.0, "prefix_cache_hits": 50.0}
    assert values.histograms["itl_s"] == [(0.01, 3.0), (0.1, 9.0), (INF, 10.0)]
    assert values.histogram_sums["itl_s"] == 0.5

    both = (
        old
        + """\
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{model_name="m"} 0.9
# TYPE vllm:inter_token_latency_seconds histogram
vllm:inter_token_latency_seconds_bucket{le="0.05",model_name="m"} 1.0
vllm:inter_token_latency_seconds_bucket{le="+Inf",model_name="m"} 1.0
vllm:inter_token_latency_seconds_sum{model_name="m"} 0.02
"""
    )
    values = parse_exposition(both)
    assert values.gauges == {"kv_cache_usage": 0.9}
    assert values.histograms["itl_s"] == [(0.05, 1.0), (INF, 1.0)]


def test_parses_sglang_as_its_docs_show_it() -> None:
    # The shape of docs/references/production_metrics.md of sgl-project/sglang: counters
    # declared with _total, le before model_name, several tp ranks.
    text = """\
# HELP sglang:prompt_tokens_total Number of prefill tokens processed.
# TYPE sglang:prompt_tokens_total counter
sglang:prompt_tokens_total{model_name="meta-llama/Llama-3.1-8B",tp_rank="0"} 8.128902e+06
sglang:prompt_tokens_total{model_name="meta-llama/Llama-3.1-8B",tp_rank="1"} 1.0e+06
# TYPE sglang:generation_tokens_total counter
sglang:generation_tokens_total{model_name="meta-llama/Llama-3.1-8B"} 7.557572e+06
# TYPE sglang:cached_tokens_total counter
sglang:cached_tokens_total{model_name="m",cache_source="device"} 3.0e+06
sglang:cached_tokens_total{model_name="m",cache_source="host"} 1.0e+06
# TYPE sglang:num_requests_total counter
sglang:num_requests_total{model_name="m"} 11228.0
# TYPE sglang:token_usage gauge
sglang:token_usage{model_name="meta-llama/Llama-3.1-8B"} 0.28
# TYPE sglang:cache_hit_rate gauge
sglang:cache_hit_rate{model_name="meta-llama/Llama-3.1-8B"} 0.007507552643049313
# TYPE sglang:time_to_first_token_seconds histogram
sglang:time_to_first_token_seconds_sum{model_name="meta-llama/Llama-3.1-8B"} 2.35e+06
sglang:time_to_first_token_seconds_bucket{le="0.04",model_name="meta-llama/Llama-3.1-8B"} 1.0
sglang:time_to_first_token_seconds_bucket{le="1.0",model_name="meta-llama/Llama-3.1-8B"} 27.0
sglang:time_to_first_token_seconds_bucket{le="+Inf",model_name="meta-llama/Llama-3.1-8B"} 11008.0
sglang:time_to_first_token_seconds_count{model_name="meta-llama/Llama-3.1-8B"} 11008.0
# TYPE sglang:num_running_reqs gauge
sglang:num_running_reqs{model_name="meta-llama/Llama-3.1-8B"} 162.0
# TYPE sglang:num_queue_reqs gauge
sglang:num_queue_reqs{model_name="meta-llama/Llama-3.1-8B"} 2826.0
"""
    values = parse_exposition(text, ["sglang:cache_hit_rate"])
    assert values.engine == "sglang"
    assert values.gauges == {"running": 162.0, "waiting": 2826.0, "kv_cache_usage": 0.28}
    assert values.counters == {
        "prompt_tokens": 9128902.0,
        "generation_tokens": 7557572.0,
        "prefix_cache_queries": 9128902.0,
        "prefix_cache_hits": 4.0e6,
        "requests": 11228.0,
    }
    assert values.histograms["ttft_s"] == [(0.04, 1.0), (1.0, 27.0), (INF, 11008.0)]
    assert values.extra == {"sglang:cache_hit_rate": pytest.approx(0.0075075526)}


def test_parses_sglang_declared_as_sglang_declares_it() -> None:
    registry = CollectorRegistry()
    Counter("sglang:prompt_tokens_total", "", ["model_name"], registry=registry).labels("m").inc(9)
    Gauge("sglang:num_running_reqs", "", ["model_name"], registry=registry).labels("m").set(4)
    itl = Histogram(
        "sglang:inter_token_latency_seconds", "", buckets=(0.01, 0.02), registry=registry
    )
    itl.observe(0.015)
    values = parse_exposition(generate_latest(registry).decode())
    assert values.engine == "sglang"
    assert values.counters["prompt_tokens"] == 9.0 and values.gauges == {"running": 4.0}
    assert values.histograms["itl_s"] == [(0.01, 0.0), (0.02, 1.0), (INF, 1.0)]


def test_parses_tgi_as_metrics_exporter_prometheus_writes_it() -> None:
    # The Rust exporter: counters without _total, histograms with buckets (TGI sets them).
    text = """\
# TYPE tgi_request_success counter
tgi_request_success 7
# TYPE tgi_request_count counter
tgi_request_count 8
# TYPE tgi_queue_size gauge
tgi_queue_size 3
# TYPE tgi_batch_current_size gauge
tgi_batch_current_size 5
# TYPE tgi_request_input_length histogram
tgi_request_input_length_bucket{le="64"} 4
tgi_request_input_length_bucket{le="+Inf"} 7
tgi_request_input_length_sum 700
tgi_request_input_length_count 7
# TYPE tgi_request_generated_tokens histogram
tgi_request_generated_tokens_bucket{le="100"} 7
tgi_request_generated_tokens_bucket{le="+Inf"} 7
tgi_request_generated_tokens_sum 350
tgi_request_generated_tokens_count 7
# TYPE tgi_request_duration histogram
tgi_request_duration_bucket{le="0.5"} 2
tgi_request_duration_bucket{le="1"} 6
tgi_request_duration_bucket{le="+Inf"} 7
tgi_request_duration_sum 5.5
tgi_request_duration_count 7
# TYPE tgi_request_mean_time_per_token_duration histogram
tgi_request_mean_time_per_token_duration_bucket{le="0.02"} 7
tgi_request_mean_time_per_token_duration_bucket{le="+Inf"} 7
tgi_request_mean_time_per_token_duration_sum 0.1
tgi_request_mean_time_per_token_duration_count 7
"""
    values = parse_exposition(text)
    assert values.engine == "tgi"
    assert values.gauges == {"running": 5.0, "waiting": 3.0}
    assert values.counters == {"prompt_tokens": 700.0, "generation_tokens": 350.0, "requests": 7.0}
    assert values.histograms == {
        "e2e_s": [(0.5, 2.0), (1.0, 6.0), (INF, 7.0)],
        "itl_s": [(0.02, 7.0), (INF, 7.0)],
    }


def test_detect_engine_by_the_names_present() -> None:
    assert detect_engine(["vllm:num_requests_running", "python_info"]) == "vllm"
    assert detect_engine(["sglang:num_queue_reqs_total", "sglang:token_usage"]) == "sglang"
    assert detect_engine(["tgi_queue_size"]) == "tgi"
    assert detect_engine(["vllm:e2e_request_latency_seconds_bucket"]) == "vllm"
    assert detect_engine(["python_info", "process_cpu_seconds_total"]) is None
    assert detect_engine([]) is None
    # families from prometheus_client's parser will do as well as names
    from prometheus_client.parser import text_string_to_metric_families

    families = text_string_to_metric_families(generate_latest(vllm_v1_registry()).decode())
    assert detect_engine(families) == "vllm"
    for engine, series in ENGINES.items():
        assert detect_engine(series.names()) == engine


def test_unknown_engine_comments_and_nan_are_robust() -> None:
    text = """\
# A comment that is not HELP or TYPE
# HELP python_info Python platform information
# TYPE python_info gauge
python_info{implementation="CPython",version="3.11.9"} 1.0
some_untyped_series 4
vllm_like_but_not 2
odd_gauge NaN
"""
    values = parse_exposition(text, ["some_untyped_series", "odd_gauge"])
    assert values == ScrapeValues(None, {}, {}, {}, {"some_untyped_series": 4.0}, {})
    nan = parse_exposition("# TYPE vllm:kv_cache_usage_perc gauge\nvllm:kv_cache_usage_perc NaN\n")
    assert nan.engine == "vllm" and nan.gauges == {}
    assert parse_exposition("") == ScrapeValues(None, {}, {}, {}, {}, {})


def test_openmetrics_exposition_with_created_samples() -> None:
    # Names without colons: prometheus_client's OpenMetrics exposition escapes a colon in sample
    # names but not in TYPE lines, which its own parser then refuses.
    registry = CollectorRegistry()
    Counter("tgi_request_success", "", ["route"], registry=registry).labels("/generate").inc(4)
    Gauge("tgi_queue_size", "", registry=registry).set(2)
    duration = Histogram("tgi_request_duration", "", buckets=(0.5, 1.0), registry=registry)
    for value_s in (0.2, 0.7, 3.0):
        duration.observe(value_s)
    text = generate_openmetrics(registry).decode()  # type: ignore[no-untyped-call]
    assert text.rstrip().endswith("# EOF") and "tgi_request_success_created" in text
    values = parse_exposition(text, ["tgi_request_success"])
    assert values == parse_exposition(generate_latest(registry).decode(), ["tgi_request_success"])
    assert values.engine == "tgi" and values.counters == {"requests": 4.0}
    assert values.gauges == {"waiting": 2.0} and values.extra == {"tgi_request_success": 4.0}
    assert values.histograms == {"e2e_s": [(0.5, 1.0), (1.0, 2.0), (INF, 3.0)]}
    assert values.histogram_sums == {"e2e_s": pytest.approx(3.9)}


@pytest.mark.parametrize(
    "text",
    [
        "<html><body><h1>404 Not Found</h1></body></html>",
        '{"object": "error", "message": "no such route"}',
        "<!DOCTYPE html>\n<html><body>Not Found</body></html>\n",
        "Internal Server Error",
        'data: {"choices": []}\n',
        'vllm:num_requests_running{model_name="m" 3\n',
        'x_bucket{le="one"} 1\n',
        "# TYPE x counter\nx 1\n# EOF\nmore after eof\n",
    ],
)
def test_text_that_is_not_the_prometheus_format_raises_one_line(text: str) -> None:
    with pytest.raises(
        ValueError, match=r"^not a (Prometheus|OpenMetrics) text exposition \("
    ) as e:
        parse_exposition(text)
    assert "\n" not in str(e.value) and len(str(e.value)) < 200


# --- quantiles and windows ----------------------------------------------------------------------

BASE = [(0.1, 2.0), (0.5, 4.0), (1.0, 5.0), (INF, 5.0)]
LATER = [(0.1, 4.0), (0.5, 14.0), (1.0, 19.0), (INF, 20.0)]


def test_bucket_quantile_interpolates_as_prometheus_does() -> None:
    delta = [(0.1, 2.0), (0.5, 10.0), (1.0, 14.0), (INF, 15.0)]
    # p50: rank 7.5 falls in (0.1, 0.5], 5.5 of its 8 observations in: 0.1 + 0.4 * 5.5 / 8
    assert bucket_quantile(0.5, delta) == pytest.approx(0.375)
    # p90: rank 13.5 in (0.5, 1.0], 3.5 of 4 in
    assert bucket_quantile(0.9, delta) == pytest.approx(0.9375)
    # p99: rank 14.85 is in the +Inf bucket: the highest finite bound
    assert bucket_quantile(0.99, delta) == 1.0
    # the first bucket starts at 0
    assert bucket_quantile(0.05, delta) == pytest.approx(0.1 * 0.75 / 2)
    assert bucket_quantile(0.5, [(0.1, 0.0), (INF, 0.0)]) is None
    assert bucket_quantile(0.5, [(0.1, 3.0), (1.0, 3.0)]) is None  # no +Inf bucket
    assert bucket_quantile(0.5, [(-1.0, 2.0), (INF, 2.0)]) == -1.0


def vllm_values(
    running: float | None = None,
    prompt: float | None = None,
    ttft: list[tuple[float, float]] | None = None,
    ttft_sum: float = 0.0,
    **extra: float,
) -> ScrapeValues:
    gauges = {} if running is None else {"running": running, "waiting": 2 * running}
    counters = {} if prompt is None else {"prompt_tokens": prompt}
    histograms = {} if ttft is None else {"ttft_s": ttft}
    sums = {} if ttft is None else {"ttft_s": ttft_sum}
    return ScrapeValues("vllm", gauges, counters, histograms, dict(extra), sums)


def test_summarise_gauges_counters_and_histograms_over_a_window() -> None:
    scrapes = [
        TimedScrape(0.0, vllm_values(running=9, prompt=100, ttft=BASE, ttft_sum=1.0, x=5)),
        TimedScrape(1.0, vllm_values(running=1, prompt=150, ttft=BASE, ttft_sum=1.0, x=7)),
        TimedScrape(2.0, vllm_values(running=3, prompt=170, x=3)),  # no ttft this time
        TimedScrape(3.0, vllm_values(running=2, prompt=400, ttft=LATER, ttft_sum=9.0, x=4)),
        TimedScrape(4.0, vllm_values(running=50, prompt=900, ttft=LATER, ttft_sum=9.0)),
    ]
    server = summarise(list(reversed(scrapes)), start_s=0.5, end_s=3.5)
    assert server["engine"] == "vllm" and server["scrapes"] == 3
    assert server["running"] == {"p50": 2.0, "max": 3.0, "mean": 2.0}
    assert server["waiting"] == {"p50": 4.0, "max": 6.0, "mean": 4.0}
    assert server["kv_cache_usage"] is None
    assert server["prompt_tokens"] == 300.0  # from the scrape at 0.0 to the one at 3.0
    assert server["generation_tokens"] is None and server["preemptions"] is None
    assert server["prefix_cache_hit_rate"] is None
    ttft = server["ttft_s"]
    assert ttft["count"] == 15.0 and ttft["mean"] == pytest.approx(8.0 / 15)
    assert ttft["p50"] == pytest.approx(0.375)
    assert ttft["p90"] == pytest.approx(0.9375)
    assert ttft["p99"] == 1.0
    assert server["itl_s"] is None and server["decode_s"] is None
    # x: 5 -> 7 -> 3 (a reset: +3) -> 4
    assert server["extra"] == {"x": {"last": 4.0, "max": 7.0, "delta": 2.0 + 3.0 + 1.0}}


def test_counter_and_histogram_resets_count_from_zero() -> None:
    restarted = [(0.1, 1.0), (0.5, 1.0), (1.0, 2.0), (INF, 3.0)]
    scrapes = [
        TimedScrape(0.0, vllm_values(prompt=1000, ttft=LATER, ttft_sum=9.0)),
        TimedScrape(1.0, vllm_values(prompt=1100, ttft=LATER, ttft_sum=9.0)),
        TimedScrape(2.0, vllm_values(prompt=40, ttft=restarted, ttft_sum=2.5)),  # restart
        TimedScrape(3.0, vllm_values(prompt=90, ttft=restarted, ttft_sum=2.5)),
    ]
    server = summarise(scrapes, 0.0, 3.0)
    assert server["prompt_tokens"] == 100.0 + 40.0 + 50.0
    assert server["ttft_s"]["count"] == 3.0
    assert server["ttft_s"]["mean"] == pytest.approx(2.5 / 3)
    assert server["ttft_s"]["p50"] == pytest.approx(0.5 + 0.5 * 0.5)  # rank 1.5 in (0.5, 1]
    # a restart with other bucket bounds is a reset too
    rebucketed = [(0.2, 1.0), (INF, 1.0)]
    scrapes[3] = TimedScrape(3.0, vllm_values(prompt=90, ttft=rebucketed, ttft_sum=0.15))
    ttft = summarise(scrapes, 0.0, 3.0)["ttft_s"]
    assert ttft["count"] == 4.0 and ttft["mean"] == pytest.approx(2.65 / 4)
    # steps added across bounds: at 0.1: 1 + 0; 0.2: 1 + 1; 0.5: 1 + 1; 1.0: 2 + 1; +Inf: 3 + 1,
    # so rank 2 falls in (0.1, 0.2], its one observation the second
    assert ttft["p50"] == pytest.approx(0.2)


def test_series_that_appear_later_count_from_zero() -> None:
    scrapes = [
        TimedScrape(0.0, vllm_values(running=0)),  # nothing finished yet: no labelled series
        TimedScrape(1.0, vllm_values(running=1, prompt=30, ttft=BASE, ttft_sum=1.0, x=2)),
        TimedScrape(2.0, vllm_values(running=1, prompt=50, ttft=BASE, ttft_sum=1.0, x=3)),
        TimedScrape(3.0, vllm_values(running=1)),  # gone again: left out, not a reset
    ]
    server = summarise(scrapes, 0.0, 3.0)
    assert server["prompt_tokens"] == 50.0
    assert server["ttft_s"]["count"] == 5.0 and server["ttft_s"]["mean"] == pytest.approx(0.2)
    assert server["extra"] == {"x": {"last": 3.0, "max": 3.0, "delta": 3.0}}
    # a window that starts after the series showed: its own delta only
    assert summarise(scrapes, 1.0, 3.0)["prompt_tokens"] == 20.0
    assert summarise(scrapes, 1.0, 3.0)["ttft_s"] is None


def test_windows_without_enough_scrapes() -> None:
    scrapes = [
        TimedScrape(1.0, vllm_values(running=4, prompt=10, ttft=BASE, ttft_sum=1.0)),
        TimedScrape(2.0, vllm_values(running=6, prompt=20, ttft=BASE, ttft_sum=1.0)),
    ]
    empty = summarise(scrapes, 5.0, 9.0)  # after every scrape
    assert empty["scrapes"] == 0 and empty["engine"] == "vllm"
    assert empty["running"] is None and empty["prompt_tokens"] is None
    assert empty["ttft_s"] is None and empty["extra"] == {}
    # one scrape inside and none before: a level but no delta
    one = summarise(scrapes, 0.0, 1.5)
    assert one["scrapes"] == 1 and one["running"] == {"p50": 4.0, "max": 4.0, "mean": 4.0}
    assert one["prompt_tokens"] is None and one["ttft_s"] is None
    # no observations in the window: None, though the counts exist
    assert summarise(scrapes, 0.0, 2.0)["ttft_s"] is None
    assert summarise(scrapes, 0.0, 2.0)["prompt_tokens"] == 10.0
    assert summarise([], 0.0, 1.0)["engine"] is None


def test_prefix_cache_hit_rate_is_a_ratio_of_deltas() -> None:
    def scrape(t_s: float, queries: float, hits: float) -> TimedScrape:
        counters = {"prefix_cache_queries": queries, "prefix_cache_hits": hits}
        return TimedScrape(t_s, ScrapeValues("vllm", {}, counters, {}, {}, {}))

    scrapes = [scrape(0.0, 1000, 900), scrape(1.0, 1400, 1000), scrape(2.0, 1800, 1100)]
    assert summarise(scrapes, 0.0, 2.0)["prefix_cache_hit_rate"] == pytest.approx(200 / 800)
    idle = [scrape(0.0, 1000, 900), scrape(1.0, 1000, 900)]
    assert summarise(idle, 0.0, 1.0)["prefix_cache_hit_rate"] is None


def test_merge_replicas_adds_them_up() -> None:
    a = ScrapeValues(
        "vllm",
        {"running": 2, "waiting": 1, "kv_cache_usage": 0.2},
        {"prompt_tokens": 100, "requests": 3},
        {"ttft_s": [(0.1, 1), (1.0, 2), (INF, 3)]},
        {"x": 1},
        {"ttft_s": 1.5},
    )
    b = ScrapeValues(
        "vllm",
        {"running": 5, "kv_cache_usage": 0.6},
        {"prompt_tokens": 50},
        {"ttft_s": [(0.1, 0), (1.0, 4), (INF, 4)]},
        {},
        {"ttft_s": 2.0},
    )
    merged = merge_replicas([a, b])
    assert merged.gauges["kv_cache_usage"] == pytest.approx(0.4)  # a fraction: the mean
    assert merged == ScrapeValues(
        "vllm",
        {"running": 7, "waiting": 1, "kv_cache_usage": merged.gauges["kv_cache_usage"]},
        {"prompt_tokens": 150, "requests": 3},
        {"ttft_s": [(0.1, 1), (1.0, 6), (INF, 7)]},
        {"x": 1},
        {"ttft_s": 3.5},
    )
    unknown = ScrapeValues(None, {}, {}, {}, {}, {})
    assert merge_replicas([a, unknown]).engine == "vllm"
    assert merge_replicas([a, ScrapeValues("sglang", {}, {}, {}, {}, {})]).engine is None
    # other bounds: added as step functions
    c = ScrapeValues("vllm", {}, {}, {"ttft_s": [(0.5, 2), (INF, 2)]}, {}, {"ttft_s": 0.4})
    assert merge_replicas([a, c]).histograms["ttft_s"] == [
        (0.1, 1),
        (0.5, 3),
        (1.0, 4),
        (INF, 5),
    ]


# --- the simulator, scraped as a real server ------------------------------------------------------


async def _get(session: aiohttp.ClientSession, url: str) -> tuple[str, dict[str, Any]]:
    """``/metrics`` and ``/mock/stats`` of the simulator at ``url``, taken together."""
    async with session.get(url + "/metrics") as metrics:
        text = await metrics.text()
    async with session.get(url + "/mock/stats") as stats:
        return text, await stats.json()


def _content(line: bytes) -> str:
    return str(orjson.loads(line[len(b"data: ") :])["choices"][0]["delta"].get("content", ""))


@pytest.mark.timeout(60)
async def test_a_real_scrape_of_the_simulator_agrees_with_its_stats() -> None:
    settings = MockSettings(ttft_ms=300.0, itl_ms=20.0, output_tokens=5, max_concurrency=2, seed=3)
    async with (
        await start_mock_server(settings, "127.0.0.1", 0) as server,
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as session,
    ):
        ttfts_s: list[float] = []

        async def stream(i: int) -> None:
            body = {
                "model": "mock-model",
                "stream": True,
                "messages": [{"role": "user", "content": "Tell me a story. " * (i + 1)}],
            }
            sent = time.perf_counter()
            first: float | None = None
            async with session.post(server.url + "/v1/chat/completions", json=body) as response:
                async for line in response.content:  # the role chunk is not a token
                    if first is None and line.startswith(b"data: {") and _content(line):
                        first = time.perf_counter()
            assert first is not None
            ttfts_s.append(first - sent)

        before_text, before = await _get(session, server.url)
        t0 = time.perf_counter()
        requests = [asyncio.create_task(stream(i)) for i in range(5)]
        await asyncio.sleep(0.15)  # two running, three waiting, none with a first token yet
        during_text, during = await _get(session, server.url)
        t1 = time.perf_counter() - t0
        await asyncio.gather(*requests)
        after_text, after = await _get(session, server.url)
        t2 = time.perf_counter() - t0

    first, mid, last = (parse_exposition(t) for t in (before_text, during_text, after_text))
    assert first.engine == mid.engine == last.engine == "vllm"
    assert (mid.gauges["running"], mid.gauges["waiting"]) == (during["running"], during["waiting"])
    assert (mid.gauges["running"], mid.gauges["waiting"]) == (2, 3)
    assert (last.gauges["running"], last.gauges["waiting"]) == (0, 0)
    assert last.counters["prompt_tokens"] == after["prompt_tokens"] > 0
    assert last.counters["generation_tokens"] == after["completion_tokens"] == 5 * 5
    assert last.counters["requests"] == after["completed"] == 5
    assert last.histograms["ttft_s"][-1] == (INF, 5.0)

    scrapes = [TimedScrape(0.0, first), TimedScrape(t1, mid), TimedScrape(t2, last)]
    server_view = summarise(scrapes, 0.0, t2)
    assert server_view["scrapes"] == 3 and server_view["engine"] == "vllm"
    assert server_view["running"]["max"] == 2 and server_view["waiting"]["max"] == 3
    prompt_delta = after["prompt_tokens"] - before["prompt_tokens"]
    assert server_view["prompt_tokens"] == prompt_delta
    assert server_view["generation_tokens"] == 25 and server_view["requests"] == 5
    ttft = server_view["ttft_s"]
    assert ttft["count"] == after["completed"] == 5
    # The server's TTFT runs from arrival to the first token's write, the client's from send to
    # its read: the same to within the loop's scheduling.
    client_mean_s = sum(ttfts_s) / len(ttfts_s)
    assert ttft["mean"] == pytest.approx(client_mean_s, abs=0.03)
    # two at ~0.3 s, two queued behind them at ~0.6+, one at ~0.9+: p50 in vLLM's (0.5, 0.75]
    assert 0.5 < ttft["p50"] <= 0.75
    assert server_view["e2e_s"]["count"] == 5
