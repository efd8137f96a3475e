"""Which user code a service runs: file: interactions by path, or their shipped source."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from clientswarm.config.interactions import CustomInteraction
from clientswarm.config.loader import validate_config_data
from clientswarm.config.models import ClusterConfig
from clientswarm.config.paths import FileScope
from clientswarm.errors import ConfigError
from clientswarm.service.usercode import place_user_code

SOURCE = "async def journey(ctx):\n    await ctx.http.get('/health')\n"


def config(spawner: dict[str, Any], interaction: dict[str, Any]) -> ClusterConfig:
    return validate_config_data(
        {
            "name": "u",
            "target": {"url": "http://127.0.0.1:8000"},
            "spawner": spawner,
            "groups": [{"name": "g", "interaction": interaction, "stop": {"requests": 1}}],
        }
    )


KUBERNETES = {"kind": "kubernetes", "image": "clientswarm:1"}
FILE_KIND = {"kind": "file:journeys.py:journey"}


def interaction_of(placed: ClusterConfig) -> CustomInteraction:
    found = placed.groups[0].interaction
    assert isinstance(found, CustomInteraction)
    return found


def test_local_workers_read_the_file_from_its_path(tmp_path: Path) -> None:
    placed = place_user_code(
        config({"kind": "local"}, FILE_KIND), files=FileScope.anywhere(tmp_path), allow_inline=False
    )
    assert interaction_of(placed).source is None


def test_kubernetes_workers_need_the_source_shipped_which_needs_the_flag(tmp_path: Path) -> None:
    (tmp_path / "journeys.py").write_text(SOURCE)
    with pytest.raises(ConfigError) as refused:
        place_user_code(
            config(KUBERNETES, FILE_KIND), files=FileScope.anywhere(tmp_path), allow_inline=False
        )
    (line,) = refused.value.problems
    assert line == (
        "groups[0].interaction.kind: kubernetes workers do not share this service's files, so "
        "it would ship the source of file:journeys.py:journey in their assignment; start the "
        "service with --allow-inline-code to allow that (its workers then run it)"
    )
    placed = place_user_code(
        config(KUBERNETES, FILE_KIND), files=FileScope.anywhere(tmp_path), allow_inline=True
    )
    assert interaction_of(placed).source == SOURCE


def test_a_sent_source_is_dropped_when_the_same_file_is_here(tmp_path: Path) -> None:
    (tmp_path / "journeys.py").write_text(SOURCE)
    sent = {**FILE_KIND, "source": SOURCE}
    placed = place_user_code(
        config({"kind": "local"}, sent), files=FileScope.anywhere(tmp_path), allow_inline=False
    )
    assert interaction_of(placed).source is None
    changed = {**FILE_KIND, "source": SOURCE + "# changed\n"}
    with pytest.raises(ConfigError, match="does not run code sent to it"):
        place_user_code(
            config({"kind": "local"}, changed),
            files=FileScope.anywhere(tmp_path),
            allow_inline=False,
        )


def test_source_only_goes_with_a_file_kind() -> None:
    with pytest.raises(ConfigError, match="source is the text of a file: interaction"):
        config({"kind": "local"}, {"kind": "pkg.mod:Journey", "source": SOURCE})
