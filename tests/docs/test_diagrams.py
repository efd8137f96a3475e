"""The Mermaid diagrams of the documentation name only classes that exist.

Every ```` ```mermaid ```` block of every ``docs/**/*.md`` page is read, and:

- in a ``classDiagram``, every class name — declared (``class X``, ``class X~T~``,
  ``class X { … }``, ``class X["label"]``), used in a relation (``A <|-- B``, ``A --> B``,
  ``A *-- B``, ``A ..> B : label``, with or without cardinalities), given a member
  (``X : +run()``) or an annotation (``<<Protocol>> X``) — must be a class defined somewhere
  in ``src/clientswarm`` (generics ``X~T~`` count as ``X``);
- in a ``sequenceDiagram``, the rule for participants is: **an id that starts with an upper-case
  letter (after optional underscores), e.g. ``ClusterManager``, names a class and must exist;
  an id that starts with a lower-case letter, e.g. ``target`` or ``worker``, is a free alias**
  (give it a readable label: ``participant worker as worker process``). It applies to
  ``participant``/``actor`` declarations and to the ids of messages (``A->>B: text``).

Classes are found by parsing every module with :mod:`ast` (``ClassDef`` at any depth, so
Protocols, dataclasses and nested classes count); nothing is imported. A line of a class or
sequence diagram that the checker does not understand is reported too, so a name cannot slip
past it. Other diagram types (flowcharts, state diagrams) are not checked.

Each page of ``docs/architecture`` must exist and hold at least one diagram, none of them
naming more than :data:`MAX_NODES` classes or participants (readable at a glance).
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest
from markdown_blocks import code_blocks

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src" / "clientswarm"
DOCS = ROOT / "docs"
ARCHITECTURE_PAGES = (
    "index.md",
    "service.md",
    "workers.md",
    "spawners.md",
    "interactions.md",
    "load-and-statistics.md",
    "store.md",
)
MAX_NODES = 12

_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
# A class reference: a name, optional generics, optional ["label"], optional :::cssClass.
_CLASS_REF = rf"`?(?P<{{g}}>{_IDENT})`?(?:~[^~]*~)?(?:\[\"[^\"]*\"\])?(?::::{_IDENT})?"
_ARROW = r"(?:<\||\*|o|<|\(\))?(?:--|\.\.)(?:\|>|\*|o|>|\(\))?"
_RELATION = re.compile(
    rf"^{_CLASS_REF.format(g='left')}\s*(?:\"[^\"]*\"\s*)?{_ARROW}\s*(?:\"[^\"]*\"\s*)?"
    rf"{_CLASS_REF.format(g='right')}\s*(?::.*)?$"
)
_CLASS_DECL = re.compile(
    rf"^class\s+{_CLASS_REF.format(g='name')}\s*(?P<body>\{{)?\s*(?P<close>\}})?\s*$"
)
_MEMBER = re.compile(rf"^{_CLASS_REF.format(g='name')}\s*:.*$")
_ANNOTATION = re.compile(rf"^<<[^>]+>>\s*{_CLASS_REF.format(g='name')}\s*$")
_CLASS_IGNORED = re.compile(
    r"^(?:direction\s|note\b|classDef\s|style\s|cssClass\s|click\s|link\s|callback\s"
    r"|accTitle\b|accDescr\b|title\b|---|%%)"
)
_NAMESPACE = re.compile(rf"^namespace\s+{_IDENT}\s*\{{\s*$")

_PARTICIPANT = re.compile(
    rf"^(?:create\s+)?(?:participant|actor)\s+(?P<id>{_IDENT})(?:@\{{.*\}})?(?:\s+as\s+.+)?$"
)
_MESSAGE = re.compile(
    rf"^(?P<left>{_IDENT})\s*(?:<<-->>|<<->>|-->>|->>|-->|->|--x|-x|--\)|-\))\s*[+-]?\s*"
    rf"(?P<right>{_IDENT})\s*:.*$"
)
_SEQUENCE_IGNORED = re.compile(
    r"^(?:autonumber\b|activate\s|deactivate\s|note\s|loop\b|alt\b|else\b|opt\b|par\b|and\b"
    r"|critical\b|option\b|break\b|rect\b|end\b|box\b|title\b|accTitle\b|accDescr\b"
    r"|destroy\s|links?\s|properties\s|details\s|---|%%)",
    re.IGNORECASE,
)
_CLASS_LIKE_ID = re.compile(r"^_*[A-Z]")
_KIND = re.compile(r"^\s*(?:classDiagram|classDiagram-v2|sequenceDiagram)\s*$")


@dataclass(frozen=True)
class Diagram:
    """One Mermaid block: where it is and its text."""

    page: str
    line: int
    text: str

    @property
    def kind(self) -> str:
        """The diagram type: the first word of the first meaningful line."""
        for line in self.text.splitlines():
            stripped = line.strip()
            if stripped and not stripped.startswith("%%"):
                return stripped.split()[0]
        return ""


@dataclass(frozen=True)
class Names:
    """What a diagram names: class-like ids and the lines the checker did not understand."""

    classes: tuple[str, ...]
    unparsed: tuple[str, ...]


@cache
def defined_classes() -> frozenset[str]:
    """Names of every class defined in ``src/clientswarm`` (by ``ast``, nothing imported)."""
    names: set[str] = set()
    for path in SRC.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        names.update(node.name for node in ast.walk(tree) if isinstance(node, ast.ClassDef))
    return frozenset(names)


def mermaid_blocks(text: str, page: str) -> list[Diagram]:
    """The Mermaid blocks of a Markdown page, in order."""
    return [Diagram(b.page, b.line, b.text) for b in code_blocks(text, page) if b.lang == "mermaid"]


def _statements(text: str) -> list[str]:
    """The diagram's statements: lines (and ``;``-separated parts), stripped, comments out."""
    out: list[str] = []
    lines = text.splitlines()
    kind = next((n for n, line in enumerate(lines) if _KIND.match(line)), -1)
    for line in lines[kind + 1 :]:  # from after the line that names the diagram type
        for part in line.split(";"):
            stripped = part.strip()
            if stripped and not stripped.startswith("%%"):
                out.append(stripped)
    return out


