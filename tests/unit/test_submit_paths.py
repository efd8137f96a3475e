"""What ``clientswarm submit`` sends: paths relative to the config made absolute, code inlined."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from clientswarm.service.client_cli import with_user_sources


def config(*interactions: dict[str, object]) -> bytes:
    groups = [{"name": f"g{i}", "clients": 1, "interaction": x} for i, x in enumerate(interactions)]
    return yaml.safe_dump({"name": "c", "target": {"url": "http://h"}, "groups": groups}).encode()


def test_datasets_and_tokenizers_travel_as_absolute_paths(tmp_path: Path) -> None:
    (tmp_path / "journeys.py").write_text("async def ask(ctx): pass\n")
    body = config(
        {"kind": "chat", "dataset": {"path": "data/sharegpt.json"}, "tokenizer": "tok.json"},
        {"kind": "completion", "dataset": {"path": "/srv/prompts.jsonl"}},
        {"kind": "file:journeys.py:ask"},
    )
    sent = with_user_sources(body, tmp_path)
    assert sent is not None
    groups = [g["interaction"] for g in json.loads(sent)["groups"]]
    assert groups[0]["dataset"]["path"] == str(tmp_path / "data" / "sharegpt.json")
    assert groups[0]["tokenizer"] == str(tmp_path / "tok.json")
    assert groups[1]["dataset"]["path"] == "/srv/prompts.jsonl"  # absolute: as written
    assert groups[2]["kind"] == f"file:{tmp_path / 'journeys.py'}:ask"
    assert groups[2]["source"] == "async def ask(ctx): pass\n"


def test_a_config_with_nothing_relative_is_sent_as_written(tmp_path: Path) -> None:
    body = config({"kind": "chat", "dataset": {"path": "/srv/d.jsonl"}}, {"kind": "hello"})
    assert with_user_sources(body, tmp_path) is None
    assert with_user_sources(b"groups: [unclosed", tmp_path) is None  # the service says why
