"""The per-group time series (clientswarm.metrics.timeseries) from hand-made samples."""

from __future__ import annotations

import numpy as np
import pytest

from clientswarm.metrics import timeseries
from clientswarm.metrics.columns import SampleColumns
from clientswarm.metrics.sample import Sample
from clientswarm.metrics.timeseries import TimeSeries, timeseries_of

START = 1_700_000_000_000_000_000
S = 1_000_000_000


def sample(
    sent_s: float,
    end_s: float,
    *,
    group: str = "g",
    client: int = 0,
    first_s: float | None = None,
    itl_s: list[float] | None = None,
    status: str = "ok",
    error_kind: str | None = None,
    output_tokens: int | None = None,
    lag_s: float = 0.0,
    step: bool = False,
) -> Sample:
    at = lambda t: START + round(t * S)  # noqa: E731
    return Sample(
        group=group,
        client=client,
        worker=0,
        name="chat",
        scheduled_ns=at(sent_s - lag_s),
        sent_ns=at(sent_s),
        end_ns=at(end_s),
        status=status,  # type: ignore[arg-type]
        first_token_ns=None if first_s is None else at(first_s),
        output_tokens=output_tokens,
        itl_s=itl_s or [],
        error_kind=error_kind,
        step=step,
    )


def series(*samples: Sample, **options: object) -> dict[str, object]:
    doc = timeseries_of([SampleColumns.from_samples(list(samples))], START, **options)  # type: ignore[arg-type]
    groups = doc["groups"]
    assert isinstance(groups, dict)
    return groups["g"]  # type: ignore[no-any-return]


def test_completed_and_tokens_fall_in_the_bucket_of_their_end_edges_included() -> None:
    g = series(
        sample(0.0, 0.999999999, output_tokens=3),
        sample(0.5, 1.0, output_tokens=5),  # ends exactly at 1 s: bucket 1
        sample(0.5, 2.5, output_tokens=7),
    )
    assert g["t_s"] == [0.0, 1.0, 2.0]
    assert g["requests_per_s"] == [1.0, 1.0, 1.0]
    assert g["output_tokens_per_s"] == [3.0, 5.0, 7.0]


def test_in_flight_is_the_mean_over_the_bucket_and_spans_buckets() -> None:
    # One request from 0.5 s to 2.5 s: half of bucket 0, all of bucket 1, half of bucket 2.
    # Another, from client 1, inside bucket 1 for a quarter of it.
    g = series(sample(0.5, 2.5), sample(1.25, 1.5, client=1))
    assert g["in_flight"] == pytest.approx([0.5, 1.25, 0.5])
    assert g["active_clients"] == [1, 2, 1]


def test_active_clients_are_distinct_across_batches() -> None:
    ts = TimeSeries(START)
    ts.add(SampleColumns.from_samples([sample(0.1, 0.2, client=3)]))
    ts.add(SampleColumns.from_samples([sample(0.3, 0.4, client=3), sample(0.3, 0.4, client=4)]))
    assert ts.document()["groups"]["g"]["active_clients"] == [2]


def test_empty_buckets_have_zero_rates_and_no_percentiles() -> None:
    g = series(sample(0.1, 0.2, first_s=0.15), sample(3.1, 3.2, first_s=3.15))
    assert g["requests_per_s"] == [1.0, 0.0, 0.0, 1.0]
    assert g["ttft_s_p50"][1:3] == [None, None]
    assert g["ttft_s_p50"][0] == pytest.approx(0.05)
    assert g["in_flight"][1] == 0.0
    assert g["active_clients"] == [1, 0, 0, 1]


def test_errors_by_kind_in_the_bucket_of_their_end_cancelled_left_out() -> None:
    g = series(
        sample(0.1, 0.2, status="error", error_kind="http_500"),
        sample(0.1, 1.2, status="error", error_kind="http_500"),
        sample(0.1, 1.3, status="error", error_kind="timeout"),
        sample(0.1, 1.4, status="error", error_kind=None),
        sample(0.1, 1.5, status="error", error_kind="cancelled"),
        sample(0.1, 0.3),
    )
    assert g["errors"] == {"http_500": [1, 1], "timeout": [0, 1], "unknown": [0, 1]}
    assert g["requests_per_s"] == [2.0, 3.0]  # the cancelled one is not completed
    assert g["active_clients"] == [1, 1]  # ... but it was in flight


