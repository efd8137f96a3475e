"""Several named targets under one run: each group's clients load the target it names, with that
target's own headers and credentials."""

from __future__ import annotations

import json
import os
import subprocess
import urllib.request
from pathlib import Path

from service_process import CLI, simulator


def requests_seen(url: str) -> int:
    with urllib.request.urlopen(url + "/mock/stats", timeout=10) as answer:
        routes = json.loads(answer.read())["requests"]
    return sum(n for route, n in routes.items() if not route.startswith("/mock"))


def test_each_group_loads_the_target_it_names(tmp_path: Path) -> None:
    with simulator() as a, simulator() as b:
        config = {
            "name": "ab",
            "targets": {"a": {"url": a}, "b": {"url": b, "api_key_env": "B_KEY"}},
            "groups": [
                {
                    "name": "to-a",
                    "target": "a",
                    "interaction": {"kind": "hello"},
                    "stop": {"requests": 7},
                },
                {
                    "name": "to-b",
                    "target": "b",
                    "interaction": {"kind": "hello"},
                    "stop": {"requests": 3},
                },
            ],
        }
        path = tmp_path / "ab.json"
        path.write_text(json.dumps(config))
        done = subprocess.run(
            [CLI, "run", str(path), "--output", str(tmp_path / "out")],
            env={**os.environ, "B_KEY": "k"},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr[-2000:]
        seen = requests_seen(a), requests_seen(b)
    assert seen == (7, 3)
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["groups"]["to-a"]["requests"] == 7
    assert summary["groups"]["to-b"]["requests"] == 3
