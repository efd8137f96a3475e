"""The fenced code blocks of a Markdown page, for the docs tests (guides and diagrams)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})\s*(?P<info>[^`]*)$")
"""An opening or closing fence: its indent, its backticks or tildes, and its info string."""


@dataclass(frozen=True)
class Block:
    """One fenced code block: page, the line its body starts on, language and body."""

    page: str
    line: int
    lang: str
    text: str

    @property
    def id(self) -> str:
        return f"{self.page}:{self.line}"


def code_blocks(text: str, page: str) -> Iterator[Block]:
    """The fenced code blocks of ``text`` (also inside admonitions and tabs), dedented."""
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if match is None:
            i += 1
            continue
        indent, fence = match["indent"], match["fence"]
        lang = (match["info"].split() or [""])[0].lstrip(".").lower()
        body: list[str] = []
        start = i + 1
        i += 1
        while i < len(lines) and not (
            lines[i].strip().startswith(fence) and lines[i].strip().strip(fence[0]) == ""
        ):
            body.append(lines[i].removeprefix(indent))
            i += 1
        i += 1
        yield Block(page, start, lang, "\n".join(body) + "\n")
