"""Load a cluster configuration file (YAML or JSON) into a :class:`ClusterConfig`.

Every failure, from a missing file to a typo three levels down, raises one
:class:`~clientswarm.errors.ConfigError` whose ``problems`` hold one line per problem (see
:mod:`clientswarm.config.errors` for their shape); no traceback reaches the user for bad input.
Nothing in the file is expanded: ``${VAR}`` stays as written, and the API key is read from the
environment variable that ``target.api_key_env`` names, never from the file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import ValidationError

from clientswarm.config.errors import show_value, validation_problems
from clientswarm.config.models import ClusterConfig
from clientswarm.errors import ConfigError

Format = Literal["yaml", "json"]

JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
SCHEMA_TITLE = "clientswarm cluster configuration"
_EXPECTED_TOP = "expected a mapping with name, target and groups"
_FORMATS: dict[str, Format] = {".json": "json", ".yaml": "yaml", ".yml": "yaml"}


def load_config_file(path: Path | str) -> ClusterConfig:
    """Read and validate a configuration file: ``.json`` as JSON, anything else as YAML."""
    path = Path(path)
    source = str(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(["file not found"], source=source) from None
    except IsADirectoryError:
        raise ConfigError(["is a directory, not a configuration file"], source=source) from None
    except OSError as exc:
        reason = (exc.strerror or type(exc).__name__).lower()
        raise ConfigError([f"cannot read the file: {reason}"], source=source) from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        problem = f"not a UTF-8 text file (byte {exc.start} cannot be decoded)"
        raise ConfigError([problem], source=source) from None
    # YAML is a superset of JSON, so an unknown extension is read as YAML.
    fmt = _FORMATS.get(path.suffix.lower(), "yaml")
    return parse_config_text(text, source=source, fmt=fmt)


def parse_config_text(text: str, *, source: str, fmt: Format) -> ClusterConfig:
    """Parse YAML or JSON ``text`` (``source`` names it in errors) and validate it."""
    if not text.strip():
        raise ConfigError([f"the file is empty; {_EXPECTED_TOP}"], source=source)
    data = _parse_json(text, source) if fmt == "json" else _parse_yaml(text, source)
    return validate_config_data(data, source=source)


def validate_config_data(data: Any, *, source: str | None = None) -> ClusterConfig:
    """Validate already parsed data (a mapping) into a :class:`ClusterConfig`."""
    if data is None:
        raise ConfigError([f"no configuration found (only comments?); {_EXPECTED_TOP}"], source)
    if not isinstance(data, dict):
        problem = f"top level: {_EXPECTED_TOP}; got {_kind_of(data)} {show_value(data)}"
        raise ConfigError([problem], source=source)
    try:
        return ClusterConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(validation_problems(exc), source=source) from None


def config_json_schema() -> dict[str, Any]:
    """JSON Schema of the configuration file, for editors (e.g. yaml-language-server)."""
    schema = ClusterConfig.model_json_schema(mode="validation")
    rest = {key: value for key, value in schema.items() if key != "title"}
    return {"$schema": JSON_SCHEMA_DIALECT, "title": SCHEMA_TITLE, **rest}


# -- parsers ------------------------------------------------------------------------------------


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that rejects a key given twice in one mapping instead of keeping the last."""


def _construct_unique_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> Any:
    seen: dict[Any, yaml.Mark] = {}
    for key_node, _ in node.value:
        if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = loader.construct_object(key_node)
        if key in seen:
            first = seen[key]
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"duplicate key {key!r} (first given at line {first.line + 1})",
                key_node.start_mark,
            )
        seen[key] = key_node.start_mark
    return loader.construct_mapping(node)


_UniqueKeyLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
    _construct_unique_mapping,
)


def _parse_yaml(text: str, source: str) -> Any:
    try:
        return yaml.load(
            text, Loader=_UniqueKeyLoader
        )  # a SafeLoader subclass: no arbitrary objects
    except yaml.MarkedYAMLError as exc:
        raise ConfigError([_yaml_problem(exc)], source=source) from None
    except yaml.reader.ReaderError as exc:  # a control character, found before any parsing
        line = text.count("\n", 0, exc.position) + 1
        column = exc.position - text.rfind("\n", 0, exc.position)
        code = (
            exc.character if isinstance(exc.character, int) else ord(str(exc.character)[:1] or "?")
        )
        problem = f"invalid YAML: control character U+{code:04X} is not allowed"
        raise ConfigError([f"line {line}, column {column}: {problem}"], source=source) from None
    except yaml.YAMLError as exc:
        first = str(exc).strip().splitlines()[:1] or ["syntax error"]
        raise ConfigError([f"invalid YAML: {first[0]}"], source=source) from None


def _yaml_problem(exc: yaml.MarkedYAMLError) -> str:
    # Built from the parts rather than str(exc), which quotes the offending line (maybe a key).
    problem = exc.problem or exc.context or "syntax error"
    problem = problem.removeprefix("but ")  # "but found another document (expected ...)"
    if "'\\t'" in problem:
        problem += "; indent with spaces, not tabs"
    where = _at(exc.problem_mark) or _at(exc.context_mark)
    text = f"{where}: invalid YAML: {problem}" if where else f"invalid YAML: {problem}"
    if exc.context and exc.problem and exc.context_mark is not None:
        text += f" ({exc.context} at {_at(exc.context_mark)})"
    return text


def _at(mark: yaml.Mark | None) -> str:
    return f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""


def _parse_json(text: str, source: str) -> Any:
    try:
        return json.loads(text, object_pairs_hook=_unique_pairs)
    except json.JSONDecodeError as exc:
        problem = f"line {exc.lineno}, column {exc.colno}: invalid JSON: {exc.msg}"
        raise ConfigError([problem], source=source) from None
    except _DuplicateKey as exc:
        raise ConfigError([f"invalid JSON: duplicate key {exc.key!r}"], source=source) from None


class _DuplicateKey(Exception):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKey(key)
        result[key] = value
    return result


def _kind_of(data: Any) -> str:
    if isinstance(data, list):
        return "a list"
    if isinstance(data, str):
        return "a string"
    if isinstance(data, bool):
        return "a boolean"
    if isinstance(data, int | float):
        return "a number"
    return f"a {type(data).__name__}"
