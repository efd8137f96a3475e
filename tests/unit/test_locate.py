"""Where each problem of a configuration is in its text (clientswarm.config.locate)."""

from __future__ import annotations

import pytest

from clientswarm.config.loader import parse_config_text
from clientswarm.config.locate import locate_problems, path_steps
from clientswarm.errors import ConfigError

YAML = """\
name: demo
target: {url: "http://127.0.0.1:8000"}
groups:
  - name: chat
    clients: 0
    interaction: {kind: chat, stremm: true}
    load:
      kind: opne
"""


def _problems(text: str, fmt: str = "yaml") -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config_text(text, source="t", fmt=fmt)  # type: ignore[arg-type]
    return info.value.problems


def test_path_steps() -> None:
    assert path_steps("groups[0].load.rate") == ["groups", 0, "load", "rate"]
    assert path_steps("targets.a.url") == ["targets", "a", "url"]


def test_each_problem_is_placed_at_its_field() -> None:
    problems = _problems(YAML)
    found = {p.message.split(":")[0]: (p.line, p.column) for p in locate_problems(YAML, problems)}
    assert found["groups[0].clients"] == (5, 5)  # the key `clients`
    assert found["groups[0].interaction.stremm"] == (6, 31)  # the unknown key itself
    assert found["groups[0].load.kind"] == (8, 7)


def test_a_missing_field_points_at_the_mapping_that_lacks_it() -> None:
    text = "name: demo\ntarget: {url: 'http://127.0.0.1:8000'}\ngroups:\n  - name: chat\n"
    problems = _problems(text)
    (missing,) = [p for p in locate_problems(text, problems) if "interaction" in p.message]
    assert (missing.line, missing.column) == (4, 5)  # the group's mapping


def test_syntax_errors_and_whole_document_problems() -> None:
    (syntax,) = locate_problems("name: [\n", _problems("name: [\n"))
    assert (syntax.line, syntax.column) == (2, 1)
    (top,) = locate_problems("- a\n", _problems("- a\n"))
    assert top.message.startswith("top level") and (top.line, top.column) == (1, 1)
    # A path that is not in the text (e.g. an index beyond a list) stops where it can.
    (beyond,) = locate_problems(YAML, ["groups[3].load: nope"])
    assert (beyond.line, beyond.column) == (3, 1)


def test_json_is_located_like_yaml() -> None:
    text = '{\n  "name": "demo",\n  "target": {"url": "http://127.0.0.1:8000"},\n  "groups": []\n}'
    problems = _problems(text, "json")
    (found,) = [p for p in locate_problems(text, problems) if p.message.startswith("groups")]
    assert (found.line, found.column) == (4, 3)
