"""Open-loop arrival schedules: constant exactness, Poisson statistics, stages, stops, slices."""

from __future__ import annotations

import math

import numpy as np
import pytest

from clientswarm.config.load import OpenLoadConfig, OpenStage
from clientswarm.config.models import ClusterConfig
from clientswarm.load import (
    Arrival,
    ArrivalSchedule,
    open_arrivals,
    open_schedule,
    schedule_for_group,
    worker_arrivals,
    worker_schedule,
)


def schedule(
    load: OpenLoadConfig,
    *,
    seed: int = 7,
    group_index: int = 0,
    first_client: int = 0,
    clients: int = 4,
    warmup_s: float = 0.0,
    duration_s: float | None = None,
    requests: int | None = None,
) -> ArrivalSchedule:
    return open_schedule(
        load,
        seed=seed,
        group_index=group_index,
        first_client=first_client,
        clients=clients,
        warmup_s=warmup_s,
        duration_s=duration_s,
        requests=requests,
    )


def poisson(rate: float) -> OpenLoadConfig:
    return OpenLoadConfig(rate=rate, arrival="poisson")


def constant(rate: float) -> OpenLoadConfig:
    return OpenLoadConfig(rate=rate, arrival="constant")


# --- constant -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rate", "duration_s"), [(1.0, 10.0), (7.0, 3.0), (30.0, 0.1), (1000.0, 60.0)]
)
def test_constant_offsets_are_exact_multiples_of_the_period(rate: float, duration_s: float) -> None:
    s = schedule(constant(rate), duration_s=duration_s)
    assert len(s) == round(rate * duration_s)
    expected = np.array([i / rate for i in range(len(s))])
    assert np.max(np.abs(s.offsets_s - expected), initial=0.0) <= 1e-12
    assert s.warmup_count == 0


def test_constant_count_rounds_up_a_partial_period() -> None:
    assert len(schedule(constant(3.0), duration_s=1.5)) == 5  # 0, 1/3, 2/3, 1, 4/3


def test_constant_with_warmup_runs_one_process_and_flags_the_first_seconds() -> None:
    s = schedule(constant(10.0), warmup_s=2.0, duration_s=5.0)
    assert len(s) == 70
    assert s.warmup_count == 20
    assert np.all(s.warmup[:20]) and not np.any(s.warmup[20:])
    assert np.allclose(s.offsets_s, np.arange(70) / 10.0, rtol=0, atol=1e-12)
    assert np.all(s.stage == 0)


def test_no_drift_over_a_long_run() -> None:
    s = schedule(constant(999.0), duration_s=3600.0)
    assert len(s) == 999 * 3600
    assert s.offsets_s[-1] == (999 * 3600 - 1) / 999.0


# --- poisson ------------------------------------------------------------------------------


def exponential_cdf(x: np.ndarray, rate: float) -> np.ndarray:
    return 1.0 - np.exp(-rate * x)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_poisson_count_and_gaps_match_the_exponential(seed: int) -> None:
    rate, duration = 200.0, 100.0
    s = schedule(poisson(rate), seed=seed, duration_s=duration)
    expected = rate * duration
    assert abs(len(s) - expected) < 5 * math.sqrt(expected)
    assert np.all(np.diff(s.offsets_s) > 0)
    assert s.offsets_s[0] >= 0 and s.offsets_s[-1] < duration
    gaps = np.diff(np.concatenate([[0.0], s.offsets_s]))
    n = len(gaps)
    mean = float(np.mean(gaps))
    assert abs(mean - 1 / rate) < 5 * (1 / rate) / math.sqrt(n)
    cv = float(np.std(gaps)) / mean
    assert abs(cv - 1.0) < 0.05

    # Kolmogorov-Smirnov against the exponential CDF; 1.63/sqrt(n) is the 1% critical value.
    x = np.sort(gaps)
    cdf = exponential_cdf(x, rate)
    d_plus = np.max(np.arange(1, n + 1) / n - cdf)
    d_minus = np.max(cdf - np.arange(0, n) / n)
    assert max(d_plus, d_minus) < 1.63 / math.sqrt(n)

    # Chi-square over 20 equiprobable bins (19 degrees of freedom; 43.8 is the 0.1% critical value).
    bins = 20
    edges = -np.log(1 - np.arange(1, bins) / bins) / rate
    observed = np.bincount(np.searchsorted(edges, gaps), minlength=bins)
    chi2 = float(np.sum((observed - n / bins) ** 2 / (n / bins)))
    assert chi2 < 43.8


def test_poisson_counts_per_second_have_poisson_dispersion() -> None:
    rate = 50.0
    s = schedule(poisson(rate), seed=11, duration_s=400.0)
    counts = np.bincount(s.offsets_s.astype(np.int64), minlength=400)
    assert abs(counts.mean() - rate) < 5 * math.sqrt(rate / 400)
    assert 0.8 < counts.var() / counts.mean() < 1.2


