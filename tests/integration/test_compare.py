"""``clientswarm compare`` of real runs against the simulator: the same run twice is no
difference, a slower simulator is called slower, ``--fail-if`` gates, bad input exits 2."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from service_process import ServiceProcess, simulator

pytestmark = pytest.mark.slow

CLI = str(Path(sys.executable).parent / "clientswarm")

CONFIG = {
    "name": "compare",
    "seed": 11,
    "target": {"url": "http://127.0.0.1:1", "model": "mock-model", "timeout_s": 10},
    "spawner": {"kind": "local", "workers": 1},
    "groups": [
        {
            "name": "chat",
            "clients": 4,
            "interaction": {"kind": "chat", "stream": True, "prompts": ["hi"], "max_tokens": 8},
            "load": {"kind": "open", "rate": 100, "arrival": "poisson"},
            "stop": {"duration_s": 1.0},
        }
    ],
}


def clientswarm(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CLI, *args], capture_output=True, text=True, timeout=120, env={**os.environ, **(env or {})}
    )


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Three runs of one config: two against the same simulator (Parquet and JSONL samples),
    one against a simulator with a slower first token (CSV samples)."""
    base = tmp_path_factory.mktemp("compare")
    config = base / "config.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    out: dict[str, Path] = {}
    for name, ttft_ms, fmt in (("a", 50, "parquet"), ("b", 50, "jsonl"), ("slow", 80, "csv")):
        out[name] = base / name
        done = clientswarm(
            "run",
            str(config),
            "--mock",
            "--mock-args",
            f"--ttft-ms {ttft_ms} --ttft-std-ms 5",
            "-o",
            str(out[name]),
            "--samples-format",
            fmt,
        )
        assert done.returncode == 0, done.stderr
    return out


def compared(*args: str) -> tuple[int, dict[str, Any]]:
    done = clientswarm("compare", *args, "--json")
    assert done.returncode in (0, 3), done.stderr
    return done.returncode, json.loads(done.stdout)


def latency(comparison: dict[str, Any], metric: str, part: int = 0) -> dict[str, Any]:
    rows = {row["metric"]: row for row in comparison["parts"][part]["latency"]}
    change: dict[str, Any] = rows[metric]["changes"][0]
    return change


def test_the_same_run_twice_is_no_significant_difference(runs: dict[str, Path]) -> None:
    code, comparison = compared(str(runs["a"]), str(runs["b"]))
    assert code == 0
    for metric in ("ttft_s.p50", "ttft_s.p99"):
        change = latency(comparison, metric)
        assert change["direction"] == "same", change
        assert change["verdict"].startswith("no significant difference")
    printed = clientswarm("compare", str(runs["a"]), str(runs["b"]))
    assert printed.returncode == 0, printed.stderr
    ttft = [line for line in printed.stdout.splitlines() if "TTFT p" in line]
    assert len(ttft) == 3, printed.stdout
    assert all("no significant difference" in ttft[i] for i in (0, 2)), printed.stdout


def test_a_slower_simulator_is_called_slower(runs: dict[str, Path]) -> None:
    code, comparison = compared(str(runs["a"]), str(runs["slow"]))
    assert code == 0
    for metric in ("ttft_s.p50", "ttft_s.p99"):
        change = latency(comparison, metric)
        assert change["direction"] == "slower"
        assert change["verdict"].startswith("B slower (+")
        low, high = change["ci_relative"]
        assert 0 < low <= change["relative"] <= high < 1.0
    low, high = latency(comparison, "ttft_s.p50")["ci_relative"]
    assert low > 0.3 and high < 0.9  # 50 → 80 ms: about +60 %
    _, reverse = compared(str(runs["slow"]), str(runs["a"]))
    assert latency(reverse, "ttft_s.p50")["verdict"].startswith("B faster (-")


