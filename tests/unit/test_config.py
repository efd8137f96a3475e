"""Configuration loading: the canonical file validates, and every bad input gets one clear line."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from clientswarm.config import (
    ClusterConfig,
    config_json_schema,
    load_config_file,
    parse_config_text,
    validate_config_data,
)
from clientswarm.config.lengths import FixedLength, UniformLength
from clientswarm.config.load import ClosedLoadConfig, ConstantThink
from clientswarm.errors import ConfigError

# The "Canonical shapes" example of DESIGN.md, verbatim.
CANONICAL_YAML = """\
name: quickstart
seed: 42
target: {url: "http://127.0.0.1:8000", model: mock-model, api_key_env: VLLM_API_KEY, timeout_s: 60}
spawner: {kind: local, workers: 2}        # slurm: partition, account, time_limit, …
warmup_s: 2
slo: {ttft_s: 0.5, tpot_s: 0.05}
groups:
  - name: chat
    clients: 16
    interaction: {kind: chat, stream: true, prompts: ["Tell me a story."], max_tokens: 128}
    load: {kind: closed, think_time_s: 0}            # or {kind: open, rate: 20, arrival: poisson}
    stop: {duration_s: 30}                           # and/or {requests: 1000}
  - name: hello
    clients: 1
    interaction: {kind: hello}                       # GET the Server Microservice's hello route
    load: {kind: open, rate: 2, arrival: constant}
    stop: {duration_s: 30}