def test_poisson_is_reproducible_per_seed_and_group() -> None:
    a = schedule(poisson(100.0), seed=5, duration_s=10.0)
    b = schedule(poisson(100.0), seed=5, duration_s=10.0)
    assert np.array_equal(a.offsets_s, b.offsets_s)
    other_seed = schedule(poisson(100.0), seed=6, duration_s=10.0)
    other_group = schedule(poisson(100.0), seed=5, group_index=1, duration_s=10.0)
    for other in (other_seed, other_group):
        n = min(len(a), len(other))
        assert not np.array_equal(a.offsets_s[:n], other.offsets_s[:n])


def test_negative_seed_is_accepted() -> None:
    assert len(schedule(poisson(10.0), seed=-3, duration_s=5.0)) > 0


# --- stages -------------------------------------------------------------------------------


def test_constant_stages_rates_boundaries_and_warmup() -> None:
    load = OpenLoadConfig(
        arrival="constant",
        stages=[OpenStage(rate=2, duration_s=3), OpenStage(rate=5, duration_s=2)],
    )
    s = schedule(load, warmup_s=1.0)
    arrivals = s.to_list()
    warm = [a for a in arrivals if a.warmup]
    assert [a.offset_s for a in warm] == [0.0, 0.5]
    assert all(a.stage == 0 for a in warm)
    stage0 = [a.offset_s for a in arrivals if a.stage == 0 and not a.warmup]
    stage1 = [a.offset_s for a in arrivals if a.stage == 1]
    assert stage0 == pytest.approx([1.0 + i / 2 for i in range(6)], abs=1e-12)
    assert stage1 == pytest.approx([4.0 + i / 5 for i in range(10)], abs=1e-12)
    assert [a.index for a in arrivals] == list(range(len(arrivals)))


def test_poisson_stages_have_their_rates_in_their_windows() -> None:
    load = OpenLoadConfig(
        arrival="poisson",
        stages=[OpenStage(rate=50, duration_s=100), OpenStage(rate=200, duration_s=50)],
    )
    s = schedule(load, seed=3, warmup_s=20.0)
    stage = s.stage
    warm = s.offsets_s[s.warmup]
    stage0 = s.offsets_s[(stage == 0) & ~s.warmup]
    stage1 = s.offsets_s[stage == 1]
    assert np.all(warm < 20.0) and np.all(stage0 >= 20.0) and np.all(stage0 < 120.0)
    assert np.all((stage1 >= 120.0) & (stage1 < 170.0))
    for count, expected in ((len(warm), 50 * 20), (len(stage0), 50 * 100), (len(stage1), 200 * 50)):
        assert abs(count - expected) < 5 * math.sqrt(expected)


def test_duration_longer_than_stages_extends_the_last_one() -> None:
    load = OpenLoadConfig(
        arrival="constant",
        stages=[OpenStage(rate=1, duration_s=2), OpenStage(rate=4, duration_s=1)],
    )
    s = schedule(load, duration_s=5.0)
    assert len(s) == 2 + 4 * 3
    assert s.offsets_s[-1] == pytest.approx(2 + 11 / 4)


def test_duration_shorter_than_stages_cuts_them() -> None:
    load = OpenLoadConfig(
        arrival="constant",
        stages=[OpenStage(rate=1, duration_s=2), OpenStage(rate=4, duration_s=1)],
    )
    s = schedule(load, warmup_s=1.0, duration_s=1.5)
    assert set(s.stage.tolist()) == {0}
    assert s.offsets_s.tolist() == [0.0, 1.0, 2.0]


# --- requests stop ------------------------------------------------------------------------


@pytest.mark.parametrize("arrival", ["constant", "poisson"])
def test_requests_stop_counts_measured_arrivals_only(arrival: str) -> None:
    load = OpenLoadConfig.model_validate({"rate": 20.0, "arrival": arrival})
    s = schedule(load, warmup_s=3.0, requests=500)
    assert s.measured_count == 500
    assert s.warmup_count > 0 and np.all(s.offsets_s[s.warmup] < 3.0)
    assert not s.warmup[-1]


def test_requests_stop_across_stages() -> None:
    load = OpenLoadConfig(
        arrival="poisson",
        stages=[OpenStage(rate=10, duration_s=10), OpenStage(rate=100, duration_s=10)],
    )
    s = schedule(load, warmup_s=1.0, requests=300)
    assert s.measured_count == 300
    assert set(s.stage.tolist()) == {0, 1}


def test_duration_comes_first_when_requests_are_many() -> None:
    s = schedule(constant(10.0), duration_s=2.0, requests=1000)
    assert len(s) == 20


def test_requests_come_first_when_duration_is_long() -> None:
    s = schedule(constant(10.0), warmup_s=1.0, duration_s=100.0, requests=7)
    assert (s.warmup_count, s.measured_count) == (10, 7)


def test_unbounded_process_is_an_error() -> None:
    with pytest.raises(ValueError, match="stop"):
        schedule(poisson(10.0))


# --- clients and worker slices ------------------------------------------------------------


