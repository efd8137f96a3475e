"""`clientswarm validate` and `clientswarm schema`, run as real subprocesses."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

CLI = Path(sys.executable).parent / "clientswarm"

VALID = """\
name: quickstart
seed: 42
target: {url: "http://127.0.0.1:8000", model: mock-model, api_key_env: VLLM_API_KEY}
spawner: {kind: local, workers: 2}
groups:
  - name: chat
    clients: 16
    interaction: {kind: chat, stream: true, prompts: ["Tell me a story."], max_tokens: 128}
    load: {kind: closed, think_time_s: 0}
    stop: {duration_s: 30}
  - name: hello
    interaction: {kind: hello}
    load: {kind: open, rate: 2, arrival: constant}
    stop: {duration_s: 30}
"""

pytestmark = pytest.mark.skipif(not CLI.exists(), reason=f"{CLI} is not installed")


def clientswarm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CLI), *args], capture_output=True, text=True, timeout=60, check=False
    )


def test_valid_file_prints_one_summary_line(tmp_path: Path) -> None:
    path = tmp_path / "quickstart.yaml"
    path.write_text(VALID)
    result = clientswarm("validate", str(path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"{path}: valid cluster 'quickstart': chat (16 clients, chat), hello (1 client, hello)"
    ]
    assert result.stderr == ""


def test_valid_json_file(tmp_path: Path) -> None:
    path = tmp_path / "quickstart.json"
    path.write_text(json.dumps(yaml.safe_load(VALID)))
    result = clientswarm("validate", str(path))
    assert result.returncode == 0, result.stderr


def test_typos_give_one_line_per_problem_and_exit_2(tmp_path: Path) -> None:
    path = tmp_path / "typo.yaml"
    path.write_text(
        VALID.replace("stream: true", "stremm: true")
        .replace("workers: 2", "workers: 0")
        .replace("kind: hello", "kind: helo")
    )
    result = clientswarm("validate", str(path))
    assert result.returncode == 2
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines() == [
        f"error: {path}: spawner.workers: too small; got 0; must be at least 1 and at most 1024",
        f"error: {path}: groups[0].interaction.stremm: unknown field 'stremm' "
        "(did you mean 'stream'?); valid fields for kind 'chat': kind, prompts, synthetic, "
        "dataset, shared_prefix, tokenizer, stream, max_tokens, model, extra_body, system_prompt, "
        "images",
        f'error: {path}: groups[1].interaction.kind: unknown kind; got "helo" '
        "(did you mean 'hello'?); valid kinds: hello, http, completion, chat, responses, "
        "messages, embedding, conversation, transcription, package.module:Name, "
        "file:path/to/file.py:Name, an installed entry point",
    ]


def test_missing_file_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    result = clientswarm("validate", str(path))
    assert result.returncode == 2
    assert result.stderr.splitlines() == [f"error: {path}: file not found"]


def test_yaml_syntax_error_exits_2_with_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("name: x\ntarget:\n  url: http://a\n    model: m\n")
    result = clientswarm("validate", str(path))
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"error: {path}: line 4, column 10: invalid YAML: mapping values are not allowed here"
    ]


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    result = clientswarm("--debug", "validate", str(tmp_path / "nope.yaml"))
    assert result.returncode != 0
    assert "Traceback" in result.stderr
    assert "ConfigError" in result.stderr


def test_schema_prints_json_schema() -> None:
    result = clientswarm("schema")
    assert result.returncode == 0, result.stderr
    schema = json.loads(result.stdout)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["title"] == "clientswarm cluster configuration"
    assert "GroupConfig" in schema["$defs"]
    assert "ChatInteraction" in schema["$defs"]


def test_calibrate_measures_one_worker_and_sizes_workers_for_a_rate() -> None:
    done = subprocess.run(
        [
            CLI,
            "calibrate",
            *("--interaction", "hello", "--clients", "4", "--seconds", "1.5"),
            *("--rate", "100000", "--json"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    verdict = json.loads(done.stdout)
    assert verdict["failed"] == 0 and verdict["reached_req_s"] > 50
    assert verdict["per_worker_req_s"] == pytest.approx(0.7 * verdict["reached_req_s"])
    assert verdict["workers"] == math.ceil(100000 / verdict["per_worker_req_s"])


def test_calibrate_in_streams_mode_counts_the_streams_one_worker_hosts() -> None:
    done = subprocess.run(
        [
            CLI,
            "calibrate",
            *("--itl-ms", "20", "--ttft-ms", "20", "--max-tokens", "8"),
            *("--clients", "4", "--max-streams", "8", "--seconds", "1.5"),
            *("--streams", "100", "--json"),
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    verdict = json.loads(done.stdout)
    steps = verdict["steps"]
    assert [s["streams"] for s in steps][:2] == [4, 8]  # then 6 only when 8 did not hold
    assert not any(s["target_limited"] for s in steps)  # 400 tokens/s at most: served
    for step in steps:  # real streams were read: 8 tokens 20 ms apart after 20 ms each
        assert step["failed"] == 0 and step["output_tok_s"] > 0
        assert step["offered_tok_s"] == pytest.approx(step["streams"] * 8 / 0.16)
    held = [s["streams"] for s in steps if s["held"] and not s["target_limited"]]
    assert verdict["streams_per_worker"] == (max(held) if held else None)
    if held:
        assert done.returncode == 0, done.stderr[-2000:]
        assert verdict["workers"] == math.ceil(100 / verdict["streams_per_worker"])
    else:  # a machine too busy for even 4 streams within the loop-lag bound says so
        assert done.returncode == 1 and verdict["workers"] is None


def test_calibrate_refuses_streams_without_a_pace() -> None:
    done = subprocess.run(
        [CLI, "calibrate", "--streams", "100"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2 and "give --itl-ms too" in done.stderr
