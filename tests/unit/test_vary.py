"""Clients that differ within a group: ``vary`` in the configuration and each client's values."""

from __future__ import annotations

from typing import Any

import pytest

from clientswarm.config import ClusterConfig, GroupConfig, parse_config_text, validate_config_data
from clientswarm.config.interactions import ChatInteraction, HelloInteraction
from clientswarm.config.models import VaryRange
from clientswarm.errors import ConfigError
from clientswarm.load.vary import (
    client_interaction,
    client_values,
    client_variant_key,
    describe_variant,
)


def cluster(vary: dict[str, Any], *, clients: int = 6, **interaction: Any) -> dict[str, Any]:
    return {
        "name": "c",
        "seed": 7,
        "target": {"url": "http://127.0.0.1:8000"},
        "groups": [
            {
                "name": "chat",
                "clients": clients,
                "interaction": {"kind": "chat", **interaction},
                "stop": {"requests": 10},
                "vary": vary,
            }
        ],
    }


def group_of(vary: dict[str, Any], **kwargs: Any) -> GroupConfig:
    return validate_config_data(cluster(vary, **kwargs)).groups[0]


def problems_of(data: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        validate_config_data(data)
    return info.value.problems


# -- each client's values -----------------------------------------------------------------------


def test_without_vary_every_client_shares_the_group_interaction() -> None:
    group = group_of({})
    assert group.vary == {}
    for index in range(group.clients):
        assert client_interaction(group, index, seed=1) is group.interaction
        assert client_variant_key(group, index, seed=1) == ()
        assert describe_variant(group, index, seed=1) == {}


def test_lists_cycle_by_index_within_the_group() -> None:
    group = group_of({"max_tokens": [16, 32, 64], "system_prompt": ["Be brief.", None]})
    configs = [client_interaction(group, index, seed=0) for index in range(6)]
    assert all(isinstance(config, ChatInteraction) for config in configs)
    assert [c.max_tokens for c in configs if isinstance(c, ChatInteraction)] == [
        16, 32, 64, 16, 32, 64,
    ]  # fmt: skip
    assert [c.system_prompt for c in configs if isinstance(c, ChatInteraction)] == [
        "Be brief.", None, "Be brief.", None, "Be brief.", None,
    ]  # fmt: skip
    assert describe_variant(group, 4, seed=0) == {"max_tokens": 32, "system_prompt": "Be brief."}
    assert group.interaction.max_tokens == 128  # type: ignore[union-attr]  # left unchanged


def test_varied_prompts_and_stream() -> None:
    group = group_of({"prompts": [["a", "b"], ["c"]], "stream": [True, False]}, clients=2)
    first, second = (client_interaction(group, i, seed=0) for i in range(2))
    assert isinstance(first, ChatInteraction) and isinstance(second, ChatInteraction)
    assert (first.prompts, first.stream) == (["a", "b"], True)
    assert (second.prompts, second.stream) == (["c"], False)


def test_varying_a_prompt_source_replaces_the_group_s_source() -> None:
    group = group_of({"synthetic": [{"input_tokens": 10}, {"input_tokens": 20}]}, prompts=["hi"])
    config = client_interaction(group, 1, seed=0)
    assert isinstance(config, ChatInteraction)
    assert config.prompts is None and config.synthetic is not None
    assert config.synthetic.input_tokens.model_dump() == {"kind": "fixed", "value": 20}


def test_ranges_are_deterministic_for_a_seed_and_differ_across_clients() -> None:
    group = group_of({"max_tokens": {"min": 1, "max": 1000}}, clients=50)
    values = [describe_variant(group, i, seed=3)["max_tokens"] for i in range(50)]
    assert values == [describe_variant(group, i, seed=3)["max_tokens"] for i in range(50)]
    assert all(isinstance(v, int) and 1 <= v <= 1000 for v in values)
    assert len(set(values)) > 30
    other_seed = [describe_variant(group, i, seed=4)["max_tokens"] for i in range(50)]
    assert other_seed != values
    renamed = GroupConfig.model_validate({**group.model_dump(), "name": "other"})
    assert [describe_variant(renamed, i, seed=3)["max_tokens"] for i in range(50)] != values
    config = client_interaction(group, 7, seed=3)
    assert isinstance(config, ChatInteraction) and config.max_tokens == values[7]


def test_ranges_draw_ints_between_int_bounds_and_floats_otherwise() -> None:
    group = group_of(
        {
            "max_tokens": {"min": 8, "max": 9},
            "extra_body.temperature": {"min": 0, "max": 1.5},
            "extra_body.top_p": {"min": 0.5, "max": 0.5},
        },
        clients=40,
    )
    assert isinstance(group.vary["max_tokens"], VaryRange)
    assert group.vary["max_tokens"].integral  # type: ignore[union-attr]
    variants = [describe_variant(group, i, seed=0) for i in range(40)]
    assert {v["max_tokens"] for v in variants} == {8, 9}
    assert all(type(v["max_tokens"]) is int for v in variants)
    assert all(type(v["extra_body.temperature"]) is float for v in variants)
    assert all(0.0 <= v["extra_body.temperature"] <= 1.5 for v in variants)
    assert {v["extra_body.top_p"] for v in variants} == {0.5}


def test_dotted_paths_set_keys_inside_extra_body() -> None:
    group = group_of(
        {"extra_body.temperature": [0.0, 0.7], "extra_body.sampling.top_k": [5]},
        extra_body={"ignore_eos": True, "temperature": 1.0},
    )
    config = client_interaction(group, 1, seed=0)
    assert isinstance(config, ChatInteraction)
    assert config.extra_body == {"ignore_eos": True, "temperature": 0.7, "sampling": {"top_k": 5}}
    assert group.interaction.extra_body == {  # type: ignore[union-attr]
        "ignore_eos": True,
        "temperature": 1.0,
    }


def test_variant_keys_group_clients_with_equal_values() -> None:
    group = group_of({"max_tokens": [1, 2], "extra_body.stop": [["x"], ["y"], ["z"]]}, clients=6)
    keys = [client_variant_key(group, i, seed=0) for i in range(6)]
    assert len(set(keys)) == 6  # lcm(2, 3) distinct combinations
    assert keys[0] == (("max_tokens", "1"), ("extra_body.stop", '["x"]'))
    hash(keys[0])
    same = group_of({"max_tokens": [1]}, clients=3)
    assert len({client_variant_key(same, i, seed=0) for i in range(3)}) == 1


def test_client_index_is_checked() -> None:
    group = group_of({"max_tokens": [1, 2]}, clients=2)
    with pytest.raises(ValueError, match=r"must be in 0\.\.1, got 2"):
        client_values(group, 2, seed=0)
    with pytest.raises(ValueError, match="got -1"):
        client_interaction(group_of({}), -1, seed=0)


# -- configuration errors -----------------------------------------------------------------------


def test_unknown_parameter_lists_the_valid_ones() -> None:
    (line,) = problems_of(cluster({"max_tokenz": [1]}))
    assert line.startswith(
        "groups[0].vary.max_tokenz: unknown parameter 'max_tokenz' of interaction kind 'chat' "
        "(did you mean 'max_tokens'?); valid parameters: "
    )
    for name in ("max_tokens", "system_prompt", "stream", "prompts", "extra_body"):
        assert name in line
    assert "dotted paths go into: extra_body" in line


def test_bad_list_values_are_named_each() -> None:
    lines = problems_of(cluster({"max_tokens": [16, 0, "many"]}))
    assert lines == [
        "groups[0].vary.max_tokens[1]: not valid for interaction kind 'chat': too small; got 0; "
        "must be at least 1 and at most 10000000",
        "groups[0].vary.max_tokens[2]: not valid for interaction kind 'chat': expected an "
        'integer; got "many"',
    ]


def test_range_bounds_are_validated_both() -> None:
    lines = problems_of(cluster({"max_tokens": {"min": 0, "max": -5}}))
    assert lines == ["groups[0].vary.max_tokens: min (0) must be <= max (-5)"]
    lines = problems_of(cluster({"max_tokens": {"min": -1, "max": 0}}))
    assert [line.split(":")[0] for line in lines] == [
        "groups[0].vary.max_tokens.min",
        "groups[0].vary.max_tokens.max",
    ]
    assert all("must be at least 1" in line for line in lines)
    (line,) = problems_of(cluster({"max_tokens": {"min": 1, "max": 8.5}}))
    assert line.startswith("groups[0].vary.max_tokens.max: ") and "got 8.5" in line
    (line,) = problems_of(cluster({"max_tokens": {"min": 1, "max": 8.0}}))  # both bounds fit
    assert line.startswith("groups[0].vary.max_tokens: ")
    assert "a range with a float bound draws fractional numbers" in line
    assert "give integer bounds" in line


def test_range_shape_errors() -> None:
    (line,) = problems_of(cluster({"max_tokens": {"min": 1}}))
    assert line.startswith("groups[0].vary.max_tokens.max: required field missing")
    (line,) = problems_of(cluster({"max_tokens": {"min": True, "max": 3}}))
    assert line == "groups[0].vary.max_tokens.min: expected a number; got true"
    (line,) = problems_of(cluster({"max_tokens": {"min": 1, "max": 3, "step": 1}}))
    assert line.startswith("groups[0].vary.max_tokens.step: unknown field 'step'")


def test_values_must_be_a_non_empty_list_or_a_range() -> None:
    (line,) = problems_of(cluster({"max_tokens": 64}))
    assert line.startswith("groups[0].vary.max_tokens: expected a list of values")
    assert line.endswith("; got 64")
    (line,) = problems_of(cluster({"max_tokens": []}))
    assert line == "groups[0].vary.max_tokens: empty list; give at least one value"


def test_kind_cannot_vary() -> None:
    (line,) = problems_of(cluster({"kind": ["chat", "completion"]}))
    assert line.startswith("groups[0].vary.kind: the interaction kind cannot vary")


def test_dotted_paths_go_only_into_mappings() -> None:
    (line,) = problems_of(cluster({"max_tokens.value": [1]}))
    assert line == (
        "groups[0].vary[\"max_tokens.value\"]: 'max_tokens' of interaction kind 'chat' is not "
        "a mapping, so 'max_tokens.value' cannot vary inside it; dotted paths go into: extra_body"
    )
    (line,) = problems_of(cluster({"extra_body": [{}], "extra_body.top_k": [1]}))
    assert "'extra_body' varies as a whole already" in line
    (line,) = problems_of(cluster({"extra_body.": [1]}))
    assert "is not a parameter name or a dotted path" in line


def test_only_one_prompt_source_can_vary() -> None:
    lines = problems_of(cluster({"prompts": [["a"]], "synthetic": [{"input_tokens": 4}]}))
    assert lines[0].endswith("only one prompt source can vary, not prompts and synthetic")


def test_parameters_of_another_kind_are_unknown() -> None:
    data = cluster({"max_tokens": [1]})
    data["groups"][0]["interaction"] = {"kind": "hello"}
    (line,) = problems_of(data)
    assert "unknown parameter 'max_tokens' of interaction kind 'hello'" in line
    assert line.endswith("valid parameters: path")
    data["groups"][0]["vary"] = {"path": ["/a", "/b"]}
    group = validate_config_data(data).groups[0]
    config = client_interaction(group, 1, seed=0)
    assert isinstance(config, HelloInteraction) and config.path == "/b"


def test_standalone_group_validation_locates_errors_under_vary() -> None:
    with pytest.raises(ValueError) as info:
        GroupConfig.model_validate(
            {
                "name": "g",
                "interaction": {"kind": "chat"},
                "stop": {"requests": 1},
                "vary": {"stream": ["yes please"]},
            }
        )
    assert "vary.stream.0" in str(info.value)


# -- round trips --------------------------------------------------------------------------------

VARY_YAML = """\
name: varied
seed: 11
target: {url: "http://127.0.0.1:8000", model: mock-model}
groups:
  - name: chat
    clients: 4
    interaction: {kind: chat, prompts: ["Tell me a story."], max_tokens: 128}
    stop: {duration_s: 10}
    vary:
      max_tokens: {min: 32, max: 256}
      system_prompt: ["Be brief.", "Be thorough."]
      extra_body.temperature: [0.0, 0.5, 1.0]
"""


def test_yaml_round_trip_with_vary() -> None:
    config = parse_config_text(VARY_YAML, source="varied.yaml", fmt="yaml")
    group = config.groups[0]
    assert group.vary["max_tokens"] == VaryRange(min=32, max=256)
    assert group.vary["system_prompt"] == ["Be brief.", "Be thorough."]
    again = parse_config_text(config.model_dump_json(), source="<json>", fmt="json")
    assert again == config
    assert ClusterConfig.model_validate(config.model_dump()) == config
    variants = [describe_variant(group, i, config.seed) for i in range(4)]
    assert variants == [describe_variant(again.groups[0], i, again.seed) for i in range(4)]
    assert [v["system_prompt"] for v in variants] == ["Be brief.", "Be thorough."] * 2
    assert [v["extra_body.temperature"] for v in variants] == [0.0, 0.5, 1.0, 0.0]
    for index, variant in enumerate(variants):
        chat = client_interaction(group, index, config.seed)
        assert isinstance(chat, ChatInteraction)
        assert chat.max_tokens == variant["max_tokens"] and 32 <= variant["max_tokens"] <= 256
        assert chat.extra_body == {"temperature": variant["extra_body.temperature"]}


def test_yaml_vary_error_names_the_file_and_the_field() -> None:
    text = VARY_YAML.replace('"Be thorough."]', '"Be thorough.", 3]')
    with pytest.raises(ConfigError) as info:
        parse_config_text(text, source="varied.yaml", fmt="yaml")
    assert info.value.source == "varied.yaml"
    (line,) = info.value.problems
    assert line.startswith("groups[0].vary.system_prompt[2]: not valid for interaction kind")
    assert "expected a string; got 3" in line


def test_user_defined_interactions_skip_the_name_check() -> None:
    data = cluster({}, clients=3)
    data["groups"][0]["interaction"] = {"kind": "mypkg.journeys:Journey", "opts": {"a": 1}}
    data["groups"][0]["vary"] = {"depth": [1, 2], "opts.b": [True]}
    group = validate_config_data(data).groups[0]
    config = client_interaction(group, 1, seed=0)
    assert config.kind == "mypkg.journeys:Journey"
    assert config.model_dump(exclude={"kind", "name", "source"}) == {
        "opts": {"a": 1, "b": True},
        "depth": 2,
    }
    data["groups"][0]["vary"] = {"kind": ["x:Y"], "opts.a.deeper": [1]}
    lines = problems_of(data)
    assert lines[0].startswith("groups[0].vary.kind: the interaction kind cannot vary")
    assert lines[1] == (
        "groups[0].vary[\"opts.a.deeper\"][0]: 'a' is not a mapping, so 'opts.a.deeper' "
        "cannot be set"
    )
