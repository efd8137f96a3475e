"""Every shipped example configuration is valid (the README and the demo rely on them)."""

from __future__ import annotations

from pathlib import Path

import pytest

from clientswarm.config.loader import load_config_file

EXAMPLES = sorted((Path(__file__).parents[2] / "examples").glob("*.yaml"))


def test_there_are_examples() -> None:
    assert {p.name for p in EXAMPLES} >= {"quickstart.yaml", "vllm-chat.yaml", "mixed.yaml"}


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_validates(path: Path) -> None:
    config = load_config_file(path)
    assert config.groups