"""

MINIMAL: dict[str, Any] = {
    "name": "tiny",
    "target": {"url": "http://127.0.0.1:8000/"},
    "groups": [{"name": "g", "interaction": {"kind": "hello"}, "stop": {"requests": 10}}],
}


def canonical() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(CANONICAL_YAML)
    return data


def problems_of(data: Any) -> list[str]:
    """The problem lines that validating ``data`` produces (it must be invalid)."""
    with pytest.raises(ConfigError) as info:
        validate_config_data(data, source="test.yaml")
    assert info.value.source == "test.yaml"
    return info.value.problems


def one_problem(data: Any) -> str:
    found = problems_of(data)
    assert len(found) == 1, found
    return found[0]


def changed(path: list[str | int], value: Any, data: dict[str, Any] | None = None) -> Any:
    """A copy of the canonical config with the value at ``path`` replaced (or removed: ...)."""
    data = copy.deepcopy(canonical() if data is None else data)
    node: Any = data
    for key in path[:-1]:
        node = node[key]
    if value is ...:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return data


# -- valid files --------------------------------------------------------------------------------


def test_canonical_example_validates() -> None:
    config = parse_config_text(CANONICAL_YAML, source="quickstart.yaml", fmt="yaml")
    assert config.name == "quickstart"
    assert config.seed == 42
    assert config.target.api_key_env == "VLLM_API_KEY"
    assert config.spawner.workers == 2
    assert config.slo is not None and config.slo.ttft_s == 0.5
    chat, hello = config.groups
    assert chat.interaction.kind == "chat"
    assert chat.interaction.max_tokens == 128
    assert chat.load.kind == "closed"
    assert chat.load.think_time_s == ConstantThink(value_s=0)
    assert chat.duration_s == 30
    assert hello.interaction.kind == "hello"
    assert hello.load.kind == "open" and hello.load.arrival == "constant"
    assert config.total_clients == 17


@pytest.mark.parametrize("mode", ["python", "json"])
def test_canonical_example_round_trips(mode: str) -> None:
    config = validate_config_data(canonical())
    again = validate_config_data(config.model_dump(mode=mode))
    assert again == config


def test_round_trip_through_json_text() -> None:
    config = validate_config_data(canonical())
    text = config.model_dump_json()
    assert parse_config_text(text, source="<json>", fmt="json") == config


def test_defaults_fill_a_minimal_config() -> None:
    config = validate_config_data(MINIMAL)
    assert config.seed == 0
    assert config.warmup_s == 0
    assert config.slo is None
    assert config.spawner.kind == "local" and config.spawner.workers == 1
    assert config.outputs.samples_format == "parquet" and config.outputs.dir is None
    assert config.target.url == "http://127.0.0.1:8000"  # trailing slash dropped
    assert config.target.timeout_s == 60
    assert config.target.hello_path == "/"
    assert config.target.api_key_env is None
    group = config.groups[0]
    assert group.clients == 1
    assert group.load == ClosedLoadConfig()
    assert group.load.think_time_s == ConstantThink(value_s=0)


def test_generation_interaction_defaults() -> None:
    data = changed(["groups", 0, "interaction"], {"kind": "completion"}, MINIMAL)
    interaction = validate_config_data(data).groups[0].interaction
    assert interaction.kind == "completion"
    assert interaction.stream is True
    assert interaction.max_tokens == 128
    assert interaction.prompts == ["Hello! Who are you?"]


def test_bare_numbers_stand_for_fixed_lengths_and_think_times() -> None:
    data = changed(
        ["groups", 0, "interaction"],
        {"kind": "chat", "synthetic": {"input_tokens": 256, "output_tokens": 64}},
    )
    data = changed(["groups", 0, "load", "think_time_s"], 0.5, data)
    group = validate_config_data(data).groups[0]
    assert group.interaction.synthetic.input_tokens == FixedLength(value=256)
    # Optional-wrapped lengths keep the shorthand (it was lost before the Discriminator fix).
    assert group.interaction.synthetic.output_tokens == FixedLength(value=64)
    assert group.load.think_time_s == ConstantThink(value_s=0.5)


def test_length_distribution_by_kind() -> None:
    synthetic = {"input_tokens": {"kind": "uniform", "min": 10, "max": 20}}
    data = changed(["groups", 0, "interaction"], {"kind": "chat", "synthetic": synthetic})
    lengths = validate_config_data(data).groups[0].interaction.synthetic.input_tokens
    assert lengths == UniformLength(min=10, max=20)


def test_json_file_and_unknown_extension(tmp_path: Path) -> None:
    as_json = tmp_path / "cluster.json"
    as_json.write_text(json.dumps(canonical()))
    as_txt = tmp_path / "cluster.conf"
    as_txt.write_text(CANONICAL_YAML)
    assert load_config_file(as_json) == load_config_file(str(as_txt))


def test_environment_references_are_not_expanded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODEL_NAME", "expanded")
    monkeypatch.setenv("TARGET_URL", "http://127.0.0.1:9000")
    config = validate_config_data(changed(["target", "model"], "${MODEL_NAME}"))
    assert config.target.model == "${MODEL_NAME}"
    line = one_problem(changed(["target", "url"], "${TARGET_URL}"))
    assert line.startswith("target.url: must be an http:// or https:// URL")
    assert 'got "${TARGET_URL}" (environment variables are not expanded' in line


# -- unknown fields -----------------------------------------------------------------------------


def test_unknown_field_names_the_field_lists_valid_ones_and_suggests() -> None:
    line = one_problem(changed(["groups", 0, "interaction", "stremm"], True))
    assert line == (
        "groups[0].interaction.stremm: unknown field 'stremm' (did you mean 'stream'?); "
        "valid fields for kind 'chat': kind, prompts, synthetic, dataset, shared_prefix, "
        "tokenizer, stream, max_tokens, model, extra_body, system_prompt, images"
    )


def test_unknown_field_at_top_level() -> None:
    line = one_problem(changed(["seedd"], 1))
    assert line == (
        "seedd: unknown field 'seedd' (did you mean 'seed'?); "
        "valid fields: name, seed, target, targets, spawner, warmup_s, preflight, "
        "preflight_timeout_s, slo, outputs, groups, thresholds, abort, telemetry, sample_path"
    )


def test_unknown_field_of_another_kind_says_which_kinds_have_it() -> None:
    line = one_problem(changed(["groups", 1, "interaction", "max_tokens"], 64))
    assert line == (
        "groups[1].interaction.max_tokens: unknown field 'max_tokens' ('max_tokens' is a field "
        "of kind completion, chat, responses, messages, conversation); valid fields for kind "
        "'hello': kind, path"
    )


def test_field_at_the_wrong_level_points_to_where_it_belongs() -> None:
    line = one_problem(changed(["groups", 0, "duration_s"], 30))
    assert line.startswith("groups[0].duration_s: unknown field 'duration_s'")
    assert "(did you mean to put it under 'stop'?)" in line


def test_unknown_field_inside_a_length_distribution() -> None:
    synthetic = {"input_tokens": {"kind": "fixed", "value": 8, "vaule": 3}}
    data = changed(["groups", 0, "interaction"], {"kind": "chat", "synthetic": synthetic})
    assert one_problem(data) == (
        "groups[0].interaction.synthetic.input_tokens.vaule: unknown field 'vaule' "
        "(did you mean 'value'?); valid fields for kind 'fixed': kind, value"
    )


def test_unknown_field_inside_a_think_time_and_a_list_item() -> None:
    load = {
        "kind": "closed",
        "think_time_s": {"kind": "uniform", "min_s": 0, "max_s": 1, "mx_s": 2},
        "stages": [{"clients": 4, "duraton_s": 5}],
    }
    found = problems_of(changed(["groups", 0, "load"], load))
    assert (
        "groups[0].load.think_time_s.mx_s: unknown field 'mx_s' (did you mean 'max_s'?); "
        "valid fields for kind 'uniform': kind, min_s, max_s"
    ) in found
    assert "groups[0].load.stages[0].duration_s: required field missing" in found
    assert (
        "groups[0].load.stages[0].duraton_s: unknown field 'duraton_s' "
        "(did you mean 'duration_s'?); valid fields: clients, duration_s"
    ) in found


# -- kinds and choices --------------------------------------------------------------------------


def test_unknown_kind_lists_kinds_and_suggests() -> None:
    line = one_problem(changed(["groups", 0, "interaction", "kind"], "chatt"))
    assert line == (
        "groups[0].interaction.kind: unknown kind; got \"chatt\" (did you mean 'chat'?); "
        "valid kinds: hello, http, completion, chat, responses, messages, "
        "embedding, conversation, transcription, package.module:Name, "
        "file:path/to/file.py:Name, "
        "an installed entry point"
    )


def test_unknown_kind_of_load_and_think_time() -> None:
    line = one_problem(changed(["groups", 0, "load", "kind"], "opne"))
    assert line == (
        "groups[0].load.kind: unknown kind; got \"opne\" (did you mean 'open'?); "
        "valid kinds: closed, open, sweep, capacity, trace"
    )
    line = one_problem(changed(["groups", 0, "load", "think_time_s"], {"kind": "expo"}))
    assert line.startswith('groups[0].load.think_time_s.kind: unknown kind; got "expo"')
    assert "(did you mean 'exponential'?); valid kinds: constant, uniform, exponential" in line


def test_missing_kind() -> None:
    line = one_problem(changed(["groups", 0, "interaction"], {"stream": True}))
    assert line == (
        "groups[0].interaction.kind: required field missing; "
        "valid kinds: hello, http, completion, chat, responses, messages, "
        "embedding, conversation, transcription, package.module:Name, "
        "file:path/to/file.py:Name, "
        "an installed entry point"
    )


def test_missing_kind_guesses_from_the_fields_given() -> None:
    synthetic = {"input_tokens": {"value": 10}, "output_tokens": {"min": 1, "max": 9}}
    data = changed(["groups", 0, "interaction"], {"kind": "chat", "synthetic": synthetic})
    assert problems_of(data) == [
        "groups[0].interaction.synthetic.input_tokens.kind: required field missing "
        "(the fields given fit kind 'fixed'); valid kinds: fixed, uniform, normal, lognormal",
        # min and max fit several kinds: no guess
        "groups[0].interaction.synthetic.output_tokens.kind: required field missing; "
        "valid kinds: fixed, uniform, normal, lognormal",
    ]


def test_spawner_kind_lists_the_spawners() -> None:
    line = one_problem(changed(["spawner", "kind"], "locl"))
    assert line == (
        "spawner.kind: unknown kind; got \"locl\" (did you mean 'local'?); "
        "valid kinds: local, slurm, kubernetes"
    )


def test_unknown_slurm_option_lists_the_valid_ones() -> None:
    line = one_problem(changed(["spawner"], {"kind": "slurm", "partitoin": "debug"}))
    assert line.startswith(
        "spawner.partitoin: unknown field 'partitoin' (did you mean 'partition'?); "
        "valid fields for kind 'slurm': kind, preset, workers, partition, account, qos, time_limit,"
    )


def test_bad_literal_lists_valid_values() -> None:
    line = one_problem(changed(["groups", 1, "load", "arrival"], "pois"))
    assert line == (
        "groups[1].load.arrival: not a valid choice; got \"pois\" (did you mean 'poisson'?); "
        "valid values: poisson, constant, gamma"
    )
    line = one_problem(changed(["outputs"], {"samples_format": "xlsx"}))
    assert line == (
        'outputs.samples_format: not a valid choice; got "xlsx"; valid values: jsonl, parquet, csv'
    )


def test_literal_suggestion_ignores_case() -> None:
    data = changed(["groups", 1, "interaction"], {"kind": "http", "method": "post"})
    assert "got \"post\" (did you mean 'POST'?)" in one_problem(data)


def test_interaction_given_as_a_bare_kind() -> None:
    line = one_problem(changed(["groups", 0, "interaction"], "chat"))
    assert line == (
        "groups[0].interaction: expected a mapping with a 'kind'; got \"chat\" "
        "(did you mean {kind: chat}?); valid kinds: hello, http, completion, chat, responses, "
        "messages, embedding, conversation, transcription, package.module:Name, "
        "file:path/to/file.py:Name, "
        "an installed entry point"
    )


# -- types, ranges, patterns --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        (
            ["groups", 0, "interaction", "max_tokens"],
            "lots",
            'groups[0].interaction.max_tokens: expected an integer; got "lots"',
        ),
        (["groups", 0, "clients"], 2.5, "groups[0].clients: expected a whole number; got 2.5"),
        (
            ["groups", 0, "interaction", "stream"],
            "maybe",
            'groups[0].interaction.stream: expected true or false; got "maybe"',
        ),
        (["warmup_s"], "soon", 'warmup_s: expected a number; got "soon"'),
        (
            ["groups", 0, "interaction", "prompts"],
            "Tell me a story.",
            'groups[0].interaction.prompts: expected a list; got "Tell me a story."',
        ),
        (
            ["slo"],
            5,
            "slo: expected a mapping; got 5; valid fields: ttft_s, tpot_s, itl_s, e2e_s",
        ),
        (
            ["name"],
            2024,
            "name: expected a string; got 2024 (put it in quotes to make it a string)",
        ),
    ],
)
def test_wrong_type(path: list[str | int], value: Any, expected: str) -> None:
    assert one_problem(changed(path, value)) == expected


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        (["spawner", "workers"], 0, "spawner.workers: too small; got 0; "),
        (["spawner", "workers"], 5000, "spawner.workers: too large; got 5000; "),
    ],
)
def test_out_of_range_states_the_whole_range(
    path: list[str | int], value: Any, expected: str
) -> None:
    assert one_problem(changed(path, value)) == expected + "must be at least 1 and at most 1024"


def test_greater_than_bound() -> None:
    assert one_problem(changed(["target", "timeout_s"], -1)) == (
        "target.timeout_s: too small; got -1; must be greater than 0"
    )
    assert one_problem(changed(["groups", 1, "load", "rate"], 0)) == (
        "groups[1].load.rate: too small; got 0; must be greater than 0"
    )


def test_name_pattern_says_which_characters_are_allowed() -> None:
    line = one_problem(changed(["groups", 0, "name"], "my chat!"))
    assert line == (
        'groups[0].name: not a valid name; got "my chat!"; '
        "use letters, digits, '_', '.' and '-', starting with a letter or digit"
    )


def test_long_values_are_cut() -> None:
    line = one_problem(changed(["name"], "n" * 80))
    assert line == f'name: too long; got "{"n" * 57}…" (80 characters); at most 64 characters'
    line = one_problem(changed(["groups", 0, "interaction", "max_tokens"], {"a": "x" * 100}))
    got = line.split("; got ", 1)[1]
    assert len(got) == 60 and got.endswith("…")


def test_length_shorthand_of_the_wrong_type() -> None:
    synthetic = {"input_tokens": 12.5, "output_tokens": "many"}
    data = changed(["groups", 0, "interaction"], {"kind": "chat", "synthetic": synthetic})
    assert problems_of(data) == [
        "groups[0].interaction.synthetic.input_tokens: expected an integer or a mapping with a "
        "'kind'; got 12.5; valid kinds: fixed, uniform, normal, lognormal",
        "groups[0].interaction.synthetic.output_tokens: expected an integer or a mapping with a "
        "'kind'; got \"many\"; valid kinds: fixed, uniform, normal, lognormal",
    ]


def test_think_time_of_the_wrong_type() -> None:
    assert one_problem(changed(["groups", 0, "load", "think_time_s"], "1s")) == (
        "groups[0].load.think_time_s: expected a number or a mapping with a 'kind'; got \"1s\"; "
        "valid kinds: constant, uniform, exponential"
    )


def test_non_string_keys() -> None:
    data = changed(["groups", 1, "interaction"], {"kind": "http", "headers": {1: "a"}})
    assert one_problem(data) == (
        "groups[1].interaction.headers[1]: keys must be strings; got 1 "
        "(put it in quotes to make it a string)"
    )
    assert one_problem({**canonical(), 2: "x"}) == (
        "field names must be strings; got 2 (put it in quotes to make it a string)"
    )
    group = {**canonical()["groups"][0], 3: "x"}
    assert one_problem(changed(["groups", 0], group)) == (
        "groups[0]: field names must be strings; got 3 (put it in quotes to make it a string)"
    )


# -- missing fields, lists, model checks --------------------------------------------------------


def test_required_field_missing() -> None:
    assert one_problem(changed(["target", "url"], ...)) == (
        "target.url: required field missing (base URL of the target, e.g. "
        "http://127.0.0.1:8000 (or urls: replicas))"
    )
    assert one_problem(changed(["groups", 0, "name"], ...)) == (
        "groups[0].name: required field missing"
    )
    assert one_problem(changed(["groups", 0, "interaction"], ...)) == (
        "groups[0].interaction: required field missing; "
        "valid kinds: hello, http, completion, chat, responses, messages, "
        "embedding, conversation, transcription, package.module:Name, "
        "file:path/to/file.py:Name, "
        "an installed entry point"
    )


def test_empty_mapping_names_every_required_field() -> None:
    assert problems_of({}) == ["name: required field missing", "groups: required field missing"]
    # the target (or targets) is asked for once the fields themselves are valid
    group = {"name": "g", "interaction": {"kind": "hello"}, "stop": {"requests": 1}}
    (line,) = problems_of({"name": "c", "groups": [group]})
    assert "give the target (target: {url: …}) or several targets by name" in line


def test_groups_needs_at_least_one_group() -> None:
    assert one_problem(changed(["groups"], [])) == (
        "groups: empty list; got []; give at least one group"
    )
    data = changed(["groups", 0, "interaction", "prompts"], [])
    assert one_problem(data) == (
        "groups[0].interaction.prompts: empty list; got []; give at least one item"
    )


def test_model_level_checks_name_the_model_path() -> None:
    assert one_problem(changed(["groups", 0, "stop"], ...)) == (
        "groups[0]: a group needs a stop condition: set stop.duration_s and/or stop.requests, "
        "or give load.stages"
    )
    assert one_problem(changed(["groups", 1, "load"], {"kind": "open"})) == (
        "groups[1].load: an open load needs a rate (requests per second) or stages"
    )
    assert one_problem(changed(["groups", 1, "name"], "chat")) == (
        "groups: group names must be unique; 'chat' appears twice"
    )
    synthetic = {"input_tokens": {"kind": "uniform", "min": 9, "max": 2}}
    data = changed(["groups", 0, "interaction"], {"kind": "chat", "synthetic": synthetic})
    assert one_problem(data) == (
        "groups[0].interaction.synthetic.input_tokens: max (2) must be >= min (9)"
    )
    data = changed(["groups", 0, "interaction", "synthetic"], {"input_tokens": 8})
    assert one_problem(data) == (
        "groups[0].interaction: give one prompt source, not prompts and synthetic"
    )


def test_field_validator_shows_the_value() -> None:
    assert one_problem(changed(["target", "url"], "localhost:8000")) == (
        "target.url: must be an http:// or https:// URL with a host, e.g. http://127.0.0.1:8000; "
        'got "localhost:8000"'
    )


def test_several_problems_give_several_lines() -> None:
    data = changed(["seedd"], 1)
    data = changed(["spawner", "workers"], -3, data)
    data = changed(["groups", 1, "load", "rate"], 0, data)
    data = changed(["groups", 0, "interaction", "kind"], "chatt", data)
    found = problems_of(data)
    assert len(found) == 4
    assert [line.split(":", 1)[0] for line in found] == [
        "spawner.workers",
        "groups[0].interaction.kind",
        "groups[1].load.rate",
        "seedd",
    ]
    assert all("\n" not in line for line in found)


# -- secrets ------------------------------------------------------------------------------------

SECRET = "sk-live-0123456789abcdef"


def test_a_key_given_instead_of_an_env_name_is_refused_and_never_shown() -> None:
    line = one_problem(changed(["target", "api_key_env"], SECRET))
    assert line.startswith("target.api_key_env: must be the name of an environment variable")
    assert "got <hidden>" in line
    assert SECRET not in line


def test_env_reference_in_api_key_env_asks_for_the_bare_name() -> None:
    line = one_problem(changed(["target", "api_key_env"], "${VLLM_API_KEY}"))
    assert line.startswith(
        "target.api_key_env: write the variable name alone, without '$': VLLM_API_KEY"
    )


def test_a_key_under_an_unknown_field_is_never_shown() -> None:
    line = one_problem(changed(["target", "api_key"], SECRET))
    assert line.startswith("target.api_key: unknown field 'api_key' (did you mean 'api_key_env'?")
    assert SECRET not in line


def test_secret_headers_and_url_passwords_are_hidden() -> None:
    data = changed(["target", "headers"], {"Authorization": 1234567890, "X-Trace": 5})
    found = problems_of(data)
    assert found[0] == (
        "target.headers.Authorization: expected a string; got <hidden> "
        "(put it in quotes to make it a string)"
    )
    assert "1234567890" not in found[0]
    assert found[1].startswith("target.headers.X-Trace: expected a string; got 5")
    line = one_problem(changed(["target", "url"], "ftp://admin:hunter2@host"))
    assert "hunter2" not in line
    assert 'got "ftp://admin:***@host"' in line
    line = one_problem(changed(["name"], SECRET + "-and-far-too-long" * 4))
    assert line.startswith("name: too long; got <hidden>")


def test_yaml_errors_do_not_quote_the_offending_line() -> None:
    text = CANONICAL_YAML.replace(
        "api_key_env: VLLM_API_KEY,", f"api_key_env: VLLM_API_KEY, key: {SECRET}: x,"
    )
    with pytest.raises(ConfigError) as info:
        parse_config_text(text, source="s.yaml", fmt="yaml")
    assert SECRET not in str(info.value)


# -- files and syntax ---------------------------------------------------------------------------


def file_problems(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config_file(path)
    assert info.value.source == str(path)
    return info.value.problems


def test_missing_file(tmp_path: Path) -> None:
    assert file_problems(tmp_path / "nope.yaml") == ["file not found"]


def test_directory(tmp_path: Path) -> None:
    assert file_problems(tmp_path) == ["is a directory, not a configuration file"]


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root reads anything")
def test_unreadable_file(tmp_path: Path) -> None:
    path = tmp_path / "locked.yaml"
    path.write_text(CANONICAL_YAML)
    path.chmod(0)
    assert file_problems(path) == ["cannot read the file: permission denied"]


def test_path_through_a_file(tmp_path: Path) -> None:
    (tmp_path / "plain").write_text("x")
    assert file_problems(tmp_path / "plain" / "c.yaml") == ["cannot read the file: not a directory"]


def test_binary_file(tmp_path: Path) -> None:
    path = tmp_path / "blob.yaml"
    path.write_bytes(b"name: \xff\xfe")
    assert file_problems(path) == ["not a UTF-8 text file (byte 6 cannot be decoded)"]


@pytest.mark.parametrize("text", ["", "  \n\n"])
def test_empty_file(tmp_path: Path, text: str) -> None:
    path = tmp_path / "empty.yaml"
    path.write_text(text)
    assert file_problems(path) == [
        "the file is empty; expected a mapping with name, target and groups"
    ]


def test_only_comments(tmp_path: Path) -> None:
    path = tmp_path / "comments.yml"
    path.write_text("# name: quickstart\n")
    assert file_problems(path) == [
        "no configuration found (only comments?); expected a mapping with name, target and groups"
    ]


@pytest.mark.parametrize(
    ("text", "got"),
    [("- chat\n- hello\n", 'a list ["chat", "hello"]'), ("quickstart\n", 'a string "quickstart"')],
)
def test_top_level_not_a_mapping(tmp_path: Path, text: str, got: str) -> None:
    path = tmp_path / "list.yaml"
    path.write_text(text)
    assert file_problems(path) == [
        f"top level: expected a mapping with name, target and groups; got {got}"
    ]


def test_yaml_syntax_error_has_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("name: x\ntarget:\n  url: http://a\n    model: m\n")
    assert file_problems(path) == [
        "line 4, column 10: invalid YAML: mapping values are not allowed here"
    ]


def test_yaml_unclosed_bracket_names_where_it_opened() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config_text("name: x\ngroups: [1, 2\n", source="s.yaml", fmt="yaml")
    assert info.value.problems == [
        "line 3, column 1: invalid YAML: expected ',' or ']', but got '<stream end>' "
        "(while parsing a flow sequence at line 2, column 9)"
    ]


def test_yaml_tab_indentation() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config_text("name: x\n\tseed: 1\n", source="s.yaml", fmt="yaml")
    (line,) = info.value.problems
    assert line.startswith("line 2, column 1: invalid YAML: found character '\\t'")
    assert line.endswith("; indent with spaces, not tabs")


def test_yaml_control_character() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config_text("name: x\nseed: \x001\n", source="s.yaml", fmt="yaml")
    assert info.value.problems == [
        "line 2, column 7: invalid YAML: control character U+0000 is not allowed"
    ]


def test_yaml_duplicate_key_is_an_error() -> None:
    text = CANONICAL_YAML + "seed: 7\n"
    with pytest.raises(ConfigError) as info:
        parse_config_text(text, source="s.yaml", fmt="yaml")
    assert info.value.problems == [
        "line 18, column 1: invalid YAML: duplicate key 'seed' (first given at line 2)"
    ]


def test_yaml_merge_keys_may_override() -> None:
    text = CANONICAL_YAML + "outputs: {<<: {dir: a}, dir: b}\n"
    config = parse_config_text(text, source="s.yaml", fmt="yaml")
    assert config.outputs.dir == "b"


def test_yaml_python_tags_are_refused() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config_text("name: !!python/object:os.system x\n", source="s.yaml", fmt="yaml")
    (line,) = info.value.problems
    assert line.startswith("line 1, column 7: invalid YAML: could not determine a constructor")


def test_json_syntax_error_has_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text('{"name": "x",\n "target": {"url": "http://a"}\n "groups": []}')
    assert file_problems(path) == ["line 3, column 2: invalid JSON: Expecting ',' delimiter"]


def test_json_duplicate_key_is_an_error() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config_text('{"name": "a", "name": "b"}', source="c.json", fmt="json")
    assert info.value.problems == ["invalid JSON: duplicate key 'name'"]


def test_validation_errors_carry_the_source(tmp_path: Path) -> None:
    path = tmp_path / "typo.yaml"
    path.write_text(CANONICAL_YAML.replace("stream: true", "stremm: true"))
    (line,) = file_problems(path)
    assert line.startswith("groups[0].interaction.stremm: unknown field 'stremm'")


# -- JSON Schema --------------------------------------------------------------------------------


def test_json_schema_is_json_with_definitions_and_descriptions() -> None:
    schema = json.loads(json.dumps(config_json_schema()))
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["title"] == "clientswarm cluster configuration"
    assert schema["type"] == "object"
    assert set(schema["required"]) == {"name", "groups"}
    assert schema["oneOf"] == [{"required": ["target"]}, {"required": ["targets"]}]
    assert schema["additionalProperties"] is False
    defs = schema["$defs"]
    for name in (
        "GroupConfig",
        "TargetConfig",
        "HelloInteraction",
        "HttpInteraction",
        "CompletionInteraction",
        "ChatInteraction",
        "EmbeddingInteraction",
        "ClosedLoadConfig",
        "OpenLoadConfig",
        "FixedLength",
    ):
        assert name in defs, name
        assert defs[name]["description"], name
    assert schema["description"].startswith("A ClientCluster")
    target = defs["TargetConfig"]["properties"]
    assert "environment variable" in target["api_key_env"]["description"]
    interaction = defs["GroupConfig"]["properties"]["interaction"]
    refs = [option["$ref"].rsplit("/", 1)[1] for option in interaction["oneOf"]]
    assert refs == [
        "HelloInteraction",
        "HttpInteraction",
        "CompletionInteraction",
        "ChatInteraction",
        "ResponsesInteraction",
        "MessagesInteraction",
        "EmbeddingInteraction",
        "ConversationInteraction",
        "TranscriptionInteraction",
        "CustomInteraction",
    ]
    # A user kind is any other text, so exactly one option fits every interaction.
    user_kind = defs["CustomInteraction"]["properties"]["kind"]
    assert user_kind["not"] == {
        "enum": [
            "hello",
            "http",
            "completion",
            "chat",
            "responses",
            "messages",
            "embedding",
            "conversation",
            "transcription",
        ]
    }
    assert defs["CustomInteraction"]["additionalProperties"] is True


def test_json_schema_accepts_the_number_shorthands() -> None:
    defs = config_json_schema()["$defs"]
    think = defs["ClosedLoadConfig"]["properties"]["think_time_s"]
    assert {"type": "number", "minimum": 0} in think["anyOf"]
    for field in ("input_tokens", "output_tokens"):
        lengths = defs["SyntheticPrompts"]["properties"][field]
        shorthand = {"type": "integer", "minimum": 1, "maximum": 10_000_000}
        assert shorthand in lengths["anyOf"], field


def test_config_error_message_joins_problems() -> None:
    error = ConfigError(["a: x", "b: y"], source="f.yaml")
    assert str(error) == "f.yaml: a: x; b: y"
    assert isinstance(validate_config_data(MINIMAL), ClusterConfig)


def test_the_high_rate_path_refuses_what_needs_the_samples_at_the_service() -> None:
    data = canonical() | {"sample_path": "files"}
    assert validate_config_data(data).sample_path == "files"  # an ordinary cluster takes it
    data["groups"][0]["load"] = {"kind": "sweep", "points": 3, "stage_s": 2}  # automatic
    data["groups"][0].pop("stop", None)
    line = one_problem(data)
    assert line.startswith("groups[0].load: a sweep group decides its next stage"), line
    assert "use sample_path: service" in line
    otlp = canonical() | {
        "sample_path": "files",
        "telemetry": {"otlp": {"endpoint": "http://127.0.0.1:4318"}},
    }
    line = one_problem(otlp)
    assert "telemetry.otlp.export: samples are exported by the service" in line, line
    otlp["telemetry"]["otlp"]["export"] = ["metrics"]
    assert validate_config_data(otlp).telemetry is not None
    bad = one_problem(canonical() | {"sample_path": "disk"})
    assert bad == 'sample_path: not a valid choice; got "disk"; valid values: service, files'
