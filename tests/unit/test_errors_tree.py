"""One exception root: the tree drawn in ``clientswarm.errors`` is the package's real one.

Every module of the package is imported and every exception class it defines is found (nested
and local classes included, through ``__subclasses__``); the drawing in the docstring of
:mod:`clientswarm.errors` must name each of them with its real bases. The re-rooted classes
must still be caught where they were: by their built-in base, and classified into the same
error kind of a failed sample.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from dataclasses import dataclass

import pytest

import clientswarm
from clientswarm import errors
from clientswarm.errors import ClientswarmError
from clientswarm.interactions.http import classify_exception
from clientswarm.interactions.http1 import ConnectionDropped, Http1Error
from clientswarm.interactions.sse import EventTooLarge
from clientswarm.interactions.streaming import TargetError
from clientswarm.interactions.user import HttpStatusError, StepFailed
from clientswarm.metrics.sample import ERROR_CLIENT, ERROR_CONNECTION, ERROR_PROTOCOL
from clientswarm.metrics.wire import BatchFormatError

_LINE = re.compile(
    r"^    (?P<prefix>(?:[│ ]   )*(?:[├└]── )?)(?P<name>\w+)(?: \((?P<builtin>\w+)\))?"
    r" {2,}(?:(?P<module>[a-z_]\w*(?:\.[a-z_]\w*)*): )?"
)


@dataclass(frozen=True)
class Drawn:
    """One class of the drawing: its drawn parent, second built-in base and module."""

    name: str
    parent: str | None
    builtin: str | None
    module: str


def package_exceptions() -> dict[str, type[BaseException]]:
    """Every exception class defined in a module of the package, by name (names are unique)."""
    modules = {"clientswarm"}
    for info in pkgutil.walk_packages(clientswarm.__path__, "clientswarm."):
        importlib.import_module(info.name)
        modules.add(info.name)
    found: dict[str, type[BaseException]] = {}
    todo: list[type[BaseException]] = [BaseException]
    while todo:
        cls = todo.pop()
        todo.extend(cls.__subclasses__())
        if cls.__module__ in modules:
            other = found.setdefault(cls.__name__, cls)
            assert other is cls, f"two exception classes named {cls.__name__}"
    return found


def drawing() -> list[Drawn]:
    """The tree of the docstring of clientswarm.errors, parsed."""
    doc = errors.__doc__ or ""
    block = doc.split("::\n\n", 1)[1].split("\n\n", 1)[0]
    drawn: list[Drawn] = []
    parents: list[str] = []
    for line in block.splitlines():
        match = _LINE.match(line)
        assert match, f"not a line of the tree: {line!r}"
        depth = len(match["prefix"]) // 4
        parents[depth:] = [match["name"]]
        module = "clientswarm." + match["module"] if match["module"] else "clientswarm.errors"
        parent = parents[depth - 1] if depth else None
        drawn.append(Drawn(match["name"], parent, match["builtin"], module))
    return drawn


def test_every_public_exception_class_derives_from_the_root() -> None:
    found = package_exceptions()
    assert {"ClientswarmError", "StepFailed", "BatchFormatError"} <= set(found)  # found at all
    outside = sorted(
        name
        for name, cls in found.items()
        if not name.startswith("_") and not issubclass(cls, ClientswarmError)
    )
    assert outside == [], f"not under ClientswarmError: {outside}"


def test_the_drawing_names_every_class_with_its_real_bases() -> None:
    found = package_exceptions()
    drawn = drawing()
    public = {name for name in found if not name.startswith("_")}
    assert {d.name for d in drawn} == public, "the drawing and the package differ"
    assert len(drawn) == len(public), "a class is drawn twice"
    for d in drawn:
        cls = found[d.name]
        assert cls.__module__ == d.module, f"{d.name} is defined in {cls.__module__}"
        expected = [d.parent or "Exception"] + ([d.builtin] if d.builtin else [])
        assert [base.__name__ for base in cls.__bases__] == expected, d.name


def test_private_signals_stay_outside_the_tree_and_are_named_why() -> None:
    doc = errors.__doc__ or ""
    private = {name: cls for name, cls in package_exceptions().items() if name.startswith("_")}
    assert private, "the check sees the private signals"
    for name, cls in private.items():
        assert f"``{name}``" in doc, f"{name} is not named in clientswarm.errors"
        assert cls.__bases__ == (Exception,), name


@pytest.mark.parametrize(
    ("exc", "builtin"),
    [
        (ConnectionDropped("the target closed the connection"), ConnectionError),
        (BatchFormatError("not JSON"), ValueError),
        (EventTooLarge(1024), ValueError),
    ],
    ids=lambda value: type(value).__name__,
)
def test_a_rerooted_class_is_still_caught_by_its_builtin_base(
    exc: Exception, builtin: type[Exception]
) -> None:
    with pytest.raises(builtin):
        raise exc


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (TargetError("stream_error", "overloaded"), "stream_error"),
        (HttpStatusError(503, "busy"), "http_503"),
        (Http1Error("the target's answer is not valid HTTP/1.1"), ERROR_PROTOCOL),
        (ConnectionDropped("the target closed the connection"), ERROR_CONNECTION),
        (EventTooLarge(1024), ERROR_CLIENT),
        (StepFailed("retrieve", "timeout", "no answer"), ERROR_CLIENT),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, Exception) else value,
)
def test_a_failed_request_keeps_its_error_kind(exc: Exception, kind: str) -> None:
    # The kind of a failed sample is decided by the specific classes: the common root must
    # not turn a dropped connection into a protocol error, nor a bad answer into a client one.
    assert classify_exception(exc, 1.0)[0] == kind
