"""Targets as named data: ``target:`` for one (named ``default``), ``targets:`` for several, each
group naming its own."""

from __future__ import annotations

from typing import Any

import pytest

from clientswarm.config.loader import validate_config_data
from clientswarm.errors import ConfigError


def config(**over: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": "c",
        "groups": [
            {"name": "g1", "interaction": {"kind": "hello"}, "stop": {"requests": 1}},
            {"name": "g2", "interaction": {"kind": "hello"}, "stop": {"requests": 1}},
        ],
    }
    data.update(over)
    return data


def problems(data: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        validate_config_data(data)
    return info.value.problems


def test_one_target_is_named_default_and_every_group_loads_it() -> None:
    parsed = validate_config_data(config(target={"url": "http://a:1"}))
    assert list(parsed.target_map()) == ["default"]
    assert [parsed.target_name_of(g) for g in parsed.groups] == ["default", "default"]
    assert parsed.target_of(parsed.groups[1]).url == "http://a:1"


def test_groups_name_their_targets() -> None:
    data = config(targets={"a": {"url": "http://a:1"}, "b": {"url": "http://b:2"}})
    data["groups"][0]["target"] = "a"
    data["groups"][1]["target"] = "b"
    parsed = validate_config_data(data)
    assert [parsed.target_of(g).url for g in parsed.groups] == ["http://a:1", "http://b:2"]
    # a worker gets the config back from its JSON
    again = validate_config_data(parsed.model_dump(mode="json"))
    assert again.target_map() == parsed.target_map()
    moved = parsed.with_targets({"url": "http://sim:9"})
    assert {t.url for t in moved.target_map().values()} == {"http://sim:9"}


def test_a_group_must_name_one_of_several_targets() -> None:
    targets = {"a": {"url": "http://a:1"}, "b": {"url": "http://b:2"}}
    (line,) = problems(config(targets=targets))
    assert line.endswith(
        "groups[0].target: required when there are several targets; name one of: a, b"
    )
    data = config(targets=targets)
    data["groups"][0]["target"] = "a"
    data["groups"][1]["target"] = "c"
    (line,) = problems(data)
    assert line.endswith(
        "groups[1].target: 'c' is not a target of this configuration; targets: a, b"
    )


def test_target_and_targets_exclude_each_other() -> None:
    for data in [
        config(),
        config(target={"url": "http://a:1"}, targets={"b": {"url": "http://b:2"}}),
    ]:
        (line,) = problems(data)
        assert "give the target (target: {url: …}) or several targets by name" in line
    (line,) = problems(config(targets={"bad name": {"url": "http://a:1"}}))
    assert line.startswith('targets["bad name"]: not a valid name')
