"""The configuration parsers are bounded, and the published schema is no looser than the
validator: hostile input is one clear ConfigError in milliseconds, never a stall or a crash."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from clientswarm.config import config_json_schema, parse_config_text, validate_config_data
from clientswarm.config.loader import MAX_ALIAS_NODES, MAX_DEPTH
from clientswarm.errors import ConfigError

VALID_YAML = """\
name: bounded
target: {url: "http://127.0.0.1:8000"}
groups:
  - name: g
    interaction: {kind: hello}
    stop: {requests: 5}
"""
VALID: dict[str, Any] = {
    "name": "bounded",
    "target": {"url": "http://127.0.0.1:8000"},
    "groups": [{"name": "g", "interaction": {"kind": "hello"}, "stop": {"requests": 5}}],
}

# The billion laughs: nine levels of nine aliases each stand for 9**9 strings in 442 bytes.
ALIAS_BOMB = "".join(
    f"{name}: &{name} [{', '.join([f'*{prev}'] * 9) if prev else ', '.join(['lol'] * 9)}]\n"
    for prev, name in zip(["", *"abcdefgh"], "abcdefghi", strict=True)
)


def problems(text: str, fmt: str = "yaml") -> list[str]:
    """The problems of parsing ``text``, which must fail fast."""
    started = time.perf_counter()
    with pytest.raises(ConfigError) as info:
        parse_config_text(text, source="t", fmt=fmt)  # type: ignore[arg-type]
    assert time.perf_counter() - started < 1.0
    return info.value.problems


def nested(depth: int) -> str:
    """VALID as JSON (also YAML), its extra_body holding lists down to ``depth`` levels in all."""
    data = json.loads(json.dumps(VALID))
    data["groups"][0]["interaction"] = {"kind": "chat", "extra_body": {"x": "LEAF"}}
    # The configuration, groups, the group, its interaction and extra_body are 5 levels.
    return json.dumps(data).replace('"LEAF"', "[" * (depth - 5) + "1" + "]" * (depth - 5))


def test_an_alias_bomb_is_refused_in_milliseconds_and_modest_aliases_still_work() -> None:
    assert len(ALIAS_BOMB) < 500
    (line,) = problems(ALIAS_BOMB)
    assert line.startswith("line ")
    assert f"invalid YAML: aliases repeat more than {MAX_ALIAS_NODES} values in all" in line
    # An anchor merged into each of a few groups is what aliases are for: it still works.
    shared = VALID_YAML.replace("  - name: g\n", "  - &base\n    name: g\n") + (
        "  - {<<: *base, name: h}\n  - {<<: *base, name: i}\n"
    )
    config = parse_config_text(shared, source="t", fmt="yaml")
    assert [g.name for g in config.groups] == ["g", "h", "i"]
    (line,) = problems("a: &a [1, *a]\n")
    assert "alias *a is inside its own anchor" in line


@pytest.mark.parametrize("fmt", ["json", "yaml"])
def test_nesting_is_bounded_with_a_clear_line_not_a_recursion_error(fmt: str) -> None:
    deep = "[" * 100_000 + "]" * 100_000
    (line,) = problems(deep, fmt)
    assert f"lists and mappings nest more than {MAX_DEPTH} levels deep" in line
    config = parse_config_text(nested(MAX_DEPTH), source="t", fmt=fmt)  # type: ignore[arg-type]
    assert config.groups[0].interaction.kind == "chat"
    (line,) = problems(nested(MAX_DEPTH + 1), fmt)
    assert f"nest more than {MAX_DEPTH} levels deep" in line


@pytest.mark.parametrize(
    ("text", "fmt", "shown"),
    [
        ('{"seed": ' + "9" * 5000 + "}", "json", "(5000 characters) is out of range"),
        ("seed: " + "9" * 5000, "yaml", "(5000 characters) is out of range"),
        ("seed: 0b" + "1" * 100_000, "yaml", "(100002 characters) is out of range"),
        ("seed: " + ":".join(["59"] * 20), "yaml", "is out of range"),
        ('{"seed": 18446744073709551616}', "json", "18446744073709551616 is out of range"),
        ("seed: -9223372036854775809", "yaml", "is out of range"),
        ('{"warmup_s": 1e999}', "json", "number 1e999 is not finite"),
        ('{"warmup_s": NaN}', "json", "NaN is not JSON"),
        ("warmup_s: .inf", "yaml", "number .inf is not finite"),
    ],
)
def test_numbers_beyond_64_bits_or_not_finite_are_refused_by_the_parser(
    text: str, fmt: str, shown: str
) -> None:
    (line,) = problems(text, fmt)
    assert shown in line
    if fmt == "yaml":
        assert line.startswith("line 1, column ")


def test_every_integer_of_the_model_is_bounded_and_the_bounds_are_in_the_schema() -> None:
    data = {**VALID, "seed": 2**63}
    (line,) = problems(json.dumps(data), "json")
    assert line.startswith("seed: too large")
    schema = config_json_schema()
    defs = schema["$defs"]
    unbounded = [
        f"{name}.{field}"
        for name, model in [("ClusterConfig", schema), *defs.items()]
        for field, spec in model.get("properties", {}).items()
        for kind in [spec, *spec.get("anyOf", [])]
        if kind.get("type") == "integer" and "maximum" not in kind
    ]
    assert unbounded == []


def test_what_the_validator_checks_of_one_field_the_schema_says() -> None:
    schema = config_json_schema()
    defs = schema["$defs"]
    target = defs["TargetConfig"]["properties"]
    assert target["url"]["pattern"].startswith("^https?://")
    assert target["hello_path"]["pattern"] == "^/"
    assert "pattern" in target["api_key_env"]
    # An object given for a field of several kinds must say its kind.
    for name in ("HelloInteraction", "OpenLoadConfig", "FixedLength", "LocalSpawnerConfig"):
        assert "kind" in defs[name]["required"], name
    problem = problems_of_data({**VALID, "spawner": {"workers": 1}})
    assert problem == [
        "spawner.kind: required field missing; valid kinds: local, slurm, kubernetes"
    ]


def problems_of_data(data: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        validate_config_data(data)
    return info.value.problems