def test_ttft_itl_and_lag_land_where_they_happened_exactly() -> None:
    # First token at 0.9 s, gaps end at 1.0 (bucket 1), 1.2, 2.0 (bucket 2).
    a = sample(0.5, 2.1, first_s=0.9, itl_s=[0.1, 0.2, 0.8], output_tokens=4, lag_s=0.01)
    b = sample(1.5, 1.9, first_s=1.6, itl_s=[0.3], output_tokens=2, lag_s=0.03)
    g = series(a, b)
    assert g["ttft_s_p50"] == pytest.approx([0.4, 0.1, None])
    assert g["itl_s_p50"] == pytest.approx([None, 0.2, 0.8])  # bucket 1: 0.1, 0.2, 0.3
    assert g["itl_s_p99"][1] == pytest.approx(np.percentile([0.1, 0.2, 0.3], 99))
    assert g["schedule_lag_s_p50"] == pytest.approx([0.01, 0.03, None])
    assert g["exact"] is True


def test_failed_requests_and_steps_give_no_latency_values() -> None:
    g = series(
        sample(0.1, 0.5, first_s=0.2, itl_s=[0.1], status="error", error_kind="stream_error"),
        sample(0.1, 0.5, first_s=0.2, itl_s=[0.1], step=True),
    )
    assert g["ttft_s_p50"] == [None]
    assert g["itl_s_p50"] == [None]
    assert g["requests_per_s"] == [1.0]


def test_over_the_budget_percentiles_fold_into_histograms_within_their_resolution() -> None:
    rng = np.random.default_rng(1)
    values = rng.uniform(0.01, 0.2, 2000)
    samples = [
        sample(k % 4 + 0.01, k % 4 + 0.5, first_s=k % 4 + 0.01 + float(v))
        for k, v in enumerate(values)
    ]
    exact = series(*samples)
    folded = series(*samples, exact_budget=100)
    assert exact["exact"] is True and folded["exact"] is False
    for key in ("ttft_s_p50", "ttft_s_p99"):
        assert folded[key] == pytest.approx(exact[key], rel=0.008)
    want = [np.percentile(values[k::4], 50) for k in range(4)]
    assert exact["ttft_s_p50"] == pytest.approx(want)


def test_groups_and_document_shape() -> None:
    cols = SampleColumns.from_samples([sample(0.1, 0.2), sample(1.1, 1.2, group="h")])
    doc = timeseries_of([cols], START, warmup_s=1.0, group_order=["h", "g", "idle"])
    assert list(doc["groups"]) == ["h", "g", "idle"]
    assert doc["bucket_s"] == 1.0 and doc["warmup_s"] == 1.0
    assert doc["start"].endswith("Z")
    assert doc["groups"]["idle"]["requests_per_s"] == [0.0, 0.0]
    assert timeseries_of([], START)["groups"] == {}


def test_samples_off_the_timeline_are_left_out_not_allocated(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(timeseries, "MAX_BUCKETS", 10)
    g = series(
        sample(-0.5, 0.0, client=1),  # ended as bucket 0 began: never in flight in it
        sample(-0.5, 0.5, client=2),  # in flight for the first half of bucket 0
        sample(0.1, 10 * 365 * 86400.0, client=3),  # an end ten years off: clipped, no huge list
    )
    assert len(g["t_s"]) == 10
    assert g["in_flight"][9] == 1.0
    assert g["in_flight"][0] == pytest.approx(1.4)
    assert g["active_clients"][0] == 2
    assert g["requests_per_s"][0] == 2.0  # the one that ended at the start, and the other


def test_folded_histograms_merge_batch_after_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(timeseries, "_FOLD_CHUNK", 50)
    rng = np.random.default_rng(2)
    gaps = rng.lognormal(-4, 0.5, (40, 30))  # 40 requests of 31 tokens, over 2 s
    exact, folded = TimeSeries(START), TimeSeries(START, exact_budget=100)
    for k, row in enumerate(gaps):
        first = 0.02 + k * 0.05
        cols = SampleColumns.from_samples(
            [sample(first - 0.01, 2.5, first_s=first, itl_s=list(row))]
        )
        exact.add(cols)
        folded.add(cols)
    e, f = exact.document()["groups"]["g"], folded.document()["groups"]["g"]
    assert f["exact"] is False
    for key in ("itl_s_p50", "itl_s_p99"):
        assert f[key] == pytest.approx(e[key], rel=0.008)


def test_folding_values_far_apart_in_time() -> None:
    samples = [
        sample(t + 0.1, t + 0.5, first_s=t + 0.1 + ttft)
        for t in (0.0, 700.0)
        for ttft in (0.01, 0.02, 0.04)
    ]
    g = series(*samples, exact_budget=1)
    assert g["exact"] is False
    assert g["ttft_s_p50"][0] == pytest.approx(0.02, rel=0.008)
    assert g["ttft_s_p50"][700] == pytest.approx(0.02, rel=0.008)
    assert g["ttft_s_p99"][700] == pytest.approx(np.percentile([0.01, 0.02, 0.04], 99), rel=0.008)
    assert g["ttft_s_p50"][1:700] == [None] * 699