def test_fail_if_gates_the_later_runs(runs: dict[str, Path]) -> None:
    gate = ("--fail-if", "ttft_s.p99 > +10%", "--fail-if", "error_rate > 0.01")
    code, comparison = compared(str(runs["a"]), str(runs["b"]), *gate)
    assert code == 0 and comparison["passed"]
    code, comparison = compared(str(runs["a"]), str(runs["b"]), str(runs["slow"]), *gate)
    assert code == 3
    failed = [(g["run"], g["expr"]) for g in comparison["fail_if"] if g["failed"]]
    assert failed == [("C", "ttft_s.p99 > +10%")]
    printed = clientswarm("compare", str(runs["a"]), str(runs["slow"]), *gate)
    assert printed.returncode == 3 and "FAILED" in printed.stdout


def test_stages_are_compared_stage_by_stage(runs: dict[str, Path], tmp_path: Path) -> None:
    staged = []
    for name in ("a", "slow"):
        copy = shutil.copytree(runs[name], tmp_path / name)
        summary = json.loads((copy / "summary.json").read_text())
        group = summary["groups"]["chat"]
        stage = {k: v for k, v in group.items() if k not in ("steps", "stages")}
        stage.update(stage=0, set_point=100.0, start_offset_s=0.0, planned_s=1.0)
        group["stages"] = [stage]  # the shape of a staged group's summary
        (copy / "summary.json").write_text(json.dumps(summary))
        staged.append(str(copy))
    _, comparison = compared(*staged)
    parts = [(p["group"], p["stage"]) for p in comparison["parts"]]
    assert parts == [("chat", None), ("chat", "0")]
    assert comparison["parts"][1]["set_points"] == [100.0, 100.0]
    assert latency(comparison, "ttft_s.p50", part=1)["direction"] == "slower"


def test_bad_inputs_exit_2(runs: dict[str, Path], tmp_path: Path) -> None:
    other = shutil.copytree(runs["b"], tmp_path / "other")
    summary = json.loads((other / "summary.json").read_text())
    summary["groups"] = {"embed": summary["groups"]["chat"]}
    (other / "summary.json").write_text(json.dumps(summary))
    (tmp_path / "empty").mkdir()
    cases = {
        (str(tmp_path / "missing"),): "no such directory",
        (str(tmp_path / "empty"),): "not a result directory",
        (str(other),): "no group in common",
        (str(runs["b"]), "--fail-if", "ttft_s.p99 > 10ms"): "right-hand side",
        (str(runs["b"]), "--min-effect", "five"): "--min-effect",
        ("abc123", "--service", "http://127.0.0.1:9"): "as a cluster of the service: cannot reach",
    }
    for args, message in cases.items():
        done = clientswarm("compare", str(runs["a"]), *args)
        assert done.returncode == 2, (args, done.stdout, done.stderr)
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], (args, done.stderr)
    alone = clientswarm("compare", str(runs["a"]))
    assert alone.returncode == 2 and "at least two runs" in alone.stderr


def test_a_cluster_of_a_service_compares_with_a_directory(
    runs: dict[str, Path], tmp_path: Path
) -> None:
    with (
        simulator("--ttft-ms", "80", "--ttft-std-ms", "5") as url,
        ServiceProcess(tmp_path / "svc", token="s3cret") as service,
    ):
        config = {**CONFIG, "target": {**CONFIG["target"], "url": url}}
        status, created = service.api("POST", "/clusters", config)
        assert status == 201, created
        assert service.wait_status(created["id"])["status"] == "completed"
        args = ("compare", str(runs["a"]), created["id"], "--service", service.url, "--json")
        denied = clientswarm(*args, env={"CLIENTSWARM_API_TOKEN": "wrong"})
        assert denied.returncode == 2 and "403 the bearer token" in denied.stderr
        done = clientswarm(*args, env={"CLIENTSWARM_API_TOKEN": "s3cret"})
    assert done.returncode == 0, done.stderr
    comparison = json.loads(done.stdout)
    assert comparison["runs"][1]["source"] == f"{created['id']} at {service.url}"
    assert latency(comparison, "ttft_s.p50")["direction"] == "slower"
