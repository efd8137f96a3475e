"""The ``sweep`` load kind: shorthand for a staged open (rates) or closed (concurrencies) load."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from clientswarm.config.load import ClosedLoadConfig, OpenLoadConfig
from clientswarm.config.loader import config_json_schema, validate_config_data
from clientswarm.config.models import ClusterConfig, GroupConfig
from clientswarm.errors import ConfigError
from clientswarm.load.stage_plan import stage_plans

BASE: dict[str, Any] = {
    "name": "sweep",
    "target": {"url": "http://127.0.0.1:8000/"},
    "groups": [{"name": "g", "interaction": {"kind": "hello"}}],
}


def with_load(load: Any, **group: Any) -> dict[str, Any]:
    data = copy.deepcopy(BASE)
    data["groups"][0]["load"] = load
    data["groups"][0].update(group)
    return data


def group_of(load: Any, **group: Any) -> GroupConfig:
    return validate_config_data(with_load(load, **group)).groups[0]


def problem_of(load: Any, **group: Any) -> str:
    with pytest.raises(ConfigError) as info:
        validate_config_data(with_load(load, **group))
    assert len(info.value.problems) == 1, info.value.problems
    return info.value.problems[0]


def test_rates_expand_to_constant_open_stages() -> None:
    group = group_of({"kind": "sweep", "rates": [5, 10, 20, 40], "stage_s": 30})
    load = group.load
    assert isinstance(load, OpenLoadConfig)
    assert load.arrival == "constant"
    assert load.rate is None
    assert [(s.rate, s.duration_s) for s in load.stages] == [
        (5, 30),
        (10, 30),
        (20, 30),
        (40, 30),
    ]
    assert group.duration_s == 120
    plans = stage_plans(group, warmup_s=0.0)
    assert [p.set_point for p in plans] == [5, 10, 20, 40]
    assert {p.set_point_unit for p in plans} == {"req/s"}


def test_rates_sweep_takes_poisson_arrival_and_stage_warmup() -> None:
    group = group_of(
        {
            "kind": "sweep",
            "rates": [1, 2],
            "stage_s": 10,
            "arrival": "poisson",
            "stage_warmup_s": 2,
            "max_concurrency": 8,
        }
    )
    assert isinstance(group.load, OpenLoadConfig)
    assert group.load.max_concurrency == 8
    assert group.load.arrival == "poisson"
    assert group.load.stage_warmup_s == 2


def test_concurrencies_expand_to_closed_stages_and_default_the_clients() -> None:
    group = group_of({"kind": "sweep", "concurrencies": [1, 4, 16, 64], "stage_s": 30})
    load = group.load
    assert isinstance(load, ClosedLoadConfig)
    assert [(s.clients, s.duration_s) for s in load.stages] == [
        (1, 30),
        (4, 30),
        (16, 30),
        (64, 30),
    ]
    assert group.clients == 64
    assert [p.set_point for p in stage_plans(group, warmup_s=1.0)] == [1, 4, 16, 64]
    assert group_of({"kind": "sweep", "concurrencies": [2], "stage_s": 1}, clients=5).clients == 5


def test_an_expanded_config_round_trips() -> None:
    config = validate_config_data(with_load({"kind": "sweep", "rates": [3, 6], "stage_s": 2}))
    again = ClusterConfig.model_validate(config.model_dump(mode="json"))
    assert again == config


@pytest.mark.parametrize(
    ("load", "group", "expected"),
    [
        (
            {"kind": "sweep", "rates": [1], "concurrencies": [1], "stage_s": 1},
            {},
            "groups[0].load: a sweep needs exactly one of rates, concurrencies or points "
            "(got rates and concurrencies)",
        ),
        (
            {"kind": "sweep", "stage_s": 1},
            {},
            "groups[0].load: a sweep needs exactly one of rates, concurrencies or points",
        ),
        (
            {"kind": "sweep", "rates": [5, 0], "stage_s": 1},
            {},
            "groups[0].load.rates[1]: too small; got 0; must be greater than 0",
        ),
        (
            {"kind": "sweep", "concurrencies": [0], "stage_s": 1},
            {},
            "groups[0].load.concurrencies[0]: too small; got 0; must be at least 1",
        ),
        (
            {"kind": "sweep", "rates": [1], "stage_s": 0},
            {},
            "groups[0].load.stage_s: too small; got 0; must be greater than 0",
        ),
        (
            {"kind": "sweep", "rates": [1], "stage_s": 2, "stage_warmup_s": 2},
            {},
            "groups[0].load: stage_warmup_s (2.0) must be shorter than stage_s (2.0)",
        ),
        (
            {"kind": "sweep", "concurrencies": [1], "stage_s": 2, "arrival": "poisson"},
            {},
            "groups[0].load: arrival applies to a rates sweep, not to concurrencies",
        ),
        (
            {"kind": "sweep", "concurrencies": [1], "stage_s": 2, "max_concurrency": 3},
            {},
            "groups[0].load: max_concurrency applies to a rates sweep, not to concurrencies",
        ),
        (
            {"kind": "sweep", "concurrencies": [1, 8], "stage_s": 2},
            {"clients": 4},
            "groups[0]: load.stages: a stage asks for 8 clients but the group has only clients=4",
        ),
    ],
)
def test_invalid_sweeps_get_one_line(load: Any, group: dict[str, Any], expected: str) -> None:
    assert problem_of(load, **group) == expected


def test_unknown_field_of_a_sweep_lists_its_fields() -> None:
    line = problem_of({"kind": "sweep", "rates": [1], "stage_s": 1, "rate": 3})
    assert line.startswith("groups[0].load.rate: unknown field 'rate'")
    assert "valid fields for kind 'sweep': kind, rates, concurrencies, points, stage_s" in line


def test_the_json_schema_knows_the_sweep_kind() -> None:
    schema = config_json_schema()
    assert "SweepLoadConfig" in str(schema)
