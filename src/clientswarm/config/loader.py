"""Load a cluster configuration file (YAML or JSON) into a :class:`ClusterConfig`.

Every failure, from a missing file to a typo three levels down, raises one
:class:`~clientswarm.errors.ConfigError` whose ``problems`` hold one line per problem (see
:mod:`clientswarm.config.errors` for their shape); no traceback reaches the user for bad input.
Nothing in the file is expanded: ``${VAR}`` stays as written, and the API key is read from the
environment variable that ``target.api_key_env`` names, never from the file.

The parsers are bounded, because a configuration posted to the service is untrusted: the work
they do is linear in the size of the text, whatever it holds. Lists and mappings nest at most
:data:`MAX_DEPTH` levels; YAML aliases repeat at most :data:`MAX_ALIAS_NODES` nodes in all (an
"alias bomb" of a few hundred bytes would otherwise expand to gigabytes); integers fit in 64 bits
(:data:`MIN_INT` .. :data:`MAX_INT`) and numbers are finite. Each bound is a ConfigError that
names the line, never a RecursionError or a stall.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import ValidationError
from pydantic.json_schema import DEFAULT_REF_TEMPLATE

from clientswarm.config.errors import show_value, validation_problems
from clientswarm.config.interactions import (
    USER_KIND_PATTERNS,
    CustomInteraction,
    entry_point_names,
)
from clientswarm.config.models import ClusterConfig
from clientswarm.errors import ConfigError

Format = Literal["yaml", "json"]

JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
SCHEMA_TITLE = "clientswarm cluster configuration"
_EXPECTED_TOP = "expected a mapping with name, target and groups"
_FORMATS: dict[str, Format] = {".json": "json", ".yaml": "yaml", ".yml": "yaml"}

MAX_DEPTH = 64
"""Most levels of lists and mappings inside each other (a configuration needs about ten)."""
MAX_ALIAS_NODES = 10_000
"""Most YAML nodes that aliases (``*name``, ``<<: *name``) may repeat in one document, in all."""
MIN_INT = -(2**63)
"""Smallest integer a configuration may hold (signed 64 bits)."""
MAX_INT = 2**64 - 1
"""Largest integer a configuration may hold (unsigned 64 bits)."""
_MAX_INT_CHARS = 80  # longer than any 64-bit integer written in YAML (0b + 64 digits, 1_000_…)


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


def config_json_schema(*, ref_template: str = DEFAULT_REF_TEMPLATE) -> dict[str, Any]:
    """JSON Schema of the configuration file, for editors (e.g. yaml-language-server) and the
    service's OpenAPI document (``ref_template`` points its references there).

    It is no looser than the validator field by field: what a value of one field must be is
    in the schema; rules across fields (min <= max, a stop condition, ``vary`` against the
    interaction's parameters, unique group names) are the validator's only.
    """
    schema = ClusterConfig.model_json_schema(mode="validation", ref_template=ref_template)
    for node in _schema_objects(schema):
        kind = node.get("properties", {}).get("kind")
        if isinstance(kind, dict) and "const" in kind and "kind" not in node.get("required", []):
            # A default kind serves the field left out; an object given in a union of kinds
            # must name its kind, or the validator cannot tell which it is.
            node["required"] = ["kind", *node.get("required", [])]
    custom = schema.get("$defs", {}).get(CustomInteraction.__name__)
    if custom is not None:
        forms: list[dict[str, Any]] = [{"pattern": pattern} for pattern in USER_KIND_PATTERNS]
        installed = sorted(entry_point_names())
        forms += [{"enum": installed}] if installed else []
        custom["properties"]["kind"]["anyOf"] = forms
    rest = {key: value for key, value in schema.items() if key != "title"}
    return {"$schema": JSON_SCHEMA_DIALECT, "title": SCHEMA_TITLE, **rest}


def _schema_objects(schema: dict[str, Any]) -> list[dict[str, Any]]:
    """Every mapping inside ``schema`` (no recursion: a schema may be deep)."""
    found: list[dict[str, Any]] = []
    stack: list[Any] = [schema]
    while stack:
        value = stack.pop()
        if isinstance(value, dict):
            found.append(value)
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
    return found


# -- parsers ------------------------------------------------------------------------------------


class _BoundedLoader(yaml.SafeLoader):
    """SafeLoader (no arbitrary objects) with the bounds of this module, and that rejects a key
    given twice in one mapping instead of keeping the last."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._alias_nodes = 0
        self._open_anchors: set[str] = set()
        self._measured: dict[int, tuple[int, int]] = {}  # id(node) -> (nodes, height)

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        # The composer recurses once per level: the depth is checked before Python's own limit.
        event = self.peek_event()  # type: ignore[no-untyped-call]
        if isinstance(event, yaml.AliasEvent):
            self._check_alias(event)
            return super().compose_node(parent, index)
        if not isinstance(event, yaml.CollectionStartEvent):
            return super().compose_node(parent, index)
        if self._depth >= MAX_DEPTH:
            raise self._bound_error(_too_deep(), event.start_mark)
        anchor = event.anchor
        self._depth += 1
        if anchor is not None:
            self._open_anchors.add(anchor)
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1
            if anchor is not None:
                self._open_anchors.discard(anchor)

    def fetch_flow_collection_start(self, TokenClass: Any) -> None:
        # Checked by the scanner too: it looks ahead up to 1024 characters for a possible key,
        # at a cost that grows with the nesting, before the composer sees the first level.
        if self.flow_level >= MAX_DEPTH:
            raise yaml.scanner.ScannerError(None, None, _too_deep(), self.get_mark())
        super().fetch_flow_collection_start(TokenClass)

    def _check_alias(self, event: yaml.AliasEvent) -> None:
        node = self.anchors.get(event.anchor)
        if node is None:
            return  # the composer reports the undefined alias
        if event.anchor in self._open_anchors:
            problem = f"alias *{event.anchor} is inside its own anchor; a value cannot hold itself"
            raise self._bound_error(problem, event.start_mark)
        nodes, height = self._measure(node)
        if self._depth + height > MAX_DEPTH:
            raise self._bound_error(_too_deep(), event.start_mark)
        self._alias_nodes += nodes
        if self._alias_nodes > MAX_ALIAS_NODES:
            problem = (
                f"aliases repeat more than {MAX_ALIAS_NODES} values in all; write the values "
                "out, or use fewer aliases"
            )
            raise self._bound_error(problem, event.start_mark)

    def _measure(self, node: yaml.Node) -> tuple[int, int]:
        """Values ``node`` stands for with its aliases expanded (capped), and its nesting."""
        known = self._measured.get(id(node))
        if known is not None:
            return known
        nodes, height = 1, 0
        if isinstance(node, yaml.CollectionNode):
            children: list[yaml.Node] = (
                [part for pair in node.value for part in pair]
                if isinstance(node, yaml.MappingNode)
                else list(node.value)
            )
            for child in children:  # recursion bounded: every node is at most MAX_DEPTH deep
                child_nodes, child_height = self._measure(child)
                nodes = min(nodes + child_nodes, MAX_ALIAS_NODES + 1)
                height = max(height, child_height)
            height += 1
        self._measured[id(node)] = (nodes, height)
        return nodes, height

    @staticmethod
    def _bound_error(problem: str, mark: Any) -> yaml.MarkedYAMLError:
        return yaml.composer.ComposerError(None, None, problem, mark)


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


def _construct_bounded_int(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> int:
    # YAML's own constructor turns any digit string into an int: 0b… and 1:2:3… forms are not
    # even subject to Python's limit on digits, and the work grows with the square of the length.
    text = str(node.value)
    if len(text) > _MAX_INT_CHARS:
        raise yaml.constructor.ConstructorError(None, None, _int_problem(text), node.start_mark)
    value = loader.construct_yaml_int(node)
    if not MIN_INT <= value <= MAX_INT:
        raise yaml.constructor.ConstructorError(None, None, _int_problem(text), node.start_mark)
    return value


def _construct_finite_float(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> float:
    value = loader.construct_yaml_float(node)
    if not math.isfinite(value):
        raise yaml.constructor.ConstructorError(
            None, None, _float_problem(str(node.value)), node.start_mark
        )
    return value


_BoundedLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_unique_mapping
)
_BoundedLoader.add_constructor("tag:yaml.org,2002:int", _construct_bounded_int)
_BoundedLoader.add_constructor("tag:yaml.org,2002:float", _construct_finite_float)


def _too_deep() -> str:
    return f"lists and mappings nest more than {MAX_DEPTH} levels deep"


def _int_problem(text: str) -> str:
    shown = text if len(text) <= 24 else f"{text[:12]}…{text[-4:]} ({len(text)} characters)"
    return f"integer {shown} is out of range; integers must fit in 64 bits (-2**63 .. 2**64-1)"


def _float_problem(text: str) -> str:
    shown = text if len(text) <= 24 else f"{text[:12]}…{text[-4:]}"
    return f"number {shown} is not finite; numbers must be finite"


def _parse_yaml(text: str, source: str) -> Any:
    try:
        return yaml.load(text, Loader=_BoundedLoader)  # a SafeLoader subclass: no objects
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
        data = json.loads(
            text,
            object_pairs_hook=_unique_pairs,
            parse_int=_bounded_int,
            parse_float=_finite_float,
            parse_constant=_no_constant,
        )
    except json.JSONDecodeError as exc:
        problem = f"line {exc.lineno}, column {exc.colno}: invalid JSON: {exc.msg}"
        raise ConfigError([problem], source=source) from None
    except _DuplicateKey as exc:
        raise ConfigError([f"invalid JSON: duplicate key {exc.key!r}"], source=source) from None
    except _OutOfBounds as exc:
        raise ConfigError([f"invalid JSON: {exc}"], source=source) from None
    except RecursionError:  # far deeper than MAX_DEPTH: the C parser ran out of stack first
        raise ConfigError([f"invalid JSON: {_too_deep()}"], source=source) from None
    if _deeper_than(data, MAX_DEPTH):
        raise ConfigError([f"invalid JSON: {_too_deep()}"], source=source)
    return data


class _DuplicateKey(Exception):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


class _OutOfBounds(Exception):
    """A number beyond the bounds of this module (the message says which)."""


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKey(key)
        result[key] = value
    return result


def _bounded_int(text: str) -> int:
    if len(text) > _MAX_INT_CHARS:  # before int(): its work grows with the square of the length
        raise _OutOfBounds(_int_problem(text))
    value = int(text)
    if not MIN_INT <= value <= MAX_INT:
        raise _OutOfBounds(_int_problem(text))
    return value


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _OutOfBounds(_float_problem(text))
    return value


def _no_constant(text: str) -> Any:
    raise _OutOfBounds(f"{text} is not JSON; numbers must be finite")


def _deeper_than(data: Any, limit: int) -> bool:
    """Whether lists and objects in ``data`` nest more than ``limit`` levels (no recursion)."""
    stack: list[tuple[Any, int]] = [(data, 0)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            value = value.values()
        elif not isinstance(value, list):
            continue
        if depth >= limit:
            return True
        stack.extend((child, depth + 1) for child in value)
    return False


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
