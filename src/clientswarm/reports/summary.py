"""Reading and writing summary.json: the document of a
:class:`~clientswarm.metrics.summary.Summary`, as the service stores and serves it."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import orjson

_OPTIONS = orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE | orjson.OPT_SERIALIZE_NUMPY


def finite(value: Any) -> Any:
    """``value`` with every NaN or infinite float (nested anywhere) replaced by ``None``.

    JSON has no NaN; a ``null`` says "no value" to every reader, where ``NaN`` breaks some.
    """
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    return value


def dumps_summary(summary: dict[str, Any]) -> bytes:
    """summary.json's bytes: indented, NaN-free JSON."""
    return orjson.dumps(finite(summary), option=_OPTIONS)


def write_summary(path: str | os.PathLike[str], summary: dict[str, Any]) -> Path:
    """Write ``summary`` to ``path`` atomically (a reader never sees half a file); return the path.

    Parent directories are created.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_bytes(dumps_summary(summary))
    os.replace(tmp, target)
    return target


def read_summary(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a summary.json written by :func:`write_summary`."""
    data = orjson.loads(Path(path).read_bytes())
    if not isinstance(data, dict):
        raise ValueError(
            f"{path}: expected a JSON object (summary.json), got {type(data).__name__}"
        )
    return data


__all__ = ["dumps_summary", "finite", "read_summary", "write_summary"]
