"""Adaptive loads (clientswarm.load.adaptive): the configuration, the capacity search's and the
automatic sweep's decisions, the verdict's confidence, and the split of a decided stage."""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
import pytest

from clientswarm.config.loader import validate_config_data as validate_config
from clientswarm.config.models import ClusterConfig
from clientswarm.errors import ConfigError
from clientswarm.load.adaptive import (
    SETTLE_S,
    AdaptiveGroup,
    GroupStages,
    StageOrder,
    StageTally,
    share_confidence,
    stage_schedule,
)
from clientswarm.service.adaptive import LEAD_S
from clientswarm.worker.stages import StageFeed


def _config(load: dict[str, Any], clients: int = 8, **extra: Any) -> ClusterConfig:
    return ClusterConfig.model_validate(
        {
            "name": "adaptive",
            "target": {"url": "http://127.0.0.1:8000"},
            "groups": [
                {"name": "chat", "clients": clients, "interaction": {"kind": "chat"}, "load": load}
            ],
            **extra,
        }
    )


CAPACITY = {"kind": "capacity", "stage_s": 2, "start_rate": 10, "slo": {"ttft_s": 0.1}}


# -- configuration ---------------------------------------------------------------------------


def test_adaptive_loads_validate_and_bound_their_duration() -> None:
    sweep = _config({"kind": "sweep", "points": 3, "stage_s": 2}).groups[0]
    assert sweep.adaptive and sweep.load.kind == "sweep"
    # Five stages of 2 s, one pause to decide (drain_s 10 + 3 s) at most.
    assert sweep.duration_s == pytest.approx(5 * 2 + 10 + 3)
    capacity = _config(CAPACITY).groups[0]
    assert capacity.adaptive
    assert capacity.duration_s == pytest.approx(12 * 2 + 11 * 13)
    assert not _config({"kind": "sweep", "rates": [1, 2], "stage_s": 1}).groups[0].adaptive


@pytest.mark.parametrize(
    ("load", "extra", "clients", "says"),
    [
        (
            {"kind": "sweep", "points": 3, "rates": [1], "stage_s": 1},
            {},
            8,
            "a sweep needs exactly one of rates, concurrencies or points (got rates and points)",
        ),
        ({"kind": "sweep", "points": 3, "stage_s": 1}, {}, 1, "needs clients of at least 2"),
        ({"kind": "capacity", "stage_s": 1}, {}, 8, "a capacity search needs an SLO"),
        (
            {"kind": "capacity", "stage_s": 1, "start_rate": 10, "max_rate": 5},
            {"slo": {"ttft_s": 1}},
            8,
            "max_rate (5.0) must be at least start_rate (10.0)",
        ),
        (
            {"kind": "capacity", "stage_s": 1, "stage_warmup_s": 1},
            {"slo": {"ttft_s": 1}},
            8,
            "stage_warmup_s (1.0) must be shorter than stage_s (1.0)",
        ),
        (
            {"kind": "sweep", "rates": [1], "stage_s": 1, "drain_s": 3},
            {},
            8,
            "drain_s applies to an automatic sweep",
        ),
    ],
)
def test_bad_adaptive_loads_say_what_is_wrong(
    load: dict[str, Any], extra: dict[str, Any], clients: int, says: str
) -> None:
    raw = {
        "name": "adaptive",
        "target": {"url": "http://127.0.0.1:8000"},
        "groups": [
            {"name": "chat", "clients": clients, "interaction": {"kind": "chat"}, "load": load}
        ],
        **extra,
    }
    with pytest.raises(ConfigError) as info:
        validate_config(raw)
    assert says in str(info.value)


def test_an_adaptive_group_takes_no_stop() -> None:
    raw = {
        "name": "adaptive",
        "target": {"url": "http://127.0.0.1:8000"},
        "groups": [
            {
                "name": "chat",
                "clients": 4,
                "interaction": {"kind": "chat"},
                "load": CAPACITY,
                "stop": {"duration_s": 5},
            }
        ],
    }
    with pytest.raises(ConfigError) as info:
        validate_config(raw)
    assert "a capacity search ends by itself: remove stop" in str(info.value)


# -- the verdict's confidence ------------------------------------------------------------------


