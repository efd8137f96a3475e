"""Closed-loop plans, stage spans and think-time samplers."""

from __future__ import annotations

import math
import random
import statistics

import pytest

from clientswarm.config.load import (
    ClosedLoadConfig,
    ClosedStage,
    ConstantThink,
    ExponentialThink,
    UniformThink,
)
from clientswarm.config.models import ClusterConfig
from clientswarm.load import (
    ClientWindow,
    StageSpan,
    client_rng,
    closed_plan,
    group_end_s,
    mean_think_s,
    plan_for_group,
    request_quota,
    stage_spans,
    think_sampler,
)


def cluster(groups: list[dict[str, object]], warmup_s: float = 0.0) -> ClusterConfig:
    return ClusterConfig.model_validate(
        {
            "name": "c",
            "warmup_s": warmup_s,
            "target": {"url": "http://127.0.0.1:1"},
            "groups": groups,
        }
    )


# --- stage spans and group end ------------------------------------------------------------


def test_stage_spans_are_shifted_by_warmup_and_stage0_covers_warmup() -> None:
    assert stage_spans([3.0, 2.0], warmup_s=1.0, duration_s=None) == [
        StageSpan(0.0, 4.0, 0),
        StageSpan(4.0, 6.0, 1),
    ]
    assert stage_spans([], warmup_s=2.0, duration_s=10.0) == [StageSpan(0.0, 12.0, 0)]
    assert stage_spans([], warmup_s=2.0, duration_s=None) == [StageSpan(0.0, math.inf, 0)]


def test_stage_boundaries_carry_no_running_sum_drift() -> None:
    spans = stage_spans([0.1] * 30, warmup_s=0.0, duration_s=None)
    assert spans[-1].start_s == math.fsum([0.1] * 29)
    assert spans[-1].end_s == 3.0


def test_group_end_s() -> None:
    config = cluster(
        [
            {"name": "a", "interaction": {"kind": "hello"}, "stop": {"duration_s": 10}},
            {"name": "b", "interaction": {"kind": "hello"}, "stop": {"requests": 10}},
            {
                "name": "c",
                "clients": 3,
                "interaction": {"kind": "hello"},
                "load": {
                    "kind": "closed",
                    "stages": [{"clients": 1, "duration_s": 4}, {"clients": 3, "duration_s": 6}],
                },
            },
        ],
        warmup_s=2.0,
    )
    assert [group_end_s(g, config.warmup_s) for g in config.groups] == [12.0, None, 12.0]


# --- closed plans -------------------------------------------------------------------------


def test_ramp_up_offsets_are_even_and_ignore_warmup() -> None:
    plan = closed_plan(
        ClosedLoadConfig(ramp_up_s=10.0), clients=4, warmup_s=3.0, duration_s=20.0, requests=None
    )
    assert [plan.start_offset_s(i) for i in range(4)] == [0.0, 2.5, 5.0, 7.5]
    assert plan.end_s == 23.0
    assert plan.client_windows(3) == [ClientWindow(7.5, 23.0, 0)]


def test_without_ramp_up_clients_are_spread_by_default_and_zero_starts_them_together() -> None:
    def offsets(
        load: ClosedLoadConfig, duration_s: float | None, requests: int | None = None
    ) -> list[float]:
        plan = closed_plan(load, clients=4, warmup_s=0.0, duration_s=duration_s, requests=requests)
        return [plan.start_offset_s(i) for i in range(4)]

    assert offsets(ClosedLoadConfig(), 30.0) == [0.0, 0.25, 0.5, 0.75]  # over 1 s
    assert offsets(ClosedLoadConfig(), None, requests=100) == [0.0, 0.25, 0.5, 0.75]
    assert offsets(ClosedLoadConfig(), 2.0) == pytest.approx([0.0, 0.05, 0.1, 0.15])  # 10%
    assert offsets(ClosedLoadConfig(ramp_up_s=0), 30.0) == [0.0] * 4  # explicit: together
    assert offsets(ClosedLoadConfig.model_validate({"ramp_up_s": 0}), 30.0) == [0.0] * 4


def test_windows_follow_stages_and_merge_when_consecutive() -> None:
    load = ClosedLoadConfig(
        stages=[
            ClosedStage(clients=1, duration_s=10),
            ClosedStage(clients=3, duration_s=10),
            ClosedStage(clients=2, duration_s=10),
            ClosedStage(clients=3, duration_s=5),
        ]
    )
    plan = closed_plan(load, clients=3, warmup_s=5.0, duration_s=None, requests=None)
    assert plan.end_s == 40.0
    assert plan.client_windows(0) == [ClientWindow(0.0, 40.0, 0)]
    assert plan.client_windows(1) == [ClientWindow(15.0, 40.0, 1)]
    assert plan.client_windows(2) == [ClientWindow(15.0, 25.0, 1), ClientWindow(35.0, 40.0, 3)]
    assert [plan.stage_at(t) for t in (0.0, 14.999, 15.0, 25.0, 34.9, 35.0, 99.0)] == [
        0,
        0,
        1,
        2,
        2,
        3,
        3,
    ]
    assert [plan.active_clients(k) for k in range(plan.stages)] == [1, 3, 2, 3]
    assert plan.is_warmup(4.9) and not plan.is_warmup(5.0)


