"""Where in a configuration's text each problem is: its line and column, for an editor.

A problem line starts with the field path it is about (``groups[0].load.rate: …``, see
:mod:`clientswarm.config.errors`) or, for a syntax error, with ``line N, column M: …``. The
path is followed through the YAML (JSON is YAML too) node tree, composed (not constructed:
aliases are not expanded) from the same text: a field that is there points at its key, an
element of a list at the element, and a field that is missing at the mapping that lacks it.
A problem about the whole document (``top level: …``) is at line 1, column 1.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

import yaml

_LINE = re.compile(r"^line (\d+), column (\d+): ")
_PATH = re.compile(r"^([A-Za-z_][\w-]*(?:\[\d+\]|\.[^\s.:\[\]]+)*): ")
_STEP = re.compile(r"\[(\d+)\]|\.?([^.\[\]]+)")


@dataclass(frozen=True, slots=True)
class ProblemLocation:
    """One problem and where it is (1-based line and column; the start of the document when
    it cannot be placed)."""

    message: str
    line: int
    column: int

    def as_dict(self) -> dict[str, Any]:
        """The JSON form."""
        return asdict(self)


def path_steps(path: str) -> list[str | int]:
    """``groups[0].load.rate`` → ``["groups", 0, "load", "rate"]``."""
    steps: list[str | int] = []
    for index, key in _STEP.findall(path):
        steps.append(int(index) if index else key)
    return steps


def _compose(text: str) -> yaml.Node | None:
    """The node tree of ``text``; None when it has none to walk (a syntax error, or nesting
    deeper than the parser's bounds allow, whose problem says so already)."""
    try:
        return yaml.compose(text, Loader=yaml.SafeLoader)
    except (yaml.YAMLError, RecursionError):
        return None


def _place(root: yaml.Node | None, steps: list[str | int]) -> tuple[int, int]:
    """The (0-based) mark of the node at ``steps``, or of the deepest one on the way."""
    if root is None:
        return 0, 0
    node: yaml.Node = root
    mark = node.start_mark
    for step in steps:
        found: yaml.Node | None = None
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode) and key.value == str(step):
                    mark, found = key.start_mark, value
                    break
        elif (
            isinstance(node, yaml.SequenceNode)
            and isinstance(step, int)
            and 0 <= step < len(node.value)
        ):
            found = node.value[step]
            mark = found.start_mark
        if found is None:
            break
        node = found
    return mark.line, mark.column


def locate_problems(text: str, problems: list[str]) -> list[ProblemLocation]:
    """Each problem of ``problems`` (lines of a :class:`~clientswarm.errors.ConfigError`)
    with where it is in ``text``."""
    paths = [_PATH.match(p) for p in problems]
    # Compose only when a problem names a field: a text refused by the parser (too deep, an
    # alias bomb) is not parsed again, and its problem says where it is, or nowhere.
    root = _compose(text) if any(paths) else None
    located = []
    for problem, path in zip(problems, paths, strict=True):
        syntax = _LINE.match(problem)
        if syntax is not None:
            located.append(ProblemLocation(problem, int(syntax[1]), int(syntax[2])))
            continue
        line, column = _place(root, path_steps(path[1])) if path is not None else (0, 0)
        located.append(ProblemLocation(problem, line + 1, column + 1))
    return located


__all__ = ["ProblemLocation", "locate_problems", "path_steps"]