def test_share_confidence_is_the_beta_posterior_tail() -> None:
    # No request seen: the uniform prior itself, P(share >= t) = 1 - t.
    assert share_confidence(0, 0, 0.95) == pytest.approx(0.05)
    # All n met it: Beta(n + 1, 1), P(share >= t) = 1 - t ** (n + 1).
    assert share_confidence(10, 10, 0.95) == pytest.approx(1 - 0.95**11)
    assert share_confidence(500, 500, 0.95) == pytest.approx(1.0)
    # None met it: Beta(1, n + 1), P(share >= t) = (1 - t) ** (n + 1).
    assert share_confidence(0, 20, 0.5) == pytest.approx(0.5**21)
    # More evidence on the same share makes the verdict surer.
    assert share_confidence(98, 100, 0.95) < share_confidence(980, 1000, 0.95)
    # The binomial sum against a direct numeric integration of the Beta density.
    met, n, t = 37, 40, 0.9
    grid = np.linspace(t, 1.0, 200_001)
    density = grid**met * (1 - grid) ** (n - met)
    norm = math.exp(math.lgamma(n + 2) - math.lgamma(met + 1) - math.lgamma(n - met + 1))
    assert share_confidence(met, n, t) == pytest.approx(
        norm * np.trapezoid(density, grid), rel=1e-4
    )


# -- the capacity search -----------------------------------------------------------------------


def _search(load: dict[str, Any], capacity: float) -> AdaptiveGroup:
    """Run a capacity search against a server that meets the SLO for every request below
    ``capacity`` req/s and for none above; 100 requests a probe."""
    config = _config({**CAPACITY, **load})
    search = AdaptiveGroup(config.groups[0], config.warmup_s, LEAD_S)
    while not search.final:
        order = search.stages[-1]
        met = 100 if order.set_point <= capacity else 0
        now = order.end_offset_s + SETTLE_S
        search.decide(now, {order.stage: StageTally(requests=100, met_slo=met)}, 0)
        if not search.final:
            assert search.stages[-1].start_offset_s == pytest.approx(now + LEAD_S)
    return search


def test_the_capacity_search_grows_then_bisects_to_the_resolution() -> None:
    search = _search({"resolution": 0.05}, capacity=55.0)
    rates = [p.rate for p in search.probes]
    assert rates[:4] == [10, 20, 40, 80]  # grows by 2 while probes pass
    assert rates[4:6] == [60, 50]  # then bisects between 40 and 80
    result = search.capacity(None)
    assert result is not None
    low, high = result.bracket
    assert high is not None
    assert low <= 55.0 < high and (high - low) <= 0.05 * high
    assert result.converged and result.capacity_rate == low
    assert result.reason.startswith("converged")
    assert all(p.passed == (p.rate <= 55.0) for p in result.probes)
    assert [o.stage for o in search.stages] == list(range(len(search.probes)))


def test_the_capacity_search_stops_at_max_rate_and_max_probes() -> None:
    capped = _search({"max_rate": 30}, capacity=1000.0)
    assert [p.rate for p in capped.probes] == [10, 20, 30]
    result = capped.capacity(None)
    assert result is not None and result.bracket == (30.0, None)
    assert "every probe passed, up to max_rate" in result.reason
    few = _search({"max_probes": 3}, capacity=1000.0)
    assert len(few.probes) == 3 and few.reason == "max_probes (3) probes ran"


def test_a_search_whose_first_probe_fails_goes_down() -> None:
    search = _search({"max_probes": 4}, capacity=3.0)
    assert [p.rate for p in search.probes] == [10, 5, 2.5, 3.75]
    result = search.capacity(None)
    assert result is not None and result.bracket == (2.5, 3.75)


def test_requests_still_in_flight_count_as_misses() -> None:
    config = _config({**CAPACITY, "target_goodput": 0.9})
    search = AdaptiveGroup(config.groups[0], 0.0, LEAD_S)
    search.decide(3.0, {0: StageTally(requests=90, met_slo=90)}, 10)
    probe = search.probes[0]
    assert (probe.requests, probe.met_slo, probe.in_flight) == (100, 90, 10)
    assert probe.goodput_share == pytest.approx(0.9) and probe.passed


def test_a_decision_is_due_once_the_stage_drained_and_settled() -> None:
    config = _config({**CAPACITY, "drain_s": 5})
    search = AdaptiveGroup(config.groups[0], 0.0, LEAD_S)
    end = search.stages[0].end_offset_s  # 2.0
    assert not search.due(end - 0.1, 0, end - 0.1)  # still running
    assert not search.due(end + 0.1, 3, end + 0.1)  # requests in flight
    assert not search.due(end + 0.2, 0, end - 0.3)  # a worker's report predates the end
    assert not search.due(end + 0.3, 0, end + 0.3)  # quiet, settling
    assert search.due(end + 0.3 + SETTLE_S, 0, end + 0.3 + SETTLE_S)
    stuck = AdaptiveGroup(config.groups[0], 0.0, LEAD_S)
    assert not stuck.due(end + 4, 2, end + 4)
    assert stuck.due(end + 5 + SETTLE_S, 2, end + 5 + SETTLE_S)  # drain_s passed


# -- the automatic sweep -----------------------------------------------------------------------


