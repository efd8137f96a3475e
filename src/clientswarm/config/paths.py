"""Path fields of a configuration, and the one place where they become files.

Every field of a configuration that names a file or a folder on the service's machine
(datasets, tokenizers, ``file:`` interactions, a Slurm spawner's ``log_dir``, ``python`` and
``container``) is a :data:`ConfigPath`, and becomes a filesystem path only through
:meth:`FileScope.resolve`. A scope has a base folder for relative paths and, on a shared
``clientswarm serve``, the folders the operator allowed (``--allow-path``): a path resolves,
after ``~``, ``..`` and every symlink, inside one of them or is refused. ``clientswarm run``
(one local user, their own files) uses an unrestricted scope.

Errors name the field's value and the allowed folders, never what a file holds.
"""

from __future__ import annotations

import os
import types
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, Field

from clientswarm.errors import ConfigError

MAX_PATH_CHARS = 4096


class PathField:
    """Marks a configuration field whose value is a path on the service's machine."""

    def __repr__(self) -> str:
        return "PathField()"


ConfigPath = Annotated[str, PathField(), Field(min_length=1, max_length=MAX_PATH_CHARS)]
"""A path on the service's machine; relative paths are taken from the scope's base folder."""


@dataclass(frozen=True)
class FileScope:
    """Where the paths of one configuration resolve: ``base_dir`` for relative paths, and the
    only folders they may reach (``roots``; ``None``: anywhere)."""

    base_dir: Path = field(default_factory=lambda: Path("."))
    roots: tuple[Path, ...] | None = None

    @classmethod
    def anywhere(cls, base_dir: Path | str = ".") -> FileScope:
        """An unrestricted scope (``clientswarm run``: the user's own files)."""
        return cls(Path(base_dir), None)

    @classmethod
    def confined(cls, roots: Sequence[Path | str], base_dir: Path | str | None = None) -> FileScope:
        """A scope that reaches only inside ``roots`` (resolved now); relative paths are taken
        from ``base_dir``, by default the first root."""
        real = tuple(Path(os.path.realpath(Path(root).expanduser())) for root in roots)
        base = Path(base_dir) if base_dir is not None else (real[0] if real else Path("/"))
        return cls(base, real)

    @property
    def confined_to(self) -> list[str] | None:
        """The allowed folders as strings (what a worker is told), None when unrestricted."""
        return None if self.roots is None else [str(root) for root in self.roots]

    def resolve(self, value: str, what: str = "path") -> Path:
        """``value`` as a path: ``~`` expanded, a relative one taken from ``base_dir``; in a
        confined scope, the real path (no symlink, no ``..``) once it is checked to lie inside
        an allowed folder. ConfigError naming ``what`` and the value otherwise."""
        path = Path(value).expanduser()
        if not path.is_absolute():
            path = self.base_dir / path
        if self.roots is None:
            return path
        real = Path(os.path.realpath(path))
        if not any(real == root or real.is_relative_to(root) for root in self.roots):
            raise ConfigError([outside_message(value, self.roots)], source=what)
        return real

    def check(self, value: str, what: str = "path") -> str | None:
        """Why ``value`` may not be used here, or None."""
        try:
            self.resolve(value, what)
        except ConfigError as exc:
            return "; ".join(exc.problems)
        return None


def outside_message(value: str, roots: Sequence[Path]) -> str:
    """The refusal of a path outside the allowed folders (names them, quotes no content)."""
    allowed = ", ".join(str(root) for root in roots) or "none"
    return (
        f"{value!r} resolves outside the folders this service may read (allowed: {allowed}); "
        "use a file inside one of them, or ask the operator to allow its folder "
        "(clientswarm serve --allow-path DIR)"
    )


def is_path_field(info: Any) -> bool:
    """Whether a pydantic ``FieldInfo`` is a :data:`ConfigPath` (or an optional one)."""
    if any(isinstance(meta, PathField) for meta in getattr(info, "metadata", ())):
        return True
    return _annotates_path(getattr(info, "annotation", None))


def _annotates_path(annotation: Any) -> bool:
    if get_origin(annotation) is Annotated:
        return any(isinstance(meta, PathField) for meta in get_args(annotation)[1:])
    if get_origin(annotation) in (Union, types.UnionType):
        return any(_annotates_path(arg) for arg in get_args(annotation))
    return False


def path_values(model: BaseModel, loc: tuple[str | int, ...] = ()) -> Iterator[tuple[str, str]]:
    """``(field path, value)`` of every :data:`ConfigPath` set in ``model`` and the models in
    it (lists and mappings included), e.g. ``("groups[0].interaction.dataset.path", "x.csv")``."""
    for name, info in type(model).model_fields.items():
        value = getattr(model, name, None)
        here = (*loc, name)
        if value is None:
            continue
        if is_path_field(info) and isinstance(value, str):
            yield _dotted(here), value
        else:
            yield from _values_in(value, here)


def _values_in(value: Any, loc: tuple[str | int, ...]) -> Iterator[tuple[str, str]]:
    if isinstance(value, BaseModel):
        yield from path_values(value, loc)
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield from _values_in(item, (*loc, index))
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _values_in(item, (*loc, str(key)))


def _dotted(loc: tuple[str | int, ...]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


__all__ = [
    "ConfigPath",
    "FileScope",
    "PathField",
    "is_path_field",
    "outside_message",
    "path_values",
]

ANYWHERE = FileScope.anywhere()
"""The unrestricted scope rooted at the working folder (a default for direct use and tests)."""