def test_ramp_up_inside_stages_delays_the_first_window() -> None:
    load = ClosedLoadConfig(
        ramp_up_s=30.0,
        stages=[ClosedStage(clients=2, duration_s=10), ClosedStage(clients=2, duration_s=10)],
    )
    plan = closed_plan(load, clients=2, warmup_s=0.0, duration_s=None, requests=None)
    assert plan.client_windows(1) == [ClientWindow(15.0, 20.0, 1)]
    cut = closed_plan(load, clients=2, warmup_s=0.0, duration_s=5.0, requests=None)
    assert cut.client_windows(0) == [ClientWindow(0.0, 5.0, 0)]
    assert cut.client_windows(1) == []  # its ramp-up start comes after the end


@pytest.mark.parametrize(("requests", "clients"), [(10, 3), (3, 10), (1000, 7), (7, 7), (1, 1)])
def test_quotas_split_requests_exactly(requests: int, clients: int) -> None:
    quotas = [request_quota(requests, clients, i) for i in range(clients)]
    assert sum(quotas) == requests
    assert max(quotas) - min(quotas) <= 1
    assert quotas == sorted(quotas, reverse=True)
    plan = closed_plan(
        ClosedLoadConfig(), clients=clients, warmup_s=0.0, duration_s=None, requests=requests
    )
    assert [plan.request_quota(i) for i in range(clients)] == quotas
    assert plan.end_s is None
    assert plan.client_windows(0) == [ClientWindow(0.0, math.inf, 0)]


def test_no_quota_without_requests() -> None:
    plan = closed_plan(ClosedLoadConfig(), clients=2, warmup_s=0.0, duration_s=5.0, requests=None)
    assert plan.request_quota(1) is None


def test_unbounded_plan_and_bad_inputs_are_errors() -> None:
    with pytest.raises(ValueError, match="stop"):
        closed_plan(ClosedLoadConfig(), clients=2, warmup_s=0.0, duration_s=None, requests=None)
    with pytest.raises(ValueError, match="stage asks for 3"):
        closed_plan(
            ClosedLoadConfig(stages=[ClosedStage(clients=3, duration_s=1)]),
            clients=2,
            warmup_s=0.0,
            duration_s=None,
            requests=None,
        )
    plan = closed_plan(ClosedLoadConfig(), clients=2, warmup_s=0.0, duration_s=1.0, requests=None)
    with pytest.raises(ValueError, match=r"0\.\.1"):
        plan.client_windows(2)


def test_plan_for_group() -> None:
    config = cluster(
        [
            {
                "name": "a",
                "clients": 4,
                "interaction": {"kind": "hello"},
                "load": {"kind": "closed", "ramp_up_s": 2},
                "stop": {"duration_s": 10, "requests": 9},
            },
            {
                "name": "b",
                "interaction": {"kind": "hello"},
                "load": {"kind": "open", "rate": 1},
                "stop": {"duration_s": 1},
            },
        ],
        warmup_s=1.0,
    )
    plan = plan_for_group(config, 0)
    assert plan.end_s == 11.0 and plan.start_offset_s(2) == 1.0
    assert [plan.request_quota(i) for i in range(4)] == [3, 2, 2, 2]
    with pytest.raises(ValueError, match="open"):
        plan_for_group(config, 1)


# --- think time ---------------------------------------------------------------------------


def test_constant_think() -> None:
    sample = think_sampler(ConstantThink(value_s=0.25), random.Random(1))
    assert [sample() for _ in range(3)] == [0.25, 0.25, 0.25]


def test_uniform_think_bounds_and_mean() -> None:
    think = UniformThink(min_s=1.0, max_s=3.0)
    sample = think_sampler(think, random.Random(2))
    values = [sample() for _ in range(20_000)]
    assert all(1.0 <= v <= 3.0 for v in values)
    # sd of U(1, 3) is 2/sqrt(12); allow 5 standard errors.
    assert abs(statistics.fmean(values) - 2.0) < 5 * (2 / math.sqrt(12)) / math.sqrt(len(values))
    assert mean_think_s(think) == 2.0


def test_exponential_think_mean_and_cv() -> None:
    think = ExponentialThink(mean_s=0.5)
    sample = think_sampler(think, random.Random(3))
    values = [sample() for _ in range(20_000)]
    mean = statistics.fmean(values)
    assert abs(mean - 0.5) < 5 * 0.5 / math.sqrt(len(values))
    assert abs(statistics.pstdev(values) / mean - 1.0) < 0.05
    assert mean_think_s(think) == 0.5


def test_think_samplers_are_reproducible_per_client() -> None:
    think = ExponentialThink(mean_s=1.0)
    a = think_sampler(think, client_rng(42, 7))
    b = think_sampler(think, client_rng(42, 7))
    c = think_sampler(think, client_rng(42, 8))
    first = [a() for _ in range(5)]
    assert first == [b() for _ in range(5)]
    assert first != [c() for _ in range(5)]