def class_diagram_names(text: str) -> Names:
    """The class names of a ``classDiagram`` and the lines not understood."""
    classes: list[str] = []
    unparsed: list[str] = []
    in_body = False
    for statement in _statements(text):
        if in_body:  # members of ``class X { … }``: not class names
            if statement.endswith("}"):
                in_body = False
            continue
        if statement == "}" or _NAMESPACE.match(statement) or _CLASS_IGNORED.match(statement):
            continue
        if declared := _CLASS_DECL.match(statement):
            classes.append(declared.group("name"))
            in_body = bool(declared.group("body")) and not declared.group("close")
        elif related := _RELATION.match(statement):
            classes += [related.group("left"), related.group("right")]
        elif annotated := _ANNOTATION.match(statement):
            classes.append(annotated.group("name"))
        elif member := _MEMBER.match(statement):
            classes.append(member.group("name"))
        else:
            unparsed.append(statement)
    return Names(tuple(dict.fromkeys(classes)), tuple(unparsed))


def sequence_diagram_names(text: str) -> Names:
    """The class-like participant ids of a ``sequenceDiagram`` and the lines not understood.

    Lower-case ids are aliases (see the module docstring) and are left out.
    """
    ids: list[str] = []
    unparsed: list[str] = []
    for statement in _statements(text):
        if participant := _PARTICIPANT.match(statement):
            ids.append(participant.group("id"))
        elif message := _MESSAGE.match(statement):
            ids += [message.group("left"), message.group("right")]
        elif not _SEQUENCE_IGNORED.match(statement):
            unparsed.append(statement)
    classes = [i for i in dict.fromkeys(ids) if _CLASS_LIKE_ID.match(i)]
    return Names(tuple(classes), tuple(unparsed))


def diagram_names(diagram: Diagram) -> Names | None:
    """What a class or sequence diagram names; None for other diagram types."""
    if diagram.kind in ("classDiagram", "classDiagram-v2"):
        return class_diagram_names(diagram.text)
    if diagram.kind == "sequenceDiagram":
        return sequence_diagram_names(diagram.text)
    return None


def diagram_nodes(diagram: Diagram) -> int:
    """How many classes and participants (aliases too) a diagram shows."""
    if diagram.kind == "sequenceDiagram":
        ids = []
        for statement in _statements(diagram.text):
            if participant := _PARTICIPANT.match(statement):
                ids.append(participant.group("id"))
            elif message := _MESSAGE.match(statement):
                ids += [message.group("left"), message.group("right")]
        return len(set(ids))
    names = diagram_names(diagram)
    return 0 if names is None else len(names.classes)


