"""Finding a user-defined interaction by its ``kind``: a module, a file or an entry point.

``package.module:Name`` imports the module; ``file:path/to/file.py:Name`` runs the file
(relative to the configuration's folder) as a module of its own, or its ``source`` when it
was shipped inline; any other name is looked up among the entry points of group
``clientswarm.interactions``. Every way of going wrong — a missing module or file, a syntax
error, a missing name, an object that is neither an :class:`Interaction` subclass nor an
async function — is a ConfigError at validation time, with what was found instead.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import importlib.util
import inspect
import sys
import traceback
from pathlib import Path
from types import ModuleType
from typing import Any

from clientswarm.config.interactions import ENTRY_POINT_GROUP, CustomInteraction
from clientswarm.config.paths import ANYWHERE, FileScope
from clientswarm.errors import ConfigError
from clientswarm.interactions.user import Interaction

_MODULES: dict[tuple[str, str], ModuleType] = {}
"""Modules made from files or inline sources, by (path, hash of the source): run once."""


def _problem(text: str) -> ConfigError:
    return ConfigError([f"kind: {text}"])


def _attribute(module: ModuleType, dotted: str, where: str) -> Any:
    found: Any = module
    for part in dotted.split("."):
        if not hasattr(found, part):
            public = sorted(n for n in dir(found) if not n.startswith("_"))
            candidates = [n for n in public if _is_interaction(getattr(found, n, None))] or public[
                :12
            ]
            raise _problem(
                f"{where} has no {dotted!r}; it has: {', '.join(candidates) or 'nothing'}"
            )
        found = getattr(found, part)
    return found


def _is_interaction(obj: Any) -> bool:
    is_class = inspect.isclass(obj) and issubclass(obj, Interaction) and obj is not Interaction
    return is_class or inspect.iscoroutinefunction(obj)


def _error_line(exc: BaseException) -> str:
    if isinstance(exc, SyntaxError):
        return f"SyntaxError: {exc.msg} (line {exc.lineno})"
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" (line {frames[-1].lineno})" if frames else ""
    return f"{type(exc).__name__}: {exc}{where}"


def _module_from_source(path: str, source: str) -> ModuleType:
    digest = hashlib.sha256(source.encode()).hexdigest()[:16]
    key = (path, digest)
    module = _MODULES.get(key)
    if module is not None:
        return module
    name = f"clientswarm_user_{Path(path).stem}_{digest}"
    module = ModuleType(name)
    module.__file__ = path
    sys.modules[name] = module  # dataclasses and pickling look modules up by name
    try:
        exec(compile(source, path, "exec"), module.__dict__)
    except BaseException as exc:
        sys.modules.pop(name, None)
        raise _problem(f"{path} failed to load: {_error_line(exc)}") from exc
    _MODULES[key] = module
    return module


def _from_file(config: CustomInteraction, files: FileScope) -> Any:
    parts = config.file_parts()
    assert parts is not None
    relative, name = parts
    if config.source is not None:
        module = _module_from_source(relative, config.source)
        return _attribute(module, name, relative)
    path = files.resolve(relative, "kind").resolve()
    try:
        source = path.read_text()
    except OSError as exc:
        raise _problem(f"cannot read {path}: {exc.strerror or exc}") from None
    return _attribute(_module_from_source(str(path), source), name, str(path))


def _from_module(kind: str) -> Any:
    module_name, name = kind.split(":", 1)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            raise _problem(
                f"no module named {exc.name!r} (is it installed, or on PYTHONPATH?)"
            ) from None
        raise _problem(f"module {module_name!r} failed to import: {_error_line(exc)}") from exc
    except Exception as exc:
        raise _problem(f"module {module_name!r} failed to import: {_error_line(exc)}") from exc
    return _attribute(module, name, f"module {module_name!r}")


def _from_entry_point(kind: str) -> Any:
    found = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP, name=kind)
    if not found:
        raise _problem(f"no installed entry point {kind!r} in group {ENTRY_POINT_GROUP}")
    entry = next(iter(found))
    try:
        return entry.load()
    except Exception as exc:
        raise _problem(
            f"entry point {kind!r} ({entry.value}) failed to load: {_error_line(exc)}"
        ) from exc


def resolve(config: CustomInteraction, *, files: FileScope = ANYWHERE) -> Any:
    """The class or async function ``config.kind`` names; ConfigError when there is none."""
    kind = config.kind
    if kind.startswith("file:"):
        found = _from_file(config, files)
    elif ":" in kind:
        found = _from_module(kind)
    else:
        found = _from_entry_point(kind)
    if not _is_interaction(found):
        what = type(found).__name__ if not inspect.isclass(found) else f"class {found.__name__}"
        raise _problem(
            f"{kind} is a {what}, not an Interaction subclass or an async function "
            "(async def name(ctx))"
        )
    return found


def entry_point_interactions() -> list[tuple[str, Any]]:
    """``(name, class or function)`` of every installed entry point that loads."""
    found = []
    for entry in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            loaded = entry.load()
        except Exception:  # the catalogue lists what works; validation says what does not
            continue
        if _is_interaction(loaded):
            found.append((entry.name, loaded))
    return sorted(found, key=lambda item: item[0])