def test_the_automatic_sweep_runs_its_end_points_then_the_rates_between() -> None:
    config = _config({"kind": "sweep", "points": 4, "stage_s": 2, "stage_warmup_s": 0.5}, 8)
    sweep = AdaptiveGroup(config.groups[0], 1.0, LEAD_S)
    first, second = sweep.stages
    assert (first.loop, first.set_point, first.role) == ("closed", 1, "synchronous")
    assert (first.start_offset_s, first.end_offset_s) == (0.0, 3.0)  # warm-up, then 2 s
    assert (second.loop, second.set_point, second.role) == ("closed", 8, "throughput")
    assert (second.start_offset_s, second.end_offset_s) == (3.0, 5.0)
    assert not sweep.due(4.0, 0, 4.0)
    # 1.5 measured seconds each: 3 requests alone (2/s), 45 sent together (30/s).
    message = sweep.decide(6.0, {0: StageTally(3, 3), 1: StageTally(40, 40)}, 5)
    assert sweep.final and sweep.sweep is not None
    assert sweep.sweep.synchronous_rate == pytest.approx(2.0)
    assert sweep.sweep.throughput_rate == pytest.approx(30.0)
    assert sweep.sweep.rates == pytest.approx([9.0, 16.0, 23.0, 30.0])
    rates = sweep.stages[2:]
    assert [o.set_point for o in rates] == pytest.approx([9.0, 16.0, 23.0, 30.0])
    assert rates[0].start_offset_s == pytest.approx(6.0 + LEAD_S)
    assert all(
        b.start_offset_s == pytest.approx(a.end_offset_s) for a, b in itertools.pairwise(rates)
    )
    assert "sweeping 4 rate(s)" in message
    plans = sweep.plans()
    assert plans[0].start_offset_s == 1.0 and plans[0].planned_s == 2.0  # after the warm-up
    assert [p.role for p in plans] == ["synchronous", "throughput", "rate", "rate", "rate", "rate"]


def test_a_sweep_whose_end_points_measured_nothing_ends() -> None:
    config = _config({"kind": "sweep", "points": 2, "stage_s": 1}, 4)
    sweep = AdaptiveGroup(config.groups[0], 0.0, LEAD_S)
    sweep.decide(3.0, {1: StageTally(10, 10)}, 0)
    assert sweep.final and len(sweep.stages) == 2
    assert sweep.reason == "the synchronous stage completed no measured request: no rates to sweep"


# -- a decided stage on the workers ------------------------------------------------------------


def test_a_stage_schedule_splits_over_workers_without_loss() -> None:
    config = _config({**CAPACITY, "arrival": "poisson"}, clients=5, seed=11, warmup_s=1.0)
    order = StageOrder(
        stage=3, start_offset_s=10.0, end_offset_s=12.0, loop="open", set_point=200, role="probe"
    )
    whole = stage_schedule(config, 0, order)
    assert whole.offsets_s.min() >= 10.0 and whole.offsets_s.max() < 12.0
    assert 300 < len(whole) < 500 and set(whole.stage.tolist()) == {3}
    assert not whole.warmup.any()  # after the run's warm-up
    again = stage_schedule(config, 0, order)
    assert np.array_equal(whole.offsets_s, again.offsets_s)  # every worker derives the same
    parts = [whole.for_worker(w, 3) for w in range(3)]
    merged = np.sort(np.concatenate([p.offsets_s for p in parts]))
    assert np.array_equal(merged, whole.offsets_s)
    constant = stage_schedule(_config({**CAPACITY, "arrival": "constant"}), 0, order)
    assert len(constant) == 400


def test_a_stage_feed_tags_samples_with_the_decided_stages() -> None:
    feed = StageFeed(warmup_s=1.0, stage_warmup_s=0.5)
    orders = [
        StageOrder(
            stage=0, start_offset_s=0, end_offset_s=3, loop="open", set_point=5, role="probe"
        ),
        StageOrder(
            stage=1, start_offset_s=5, end_offset_s=7, loop="open", set_point=9, role="probe"
        ),
    ]
    feed.update(GroupStages(stages=orders[:1]))
    assert feed.stage_at(2.0) == 0 and feed.stage_at(6.0) == 0  # stage 1 not known yet
    feed.update(GroupStages(stages=orders, final=True))
    feed.update(GroupStages(stages=orders[:1]))  # an older list changes nothing
    assert feed.final and len(feed.orders) == 2
    assert [feed.stage_at(t) for t in (0.0, 2.9, 4.0, 5.0, 6.9)] == [0, 0, 0, 1, 1]
    # Stage 0's own warm-up follows the run's; a later stage's starts with it.
    assert [feed.in_stage_warmup(t) for t in (0.5, 1.2, 1.6, 5.2, 5.6)] == [
        False,
        True,
        False,
        True,
        False,
    ]