def test_arrival_j_goes_to_client_j_mod_clients() -> None:
    s = schedule(constant(10.0), first_client=100, clients=3, duration_s=1.0)
    assert [a.client for a in s] == [100 + j % 3 for j in range(10)]


@pytest.mark.parametrize(("first_client", "clients", "workers"), [(0, 7, 3), (5, 13, 4), (2, 2, 5)])
def test_worker_slices_partition_the_schedule(
    first_client: int, clients: int, workers: int
) -> None:
    s = schedule(poisson(300.0), first_client=first_client, clients=clients, duration_s=5.0)
    slices = [s.for_worker(w, workers) for w in range(workers)]
    assert [len(p) for p in slices] == [len(p) for p in s.split(workers)]
    seen = np.concatenate([p.index for p in slices])
    assert len(seen) == len(s) and len(np.unique(seen)) == len(s)
    assert np.array_equal(np.sort(seen), s.index)
    for w, part in enumerate(slices):
        assert np.all(part.client % workers == w)
        assert np.all(np.diff(part.offsets_s) >= 0)
        assert np.array_equal(part.offsets_s, s.offsets_s[part.index])
        split_part = s.split(workers)[w]
        assert np.array_equal(split_part.index, part.index)


def test_worker_arrivals_on_lists_and_schedules_agree() -> None:
    kwargs = dict(seed=1, group_index=0, first_client=3, clients=5, warmup_s=0.5)
    arrivals = open_arrivals(poisson(40.0), duration_s=2.0, requests=None, **kwargs)  # type: ignore[arg-type]
    s = open_schedule(poisson(40.0), duration_s=2.0, requests=None, **kwargs)  # type: ignore[arg-type]
    assert arrivals == s.to_list()
    for w in range(3):
        from_list = worker_arrivals(arrivals, w, 3)
        assert from_list == worker_arrivals(s, w, 3).to_list()
        assert all(isinstance(a, Arrival) and a.client % 3 == w for a in from_list)


def test_rows_yield_offset_index_client_stage_warmup() -> None:
    s = schedule(constant(4.0), first_client=10, clients=2, warmup_s=0.5, duration_s=0.5)
    assert list(s.rows(chunk=3)) == [
        (0.0, 0, 10, 0, True),
        (0.25, 1, 11, 0, True),
        (0.5, 2, 10, 0, False),
        (0.75, 3, 11, 0, False),
    ]


def test_schedule_for_a_cluster_group() -> None:
    config = ClusterConfig.model_validate(
        {
            "name": "c",
            "seed": 9,
            "warmup_s": 1,
            "target": {"url": "http://127.0.0.1:1"},
            "groups": [
                {
                    "name": "a",
                    "clients": 3,
                    "interaction": {"kind": "hello"},
                    "stop": {"duration_s": 1},
                },
                {
                    "name": "b",
                    "clients": 4,
                    "interaction": {"kind": "hello"},
                    "load": {"kind": "open", "rate": 10, "arrival": "constant"},
                    "stop": {"duration_s": 2},
                },
            ],
        }
    )
    s = schedule_for_group(config, 1)
    assert len(s) == 30 and s.warmup_count == 10
    assert set(s.client.tolist()) == {3, 4, 5, 6}
    assert np.array_equal(worker_schedule(config, 1, 1, 2).index, s.for_worker(1, 2).index)
    with pytest.raises(ValueError, match="closed"):
        schedule_for_group(config, 0)


# --- gamma --------------------------------------------------------------------------------


@pytest.mark.parametrize("burstiness", [0.25, 1.0, 4.0])
def test_gamma_gaps_have_the_rate_and_the_coefficient_of_variation(burstiness: float) -> None:
    load = OpenLoadConfig(rate=500.0, arrival="gamma", burstiness=burstiness)
    s = schedule(load, duration_s=200.0)
    gaps = np.diff(s.offsets_s)
    assert len(s) == pytest.approx(100_000, rel=0.03)
    assert gaps.mean() == pytest.approx(1 / 500, rel=0.03)
    assert gaps.std() / gaps.mean() == pytest.approx(1 / np.sqrt(burstiness), rel=0.04)


def test_gamma_defaults_to_poisson_like_gaps_and_is_seeded() -> None:
    plain = schedule(OpenLoadConfig(rate=200.0, arrival="gamma"), duration_s=100.0)
    gaps = np.diff(plain.offsets_s)
    assert gaps.std() / gaps.mean() == pytest.approx(1.0, rel=0.04)
    again = schedule(OpenLoadConfig(rate=200.0, arrival="gamma"), duration_s=100.0)
    assert np.array_equal(plain.offsets_s, again.offsets_s)
    other = schedule(OpenLoadConfig(rate=200.0, arrival="gamma"), duration_s=100.0, seed=8)
    assert not np.array_equal(plain.offsets_s[:10], other.offsets_s[:10])


def test_burstiness_needs_gamma() -> None:
    with pytest.raises(ValueError, match="burstiness applies to arrival: gamma"):
        OpenLoadConfig(rate=1.0, arrival="poisson", burstiness=0.5)