def problems_of(diagram: Diagram, known: frozenset[str]) -> list[str]:
    """One line per unknown class and per line the checker did not understand."""
    names = diagram_names(diagram)
    if names is None:
        return []
    where = f"{diagram.page} (diagram at line {diagram.line})"
    problems = [
        f"{where}: {name!r} is not a class defined in src/clientswarm"
        for name in names.classes
        if name not in known
    ]
    problems += [
        f"{where}: the diagram checker does not understand {line!r}; "
        "keep to the syntax described in tests/docs/test_diagrams.py"
        for line in names.unparsed
    ]
    return problems


def all_diagrams() -> list[Diagram]:
    """Every Mermaid block of every page under docs/."""
    found: list[Diagram] = []
    for path in sorted(DOCS.rglob("*.md")):
        page = path.relative_to(ROOT).as_posix()
        found += mermaid_blocks(path.read_text(encoding="utf-8"), page)
    return found


# -- the checks -------------------------------------------------------------------------------


def test_every_diagram_names_real_classes() -> None:
    known = defined_classes()
    problems = [p for diagram in all_diagrams() for p in problems_of(diagram, known)]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("name", ARCHITECTURE_PAGES)
def test_architecture_page_has_a_readable_diagram(name: str) -> None:
    path = DOCS / "architecture" / name
    assert path.is_file(), f"docs/architecture/{name} is missing"
    diagrams = mermaid_blocks(path.read_text(encoding="utf-8"), f"docs/architecture/{name}")
    checked = [d for d in diagrams if diagram_names(d) is not None]
    assert checked, f"docs/architecture/{name} has no classDiagram or sequenceDiagram"
    for diagram in diagrams:
        nodes = diagram_nodes(diagram)
        assert nodes <= MAX_NODES, (
            f"docs/architecture/{name} (diagram at line {diagram.line}) shows {nodes} "
            f"classes or participants; split it (at most {MAX_NODES})"
        )


# -- the checker checks itself ------------------------------------------------------------------

_SELF_TEST_CLASSES = """classDiagram
  direction LR
  class ClusterManager {
    +create(config) ClusterRecord
    +Nonexistent member
  }
  class Spawner {
    <<Protocol>>
  }
  class ArrivalSchedule~T~
  Spawner <|.. LocalSpawner
  ClusterManager "1" *-- "many" ClusterState : active
  Store ..> Nonexistent : made up
  FakeAnnotated : +run()
  <<Protocol>> AlsoMadeUp
  note for Store "a note"
"""

_SELF_TEST_SEQUENCE = """sequenceDiagram
  participant worker as worker process
  participant ClusterManager
  actor Nonexistent as someone
  worker->>ClusterManager: POST register
  ClusterManager-->>+Invented: reply
  loop every second
    worker-)target: GET /
  end
"""


def test_the_checker_finds_made_up_classes() -> None:
    known = defined_classes()
    assert {"ClusterManager", "Spawner", "Interaction", "SampleSink"} <= known
    names = class_diagram_names(_SELF_TEST_CLASSES)
    assert names.unparsed == ()
    assert set(names.classes) == {
        "ClusterManager",
        "Spawner",
        "ArrivalSchedule",
        "LocalSpawner",
        "ClusterState",
        "Store",
        "Nonexistent",
        "FakeAnnotated",
        "AlsoMadeUp",
    }
    problems = problems_of(Diagram("self-test.md", 1, _SELF_TEST_CLASSES), known)
    assert len(problems) == 3, problems
    assert all(p.startswith("self-test.md") for p in problems)
    assert any("'Nonexistent'" in p for p in problems)


def test_the_checker_applies_the_participant_rule() -> None:
    names = sequence_diagram_names(_SELF_TEST_SEQUENCE)
    assert names.unparsed == ()
    assert names.classes == ("ClusterManager", "Nonexistent", "Invented")
    problems = problems_of(Diagram("self-test.md", 1, _SELF_TEST_SEQUENCE), defined_classes())
    assert [p.split(": ")[1].split()[0] for p in problems] == ["'Nonexistent'", "'Invented'"]


def test_the_checker_reports_lines_it_does_not_understand() -> None:
    diagram = Diagram("self-test.md", 1, "classDiagram\n  Store <~~> Nonexistent\n")
    problems = problems_of(diagram, defined_classes())
    assert problems and "does not understand" in problems[0]


def test_the_checker_finds_blocks_in_markdown() -> None:
    page = "# t\n\n```mermaid\nclassDiagram\n  class Store\n```\n\n```python\nclass X: ...\n```\n"
    blocks = mermaid_blocks(page, "t.md")
    assert [(b.line, b.kind) for b in blocks] == [(3, "classDiagram")]
